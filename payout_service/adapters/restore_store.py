"""The sending hold and the writes of a restore reconciliation (core/restore.py).

Every state change goes through adapters/transitions.py (the one writer), walking the
lifecycle forward through moves core/states.py allows: a landed attempt is SENT (it was: the
chain has it) and its payout SUBMITTED, so the confirmer records it CONFIRMED the usual way,
from its own lookup of the hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from payout_service.adapters.sending_pause import set_paused
from payout_service.adapters.transitions import NOW, move_attempt, move_payout, requeue
from payout_service.core.restore import path_to_submitted
from payout_service.core.states import IN_FLIGHT, AttemptStatus, PayoutState

A = AttemptStatus
S = PayoutState
_IN_FLIGHT = [s.value for s in IN_FLIGHT]
ACTOR = "restore"


@dataclass(frozen=True)
class SendingHold:
    reason: str
    restore_point: datetime | None
    quiet_after: int
    held_at: datetime
    reconciled_at: datetime | None


async def sending_hold(pool: asyncpg.Pool | asyncpg.Connection) -> SendingHold | None:
    row = await pool.fetchrow(
        "SELECT reason, restore_point, quiet_after, held_at, reconciled_at FROM sending_hold")
    return SendingHold(**dict(row)) if row else None


async def hold_sending(pool: asyncpg.Pool, *, reason: str, restore_point: datetime | None,
                       quiet_after: int) -> SendingHold:
    """Arms the hold (again): any earlier reconciliation no longer counts. Sending is paused
    through the one switch every replica obeys (adapters/sending_pause.py), in the same SQL
    transaction, and ResumeSending refuses to lift it until the hold is reconciled."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO sending_hold (reason, restore_point, quiet_after) VALUES ($1, $2, $3)
               ON CONFLICT (only_row) DO UPDATE SET reason = $1,
                   restore_point = COALESCE($2, sending_hold.restore_point),
                   quiet_after = GREATEST($3, sending_hold.quiet_after),
                   held_at = now(), reconciled_at = NULL
               RETURNING reason, restore_point, quiet_after, held_at, reconciled_at""",
            reason, restore_point, quiet_after)
        await set_paused(conn, True, reason=f"restore: {reason}"[:500], actor=ACTOR)
        return SendingHold(**dict(row))


async def mark_reconciled(pool: asyncpg.Pool, held_at: datetime) -> bool:
    """Only the hold that was reconciled (not one re-armed meanwhile)."""
    done = await pool.execute(
        "UPDATE sending_hold SET reconciled_at = now() WHERE held_at = $1", held_at)
    return bool(done == "UPDATE 1")


async def release_sending(pool: asyncpg.Pool, *, force: bool) -> bool:
    """Ends a reconciled hold (or any, with `force`) and resumes sending, in one SQL
    transaction."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.execute(
            "DELETE FROM sending_hold WHERE reconciled_at IS NOT NULL OR $1", force)
        if done != "DELETE 1":
            return False
        await set_paused(conn, False, reason="restore released", actor=ACTOR)
        return True


async def unreconciled_restore(db: asyncpg.Pool | asyncpg.Connection) -> str | None:
    """The reason of a restore hold not yet reconciled against the chain, if there is one:
    sending must not resume before it is."""
    reason: str | None = await db.fetchval(
        "SELECT reason FROM sending_hold WHERE reconciled_at IS NULL")
    return reason


@dataclass(frozen=True)
class KnownPayout:
    id: UUID
    payout_id: str
    state: PayoutState
    attempt_count: int
    current_hash: str | None
    current_status: str | None


async def payouts_by_caller_id(pool: asyncpg.Pool, payout_ids: list[str]
                               ) -> dict[str, KnownPayout]:
    rows = await pool.fetch(
        """SELECT p.id, p.payout_id, p.state, p.attempt_count, a.tx_hash, a.status
           FROM payouts p LEFT JOIN payout_attempts a
             ON a.payout_id = p.id AND a.number = p.attempt_count
           WHERE p.payout_id = ANY($1::text[])""", payout_ids)
    return {r["payout_id"]: KnownPayout(r["id"], r["payout_id"], PayoutState(r["state"]),
                                        r["attempt_count"], r["tx_hash"], r["status"])
            for r in rows}


@dataclass(frozen=True)
class InFlightAttempt:
    payout_uuid: UUID
    payout_id: str
    number: int
    status: str
    tx_hash: str
    source_account: str
    sequence: int
    max_time: datetime
    batch_id: UUID | None


