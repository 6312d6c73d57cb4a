"""The payout lifecycle table (DESIGN.md section 3)."""

from __future__ import annotations

import pytest

from payout_service.core.states import (
    CANCELLABLE,
    TRANSITIONS,
    IllegalTransition,
    PayoutState,
    check_transition,
)

S = PayoutState


def test_confirmed_and_cancelled_are_final():
    for state in (S.CONFIRMED, S.CANCELLED):
        for target in PayoutState:
            with pytest.raises(IllegalTransition):
                check_transition(state, target)


def test_a_submitted_payout_can_never_be_cancelled():
    assert S.SUBMITTED not in CANCELLABLE
    with pytest.raises(IllegalTransition):
        check_transition(S.SUBMITTED, S.CANCELLED)


def test_build_only_payouts_are_never_submitted():
    assert TRANSITIONS[S.BUILT] == {S.CANCELLED}


def test_every_cancellable_state_can_move_to_cancelled():
    for state in CANCELLABLE:
        check_transition(state, S.CANCELLED)


def test_confirmation_only_follows_submission():
    sources = {s for s, targets in TRANSITIONS.items() if S.CONFIRMED in targets}
    assert sources == {S.SUBMITTED}
