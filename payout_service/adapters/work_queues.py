"""The pipeline's work queues in PostgreSQL: what each loop should do next.

Claims use FOR UPDATE SKIP LOCKED on the payout row first (the documented lock order), so
any number of replicas share the queues without waiting on each other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from payout_service.adapters.payout_store import PAYOUT_IDS, _attempt, payout_from_row
from payout_service.adapters.sequences import lowest_free, release_sequence
from payout_service.adapters.transitions import (
    INCREMENT,
    NOW,
    AttemptMove,
    PayoutMove,
    move_attempt,
    move_attempts,
    move_payouts,
    requeue,
    requeue_many,
)
from payout_service.core.model import Attempt, Payout
from payout_service.core.pacing import (
    Outgoing,
    admit_for_sending,
    classic_operations,
    expired_before_sending,
)
from payout_service.core.sequences import must_resequence
from payout_service.core.states import IN_FLIGHT, AttemptStatus, PayoutState

A = AttemptStatus
S = PayoutState


class WorkQueues:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def payouts_needing_attempt(self, limit: int) -> list[Payout]:
        """Oldest due first; a requeued payout counts from when it became due, so one whose
        external signature never came does not jump ahead of those waiting behind it. A
        payout with an ABANDONED attempt that may still land gets none (invariant 1)."""
        rows = await self.pool.fetch(
            """SELECT * FROM payouts p WHERE needs_attempt AND state <> 'AWAITING_FUNDS'
                 AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                 AND NOT EXISTS (SELECT 1 FROM payout_attempts a
                                 WHERE a.payout_id = p.id AND a.status = 'abandoned')
               ORDER BY COALESCE(next_attempt_at, created_at) LIMIT $1""",
            limit,
        )
        return [payout_from_row(r) for r in rows]

    async def awaiting_funds(self, limit: int) -> list[Payout]:
        """Payouts held for funds, oldest first: read apart from payouts_needing_attempt, so
        held payouts of one asset never fill a pass and starve the others."""
        rows = await self.pool.fetch(
            """SELECT * FROM payouts WHERE state = 'AWAITING_FUNDS'
               ORDER BY created_at, id LIMIT $1""", limit)
        return [payout_from_row(r) for r in rows]

    async def in_flight(self, payer: str) -> tuple[dict[str, int], int]:
        """What the payer has committed that the chain may not show yet: per asset, the
        amounts of payouts whose current attempt is built, signed or sent, and the fees of
        those attempts it pays itself (one per transaction; a channel pays its own)."""
        rows = await self.pool.fetch(
            """SELECT p.asset, sum(p.net_stroops)::bigint AS amount
               FROM payouts p JOIN payout_attempts a
                 ON a.payout_id = p.id AND a.number = p.attempt_count
               WHERE a.status = ANY($1::text[]) GROUP BY p.asset""",
            [s.value for s in IN_FLIGHT],
        )
        fees = await self.pool.fetchval(
            """SELECT COALESCE(sum(fee), 0)::bigint FROM (
                 SELECT DISTINCT ON (tx_hash) fee_stroops AS fee FROM payout_attempts
                 WHERE status = ANY($1::text[]) AND source_account = $2) t""",
            [s.value for s in IN_FLIGHT], payer,
        )
        return {r["asset"]: int(r["amount"]) for r in rows}, int(fees)

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

    async def claim_for_sending(
        self, limit: int, submitted_ledger: int, *, close_time: int | None = None,
        classic_capacity: int | None = None,
    ) -> list[Attempt]:
        """Signed attempts, lowest sequence first per source, marked sent *before* the network
        call: the envelope and hash are already stored (invariant 3). One that never left us
        and sits above a free number is re-sequenced instead (core/sequences.py). A batch
        moves as one: one check of its number, one statement per target for its members.

        Paced (core/pacing.py): with `classic_capacity`, the classic operations in flight stay
        within the network's queue; a transaction over it stays signed, held for a later pass.
        With `close_time` (the latest ledger's), one that never left us and whose max_time a
        ledger has reached (held too long) is rebuilt: its number goes back, as on
        re-sequencing, instead of being sent only to be refused txTOO_LATE."""
        if classic_capacity is not None and await _all_held(self.pool, limit, close_time,
                                                            classic_capacity):
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT p.*, a.source_account AS a_source, a.sequence AS a_sequence,
                          a.submitted_ledger AS a_submitted, a.batch_id AS a_batch,
                          a.max_time AS a_max_time,
                          CASE WHEN COALESCE(a.op_index, 0) = 0 THEN a.envelope_xdr END
                            AS a_envelope
                   FROM payouts p JOIN payout_attempts a
                     ON a.payout_id = p.id AND a.number = p.attempt_count
                   WHERE p.state = 'QUEUED' AND a.status = 'signed'
                   ORDER BY a.source_account, a.sequence, a.op_index
                   LIMIT $1 FOR UPDATE OF p SKIP LOCKED""",
                limit,
            )
            # Under READ COMMITTED the locking statement re-reads the payout rows it waited
            # for, not their attempts: keep only those whose attempt is still signed now.
            still_signed = {(r["payout_id"], r["number"]) for r in await conn.fetch(
                """SELECT a.payout_id, a.number FROM payout_attempts a
                   JOIN unnest($1::uuid[], $2::integer[]) AS k(payout_id, number)
                     ON a.payout_id = k.payout_id AND a.number = k.number
                   WHERE a.status = 'signed'""",
                [r["id"] for r in rows], [r["attempt_count"] for r in rows],
            )}
            rows = [r for r in rows if (r["id"], r["attempt_count"]) in still_signed]
            unsendable = await _incomplete_batches(conn, rows)
            # One transaction per group (a batch's members, or a single payout), in the
            # order claimed: sequence order within a source.
            groups: dict[UUID, list[asyncpg.Record]] = {}
            for row in rows:
                groups.setdefault(row["a_batch"] or row["id"], []).append(row)
            broken = {key: groups.pop(key) for key in unsendable}
            outgoing = {key: _outgoing(group[0], close_time) for key, group in groups.items()}
            # Before any other lock of this transaction (the sequence rows that rebuilding
            # takes): the classic-queue lock is then never waited for while holding one.
            admitted = dict(zip(outgoing, await _admit(conn, list(outgoing.values()),
                                                       classic_capacity, close_time),
                                strict=True))
            for key, group in broken.items():
                if unsendable[key]:  # a member was cancelled or superseded: rebuild
                    await supersede_rest(conn, [(r["id"], r["attempt_count"]) for r in group])
            claimed = []
            for key, group in groups.items():
                members = [(r["id"], r["attempt_count"]) for r in group]
                lead = group[0]
                free = await lowest_free(conn, lead["a_source"])
                if must_resequence(lead["a_sequence"], free, left_us=lead["mode"] == "EXTERNAL"):
                    await resequence(conn, lead["id"], lead["attempt_count"], lead["a_source"],
                                     lead["a_sequence"])
                    await supersede_members(conn, members[1:])
                    continue
                if outgoing[key].expired:
                    await supersede_rest(conn, members, reason="max_time reached before it "
                                         "was sent: rebuilt")
                    continue
                if not admitted[key]:
                    continue  # held, signed: sent once the network's queue has room
                ops = outgoing[key].classic_ops
                attempts = await move_attempts(conn, A.SENT, [
                    # A handed-out envelope keeps the earlier ledger it could be sent from.
                    AttemptMove(r["id"], r["attempt_count"], {
                        "submitted_ledger": r["a_submitted"] or submitted_ledger,
                        "last_sent_ledger": submitted_ledger,
                        # Counted once per transaction: on its lead.
                        "classic_ops": ops if i == 0 else 0})
                    for i, r in enumerate(group)
                ], sets={"submitted_at": NOW, "send_count": INCREMENT, "next_poll_at": NOW})
                payouts = await move_payouts(conn, S.SUBMITTED, [
                    PayoutMove(r["id"], "sent", r["attempt_count"]) for r in group
                ], actor="sender")
                claimed += [_with_ids(a, p) for a, p in zip(attempts, payouts, strict=True)]
            return claimed

    async def classic_ops_in_flight(self) -> int:
        """Classic operations sent and not yet seen included or dead (operators, tests)."""
        return await _classic_in_flight(self.pool)

    async def claim_for_confirming(
        self, limit: int, poll_interval: timedelta, max_polls: int = 2**31 - 1
    ) -> list[Attempt]:
        """Sent attempts due for a poll. After `max_polls` polls an attempt is overdue and is
        polled four times less often; only a proof of death ever leads to a new attempt."""
        # A batch is polled through its lead (op_index 0): its members move with it.
        return await self._claim_polls(
            "a.status = 'sent' AND p.state = 'SUBMITTED' AND p.attempt_count = a.number"
            " AND COALESCE(a.op_index, 0) = 0",
            limit, poll_interval, max_polls,
        )

    async def live_at_number(self, source: str, sequence: int, *, besides: UUID
                             ) -> list[Attempt]:
        """The live transaction (a single attempt, or a batch through its lead) of another
        payout at this source and sequence number: the replacement of an abandoned envelope,
        which can never land once the abandoned one did."""
        rows = await self.pool.fetch(
            f"""SELECT a.*, {PAYOUT_IDS} FROM payout_attempts a JOIN payouts p
                 ON p.id = a.payout_id
               WHERE a.source_account = $1 AND a.sequence = $2 AND a.payout_id <> $3
                 AND a.status IN ('built', 'signed', 'sent')
                 AND COALESCE(a.op_index, 0) = 0""",  # noqa: S608 - constant columns
            source, sequence, besides)
        return [_attempt(r) for r in rows]

    async def claim_outside_envelopes(self, limit: int, poll_interval: timedelta
                                      ) -> list[Attempt]:
        """Envelopes that left us and that we do not send, due for a look: ABANDONED ones, and
        the current attempt of a payout awaiting an external signature (handed out unsigned:
        its holder may sign and submit it without telling us). Each is watched until it lands
        or is proven dead, in any signing mode."""
        return await self._claim_polls(
            "(a.status = 'abandoned' OR (a.status = 'built' AND p.mode = 'EXTERNAL'"
            " AND p.state = 'AWAITING_SIGNATURE' AND p.attempt_count = a.number))",
            limit, poll_interval, 2**31 - 1)

    async def _claim_polls(
        self, where: str, limit: int, poll_interval: timedelta, max_polls: int
    ) -> list[Attempt]:
        # Only the poll schedule changes here, not a status: locking the attempt alone is
        # enough (no payout row is written).
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT a.*, {PAYOUT_IDS} FROM payout_attempts a JOIN payouts p
                     ON p.id = a.payout_id
                   WHERE {where} AND (a.next_poll_at IS NULL OR a.next_poll_at <= now())
                   ORDER BY a.next_poll_at NULLS FIRST LIMIT $1
                   FOR UPDATE OF a SKIP LOCKED""",  # noqa: S608 - constant clauses
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


async def resequence(
    conn: asyncpg.Connection, payout_uuid: UUID, number: int,
    source: str, sequence: int,
) -> None:
    """An attempt that never left us gives up its number and its payout is rebuilt at once."""
    await move_attempt(conn, payout_uuid, number, A.SUPERSEDED,
                       only_from=frozenset({A.BUILT, A.SIGNED}))
    await release_sequence(conn, source, sequence)
    await requeue(conn, payout_uuid, attempt=number, reason="re-sequenced", actor="sequencer",
                  not_before=datetime.now(UTC))


async def supersede_members(conn: asyncpg.Connection, members: list[tuple[UUID, int]],
                            *, reason: str = "batch rebuilt") -> None:
    """Members of a batch that will never be sent as built (a member was cancelled or
    re-sequenced): superseded and re-batched. Their number was already handled by whoever
    broke the batch up (released on cancel, released on re-sequence, renumbered on resync)."""
    await move_attempts(conn, A.SUPERSEDED, [AttemptMove(*m) for m in members],
                        only_from=frozenset({A.BUILT, A.SIGNED}))
    await requeue_many(conn, [PayoutMove(u, reason, n) for u, n in members],
                       actor="sequencer", not_before=datetime.now(UTC))


async def supersede_member(conn: asyncpg.Connection, payout_uuid: UUID, number: int) -> None:
    await supersede_members(conn, [(payout_uuid, number)])


async def supersede_rest(conn: asyncpg.Connection, members: list[tuple[UUID, int]],
                         *, reason: str = "batch rebuilt") -> None:
    """The live members left of a batch that was partly given up (re-sync skipped payouts
    another worker held), or a whole transaction that never left us and can no longer land
    (held past its max_time): superseded and rebuilt. They were the last to hold the
    transaction's number (re-sync counted them as holding it), so it is freed here, once."""
    if not members:
        return
    row = await conn.fetchrow(
        "SELECT source_account, sequence FROM payout_attempts WHERE payout_id = $1 AND number = $2",
        *members[0],
    )
    await supersede_members(conn, members, reason=reason)
    await release_sequence(conn, row["source_account"], row["sequence"])