async def in_flight_attempts(pool: asyncpg.Pool) -> list[InFlightAttempt]:
    """Every attempt the database still pursues (it may have been sent after the restore
    point, whatever its status says)."""
    rows = await pool.fetch(
        """SELECT a.payout_id AS payout_uuid, p.payout_id, a.number, a.status, a.tx_hash,
                  a.source_account, a.sequence, a.max_time, a.batch_id
           FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id
           WHERE a.status = ANY($1::text[]) ORDER BY a.source_account, a.sequence""",
        _IN_FLIGHT)
    return [InFlightAttempt(**dict(r)) for r in rows]


async def known_hashes(pool: asyncpg.Pool, hashes: list[str]) -> set[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT tx_hash FROM payout_attempts WHERE tx_hash = ANY($1::text[])", hashes)
    return {r["tx_hash"] for r in rows}


async def source_accounts(pool: asyncpg.Pool) -> list[str]:
    return [r["account"] for r in await pool.fetch(
        "SELECT account FROM source_accounts ORDER BY account")]


@dataclass(frozen=True)
class LandedTransaction:
    """An included transaction as the chain recorded it."""

    tx_hash: str
    envelope_xdr: str
    source_account: str
    sequence: int
    min_time: datetime
    max_time: datetime
    fee_stroops: int


async def _walk_to_submitted(conn: asyncpg.Connection, payout_uuid: UUID, state: PayoutState,
                             number: int, reason: str) -> None:
    for target in path_to_submitted(state):
        await move_payout(conn, payout_uuid, target, reason=reason, actor=ACTOR,
                          attempt=number, sets={"needs_attempt": False,
                                                "attempt_count": number})


async def mark_known_attempt_sent(pool: asyncpg.Pool, payout: KnownPayout, number: int,
                                  status: str, envelope_xdr: str, reason: str) -> bool:
    """The database's own attempt landed (signed and sent after the restore point): SENT with
    the envelope the chain recorded, its payout SUBMITTED. False when there is nothing to do
    (already SENT and SUBMITTED)."""
    if status == A.SENT and payout.state == S.SUBMITTED and payout.attempt_count == number:
        return False
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", payout.id)
        walk = {A.BUILT: [A.SIGNED, A.SENT], A.SIGNED: [A.SENT], A.SENT: []}[A(status)]
        for target in walk:
            await move_attempt(conn, payout.id, number, target, sets={
                "next_poll_at": NOW, "envelope_xdr": envelope_xdr, "signed": True})
        if payout.state != S.SUBMITTED:
            await _walk_to_submitted(conn, payout.id, payout.state, number, reason)
    return True


async def attach_landed(pool: asyncpg.Pool, payout: KnownPayout, landed: LandedTransaction,
                        reason: str) -> int:
    """A transaction signed for this payout after the restore point landed: it becomes the
    payout's current attempt (SENT; the confirmer records it). The payout's other attempts in
    flight, and any other payout's attempt at the same source and sequence number (consumed
    by this one), are ABANDONED: none can land any more, the abandoned-attempt watcher proves
    it. Those other payouts are queued for a new attempt. Returns the new attempt number."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", payout.id)
        displaced = await conn.fetch(
            """SELECT payout_id, number FROM payout_attempts
               WHERE status = ANY($1::text[])
                 AND (payout_id = $2 OR (source_account = $3 AND sequence = $4))
               ORDER BY payout_id, number""",
            _IN_FLIGHT, payout.id, landed.source_account, landed.sequence)
        for row in displaced:
            if row["payout_id"] != payout.id:
                await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE",
                                   row["payout_id"])
            await move_attempt(conn, row["payout_id"], row["number"], A.ABANDONED,
                               sets={"result_code": "restore_superseded",
                                     "next_poll_at": NOW})
            if row["payout_id"] != payout.id:
                await requeue(conn, row["payout_id"], attempt=row["number"], actor=ACTOR,
                              reason=f"restore: its sequence number was consumed by "
                                     f"{landed.tx_hash}", not_before=None)
        number = payout.attempt_count + 1
        await conn.execute(
            """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                   min_time, max_time, envelope_xdr, signed, tx_hash, fee_stroops, status,
                   submitted_at, next_poll_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,true,$8,$9,'sent',now(),now())""",
            payout.id, number, landed.source_account, landed.sequence, landed.min_time,
            landed.max_time, landed.envelope_xdr, landed.tx_hash, landed.fee_stroops)
        await _walk_to_submitted(conn, payout.id, payout.state, number, reason)
        return number
