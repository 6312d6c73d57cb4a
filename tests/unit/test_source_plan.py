"""Where a build pass's transactions come from (core/sources.py): the channel registry alone
decides, through two counts read once a pass."""

from __future__ import annotations

import pytest

from payout_service.core.sources import SourcePlan, plan_sources


@pytest.mark.parametrize("leasable", [0, -1])
def test_with_no_leasable_channel_payouts_go_from_the_payer_at_full_room(leasable: int) -> None:
    # None registered, none funded yet, or the whole pool retired: payouts keep flowing.
    assert plan_sources(leasable=leasable, free=0, wanted=25, signs=True) == \
        SourcePlan(channels=False, room=25)


def test_one_leasable_channel_switches_channel_mode_on_with_room_for_the_free_ones() -> None:
    assert plan_sources(leasable=1, free=1, wanted=25, signs=True) == SourcePlan(True, 1)
    assert plan_sources(leasable=300, free=40, wanted=25, signs=True) == SourcePlan(True, 25)


def test_with_every_channel_busy_payouts_wait_rather_than_fall_back_to_the_payer() -> None:
    assert plan_sources(leasable=8, free=0, wanted=25, signs=True) == SourcePlan(True, 0)


def test_external_signing_never_uses_channels() -> None:
    # An outside signer signs with the paying key only; a channel would need its own key.
    assert plan_sources(leasable=8, free=8, wanted=25, signs=False) == SourcePlan(False, 25)
