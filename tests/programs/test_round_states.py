"""The round state table and winner validation, without a database."""

from __future__ import annotations

import itertools

import pytest
from stellar_sdk import Keypair

from payout_service.core.errors import ValidationFailed
from payout_service.core.rounds import (
    IllegalRoundTransition,
    RoundState,
    WinnerInput,
    check_round_transition,
    validate_winners,
    winner_idempotency_key,
    winner_payout_id,
)
from payout_service.core.validation import AmountLimits, validate_payout_request

R = RoundState
LEGAL = {(R.OPEN, R.CLOSED), (R.CLOSED, R.RESOLVED), (R.RESOLVED, R.SETTLED)}
ALL_PAIRS = list(itertools.product(RoundState, RoundState))


@pytest.mark.parametrize("current,target", sorted(LEGAL))
def test_only_the_forward_steps_are_legal(current, target):
    check_round_transition("r1", current, target)


@pytest.mark.parametrize("current,target", [p for p in ALL_PAIRS if p not in LEGAL])
def test_every_other_transition_is_illegal(current, target):
    with pytest.raises(IllegalRoundTransition) as err:
        check_round_transition("r1", current, target)
    assert err.value.current == current and err.value.target == target


def validator(fields):
    return validate_payout_request(
        payout_id=str(fields["payout_id"]), destination=str(fields["destination"]),
        amount=str(fields["amount"]), asset=str(fields["asset"]),
        idempotency_key=str(fields["idempotency_key"]), metadata=dict(fields["metadata"]),
        reference=str(fields["reference"]), limits=AmountLimits(),
    )


def test_winner_payouts_get_derived_ids_and_keys():
    dest = Keypair.random().public_key
    (req,) = validate_winners("round-7", "XLM", [WinnerInput(1, dest, "10")], validator)
    assert req.payout_id == winner_payout_id("round-7", 1) == "round-7-winner-1"
    assert req.idempotency_key == winner_idempotency_key("round-7", 1) == "round:round-7:rank:1"
    assert req.amount_stroops == 100_000_000


def test_every_bad_winner_is_named_by_index_and_field():
    good = Keypair.random().public_key
    winners = [
        WinnerInput(1, good, "10"),
        WinnerInput(2, "GNOTANACCOUNT", "10"),
        WinnerInput(3, good, "-1"),
        WinnerInput(3, good, "1"),
        WinnerInput(0, good, "1"),
    ]
    with pytest.raises(ValidationFailed) as err:
        validate_winners("round-7", "XLM", winners, validator)
    fields = {v.field for v in err.value.violations}
    assert fields == {
        "winners[1].destination", "winners[2].amount", "winners[3].rank", "winners[4].rank",
    }


def test_no_winners_is_invalid():
    with pytest.raises(ValidationFailed) as err:
        validate_winners("round-7", "XLM", [], validator)
    assert err.value.violations[0].field == "winners"
