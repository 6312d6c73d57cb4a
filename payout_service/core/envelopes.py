"""Checks on an externally signed envelope. Verification only: no signing here."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from stellar_sdk import StrKey
from stellar_sdk.transaction_envelope import TransactionEnvelope


def signed_envelope_problem(
    signed_xdr: str, *, expected_hash: str, signer: str, network_passphrase: str
) -> str | None:
    """None if the envelope is our transaction, unchanged, with a valid signature by `signer`."""
    try:
        envelope = TransactionEnvelope.from_xdr(signed_xdr, network_passphrase)
    except Exception:  # noqa: BLE001 - any parse failure is the caller's bad input
        return "is not a base64 TransactionEnvelope XDR"
    tx_hash = envelope.hash()
    if tx_hash.hex() != expected_hash:
        return "is not the transaction this payout built (hash differs: contents changed)"
    raw_key = StrKey.decode_ed25519_public_key(signer)
    hint = raw_key[-4:]
    verifier = VerifyKey(raw_key)
    for decorated in envelope.signatures:
        if decorated.signature_hint != hint:
            continue
        try:
            verifier.verify(tx_hash, decorated.signature)
            return None
        except BadSignatureError:
            return "carries a signature by the source account that does not verify"
    return f"is not signed by the source account {signer}"
