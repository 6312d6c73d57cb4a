"""Which queued transactions a ledger takes, and what they pay: stellar-core surge pricing.

Two lanes, as stellar-core builds a generalized tx set (src/herder/SurgePricingUtils.cpp,
TxSetFrame.cpp): Soroban transactions, limited per ledger in several resources at once
(transactions, instructions, write entries, disk-read entries, write bytes, transaction bytes:
a transaction fits only if every one of them fits), and classic transactions, limited by
operations. Within a lane the highest inclusion fee per operation goes first
(arrival order on ties); a transaction that does not fit is left for a later ledger and the
lane is then surge-priced: every included transaction pays the lowest included fee per
operation (the component's base fee) instead of the 100-stroop minimum. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

BASE_FEE = 100  # stroops per operation, the network minimum


Resources = tuple[int, ...]


def fits(used: Resources, more: Resources, capacity: Resources) -> bool:
    return all(u + m <= c for u, m, c in zip(used, more, capacity, strict=True))


def plus(a: Resources, b: Resources) -> Resources:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def minus(a: Resources, b: Resources) -> Resources:
    return tuple(x - y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Candidate:
    hash: str
    bid: int  # inclusion fee offered (full fee minus declared resource fee)
    ops: int
    soroban: bool
    # What the transaction takes of its lane: (operations,) for classic; for Soroban
    # (1 transaction, instructions, write entries, disk-read entries, write bytes, tx bytes).
    units: Resources = ()

    @property
    def rate(self) -> Fraction:
        return Fraction(self.bid, self.ops)


def _zero(candidates: list[Candidate]) -> Resources:
    return tuple(0 for _ in candidates[0].units) if candidates else ()


@dataclass(frozen=True)
class LaneChoice:
    chosen: list[str]
    base_fee: int | None  # per operation; None when nothing was left out (no surge)


def choose(candidates: list[Candidate], capacity: Resources) -> LaneChoice:
    """The best-paying candidates of one lane within ``capacity`` (every resource)."""
    ranked = sorted(candidates, key=lambda c: -c.rate)  # stable: arrival order on ties
    taken: list[Candidate] = []
    used = _zero(candidates)
    left_out = False
    for candidate in ranked:
        if not fits(used, candidate.units, capacity):
            left_out = True
            continue
        taken.append(candidate)
        used = plus(used, candidate.units)
    base = int(min(c.rate for c in taken)) if left_out and taken else None
    return LaneChoice([c.hash for c in taken], base)


def to_evict(
    queued: list[Candidate], newcomer: Candidate, capacity: Resources
) -> tuple[list[Candidate], Fraction | None]:
    """TxQueueLimiter::canAddTx for a full lane: the lowest-rate queued transactions that
    must go for ``newcomer`` to fit, or (``[]``, the rate it must beat) when they outbid it."""
    used = _zero([newcomer])
    for c in queued:
        used = plus(used, c.units)
    if fits(used, newcomer.units, capacity):
        return [], None
    evicted: list[Candidate] = []
    # Lowest rate first; among equal rates the newest goes first.
    for candidate in sorted(reversed(queued), key=lambda c: c.rate):
        if fits(used, newcomer.units, capacity):
            break
        evicted.append(candidate)
        used = minus(used, candidate.units)
    if not evicted:
        return [], newcomer.rate  # cannot fit even in an empty lane: nothing to beat
    highest = max(c.rate for c in evicted)
    if newcomer.rate > highest:
        return evicted, None
    return [], highest
