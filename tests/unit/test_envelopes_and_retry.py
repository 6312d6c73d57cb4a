"""External-signature checks and the retry/proof-of-death rules: pure functions."""

from __future__ import annotations

import random

from stellar_sdk import Keypair

from payout_service.core.envelopes import signed_envelope_problem
from payout_service.core.retry import backoff_seconds, judge_rejection
from payout_service.core.transactions import TxParams, build_payout_transaction, payout_call

NET = "Test SDF Network ; September 2015"


def unsigned(source: Keypair):
    params = TxParams(source.public_key, 42, 0, 2_000_000_000, NET)
    call = payout_call("XLM", NET, None, "distribute_winnings")
    return build_payout_transaction(
        params, call, payer=source.public_key, destination=Keypair.random().public_key,
        amount_stroops=5,
    )


def test_a_correctly_signed_envelope_is_accepted():
    source = Keypair.random()
    envelope = unsigned(source)
    expected = envelope.hash_hex()
    envelope.sign(source)
    assert signed_envelope_problem(
        envelope.to_xdr(), expected_hash=expected, network_passphrase=NET
    ) is None


def test_changed_contents_are_refused():
    source = Keypair.random()
    envelope = unsigned(source)
    expected = envelope.hash_hex()
    envelope.transaction.fee += 1
    envelope.sign(source)
    problem = signed_envelope_problem(
        envelope.to_xdr(), expected_hash=expected, network_passphrase=NET
    )
    assert problem and "hash differs" in problem


def test_a_signature_by_another_key_is_refused():
    source, stranger = Keypair.random(), Keypair.random()
    envelope = unsigned(source)
    expected = envelope.hash_hex()
    envelope.sign(stranger)
    problem = signed_envelope_problem(
        envelope.to_xdr(), expected_hash=expected, network_passphrase=NET
    )
    assert problem and "not signed by the source account" in problem


def test_an_extra_signature_is_refused_naming_it():
    source = Keypair.random()
    envelope = unsigned(source)
    expected = envelope.hash_hex()
    envelope.sign(source)
    envelope.sign(Keypair.random())
    problem = signed_envelope_problem(envelope.to_xdr(), expected_hash=expected,
                                      network_passphrase=NET)
    assert problem and "signature 1" in problem and "txBAD_AUTH_EXTRA" in problem


def test_a_duplicate_signature_is_refused():
    source = Keypair.random()
    envelope = unsigned(source)
    expected = envelope.hash_hex()
    envelope.sign(source)
    envelope.signatures.append(envelope.signatures[0])  # the SDK refuses to add it twice
    problem = signed_envelope_problem(envelope.to_xdr(), expected_hash=expected,
                                      network_passphrase=NET)
    assert problem and "signature 1 repeats" in problem


def test_a_channel_transaction_needs_both_the_channel_and_the_payer():
    payer, channel = Keypair.random(), Keypair.random()
    params = TxParams(channel.public_key, 42, 0, 2_000_000_000, NET)
    call = payout_call("XLM", NET, None, "transfer")
    envelope = build_payout_transaction(
        params, call, payer=payer.public_key, destination=Keypair.random().public_key,
        amount_stroops=5, operation_source=payer.public_key,
    )
    expected = envelope.hash_hex()
    envelope.sign(channel)
    problem = signed_envelope_problem(envelope.to_xdr(), expected_hash=expected,
                                      network_passphrase=NET)
    assert problem == f"is not signed by the source account {payer.public_key}"
    envelope.sign(payer)
    assert signed_envelope_problem(envelope.to_xdr(), expected_hash=expected,
                                   network_passphrase=NET) is None


def test_a_tampered_signature_with_the_right_hint_is_refused():
    source = Keypair.random()
    envelope = unsigned(source)
    expected = envelope.hash_hex()
    envelope.sign(source)
    sig = envelope.signatures[0]
    sig.signature = bytes(64)
    problem = signed_envelope_problem(envelope.to_xdr(), expected_hash=expected,
                                      network_passphrase=NET)
    assert problem and "does not verify" in problem


def test_garbage_is_refused_without_a_traceback():
    problem = signed_envelope_problem(
        "bm9wZQ==", expected_hash="00", network_passphrase=NET
    )
    assert problem == "is not a base64 TransactionEnvelope XDR"


def test_bad_auth_is_permanent_and_bad_seq_is_retryable():
    assert not judge_rejection("txBAD_AUTH").retry
    assert judge_rejection("txBAD_SEQ").retry


def test_backoff_grows_but_is_capped_and_jittered():
    rng = random.Random(7)
    samples = [backoff_seconds(n, base=1, cap=30, rng=rng) for n in range(1, 12)]
    assert all(0 <= s <= 30 for s in samples)
    assert max(backoff_seconds(1, base=1, cap=30, rng=random.Random(i)) for i in range(50)) <= 1
