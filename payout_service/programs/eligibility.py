"""Eligibility: a non-empty reference is paid at most once.

A payout "holds" its reference unless it is FAILED or CANCELLED. The creation path
(PayoutDesk.insert_many) checks and inserts in one SQL transaction under transaction-scoped
advisory locks on the references, so two concurrent requests for one reference cannot both
pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

from payout_service.core.validation import FieldViolation, ValidationFailed

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection

REFERENCE_PAID = "has already been paid by payout {payout_id!r}"


async def lock_references(conn: asyncpg.Connection, references: Sequence[str]) -> None:
    """Serialises payouts of these references until the end of the caller's SQL transaction
    (taken in sorted order, so two batches never wait on each other in a cycle)."""
    wanted = sorted({r for r in references if r})
    if wanted:
        await conn.execute(
            """SELECT pg_advisory_xact_lock(hashtextextended('payout-reference:' || r, 0))
               FROM unnest($1::text[]) AS r ORDER BY r""",
            wanted,
        )


async def reference_problems(
    db: Db, items: Sequence[tuple[str, str, str]]
) -> dict[int, FieldViolation]:
    """For (reference, idempotency_key, payout_id) items in order: which would pay a
    reference a second time. A payout's own replay does not count; within the items, the
    first one with a reference holds it."""
    references = sorted({ref for ref, _, _ in items if ref})
    if not references:
        return {}
    rows = await db.fetch(
        """SELECT reference, idempotency_key, payout_id FROM payouts
           WHERE reference = ANY($1::text[]) AND state NOT IN ('FAILED', 'CANCELLED')""",
        references,
    )
    holders = {r["reference"]: (r["idempotency_key"], r["payout_id"]) for r in rows}
    problems = {}
    for index, (ref, key, payout_id) in enumerate(items):
        if not ref:
            continue
        holder = holders.setdefault(ref, (key, payout_id))
        if holder[0] != key:
            problems[index] = FieldViolation(
                "reference", REFERENCE_PAID.format(payout_id=holder[1]))
    return problems


async def check_reference_unpaid(db: Db, reference: str, idempotency_key: str) -> None:
    """Raises ValidationFailed on field `reference` when another live payout holds it."""
    problems = await reference_problems(db, [(reference, idempotency_key, "")])
    if problems:
        raise ValidationFailed(list(problems.values()))
