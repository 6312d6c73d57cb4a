"""CreatePayoutBatch (seed 002 executeBulkPayments): each item succeeds or fails on its own."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from payout_service.core.model import Payout
from payout_service.core.validation import IDENTIFIER, FieldViolation, ValidationFailed
from payout_service.ledger import SimulationFailed, SourceAccountMissing
from payout_service.payouts import IdempotencyConflict, MaxGasExceeded, PayoutDesk
from payout_service.programs.eligibility import create_eligible_payout


class Outcome(StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    INVALID = "INVALID"


@dataclass(frozen=True)
class ItemResult:
    index: int
    outcome: Outcome
    payout: Payout | None = None
    errors: list[FieldViolation] = field(default_factory=list)


def check_batch(item_count: int, batch_id: str, max_items: int) -> str:
    """The batch id to use (generated when empty), or ValidationFailed for the whole batch."""
    violations = []
    if item_count == 0:
        violations.append(FieldViolation("items", "at least one item is required"))
    if item_count > max_items:
        violations.append(FieldViolation(
            "items", f"at most {max_items} items per batch (PAYOUTS_MAX_BATCH_ITEMS), "
            f"got {item_count}",
        ))
    if batch_id and not IDENTIFIER.fullmatch(batch_id):
        violations.append(
            FieldViolation("batch_id", "must be 1-128 characters from A-Z a-z 0-9 : _ . -")
        )
    if violations:
        raise ValidationFailed(violations)
    return batch_id or f"batch-{uuid.uuid4().hex}"


async def create_payout_batch(
    desk: PayoutDesk, items: Sequence[Mapping[str, object]], batch_id: str, *, actor: str,
    correlation_id: str, max_items: int,
) -> tuple[str, list[ItemResult]]:
    """Items are taken in order, so a later item repeating an earlier key is a DUPLICATE and a
    later item repeating an earlier reference is INVALID."""
    batch_id = check_batch(len(items), batch_id, max_items)
    results = []
    for index, fields in enumerate(items):
        results.append(await _one(desk, index, fields, batch_id, actor, correlation_id))
    return batch_id, results


async def _one(
    desk: PayoutDesk, index: int, fields: Mapping[str, object], batch_id: str, actor: str,
    correlation_id: str,
) -> ItemResult:
    try:
        request = desk.validate(fields)
        result = await create_eligible_payout(
            desk, request, actor=actor, correlation_id=correlation_id, batch_id=batch_id
        )
    except (ValidationFailed, IdempotencyConflict) as err:
        return ItemResult(index, Outcome.INVALID, errors=list(err.violations))
    except (MaxGasExceeded, SimulationFailed, SourceAccountMissing) as err:
        problem = FieldViolation("transaction", str(err) or type(err).__name__)
        return ItemResult(index, Outcome.INVALID, errors=[problem])
    outcome = Outcome.ACCEPTED if result.created else Outcome.DUPLICATE
    return ItemResult(index, outcome, result.payout)
