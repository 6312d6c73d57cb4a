"""Checks on an externally signed envelope. Verification only: no signing here."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from stellar_sdk import StrKey
from stellar_sdk.transaction_envelope import TransactionEnvelope


def required_signers(envelope: TransactionEnvelope) -> list[str]:
    """The accounts whose signatures the transaction needs: its source and every operation's
    own source (master keys, weight 1, as our accounts are set up)."""
    tx = envelope.transaction
    accounts = [tx.source.account_id] + [op.source.account_id for op in tx.operations
                                         if op.source is not None]
    return list(dict.fromkeys(accounts))


def _verifies(account: str, tx_hash: bytes, hint: bytes, signature: bytes) -> bool | None:
    """True/False if `account`'s key has this hint and the signature does/doesn't verify;
    None when the hint is another key's."""
    raw = StrKey.decode_ed25519_public_key(account)
    if hint != raw[-4:]:
        return None
    try:
        VerifyKey(raw).verify(tx_hash, signature)
    except BadSignatureError:
        return False
    return True


def signed_envelope_problem(
    signed_xdr: str, *, expected_hash: str, network_passphrase: str
) -> str | None:
    """None if the envelope is our transaction, unchanged, carrying exactly the signatures it
    needs: one valid signature per required signer, none extra, none twice. stellar-core
    refuses an unused signature (txBAD_AUTH_EXTRA), and a refused envelope would hold its
    sequence number, so it is refused here, before it is stored or sent."""
    try:
        envelope = TransactionEnvelope.from_xdr(signed_xdr, network_passphrase)
    except Exception:  # noqa: BLE001 - any parse failure is the caller's bad input
        return "is not a base64 TransactionEnvelope XDR"
    tx_hash = envelope.hash()
    if tx_hash.hex() != expected_hash:
        return "is not the transaction this payout built (hash differs: contents changed)"
    needed = required_signers(envelope)
    signed_by: list[str] = []
    unwanted: str | None = None  # the first extra or duplicate signature, if any
    for index, decorated in enumerate(envelope.signatures):
        hint, signature = decorated.signature_hint, decorated.signature
        outcomes = {a: _verifies(a, tx_hash, hint, signature) for a in needed}
        valid = [a for a, ok in outcomes.items() if ok]
        if not valid and any(ok is False for ok in outcomes.values()):
            return f"signature {index} has a required signer's hint but does not verify"
        if not valid:
            unwanted = unwanted or (f"signature {index} is by a key this transaction does not "
                                    "need (extra signatures are refused: txBAD_AUTH_EXTRA)")
        elif valid[0] in signed_by:
            unwanted = unwanted or f"signature {index} repeats the signature by {valid[0]}"
        else:
            signed_by.append(valid[0])
    missing = [a for a in needed if a not in signed_by]
    if missing:
        return f"is not signed by the source account {missing[0]}"
    return unwanted