async def _incomplete_batches(
    conn: asyncpg.Connection, rows: list[asyncpg.Record]
) -> dict[UUID, bool]:
    """Batches among `rows` that may not be sent now: not every member is signed and claimed
    here (False: wait, another worker holds some), or a member was given up (True: the rest
    must be rebuilt; sending would pay a payout that is re-queued elsewhere)."""
    claimed: dict[UUID, int] = {}
    for row in rows:
        if row["a_batch"] is not None:
            claimed[row["a_batch"]] = claimed.get(row["a_batch"], 0) + 1
    out: dict[UUID, bool] = {}
    for batch, count in claimed.items():
        counts = await conn.fetchrow(
            """SELECT count(*) AS members, count(*) FILTER (WHERE status = 'signed') AS signed
               FROM payout_attempts WHERE batch_id = $1""",
            batch,
        )
        if counts["signed"] != counts["members"]:
            out[batch] = True
        elif count != counts["members"]:
            out[batch] = False
    return out


# Serialises the classic-queue check of concurrent senders (any replica): "their count plus
# mine" must see what the other just claimed. Arbitrary constant: "payout classic queue".
CLASSIC_QUEUE_LOCK_ID = 0x50415943_51554555


def _outgoing(lead: asyncpg.Record, close_time: int | None) -> Outgoing:
    left_us = lead["mode"] == "EXTERNAL"  # a copy may be elsewhere: never rebuilt here
    return Outgoing(
        source=lead["a_source"], classic_ops=classic_operations(lead["a_envelope"] or ""),
        expired=close_time is not None and not left_us and expired_before_sending(
            int(lead["a_max_time"].timestamp()), close_time),
    )


