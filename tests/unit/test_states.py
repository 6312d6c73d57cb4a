"""The payout lifecycle table (docs/design.md, "Payout lifecycle")."""

from __future__ import annotations

import pytest

from payout_service.core.states import (
    ATTEMPT_TRANSITIONS,
    CANCELLABLE,
    HOLDS_SEQUENCE,
    TRANSITIONS,
    AttemptStatus,
    IllegalTransition,
    PayoutState,
    attempt_sources,
    check_transition,
    given_up,
    payout_sources,
)

S = PayoutState
A = AttemptStatus


def test_confirmed_is_final_and_cancelled_only_admits_what_the_chain_did():
    for target in PayoutState:
        with pytest.raises(IllegalTransition):
            check_transition(S.CONFIRMED, target)
    # A cancelled payout is never sent again; only an envelope handed out before the cancel
    # landing anyway moves it (to CONFIRMED: the record follows the chain).
    assert TRANSITIONS[S.CANCELLED] == {S.CONFIRMED}


def test_a_submitted_payout_can_never_be_cancelled():
    assert S.SUBMITTED not in CANCELLABLE
    with pytest.raises(IllegalTransition):
        check_transition(S.SUBMITTED, S.CANCELLED)


def test_build_only_payouts_are_never_submitted():
    assert TRANSITIONS[S.BUILT] == {S.CANCELLED}


def test_every_cancellable_state_can_move_to_cancelled():
    for state in CANCELLABLE:
        check_transition(state, S.CANCELLED)


def test_confirmation_follows_any_envelope_that_left_us_landing():
    """Sent by us (SUBMITTED), handed out unsigned and submitted by its holder
    (AWAITING_SIGNATURE), or abandoned and landing after all (FAILED, CANCELLED)."""
    assert payout_sources(S.CONFIRMED) == {S.SUBMITTED, S.AWAITING_SIGNATURE, S.FAILED,
                                           S.CANCELLED}


def test_attempt_end_states_are_final():
    for status in (A.INCLUDED, A.FAILED_ON_CHAIN, A.DEAD, A.REJECTED, A.SUPERSEDED,
                   A.CANCELLED):
        assert ATTEMPT_TRANSITIONS[status] == frozenset(), status


def test_a_sent_attempt_is_never_superseded_or_cancelled():
    """Only an envelope that never left us may be rebuilt at another number."""
    assert A.SENT not in attempt_sources(A.SUPERSEDED)
    assert A.SENT not in attempt_sources(A.CANCELLED)
    assert A.ABANDONED not in attempt_sources(A.SUPERSEDED)


def test_an_abandoned_attempt_ends_landed_or_proven_dead():
    assert ATTEMPT_TRANSITIONS[A.ABANDONED] == {A.INCLUDED, A.FAILED_ON_CHAIN, A.DEAD}
    assert A.ABANDONED not in HOLDS_SEQUENCE, "its number goes to a replacement"


def test_giving_up_an_envelope_that_left_us_abandons_it():
    assert given_up(A.BUILT, handed_out=False) == A.CANCELLED
    assert given_up(A.SIGNED, handed_out=False) == A.CANCELLED
    assert given_up(A.BUILT, handed_out=True) == A.ABANDONED
    assert given_up(A.SIGNED, handed_out=True) == A.ABANDONED
    assert given_up(A.SENT, handed_out=False) == A.ABANDONED


def test_every_attempt_status_is_in_the_table():
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptStatus)
    for targets in ATTEMPT_TRANSITIONS.values():
        assert targets <= set(AttemptStatus)
