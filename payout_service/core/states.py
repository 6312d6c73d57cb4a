"""Payout lifecycle as a table of allowed transitions (DESIGN.md section 3)."""

from __future__ import annotations

from enum import StrEnum


class PayoutState(StrEnum):
    ACCEPTED = "ACCEPTED"
    BUILT = "BUILT"
    AWAITING_SIGNATURE = "AWAITING_SIGNATURE"
    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


S = PayoutState

TRANSITIONS: dict[PayoutState, frozenset[PayoutState]] = {
    S.ACCEPTED: frozenset({S.BUILT, S.AWAITING_SIGNATURE, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.BUILT: frozenset({S.CANCELLED}),
    S.AWAITING_SIGNATURE: frozenset({S.QUEUED, S.AWAITING_SIGNATURE, S.FAILED, S.CANCELLED}),
    # QUEUED -> AWAITING_SIGNATURE: a rebuilt attempt in external mode needs a new signature.
    S.QUEUED: frozenset({S.SUBMITTED, S.QUEUED, S.AWAITING_SIGNATURE, S.FAILED, S.CANCELLED}),
    # SUBMITTED -> QUEUED only once the attempt is proven dead (invariant 1).
    S.SUBMITTED: frozenset({S.CONFIRMED, S.QUEUED, S.AWAITING_SIGNATURE, S.FAILED}),
    # FAILED -> QUEUED/AWAITING_SIGNATURE: operator RetryPayout.
    S.FAILED: frozenset({S.QUEUED, S.AWAITING_SIGNATURE}),
    S.CONFIRMED: frozenset(),
    S.CANCELLED: frozenset(),
}

TERMINAL = frozenset({S.BUILT, S.CONFIRMED, S.FAILED, S.CANCELLED})
# A payout in these states has no attempt that could still land on chain.
CANCELLABLE = frozenset({S.ACCEPTED, S.BUILT, S.AWAITING_SIGNATURE, S.QUEUED})


class IllegalTransition(Exception):
    def __init__(self, current: PayoutState, target: PayoutState) -> None:
        super().__init__(f"payout in state {current} cannot move to {target}")
        self.current = current
        self.target = target


def check_transition(current: PayoutState, target: PayoutState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
