"""SQL of the live pipeline: reserving sequence numbers, attempts, claims and outcomes.

Every state change is one SQL transaction together with the audit event it causes
(invariant 4). Work queues are claimed with FOR UPDATE SKIP LOCKED, so replicas share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from payout_service.core.model import Attempt, Payout
from payout_service.core.states import IllegalTransition, PayoutState, check_transition
from payout_service.store import PAYOUT_IDS, _attempt, payout_from_row, record_event

S = PayoutState


@dataclass(frozen=True)
class NewAttempt:
    source_account: str
    sequence: int
    min_time: datetime
    max_time: datetime
    envelope_xdr: str
    tx_hash: str
    fee_stroops: int


class AttemptBuilder:
    """Callable that builds the envelope once the source and sequence number are reserved.

    With `channels`, the transaction's source is whichever channel account has nothing in
    flight (leased in the reserving SQL transaction); else it is `source_account`.
    """

    source_account: str
    channels: tuple[str, ...] = ()

    def __call__(self, source: str, sequence: int) -> NewAttempt:  # pragma: no cover
        raise NotImplementedError


class AttemptStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ---- sequence numbers -------------------------------------------------------------

    async def ensure_source(self, account: str, chain_sequence: int) -> None:
        await self.pool.execute(
            """INSERT INTO source_accounts (account, next_sequence) VALUES ($1, $2)
               ON CONFLICT (account) DO NOTHING""",
            account, chain_sequence + 1,
        )

    async def has_source(self, account: str) -> bool:
        return bool(
            await self.pool.fetchval("SELECT 1 FROM source_accounts WHERE account = $1", account)
        )

    async def resync_source(self, account: str, chain_sequence: int) -> list[UUID]:
        """After txBAD_SEQ: restart numbering after what the chain and our live attempts hold;
        every built-but-unsent attempt of this source is superseded and its payout rebuilt."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM source_accounts WHERE account = $1 FOR UPDATE", account
            )
            rows = await conn.fetch(
                """UPDATE payout_attempts SET status = 'superseded', updated_at = now()
                   WHERE source_account = $1 AND status IN ('built', 'signed')
                   RETURNING payout_id, number""",
                account,
            )
            live_max = await conn.fetchval(
                """SELECT max(sequence) FROM payout_attempts WHERE source_account = $1
                   AND status IN ('sent', 'included', 'failed_on_chain')
                   AND sequence > $2""",
                account, chain_sequence,
            )
            next_seq = max(chain_sequence, live_max or 0) + 1
            await conn.execute(
                """UPDATE source_accounts SET next_sequence = $2, synced_at = now()
                   WHERE account = $1""",
                account, next_seq,
            )
            # Free numbers are those above the chain and below the live attempts that nothing
            # live holds: without them a hole would block the live attempts above it.
            await conn.execute(
                """DELETE FROM released_sequences
                   WHERE account = $1 AND (sequence <= $2 OR sequence >= $3)""",
                account, chain_sequence, next_seq,
            )
            await conn.execute(
                """INSERT INTO released_sequences (account, sequence)
                   SELECT $1, s FROM generate_series($2::bigint + 1, $3::bigint - 1) AS s
                   WHERE NOT EXISTS (
                       SELECT 1 FROM payout_attempts WHERE source_account = $1 AND sequence = s
                         AND status IN ('sent', 'included', 'failed_on_chain'))
                   ON CONFLICT DO NOTHING""",
                account, chain_sequence, next_seq,
            )
            for row in rows:
                await _requeue(conn, row["payout_id"], row["number"],
                               "re-sequenced after txBAD_SEQ", delay=timedelta(0))
            return [r["payout_id"] for r in rows]

    # ---- preparing attempts -----------------------------------------------------------

    async def payouts_needing_attempt(self, limit: int) -> list[Payout]:
        rows = await self.pool.fetch(
            """SELECT * FROM payouts WHERE needs_attempt
                 AND (next_attempt_at IS NULL OR next_attempt_at <= now())
               ORDER BY created_at LIMIT $1""",
            limit,
        )
        return [payout_from_row(r) for r in rows]

    async def create_attempt(
        self, payout_uuid: UUID, build: AttemptBuilder, *, external: bool
    ) -> tuple[Payout, Attempt] | None:
        """Locks the payout, reserves the next sequence number, stores the built envelope:
        one SQL transaction (DESIGN.md section 4). None if another worker got there first."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM payouts WHERE id = $1 AND needs_attempt FOR UPDATE SKIP LOCKED",
                payout_uuid,
            )
            if row is None:
                return None
            payout = payout_from_row(row)
            source = build.source_account
            if build.channels:
                leased = await _lease_channel(conn, build.channels)
                if leased is None:
                    return None  # every channel has a transaction in flight
                source = leased
            sequence = await _reserve_sequence(conn, source)
            new = build(source, sequence)
            number = payout.attempt_count + 1
            arow = await conn.fetchrow(
                """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                       min_time, max_time, envelope_xdr, tx_hash, fee_stroops, status,
                       trace_context)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'built',$10) RETURNING *""",
                payout.id, number, new.source_account, new.sequence, new.min_time,
                new.max_time, new.envelope_xdr, new.tx_hash, new.fee_stroops,
                payout.trace_context,
            )
            target = S.AWAITING_SIGNATURE if external else payout.state
            if target != payout.state:
                check_transition(payout.state, target)
            prow = await conn.fetchrow(
                """UPDATE payouts SET needs_attempt = false, attempt_count = $2, state = $3,
                       unsigned_envelope_xdr = CASE WHEN $4 THEN $5 ELSE unsigned_envelope_xdr END,
                       updated_at = now()
                   WHERE id = $1 RETURNING *""",
                payout.id, number, target.value, external, new.envelope_xdr,
            )
            if target != payout.state:
                await record_event(conn, payout.id, payout.state, target, attempt=number,
                                   reason="attempt built", actor="preparer",
                                   correlation_id=payout.correlation_id)
            built = payout_from_row(prow)
            attempt = _attempt(arow, built)
            return payout_from_row(prow, attempt), attempt

    async def expired_awaiting_signature(self, ledger_close_time: int) -> list[Attempt]:
        """External attempts whose window passed unsigned: a ledger closed after max_time, so
        even a copy signed elsewhere can never land."""
        rows = await self.pool.fetch(
            f"""SELECT a.*, {PAYOUT_IDS} FROM payout_attempts a JOIN payouts p
                 ON p.id = a.payout_id AND p.attempt_count = a.number
               WHERE p.state = 'AWAITING_SIGNATURE' AND a.status = 'built'
                 AND a.max_time < to_timestamp($1)""",  # noqa: S608 - constant columns
            ledger_close_time,
        )
        return [_attempt(r) for r in rows]

    async def unsigned_attempts(self, limit: int) -> list[tuple[Payout, Attempt]]:
        """Built but not signed (signer mode): crash recovery re-signs the same envelope."""
        rows = await self.pool.fetch(
            """SELECT a.* FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id
               WHERE a.status = 'built' AND p.mode = 'SIGNER_SERVICE'
                 AND p.attempt_count = a.number
               ORDER BY a.source_account, a.sequence LIMIT $1""",
            limit,
        )
        out = []
        for r in rows:
            prow = await self.pool.fetchrow("SELECT * FROM payouts WHERE id = $1", r["payout_id"])
            payout = payout_from_row(prow)
            attempt = _attempt(r, payout)
            out.append((payout_from_row(prow, attempt), attempt))
        return out

    async def store_signed(
        self, payout_uuid: UUID, number: int, signed_xdr: str, *, actor: str
    ) -> bool:
        """Stores the signed envelope and queues the payout. False if no longer applicable."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM payouts WHERE id = $1 AND attempt_count = $2 FOR UPDATE",
                payout_uuid, number,
            )
            if row is None:
                return False
            payout = payout_from_row(row)
            updated = await conn.execute(
                """UPDATE payout_attempts SET envelope_xdr = $3, signed = true, status = 'signed',
                       updated_at = now()
                   WHERE payout_id = $1 AND number = $2 AND status = 'built'""",
                payout_uuid, number, signed_xdr,
            )
            if updated != "UPDATE 1":
                return False
            await _move(conn, payout, S.QUEUED, number, "signed", actor)
            return True

    async def abandon_unsent(
        self, payout_uuid: UUID, number: int, *, code: str, message: str, actor: str
    ) -> None:
        """Permanent refusal before sending (e.g. signer policy): the attempt never left us."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            payout = payout_from_row(row)
            arow = await conn.fetchrow(
                """UPDATE payout_attempts SET status = 'rejected', result_code = $3,
                       updated_at = now()
                   WHERE payout_id = $1 AND number = $2 RETURNING source_account, sequence""",
                payout_uuid, number, code,
            )
            await _release_sequence(conn, arow["source_account"], arow["sequence"])
            await fail_payout(conn, payout, code, message, number, actor)

    # ---- sending ------------------------------------------------------------------------

    async def claim_for_sending(self, limit: int, submitted_ledger: int) -> list[Attempt]:
        """Signed attempts, lowest sequence first per source, marked sent *before* the network
        call: the envelope and hash are already stored (invariant 3)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT p.* FROM payouts p JOIN payout_attempts a
                     ON a.payout_id = p.id AND a.number = p.attempt_count
                   WHERE p.state = 'QUEUED' AND a.status = 'signed'
                   ORDER BY a.source_account, a.sequence
                   LIMIT $1 FOR UPDATE OF p SKIP LOCKED""",
                limit,
            )
            claimed = []
            for row in rows:
                payout = payout_from_row(row)
                arow = await conn.fetchrow(
                    """UPDATE payout_attempts SET status = 'sent', submitted_at = now(),
                           submitted_ledger = $3, send_count = send_count + 1,
                           next_poll_at = now(), updated_at = now()
                       WHERE payout_id = $1 AND number = $2 RETURNING *""",
                    payout.id, payout.attempt_count, submitted_ledger,
                )
                await _move(conn, payout, S.SUBMITTED, payout.attempt_count, "sent", "sender")
                claimed.append(_attempt(arow, payout))
            return claimed

    # ---- confirming ---------------------------------------------------------------------

    async def claim_for_confirming(
        self, limit: int, poll_interval: timedelta, max_polls: int = 2**31 - 1
    ) -> list[Attempt]:
        """Sent attempts due for a poll. After `max_polls` polls an attempt is overdue and is
        polled four times less often; only a proof of death ever leads to a new attempt."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT a.*, {PAYOUT_IDS} FROM payout_attempts a JOIN payouts p
                     ON p.id = a.payout_id AND p.attempt_count = a.number
                   WHERE a.status = 'sent' AND p.state = 'SUBMITTED'
                     AND (a.next_poll_at IS NULL OR a.next_poll_at <= now())
                   ORDER BY a.next_poll_at NULLS FIRST LIMIT $1
                   FOR UPDATE OF a SKIP LOCKED""",  # noqa: S608 - constant columns
                limit,
            )
            for r in rows:
                await conn.execute(
                    """UPDATE payout_attempts
                       SET next_poll_at = now() + $3::interval * CASE WHEN poll_count + 1 >= $4
                                                            THEN 4 ELSE 1 END,
                           poll_count = poll_count + 1
                       WHERE payout_id = $1 AND number = $2""",
                    r["payout_id"], r["number"], poll_interval, max_polls,
                )
            return [_attempt(r) for r in rows]

    async def free_channels(self, channels: tuple[str, ...]) -> int:
        """How many channel accounts have no attempt in flight (an estimate: no locks)."""
        free: int = await self.pool.fetchval(
            """SELECT count(*) FROM source_accounts s
               WHERE s.account = ANY($1::text[])
                 AND NOT EXISTS (SELECT 1 FROM payout_attempts a
                                 WHERE a.source_account = s.account
                                   AND a.status = ANY($2::text[]))""",
            list(channels), list(_IN_FLIGHT),
        )
        return free

    async def note_rejection(self, attempt: Attempt, code: str) -> None:
        """Remembers the latest rejection of a still-live attempt: it decides between a new
        attempt and FAILED once the attempt is proven dead."""
        await self.pool.execute(
            """UPDATE payout_attempts SET result_code = $3, updated_at = now()
               WHERE payout_id = $1 AND number = $2 AND status = 'sent'""",
            attempt.payout_id, attempt.number, code,
        )

    async def record_resend(self, attempt: Attempt) -> None:
        await self.pool.execute(
            """UPDATE payout_attempts SET send_count = send_count + 1
               WHERE payout_id = $1 AND number = $2""",
            attempt.payout_id, attempt.number,
        )

    async def confirm(
        self, attempt: Attempt, *, ledger: int, fee_charged: int
    ) -> Payout | None:
        """Marks the payout CONFIRMED; returns it, or None if it was no longer SUBMITTED."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM payouts WHERE id = $1 FOR UPDATE", attempt.payout_id
            )
            payout = payout_from_row(row)
            if payout.state != S.SUBMITTED or payout.attempt_count != attempt.number:
                return None
            await conn.execute(
                """UPDATE payout_attempts SET status = 'included', ledger = $3, fee_stroops = $4,
                       result_code = 'txSUCCESS', updated_at = now()
                   WHERE payout_id = $1 AND number = $2""",
                attempt.payout_id, attempt.number, ledger, fee_charged,
            )
            await conn.execute(
                """UPDATE payouts SET confirmed_at = now(), network_fee_stroops = $2
                   WHERE id = $1""",
                attempt.payout_id, fee_charged,
            )
            await _move(conn, payout, S.CONFIRMED, attempt.number, f"included in ledger {ledger}",
                        "confirmer")
            return payout

    async def attempt_dead(
        self, attempt: Attempt, *, status: str, code: str, proof: str | None, ledger: int | None,
        retry: bool, max_attempts: int, delay: timedelta, actor: str,
    ) -> PayoutState:
        """The attempt can never land (failed on chain, rejected, or proven expired): either a
        new attempt is scheduled or the payout fails. Returns the payout's new state."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM payouts WHERE id = $1 FOR UPDATE", attempt.payout_id
            )
            payout = payout_from_row(row)
            await conn.execute(
                """UPDATE payout_attempts SET status = $3, result_code = $4, proof = $5,
                       ledger = COALESCE($6, ledger), updated_at = now()
                   WHERE payout_id = $1 AND number = $2""",
                attempt.payout_id, attempt.number, status, code, proof, ledger,
            )
            if status in ("dead", "rejected"):
                await _release_sequence(conn, attempt.source_account, attempt.sequence)
            tries = await conn.fetchval(
                """SELECT count(*) FROM payout_attempts
                   WHERE payout_id = $1 AND status <> 'superseded'""",
                attempt.payout_id,
            )
            if retry and tries < max_attempts:
                await _requeue(conn, payout.id, attempt.number, f"{code}: new attempt", delay)
                return S.QUEUED
            reason = code if not retry else "max_attempts"
            await fail_payout(conn, payout, reason, f"attempt {attempt.number}: {code}",
                        attempt.number, actor)
            return S.FAILED

    # ---- operator actions ---------------------------------------------------------------

    async def retry_failed(self, payout_uuid: UUID, *, actor: str, reason: str) -> Payout:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            payout = payout_from_row(row)
            if payout.state != S.FAILED:
                raise IllegalTransition(payout.state, S.QUEUED)
            prow = await conn.fetchrow(
                """UPDATE payouts SET state = 'QUEUED', needs_attempt = true,
                       next_attempt_at = NULL, failure_code = NULL, failure_message = NULL,
                       updated_at = now()
                   WHERE id = $1 RETURNING *""",
                payout_uuid,
            )
            await record_event(conn, payout_uuid, S.FAILED, S.QUEUED, reason=reason or "retry",
                               actor=actor, correlation_id=payout.correlation_id)
            return payout_from_row(prow)

    async def cancel(self, payout_uuid: UUID, *, actor: str, reason: str) -> Payout:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            payout = payout_from_row(row)
            check_transition(payout.state, S.CANCELLED)
            await conn.execute(
                """UPDATE payout_attempts SET status = 'cancelled', updated_at = now()
                   WHERE payout_id = $1 AND status IN ('built', 'signed')""",
                payout_uuid,
            )
            prow = await conn.fetchrow(
                """UPDATE payouts SET state = 'CANCELLED', needs_attempt = false, updated_at = now()
                   WHERE id = $1 RETURNING *""",
                payout_uuid,
            )
            await record_event(conn, payout_uuid, payout.state, S.CANCELLED,
                               reason=reason or "cancelled", actor=actor,
                               correlation_id=payout.correlation_id)
            return payout_from_row(prow)

    async def attempt(self, payout_uuid: UUID, number: int) -> Attempt | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM payout_attempts WHERE payout_id = $1 AND number = $2",
            payout_uuid, number,
        )
        return _attempt(row) if row else None


async def _move(
    conn: asyncpg.Connection, payout: Payout, target: PayoutState, attempt: int, reason: str,
    actor: str,
) -> None:
    check_transition(payout.state, target)
    await conn.execute(
        "UPDATE payouts SET state = $2, updated_at = now() WHERE id = $1", payout.id, target.value
    )
    await record_event(conn, payout.id, payout.state, target, attempt=attempt, reason=reason,
                       actor=actor, correlation_id=payout.correlation_id)
    if target == S.CONFIRMED:
        await _outbox(conn, payout.id, "payout.confirmed")


async def _outbox(conn: asyncpg.Connection, payout_uuid: UUID, event_type: str) -> None:
    """Queued in the state change's own SQL transaction, so an event exists if and only if
    the payout reached that state (never before confirmation on chain)."""
    row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_uuid)
    attempt = await conn.fetchrow(
        "SELECT tx_hash, ledger FROM payout_attempts WHERE payout_id = $1 AND number = $2",
        payout_uuid, row["attempt_count"],
    )
    payload = {
        "type": event_type, "id": str(row["id"]), "payout_id": row["payout_id"],
        "destination": row["destination"], "asset": row["asset"],
        "gross_stroops": row["gross_stroops"], "fee_stroops": row["fee_stroops"],
        "net_stroops": row["net_stroops"], "state": row["state"],
        "tx_hash": attempt["tx_hash"] if attempt else None,
        "ledger": attempt["ledger"] if attempt else None,
        "failure_code": row["failure_code"], "correlation_id": row["correlation_id"],
        "round_id": row["round_id"], "batch_id": row["batch_id"],
    }
    await conn.execute(
        "INSERT INTO outbox_events (payout_id, event_type, payload) VALUES ($1, $2, $3)",
        payout_uuid, event_type, payload,
    )


async def fail_payout(
    conn: asyncpg.Connection, payout: Payout, code: str, message: str, attempt: int, actor: str
) -> None:
    check_transition(payout.state, S.FAILED)
    await conn.execute(
        """UPDATE payouts SET state = 'FAILED', failure_code = $2, failure_message = $3,
               needs_attempt = false, updated_at = now() WHERE id = $1""",
        payout.id, code, message[:500],
    )
    await record_event(conn, payout.id, payout.state, S.FAILED, attempt=attempt, reason=code,
                       actor=actor, correlation_id=payout.correlation_id)
    await _outbox(conn, payout.id, "payout.failed")


async def _requeue(
    conn: asyncpg.Connection, payout_uuid: UUID, attempt: int, reason: str, delay: timedelta
) -> None:
    row = await conn.fetchrow(
        "SELECT state, correlation_id FROM payouts WHERE id = $1", payout_uuid
    )
    current = PayoutState(row["state"])
    target = S.QUEUED if current != S.ACCEPTED else S.ACCEPTED
    if current != target:
        check_transition(current, target)
    await conn.execute(
        """UPDATE payouts SET state = $2, needs_attempt = true,
               next_attempt_at = $3, updated_at = now() WHERE id = $1""",
        payout_uuid, target.value, datetime.now(UTC) + delay,
    )
    if current != target:
        await record_event(conn, payout_uuid, current, target, attempt=attempt, reason=reason,
                           actor="pipeline", correlation_id=row["correlation_id"])


# An attempt in one of these may still land: its source account is busy.
_IN_FLIGHT = ("built", "signed", "sent")


async def _lease_channel(conn: asyncpg.Connection, channels: tuple[str, ...]) -> str | None:
    """A channel account with no attempt in flight, locked until the caller's transaction
    ends (SKIP LOCKED: concurrent preparers and replicas take different channels)."""
    leased: str | None = await conn.fetchval(
        """SELECT s.account FROM source_accounts s
           WHERE s.account = ANY($1::text[])
             AND NOT EXISTS (SELECT 1 FROM payout_attempts a
                             WHERE a.source_account = s.account AND a.status = ANY($2::text[]))
           ORDER BY s.account LIMIT 1
           FOR UPDATE OF s SKIP LOCKED""",
        list(channels), list(_IN_FLIGHT),
    )
    return leased


async def _reserve_sequence(conn: asyncpg.Connection, account: str) -> int:
    """The lowest released number, else the next one; the source row lock serialises
    reservations across workers and replicas."""
    await conn.execute("SELECT 1 FROM source_accounts WHERE account = $1 FOR UPDATE", account)
    released: int | None = await conn.fetchval(
        """DELETE FROM released_sequences WHERE account = $1 AND sequence =
               (SELECT min(sequence) FROM released_sequences WHERE account = $1)
           RETURNING sequence""",
        account,
    )
    if released is not None:
        return released
    sequence: int = await conn.fetchval(
        """UPDATE source_accounts SET next_sequence = next_sequence + 1
           WHERE account = $1 RETURNING next_sequence - 1""",
        account,
    )
    return sequence


async def _release_sequence(conn: asyncpg.Connection, account: str, sequence: int) -> None:
    """An attempt proven never to land gives its number back: the top one lowers
    next_sequence, one below live attempts is kept for the next reservation (else that gap
    would hold every later transaction of the account)."""
    lowered = await conn.execute(
        """UPDATE source_accounts SET next_sequence = $2
           WHERE account = $1 AND next_sequence = $2::bigint + 1""",
        account, sequence,
    )
    if lowered == "UPDATE 0":
        await conn.execute(
            """INSERT INTO released_sequences (account, sequence)
               SELECT $1, $2 FROM source_accounts
               WHERE account = $1 AND next_sequence > $2::bigint
               ON CONFLICT DO NOTHING""",
            account, sequence,
        )
