"""Which queued transactions a ledger takes, and what they pay: stellar-core surge pricing.

Two lanes, as stellar-core builds a generalized tx set (src/herder/SurgePricingUtils.cpp,
TxSetFrame.cpp): Soroban transactions, limited per ledger by count, and classic transactions,
limited by operations. Within a lane the highest inclusion fee per operation goes first
(arrival order on ties); a transaction that does not fit is left for a later ledger and the
lane is then surge-priced: every included transaction pays the lowest included fee per
operation (the component's base fee) instead of the 100-stroop minimum. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

BASE_FEE = 100  # stroops per operation, the network minimum


@dataclass(frozen=True)
class Candidate:
    hash: str
    bid: int  # inclusion fee offered (full fee minus declared resource fee)
    ops: int
    soroban: bool

    @property
    def rate(self) -> Fraction:
        return Fraction(self.bid, self.ops)

    @property
    def units(self) -> int:
        """What the transaction takes of its lane: one tx (Soroban) or its operations."""
        return 1 if self.soroban else self.ops


@dataclass(frozen=True)
class LaneChoice:
    chosen: list[str]
    base_fee: int | None  # per operation; None when nothing was left out (no surge)


def choose(candidates: list[Candidate], capacity: int) -> LaneChoice:
    """The best-paying candidates of one lane within ``capacity`` units."""
    ranked = sorted(candidates, key=lambda c: -c.rate)  # stable: arrival order on ties
    taken: list[Candidate] = []
    used = 0
    left_out = False
    for candidate in ranked:
        if used + candidate.units > capacity:
            left_out = True
            continue
        taken.append(candidate)
        used += candidate.units
    base = int(min(c.rate for c in taken)) if left_out and taken else None
    return LaneChoice([c.hash for c in taken], base)


def to_evict(
    queued: list[Candidate], newcomer: Candidate, capacity: int
) -> tuple[list[Candidate], Fraction | None]:
    """TxQueueLimiter::canAddTx for a full lane: the lowest-rate queued transactions that
    must go for ``newcomer`` to fit, or (``[]``, the rate it must beat) when they outbid it."""
    used = sum(c.units for c in queued)
    if used + newcomer.units <= capacity:
        return [], None
    evicted: list[Candidate] = []
    # Lowest rate first; among equal rates the newest goes first.
    for candidate in sorted(reversed(queued), key=lambda c: c.rate):
        if used + newcomer.units <= capacity:
            break
        evicted.append(candidate)
        used -= candidate.units
    highest = max(c.rate for c in evicted)
    if newcomer.rate > highest:
        return evicted, None
    return [], highest