async def _classic_in_flight(conn: asyncpg.Connection | asyncpg.Pool,
                             close_time: int | None = None) -> int:
    """Classic operations sent and not yet seen included or dead, of transactions that can
    still be in a node's queue: one whose max_time a closed ledger has reached is dropped by
    stellar-core at that close (it can never be included), so it takes no room even while its
    death is not yet proven (or never can be: history not covering its submission)."""
    found: int = await conn.fetchval(
        """SELECT COALESCE(sum(classic_ops), 0) FROM payout_attempts
           WHERE status = 'sent' AND classic_ops > 0
             AND ($1::bigint IS NULL OR max_time > to_timestamp($1::bigint))""",
        close_time)
    return found


async def _all_held(pool: asyncpg.Pool, limit: int, close_time: int | None, capacity: int
                    ) -> bool:
    """True when a claim now would hold every signed transaction (the network's queue is full
    by our count, none has expired): the claim is skipped instead of locking and reading
    every member of every held batch on each pass of the sender. A look without locks, at
    the transactions' lead rows only; the claim itself decides again under its locks."""
    leads = await pool.fetch(
        """SELECT a.source_account AS a_source, a.max_time AS a_max_time,
                  a.envelope_xdr AS a_envelope, p.mode
           FROM payouts p JOIN payout_attempts a
             ON a.payout_id = p.id AND a.number = p.attempt_count
           WHERE p.state = 'QUEUED' AND a.status = 'signed' AND COALESCE(a.op_index, 0) = 0
           ORDER BY a.source_account, a.sequence LIMIT $1""",
        limit,
    )
    if not leads:
        return False  # nothing signed: the claim's own look is as cheap
    outgoing = [_outgoing(lead, close_time) for lead in leads]
    if any(o.expired for o in outgoing):
        return False
    return not any(admit_for_sending(outgoing, await _classic_in_flight(pool, close_time),
                                      capacity))


async def _admit(conn: asyncpg.Connection, outgoing: list[Outgoing], capacity: int | None,
                 close_time: int | None) -> list[bool]:
    """core/pacing.admit_for_sending against the classic operations in flight, read under a
    transaction-scoped lock (held until this claim commits) when any of `outgoing` needs
    classic room."""
    if capacity is None or not any(o.classic_ops for o in outgoing):
        return admit_for_sending(outgoing, 0, 2**62)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", CLASSIC_QUEUE_LOCK_ID)
    return admit_for_sending(outgoing, await _classic_in_flight(conn, close_time), capacity)


def _with_ids(attempt: Attempt, payout: Payout) -> Attempt:
    return Attempt(**{**attempt.__dict__, "payout_ref": payout.payout_id,
                      "correlation_id": payout.correlation_id})
