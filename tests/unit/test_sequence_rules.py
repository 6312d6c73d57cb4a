"""The sequence-number rules (core/sequences.py): no abandoned number stops the account."""

from __future__ import annotations

from payout_service.core.sequences import must_resequence, resync


def test_resync_frees_every_hole_between_the_chain_and_what_may_still_land():
    plan = resync(100, held=[101, 104, 105])
    assert plan.free == [102, 103]
    assert plan.next_sequence == 106


def test_resync_with_nothing_held_restarts_right_after_the_chain():
    plan = resync(100, held=[])
    assert plan.free == [] and plan.next_sequence == 101


def test_resync_ignores_numbers_the_chain_already_consumed():
    plan = resync(100, held=[99, 100, 102])
    assert plan.free == [101] and plan.next_sequence == 103


def test_an_envelope_that_never_left_us_moves_down_to_a_free_number():
    assert must_resequence(105, 103, left_us=False)
    assert not must_resequence(105, None, left_us=False)
    assert not must_resequence(103, 105, left_us=False)


def test_an_envelope_that_left_us_keeps_its_number():
    """A copy at another number could land as well: paid twice."""
    assert not must_resequence(105, 103, left_us=True)
