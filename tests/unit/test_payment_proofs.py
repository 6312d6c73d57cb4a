"""Proof of payment: the fee split and what is read from an included transaction."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stellar_sdk import Account, Asset, Keypair, MuxedAccount, Network, TransactionBuilder

from payout_service.api.convert import proof_to_pb
from payout_service.cli.proofs import explorer_link, render
from payout_service.core.payment_proofs import (
    PaymentProof,
    fee_shares,
    proof_document,
    read_proof,
    stellar_rpc_event_id,
)
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

pytestmark = pytest.mark.unit


def test_a_fee_that_divides_evenly_is_shared_equally():
    assert fee_shares(300, 3) == [100, 100, 100]


def test_the_remainder_goes_one_stroop_each_to_the_lowest_operations():
    assert fee_shares(1003, 4) == [251, 251, 251, 250]


def test_a_single_payout_carries_the_whole_fee():
    assert fee_shares(12345, 1) == [12345]


def test_a_fee_smaller_than_the_batch_gives_the_first_operations_a_stroop():
    assert fee_shares(2, 5) == [1, 1, 0, 0, 0]


@given(st.integers(0, 10**15), st.integers(1, 100))
def test_shares_sum_to_the_fee_and_differ_by_at_most_a_stroop(fee, payouts):
    shares = fee_shares(fee, payouts)
    assert sum(shares) == fee
    assert len(shares) == payouts
    assert all(s >= 0 for s in shares)
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the lowest indexes get the remainder


def test_no_payouts_or_a_negative_fee_is_refused():
    with pytest.raises(ValueError):
        fee_shares(100, 0)
    with pytest.raises(ValueError):
        fee_shares(-1, 1)


def test_event_ids_are_stellar_rpc_cursors():
    # protocols/rpc cursor: TOID(ledger << 32 | tx << 12 | op) in 19 digits, event in 10.
    assert stellar_rpc_event_id(1, 1, 0, 0) == "0000000004294971392-0000000000"
    assert stellar_rpc_event_id(123, 2, 7, 1) == f"{(123 << 32) | (2 << 12) | 7:019d}-0000000001"


def _batch_envelope(treasury: Keypair, channel: Keypair, muxed_to: str) -> str:
    builder = TransactionBuilder(Account(channel.public_key, 41),
                                 Network.TESTNET_NETWORK_PASSPHRASE, base_fee=100)
    builder.add_text_memo("invoice 7")
    builder.append_payment_op(Keypair.random().public_key, Asset.native(), "1",
                              source=treasury.public_key)
    builder.append_payment_op(muxed_to, Asset.native(), "2", source=treasury.public_key)
    builder.set_timeout(30)
    return builder.build().to_xdr()


def test_a_batch_payments_proof_names_its_operation_memo_muxed_id_and_treasury():
    treasury, channel = Keypair.random(), Keypair.random()
    muxed = MuxedAccount(Keypair.random().public_key, 42).account_muxed
    assert muxed is not None
    envelope = _batch_envelope(treasury, channel, muxed)
    proof = read_proof(envelope, "", tx_hash="ab" * 32, ledger=77, ledger_close_time=1_700_000,
                       application_order=3, position=1, fee_charged=201, fee_share=100)
    assert (proof.op_index, proof.ledger, proof.ledger_close_time) == (1, 77, 1_700_000)
    assert proof.memo == "text:invoice 7"
    assert proof.muxed_id == 42
    assert proof.treasury == treasury.public_key  # the operation's source, not the channel
    assert proof.event_id == ""  # no meta given: no event to name
    assert (proof.fee_charged, proof.fee_share) == (201, 100)


def test_an_operation_the_transaction_does_not_have_is_refused():
    treasury = Keypair.random()
    envelope = _batch_envelope(treasury, treasury, Keypair.random().public_key)
    with pytest.raises(ValueError, match="no operation 5"):
        read_proof(envelope, "", tx_hash="ab" * 32, ledger=1, ledger_close_time=1,
                   application_order=1, position=5, fee_charged=1, fee_share=1)


def test_the_explorer_link_names_public_and_testnet_and_nothing_else():
    tx = "ab" * 32
    assert explorer_link("public", tx) == f"https://stellar.expert/explorer/public/tx/{tx}"
    assert explorer_link(Network.TESTNET_NETWORK_PASSPHRASE, tx) == \
        f"https://stellar.expert/explorer/testnet/tx/{tx}"
    assert explorer_link("Standalone Network ; February 2017", tx) is None
    assert explorer_link("", tx) is None


def test_a_proof_document_keeps_every_digit_of_a_muxed_id():
    proof = PaymentProof(tx_hash="ab" * 32, ledger=9, ledger_close_time=0, op_index=2,
                         event_id="", fee_charged=300, fee_share=100, memo="id:7",
                         muxed_id=2**64 - 1, treasury="G" + "A" * 55)
    document = proof_document(proof)
    assert document["muxed_id"] == "18446744073709551615"
    assert document["memo"] == {"type": "id", "value": "7"}
    assert document["ledger_closed_at"] == "1970-01-01T00:00:00Z"


def _confirmed(network_hash: str = "cd" * 32) -> pb.Payout:
    proof = proof_to_pb(PaymentProof(
        tx_hash=network_hash, ledger=12, ledger_close_time=1_700_000_000, op_index=3,
        event_id=stellar_rpc_event_id(12, 1, 3, 0), fee_charged=400, fee_share=100,
        memo="text:invoice 7", muxed_id=None, treasury="G" + "A" * 55))
    return pb.Payout(payout_id="p-1", proof=proof)


def test_payoutctl_proof_prints_the_proof_and_an_explorer_link():
    payout = _confirmed()
    text = render(payout, "testnet", "table", memo="text:invoice 7")
    assert "op_index:       3" in text and "fee_share:      100 stroops" in text
    assert "closed_at:      2023-11-14T22:13:20Z" in text
    assert f"explorer:       https://stellar.expert/explorer/testnet/tx/{'cd' * 32}" in text
    document = json.loads(render(payout, "Standalone Network ; February 2017", "json", memo=""))
    assert document["explorer_url"] is None  # a custom network: the hash is what to look up
    assert document["proof"]["tx_hash"] == "cd" * 32
    assert document["proof"]["memo"] == {"text": "invoice 7"}
    assert document["proof"]["fee_share_stroops"] == "100"  # int64 in proto JSON: text
