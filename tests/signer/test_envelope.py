"""The signer's one-decode envelope handling agrees with stellar-sdk byte for byte."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import FeeBumpTransactionEnvelope, Keypair, TransactionBuilder, TransactionEnvelope
from stellar_sdk import xdr as sx

from signer_service.envelope import EnvelopeProblem, parse_envelope
from tests.signer.envelopes import PASSPHRASE, build_tx


@settings(max_examples=30, deadline=None)
@given(existing=st.integers(min_value=0, max_value=5), amount=st.integers(1, 10**12))
def test_hash_and_signed_envelope_equal_stellar_sdks(existing, amount):
    envelope = TransactionEnvelope(build_tx(amount=amount), PASSPHRASE)
    for _ in range(existing):
        envelope.sign(Keypair.random())
    parsed = parse_envelope(envelope.to_xdr())
    assert parsed.hash(PASSPHRASE) == envelope.hash()
    signer = Keypair.random()
    signature = signer.sign(envelope.hash())
    signed = parsed.with_signature(sx.DecoratedSignature(
        sx.SignatureHint(signer.signature_hint()), sx.Signature(signature)))
    envelope.sign(signer)
    assert base64.b64encode(signed).decode() == envelope.to_xdr()


def test_trailing_bytes_are_refused():
    raw = base64.b64decode(TransactionEnvelope(build_tx(), PASSPHRASE).to_xdr())
    with pytest.raises(EnvelopeProblem, match="not (canonical|a base64)"):
        parse_envelope(base64.b64encode(raw + b"\0\0\0\0").decode())


@pytest.mark.parametrize("text", ["", "AAAA-not-xdr", base64.b64encode(b"\0" * 7).decode()])
def test_garbage_is_refused(text):
    with pytest.raises(EnvelopeProblem, match="not a base64 TransactionEnvelope"):
        parse_envelope(text)


def test_fee_bump_envelopes_are_refused():
    inner = TransactionEnvelope(build_tx(), PASSPHRASE)
    bump = TransactionBuilder.build_fee_bump_transaction(
        Keypair.random().public_key, 200, inner, PASSPHRASE)
    assert isinstance(bump, FeeBumpTransactionEnvelope)
    with pytest.raises(EnvelopeProblem, match="only v1"):
        parse_envelope(bump.to_xdr())


def test_twenty_signatures_are_the_xdr_maximum():
    envelope = TransactionEnvelope(build_tx(), PASSPHRASE)
    for _ in range(20):
        envelope.sign(Keypair.random())
    with pytest.raises(EnvelopeProblem, match="20 signatures"):
        parse_envelope(envelope.to_xdr())
