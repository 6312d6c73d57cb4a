"""Eligibility (seed 002): a non-empty reference is paid at most once.

A payout "holds" its reference unless it is FAILED or CANCELLED. The check and the insert run
in one SQL transaction under a transaction-scoped advisory lock on the reference, so two
concurrent requests for the same reference cannot both pass.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

from payout_service.core.idempotency import canonical_parameters, differing_fields, fingerprint
from payout_service.core.model import Payout
from payout_service.core.validation import FieldViolation, PayoutRequest, ValidationFailed
from payout_service.payouts import CreateResult, IdempotencyConflict, PayoutDesk
from payout_service.store import insert_payout_in

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection

REFERENCE_PAID = "has already been paid by payout {payout_id!r}"


async def check_reference_unpaid(db: Db, reference: str, idempotency_key: str) -> None:
    """Raises ValidationFailed on field `reference` when another live payout holds it.

    The payout with `idempotency_key` itself does not count (a replay is not a second payment).
    """
    if not reference:
        return
    holder = await db.fetchval(
        """SELECT payout_id FROM payouts
           WHERE reference = $1 AND idempotency_key <> $2
             AND state NOT IN ('FAILED', 'CANCELLED')
           LIMIT 1""",
        reference, idempotency_key,
    )
    if holder is not None:
        problem = REFERENCE_PAID.format(payout_id=holder)
        raise ValidationFailed([FieldViolation("reference", problem)])


async def lock_reference(conn: asyncpg.Connection, reference: str) -> None:
    """Serialises payouts of one reference until the end of the caller's SQL transaction."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('payout-reference:' || $1, 0))", reference
    )


def _replay(existing: Payout, request: PayoutRequest) -> CreateResult:
    params = canonical_parameters(request)
    if existing.fingerprint != fingerprint(params):
        raise IdempotencyConflict(differing_fields(existing.parameters, params))
    return CreateResult(existing, False)


async def create_eligible_payout(
    desk: PayoutDesk, request: PayoutRequest, *, actor: str, correlation_id: str,
    round_id: str | None = None, batch_id: str | None = None,
) -> CreateResult:
    """PayoutDesk.create plus the eligibility check, atomically with the insert."""
    existing = await desk.store.find_by_idempotency_key(request.idempotency_key)
    if existing is not None:
        return _replay(existing, request)
    new = await desk.new_payout(
        request, correlation_id=correlation_id, round_id=round_id, batch_id=batch_id
    )
    async with desk.store.pool.acquire() as conn, conn.transaction():
        if request.reference:
            await lock_reference(conn, request.reference)
            await check_reference_unpaid(conn, request.reference, request.idempotency_key)
        created = await insert_payout_in(conn, new, actor=actor)
    if created is not None:
        return CreateResult(created, True)
    existing = await desk.store.find_by_idempotency_key(request.idempotency_key)
    if existing is None:
        raise IdempotencyConflict(
            [FieldViolation("payout_id", "already used by a payout with another idempotency key")]
        )
    return _replay(existing, request)
