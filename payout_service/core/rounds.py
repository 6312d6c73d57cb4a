"""Round lifecycle as a table, and the rules of a resolution. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.validation import PayoutRequest, quote

# A payout_id is "{round_id}-winner-{rank}" and must stay within 128 characters.
ROUND_ID = re.compile(r"^[A-Za-z0-9:_.\-]{1,96}$")
MAX_WINNERS = 1000


class RoundState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    RESOLVED = "RESOLVED"
    SETTLED = "SETTLED"


R = RoundState

# SETTLED is reached only by the system, when every payout of the round is CONFIRMED.
TRANSITIONS: dict[RoundState, frozenset[RoundState]] = {
    R.OPEN: frozenset({R.CLOSED}),
    R.CLOSED: frozenset({R.RESOLVED}),
    R.RESOLVED: frozenset({R.SETTLED}),
    R.SETTLED: frozenset(),
}


class IllegalRoundTransition(Exception):
    def __init__(self, round_id: str, current: RoundState, target: RoundState) -> None:
        super().__init__(f"round {quote(round_id)} is {current}; it cannot become {target}")
        self.round_id, self.current, self.target = round_id, current, target


def check_round_transition(round_id: str, current: RoundState, target: RoundState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalRoundTransition(round_id, current, target)


def round_id_problem(round_id: str) -> str | None:
    if not round_id:
        return "is required"
    if not ROUND_ID.fullmatch(round_id):
        return "must be 1-96 characters from A-Z a-z 0-9 : _ . -"
    return None


def winner_idempotency_key(round_id: str, rank: int) -> str:
    return f"round:{round_id}:rank:{rank}"


def winner_payout_id(round_id: str, rank: int) -> str:
    return f"{round_id}-winner-{rank}"


@dataclass(frozen=True)
class WinnerInput:
    rank: int
    destination: str
    amount: str
    memo: tuple[str, object] | None = None  # as validate_payout_request takes it


# desk.validate: fields -> PayoutRequest, raising ValidationFailed.
Validator = Callable[[Mapping[str, object]], PayoutRequest]

# Fields of a payout request a winner provides; the others are derived from the round.
_WINNER_FIELDS = {"destination": "destination", "amount": "amount"}


def validate_winners(
    round_id: str, asset: str, winners: Sequence[WinnerInput], validate: Validator
) -> list[PayoutRequest]:
    """Every winner's payout request, or ValidationFailed naming each bad `winners[i].field`."""
    violations: list[FieldViolation] = []
    if not winners:
        raise ValidationFailed([FieldViolation("winners", "at least one winner is required")])
    if len(winners) > MAX_WINNERS:
        raise ValidationFailed([FieldViolation("winners", f"at most {MAX_WINNERS} winners")])
    requests: list[PayoutRequest] = []
    seen: set[int] = set()
    for i, winner in enumerate(winners):
        if winner.rank < 1:
            violations.append(FieldViolation(f"winners[{i}].rank", "must be 1 or more"))
        elif winner.rank in seen:
            violations.append(FieldViolation(f"winners[{i}].rank", "is used by another winner"))
        seen.add(winner.rank)
        try:
            requests.append(validate({
                "payout_id": winner_payout_id(round_id, winner.rank),
                "idempotency_key": winner_idempotency_key(round_id, winner.rank),
                "destination": winner.destination, "amount": winner.amount, "asset": asset,
                "metadata": {"round_id": round_id, "rank": str(winner.rank)},
                "reference": "", "memo": winner.memo,
            }))
        except ValidationFailed as err:
            for v in err.violations:
                name = v.field if v.field.startswith("memo") else _WINNER_FIELDS.get(
                    v.field, "rank")
                violations.append(FieldViolation(f"winners[{i}].{name}", v.description))
    if violations:
        raise ValidationFailed(violations)
    return requests
