"""A v1 transaction envelope taken apart once: the decoded transaction, the exact bytes its hash
covers, and the signed envelope built by appending one signature to the caller's own bytes.

The caller's XDR is decoded once and never re-encoded whole: the transaction is packed once for
its hash (XDR is canonical, so the input must hold exactly those bytes), and the signature is
spliced onto the input. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from stellar_sdk import xdr as sx
from xdrlib3 import Packer

MAX_SIGNATURES = 20  # DecoratedSignature signatures<20> (Stellar-transaction.x)


class EnvelopeProblem(ValueError):
    """Why the bytes are not an envelope the signer will sign (for INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class ParsedEnvelope:
    tx: sx.Transaction
    raw: bytes  # the whole envelope as received
    tagged_tx_end: int  # raw[:tagged_tx_end] = ENVELOPE_TYPE_TX tag + transaction XDR
    signature_count: int

    def hash(self, network_passphrase: str) -> bytes:
        # TransactionSignaturePayload = networkId || ENVELOPE_TYPE_TX tag || Transaction, which
        # is the network id followed by the envelope's own first bytes.
        network_id = hashlib.sha256(network_passphrase.encode()).digest()
        return hashlib.sha256(network_id + self.raw[: self.tagged_tx_end]).digest()

    def with_signature(self, decorated: sx.DecoratedSignature) -> bytes:
        count = Packer()
        count.pack_uint(self.signature_count + 1)
        return (self.raw[: self.tagged_tx_end] + count.get_buffer()
                + self.raw[self.tagged_tx_end + 4:] + decorated.to_xdr_bytes())


def parse_envelope(envelope_b64: str) -> ParsedEnvelope:
    try:
        raw = base64.b64decode(envelope_b64, validate=True)
        envelope = sx.TransactionEnvelope.from_xdr_bytes(raw)
    except Exception as err:  # noqa: BLE001 - any decoding failure is the caller's bad input
        raise EnvelopeProblem("is not a base64 TransactionEnvelope XDR") from err
    if envelope.type != sx.EnvelopeType.ENVELOPE_TYPE_TX or envelope.v1 is None:
        raise EnvelopeProblem("only v1 transaction envelopes are signed")
    tx_bytes = envelope.v1.tx.to_xdr_bytes()
    end = 4 + len(tx_bytes)
    signatures = envelope.v1.signatures
    tail = Packer()
    tail.pack_uint(len(signatures))
    expected = raw[:4] + tx_bytes + tail.get_buffer() + b"".join(
        s.to_xdr_bytes() for s in signatures)
    if raw != expected:
        # Trailing bytes or a non-canonical encoding: what we would hash is not what was sent.
        raise EnvelopeProblem("is not canonical XDR (re-encoding differs from the input)")
    if len(signatures) >= MAX_SIGNATURES:
        raise EnvelopeProblem(f"already carries {len(signatures)} signatures")
    return ParsedEnvelope(envelope.v1.tx, raw, end, len(signatures))
