"""The canonical approval statement and its Ed25519 check: pure, shared by both services.

An approver signs exactly what is paid: the same bytes are rebuilt by the payout service from
the payout it stores and by the signer from the transaction it decoded, so an approval never
covers another treasury, destination, muxed id, memo, asset, amount, payout or network.
One `field=value` per line in a fixed order, every value checked to hold no line break, so
two different payments can never produce the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from stellar_sdk import Keypair, StrKey
from stellar_sdk.exceptions import BadSignatureError

DOMAIN_TAG = "stellar-payouts approval v1"


@dataclass(frozen=True)
class Payment:
    """What one operation pays, as decoded (signer) or stored (payout service)."""

    network_passphrase: str
    treasury: str  # the account (G...) or address whose money moves
    destination: str  # G... (the base account when muxed) or C...
    muxed_id: int | None  # the M... id of a muxed destination, else None
    memo: str  # "none", "text:<hex>", "id:<n>", "hash:<hex>" or "return:<hex>"
    asset: str  # "native", "CODE:ISSUER", or the token contract's C... id
    amount_stroops: int


@dataclass(frozen=True)
class Approval:
    approver: str  # G... public key of the approval key
    signature: bytes
    payout_id: str
    expires_at: int  # unix seconds


def _clean(name: str, value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{name} must not contain a line break or NUL")
    return value


def statement(payment: Payment, payout_id: str, expires_at: int) -> bytes:
    """The exact bytes an approver signs for `payment` of `payout_id`, valid until
    `expires_at` (unix seconds)."""
    if payment.amount_stroops <= 0:
        raise ValueError("amount_stroops must be positive")
    if not payout_id:
        raise ValueError("payout_id is required")
    lines = [
        DOMAIN_TAG,
        "network=" + hashlib.sha256(payment.network_passphrase.encode()).hexdigest(),
        "treasury=" + _clean("treasury", payment.treasury),
        "destination=" + _clean("destination", payment.destination),
        "muxed_id=" + ("" if payment.muxed_id is None else str(payment.muxed_id)),
        "memo=" + _clean("memo", payment.memo),
        "asset=" + _clean("asset", payment.asset),
        "amount_stroops=" + str(payment.amount_stroops),
        "payout_id=" + _clean("payout_id", payout_id),
        "expires_at=" + str(int(expires_at)),
    ]
    return ("\n".join(lines) + "\n").encode()


def memo_text(kind: str, value: bytes | int | None = None) -> str:
    """The statement's spelling of a transaction memo: kind "none", "text", "id", "hash" or
    "return"; bytes are hex so any memo fits on one line."""
    if kind == "none":
        return "none"
    if kind == "id":
        return f"id:{int(value or 0)}"
    if not isinstance(value, bytes):
        raise ValueError(f"a {kind} memo needs bytes")
    return f"{kind}:{value.hex()}"


# The longest an approval may be valid for: it can be used again for the same payment until
# it expires (the signer keeps no record of approvals used), so a long life widens that.
MAX_APPROVAL_SECONDS = 7 * 24 * 3600


def is_valid(payment: Payment, approval: Approval, now: int) -> bool:
    """Whether `approval` is an unexpired Ed25519 signature by its approver over the
    statement of `payment`."""
    if not now < approval.expires_at <= now + MAX_APPROVAL_SECONDS or \
            not StrKey.is_valid_ed25519_public_key(approval.approver):
        return False
    try:
        message = statement(payment, approval.payout_id, approval.expires_at)
        Keypair.from_public_key(approval.approver).verify(message, approval.signature)
    except (ValueError, BadSignatureError):
        return False
    return True


def approvers_who_approved(payment: Payment, approvals: Iterable[Approval],
                           approvers: frozenset[str], now: int) -> frozenset[str]:
    """The distinct listed approvers with a valid approval of `payment`: one approver's
    several approvals count once, an unlisted key's not at all."""
    return frozenset(a.approver for a in approvals
                     if a.approver in approvers and is_valid(payment, a, now))


def approval_by(secret: str, payment: Payment, payout_id: str, expires_at: int) -> Approval:
    """An approver's approval of `payment`, signed here with its Ed25519 secret (S...):
    for the approver's own machine (payoutctl approve), never for a service."""
    key = Keypair.from_secret(secret)
    return Approval(key.public_key, key.sign(statement(payment, payout_id, expires_at)),
                    payout_id, expires_at)
