"""Balance awareness: which payouts the paying account can cover now, and which wait.

Pure: given what the account can spend per asset, what is already in flight and the payouts
in the order they are due, decide which may be built and which wait in AWAITING_FUNDS. A
payout that cannot be covered would fail on chain with PAYMENT_UNDERFUNDED after its fee is
spent; holding it costs nothing. Integer stroops only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

NATIVE = "XLM"


def native_spendable(balance: int, *, base_reserve: int, subentries: int,
                     selling_liabilities: int, sponsoring: int = 0, sponsored: int = 0) -> int:
    """XLM an account can send: its balance less the minimum balance
    ((2 + subentries + sponsoring - sponsored) x base reserve) and its selling liabilities
    (offers), never below zero."""
    minimum = (2 + subentries + sponsoring - sponsored) * base_reserve
    return max(balance - minimum - selling_liabilities, 0)


def trustline_spendable(balance: int, *, selling_liabilities: int) -> int:
    """A classic asset an account can send from its trustline."""
    return max(balance - selling_liabilities, 0)


@dataclass(frozen=True)
class Claim:
    """One payout due, in queue order. A payout that is not `holdable` (a retry of one that
    already had an attempt) always goes; what it needs is counted before the later ones."""

    payout_id: UUID
    asset: str
    amount: int
    holdable: bool = True


@dataclass(frozen=True)
class FundsDecision:
    go: list[UUID] = field(default_factory=list)
    wait: list[UUID] = field(default_factory=list)
    # Assets with a payout waiting: what the first waiting one needed and what was left.
    short: dict[str, tuple[int, int]] = field(default_factory=dict)


def decide_funds(
    spendable: Mapping[str, int | None], queue: Sequence[Claim], *,
    in_flight: Mapping[str, int], in_flight_fees: int, fee_each: int,
) -> FundsDecision:
    """Walks `queue` in order. A payout goes when what is left of its asset (spendable less
    in flight less what earlier payouts of this decision took) covers its amount, and what
    is left of XLM covers its fee (for an XLM payout: amount plus fee). Once one payout of an
    asset waits, every later payout of that asset waits too: no overtaking. An asset absent
    from `spendable` or None (not read, or the payer issues it) is not limited."""
    left: dict[str, int] = {}
    for asset, amount in spendable.items():
        if amount is not None:
            left[asset] = amount - in_flight.get(asset, 0)
    xlm_limited = NATIVE in left
    if xlm_limited:
        left[NATIVE] -= in_flight_fees
    decision = FundsDecision()
    for claim in queue:
        if claim.amount <= 0 or fee_each < 0:
            raise ValueError("amounts are positive stroops and fees are not negative")
        limited = claim.asset in left
        native_need = fee_each + (claim.amount if claim.asset == NATIVE else 0)
        blocked = claim.asset in decision.short
        covered = not blocked and (
            (not limited or claim.asset == NATIVE or left[claim.asset] >= claim.amount)
            and (not xlm_limited or left[NATIVE] >= native_need))
        if covered or not claim.holdable:
            if limited and claim.asset != NATIVE:
                left[claim.asset] -= claim.amount
            if xlm_limited:
                left[NATIVE] -= native_need
            decision.go.append(claim.payout_id)
            continue
        decision.wait.append(claim.payout_id)
        if not blocked:
            have = left[claim.asset] if limited else left.get(NATIVE, 0)
            decision.short[claim.asset] = (claim.amount, have)
    return decision
