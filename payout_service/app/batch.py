"""CreatePayoutBatch (a bulk request): one SQL transaction, all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from payout_service.app.desk import PayoutDesk
from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.model import Payout
from payout_service.core.validation import IDENTIFIER


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
            "items", f"at most {max_items} items per batch (PAYOUTS_MAX_BULK_ITEMS), "
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
    """All or nothing, in one SQL transaction (PayoutDesk.create_many): any invalid,
    ineligible or conflicting item rejects the whole batch with every problem named as
    `items[i].field`. An item repeating an earlier key (in the batch or before) is a
    DUPLICATE of that payout."""
    batch_id = check_batch(len(items), batch_id, max_items)
    requests, violations = [], []
    for index, fields in enumerate(items):
        try:
            requests.append(desk.validate(fields))
        except ValidationFailed as err:
            violations += [FieldViolation(f"items[{index}].{v.field}", v.description)
                           for v in err.violations]
    if violations:
        raise ValidationFailed(violations)
    created = await desk.create_many(requests, actor=actor, correlation_id=correlation_id,
                                     batch_id=batch_id, item_field="items")
    return batch_id, [
        ItemResult(index, Outcome.ACCEPTED if r.created else Outcome.DUPLICATE, r.payout)
        for index, r in enumerate(created)
    ]
