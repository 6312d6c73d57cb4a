"""Four-eyes approval rules on the payout service's side: which payouts need approval, and the
payment an approver signs for one. Pure.

The signer is the enforcement (signer_service/approvals.py): it rebuilds the statement from
the decoded transaction. So the payment built here from a stored payout must be the one the
signer decodes from the transaction the preparer builds for it, field for field, or every
approval would be refused; tests/unit/test_payout_approvals.py checks both sides agree.
Thresholds use the signer's table: stroops, keyed by "native", "CODE:ISSUER" (classic
operations) or the token contract's C... id (a contract transfer), and an asset without a
threshold needs approval for every amount, as in the signer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from payout_approvals.statement import Payment, memo_text
from payout_service.core.batches import BatchMode, is_classic_destination
from payout_service.core.errors import PreconditionFailed
from payout_service.core.model import Payout
from payout_service.core.transactions import asset_contract_id
from payout_service.core.validation import MemoKind, is_account_id, paid_account


class Paid(Protocol):
    """What the decision reads of a payout, stored (Payout) or about to be (NewPayout)."""

    @property
    def asset(self) -> str: ...
    @property
    def net_stroops(self) -> int: ...


@dataclass(frozen=True)
class ApprovalRules:
    thresholds: Mapping[str, int]  # statement asset -> stroops above which approval is needed
    required: int  # distinct approvers
    approvers: Mapping[str, str]  # caller certificate identity -> its G... approval key


def paid_by_classic_operation(batch_mode: BatchMode, contract_id: str | None,
                              destination: str) -> bool | None:
    """How the preparer will pay a destination, as far as approvals care: True by a classic
    Payment / CreateAccount (a classic batch), False by the Stellar Asset Contract's
    `transfer`, None by the payout contract (its `pay` or batch method), which no approval can
    cover: the signer binds an approval only to a `transfer(from, to, amount)` call."""
    if batch_mode is BatchMode.CLASSIC and is_classic_destination(destination):
        return True
    if batch_mode is BatchMode.CONTRACT or contract_id:
        return None
    return False


def statement_asset(asset: str, network_passphrase: str, *, classic: bool) -> str:
    """The asset as the signer names it: "native" or "CODE:ISSUER" in a classic operation,
    the Stellar Asset Contract's C... id in a contract transfer."""
    if not classic:
        return asset_contract_id(asset, network_passphrase)
    return "native" if asset in ("XLM", "native") else asset


def statement_memo(memo_type: str | None, memo_value: str | None) -> str:
    """The stored memo (text as given, id in decimal, hash and return in hex) spelled as the
    statement spells the transaction's memo."""
    if memo_type is None:
        return memo_text("none")
    kind = MemoKind(memo_type)
    value = memo_value or ""
    if kind is MemoKind.TEXT:
        return memo_text("text", value.encode())
    if kind is MemoKind.ID:
        return memo_text("id", int(value))
    return memo_text(kind.value, bytes.fromhex(value))


def approval_payment(payout: Payout, *, network_passphrase: str, treasury: str,
                     classic: bool) -> Payment:
    """What an approver of `payout` signs: the payment the signer will decode from its
    operation. `treasury` is the account whose money moves (the payer); `classic`: paid by a
    classic Payment / CreateAccount rather than a SAC transfer."""
    return Payment(
        network_passphrase=network_passphrase,
        treasury=treasury,
        destination=paid_account(payout.destination),
        muxed_id=payout.muxed_id,
        memo=statement_memo(payout.memo_type, payout.memo_value),
        asset=statement_asset(payout.asset, network_passphrase, classic=classic),
        amount_stroops=payout.net_stroops,
    )


def needs_approval(payout: Paid, rules: ApprovalRules | None, *, network_passphrase: str,
                   classic: bool) -> bool:
    """Whether `payout` must wait for approvals before it is built: its paid amount is above
    its asset's threshold (no threshold: every amount). No rules: never."""
    if rules is None:
        return False
    asset = statement_asset(payout.asset, network_passphrase, classic=classic)
    return payout.net_stroops > rules.thresholds.get(asset, 0)


@dataclass(frozen=True)
class Route:
    """What the preparer pays with, as far as approvals care (from the configuration)."""

    batch_mode: BatchMode
    contract_id: str | None
    network_passphrase: str
    treasury: str


def waits_for_approval(payout: Paid, destination: str, rules: ApprovalRules | None,
                       route: Route) -> bool:
    """Whether a new payout enters AWAITING_APPROVAL instead of ACCEPTED. Raises
    PreconditionFailed when approvals are on and the payout would be paid by the payout
    contract, which no approval can cover (the signer would refuse it whatever we send)."""
    if rules is None:
        return False
    classic = paid_by_classic_operation(route.batch_mode, route.contract_id, destination)
    if classic is None:
        raise PreconditionFailed(
            "destination", "approvals are on (PAYOUTS_APPROVERS) and this payout would be paid "
            "by the payout contract, whose calls no approval can cover: use the SAC transfer "
            "(no PAYOUT_CONTRACT_ID) or a classic batch", kind="APPROVAL")
    return needs_approval(payout, rules, network_passphrase=route.network_passphrase,
                          classic=classic)


def route_payment(payout: Payout, route: Route) -> Payment | None:
    """The statement's payment of a stored payout paid by `route`; None when the route
    cannot carry approvals."""
    classic = paid_by_classic_operation(route.batch_mode, route.contract_id, payout.destination)
    if classic is None:
        return None
    return approval_payment(payout, network_passphrase=route.network_passphrase,
                            treasury=route.treasury, classic=classic)


def _pairs(name: str, text: str) -> list[tuple[str, str]]:
    pairs = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, sep, value = entry.rpartition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{name}: {entry!r} is not KEY=VALUE")
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_approval_rules(thresholds: str, required: str, approvers: str
                         ) -> ApprovalRules | None:
    """Rules from their text form ("native=1000000000,USDC:G...=5000000000";
    "2"; "alice=G...,bob=G..."), or None when no approver is named (approvals off).
    Raises ValueError naming the bad part."""
    named = _pairs("approvers", approvers)
    if not named:
        return None
    by_identity: dict[str, str] = {}
    for identity, key in named:
        if not is_account_id(key):
            raise ValueError(f"approvers: {identity}'s key must be a G... public key")
        if identity in by_identity:
            raise ValueError(f"approvers: {identity} is named twice")
        by_identity[identity] = key
    if len(set(by_identity.values())) != len(by_identity):
        raise ValueError("approvers: two identities share one key (each must approve alone)")
    try:
        count = int(required)
    except ValueError:
        raise ValueError("required: must be a whole number") from None
    if not 1 <= count <= len(by_identity):
        raise ValueError(f"required: must be 1 to {len(by_identity)} (the approvers named)")
    limits: dict[str, int] = {}
    for asset, stroops in _pairs("thresholds", thresholds):
        if not stroops.isdigit():
            raise ValueError(f"thresholds: {asset} must be whole stroops")
        limits["native" if asset == "XLM" else asset] = int(stroops)
    return ApprovalRules(limits, count, by_identity)
