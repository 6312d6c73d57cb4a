"""Approvals of payouts waiting in AWAITING_APPROVAL (migration 210): stored with an audit
event in the SQL transaction that may release the payout to the preparer."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from payout_approvals.statement import Approval
from payout_service.adapters.transitions import move_payout
from payout_service.core.model import Payout
from payout_service.core.states import IllegalTransition, PayoutState

S = PayoutState


async def creator(db: asyncpg.Pool | asyncpg.Connection, payout_uuid: UUID) -> str | None:
    """Who created the payout: the actor of its creation event."""
    value = await db.fetchval(
        """SELECT actor FROM payout_events WHERE payout_id = $1 AND from_state IS NULL
           ORDER BY id LIMIT 1""", payout_uuid)
    return str(value) if value is not None else None


async def add_approval(
    pool: asyncpg.Pool, payout_uuid: UUID, approval: Approval, *, identity: str,
    approvers: Collection[str], required: int, correlation_id: str,
) -> tuple[Payout | None, int]:
    """Stores `approval` (one per approval key: a newer one replaces the older) with its
    event, then releases the payout (AWAITING_APPROVAL -> ACCEPTED, to the preparer) once
    `required` distinct keys of `approvers` hold unexpired approvals. Returns (the released
    payout or None, the distinct approvals counted). IllegalTransition if it no longer
    waits for approval."""
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval(
            "SELECT state FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
        if state != S.AWAITING_APPROVAL:
            raise IllegalTransition(S(state) if state else None, S.ACCEPTED)
        await conn.execute(
            """INSERT INTO payout_approvals (payout_id, approver_identity, approver_public_key,
                   signature, expires_at) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (payout_id, approver_public_key) DO UPDATE
               SET approver_identity = EXCLUDED.approver_identity,
                   signature = EXCLUDED.signature, expires_at = EXCLUDED.expires_at,
                   created_at = now()""",
            payout_uuid, identity, approval.approver, approval.signature,
            datetime.fromtimestamp(approval.expires_at, UTC))
        count = await conn.fetchval(
            """SELECT count(DISTINCT approver_public_key) FROM payout_approvals
               WHERE payout_id = $1 AND expires_at > now()
                 AND approver_public_key = ANY($2::text[])""",
            payout_uuid, list(approvers))
        await conn.execute(
            """INSERT INTO payout_events (payout_id, from_state, to_state, reason, actor,
                   correlation_id) VALUES ($1, $2, $2, $3, $4, $5)""",
            payout_uuid, S.AWAITING_APPROVAL.value,
            f"approved by {approval.approver} ({count} of {required})", identity,
            correlation_id)
        if count < required:
            return None, int(count)
        released = await move_payout(
            conn, payout_uuid, S.ACCEPTED, reason=f"approved ({count} of {required})",
            actor=identity, only_from=frozenset({S.AWAITING_APPROVAL}),
            sets={"needs_attempt": True})
        return released, int(count)


async def reject(pool: asyncpg.Pool, payout_uuid: UUID, *, identity: str, reason: str
                 ) -> Payout:
    """AWAITING_APPROVAL -> FAILED (failure code `rejected`), with its event."""
    async with pool.acquire() as conn, conn.transaction():
        return await move_payout(
            conn, payout_uuid, S.FAILED, reason=f"rejected: {reason}", actor=identity,
            only_from=frozenset({S.AWAITING_APPROVAL}),
            sets={"needs_attempt": False, "failure_code": "rejected",
                  "failure_message": reason[:500]})


async def approvals_of(db: asyncpg.Pool | asyncpg.Connection, payout_uuids: Sequence[UUID]
                       ) -> dict[UUID, list[Approval]]:
    """The unexpired approvals stored for each payout (none: absent), for the signer."""
    rows = await db.fetch(
        """SELECT a.payout_id, a.approver_public_key, a.signature, a.expires_at,
                  p.payout_id AS payout_ref
           FROM payout_approvals a JOIN payouts p ON p.id = a.payout_id
           WHERE a.payout_id = ANY($1::uuid[]) AND a.expires_at > now()
           ORDER BY a.payout_id, a.approver_public_key""", list(payout_uuids))
    out: dict[UUID, list[Approval]] = {}
    for r in rows:
        out.setdefault(r["payout_id"], []).append(Approval(
            r["approver_public_key"], bytes(r["signature"]), r["payout_ref"],
            int(r["expires_at"].timestamp())))
    return out
