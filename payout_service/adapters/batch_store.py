"""Batch attempts in PostgreSQL: one transaction, one attempt row per payout.

The members of a batch share its source, sequence number, envelope and hash, and move
together: every function here locks all the batch's payout rows (in id order: the documented
lock order, payouts first), moves all members with one set-based statement per target
state (adapters/transitions.py), and touches the sequence number once, in one SQL
transaction: a constant number of statements per batch, not per payout. The database
refuses a payout in two live batches (migration 020: one live attempt per payout).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from payout_service.adapters.channel_store import hold_channel
from payout_service.adapters.payout_store import _attempt, payout_from_row
from payout_service.adapters.proof_store import record_proofs
from payout_service.adapters.sequences import (
    consumed_through,
    lease_channel,
    release_sequence,
    reserve_sequence,
)
from payout_service.adapters.transitions import (
    NOW,
    AttemptMove,
    PayoutMove,
    move_attempts,
    move_payouts,
    requeue_many,
)
from payout_service.adapters.work_queues import supersede_members, supersede_rest
from payout_service.core.batches import REBATCHED, judge_failed_batch
from payout_service.core.model import Attempt, NewAttempt, Payout
from payout_service.core.payment_proofs import PaymentProof, fee_shares
from payout_service.core.refusals import CHANNEL_HELD, EXPIRED_UNSIGNED
from payout_service.core.states import IN_FLIGHT, AttemptStatus, PayoutMode, PayoutState

A = AttemptStatus
S = PayoutState

# Builds the batch envelope for the payouts actually locked, in this order, once the source
# and sequence number are reserved.
BatchBuilder = Callable[[list[Payout], str, int], NewAttempt]


@dataclass(frozen=True)
class Member:
    payout_uuid: UUID
    number: int
    op_index: int
    status: AttemptStatus


class BatchStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def accounts_being_created(self, destinations: Sequence[str]) -> set[str]:
        """Which of these destinations a live attempt (built, signed, sent, or abandoned: it
        may still land) creates with CreateAccount, on any replica."""
        if not destinations:
            return set()
        rows = await self.pool.fetch(
            """SELECT creates_account FROM payout_attempts
               WHERE creates_account = ANY($1::text[])
                 AND status IN ('built', 'signed', 'sent', 'abandoned')""",
            list(set(destinations)),
        )
        return {r["creates_account"] for r in rows}

    async def create_batch(
        self, payout_uuids: Sequence[UUID], build: BatchBuilder, *, source_account: str,
        from_channel: bool = False, limit: int | None = None,
        creates: Mapping[UUID, str] | None = None,
    ) -> list[tuple[Payout, Attempt]]:
        """Locks the payouts that still need an attempt (SKIP LOCKED: another worker's are
        left out; at most `limit`, the first in the planned order), reserves ONE sequence
        number, stores one attempt per payout sharing the envelope. `creates` names the
        account each CreateAccount payout creates. Empty if none could be locked, no channel
        is free, or another worker put one of these accounts' CreateAccount in flight
        meanwhile (the database refuses a second: the payouts are planned again next pass)."""
        try:
            return await self._create_batch(payout_uuids, build, source_account, from_channel,
                                             limit, creates or {})
        except asyncpg.UniqueViolationError as err:
            if err.constraint_name != "payout_attempts_one_live_create_idx":
                raise
            return []

    async def _create_batch(
        self, payout_uuids: Sequence[UUID], build: BatchBuilder, source_account: str,
        from_channel: bool, limit: int | None, creates: Mapping[UUID, str],
    ) -> list[tuple[Payout, Attempt]]:
        async with self.pool.acquire() as conn, conn.transaction():
            # The planned order picks which ones; SKIP LOCKED never waits, so taking them in
            # that order cannot deadlock against the id order everyone else waits in.
            rows = await conn.fetch(
                """SELECT * FROM payouts WHERE id IN (
                       SELECT p.id FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, position)
                       JOIN payouts p ON p.id = t.id WHERE p.needs_attempt
                       ORDER BY t.position FOR UPDATE OF p SKIP LOCKED LIMIT $2)
                   ORDER BY id FOR UPDATE""",
                list(payout_uuids), limit,
            )
            by_id = {r["id"]: payout_from_row(r) for r in rows}
            payouts = [by_id[u] for u in payout_uuids if u in by_id]  # the planned order
            if not payouts:
                return []
            source = source_account
            if from_channel:
                leased = await lease_channel(conn)
                if leased is None:
                    return []
                source = leased
            sequence = await reserve_sequence(conn, source)
            new = build(payouts, source, sequence)
            batch_id = uuid4()
            numbers = [p.attempt_count + 1 for p in payouts]
            arows = await conn.fetch(
                """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                       min_time, max_time, envelope_xdr, tx_hash, fee_stroops, status,
                       trace_context, batch_id, op_index, creates_account)
                   SELECT payout_id, number, $3, $4, $5, $6, $7, $8, $9, 'built',
                          trace_context, $10, op_index, creates_account
                   FROM unnest($1::uuid[], $2::integer[], $11::text[], $12::integer[],
                               $13::text[])
                     AS t(payout_id, number, trace_context, op_index, creates_account)
                   RETURNING *""",
                [p.id for p in payouts], numbers, new.source_account, new.sequence,
                new.min_time, new.max_time, new.envelope_xdr, new.tx_hash, new.fee_stroops,
                batch_id, [p.trace_context for p in payouts], list(range(len(payouts))),
                [creates.get(p.id) for p in payouts],
            )
            attempts = {r["payout_id"]: r for r in arows}
            built: dict[UUID, Payout] = {}
            # Each payout stays in its state (ACCEPTED or QUEUED), now with an attempt, which
            # the signer service signs (batches are never handed out).
            by_state: dict[PayoutState, list[PayoutMove]] = {}
            for index, (payout, number) in enumerate(zip(payouts, numbers, strict=True)):
                by_state.setdefault(payout.state, []).append(PayoutMove(
                    payout.id, f"batch {batch_id} op {index} built", number,
                    {"attempt_count": number}))
            for state, moves in by_state.items():
                for payout in await move_payouts(conn, state, moves, actor="preparer",
                                                 only_from=frozenset({state}),
                                                 sets={"needs_attempt": False,
                                                       "mode": PayoutMode.SIGNER_SERVICE}):
                    built[payout.id] = payout
            return [(built[p.id], _attempt(attempts[p.id], built[p.id])) for p in payouts]

    async def store_signed(self, batch_id: UUID, signed_xdr: str, *, actor: str) -> bool:
        """The signed envelope for every member; the payouts are QUEUED. False if the batch
        is no longer built (cancelled, superseded meanwhile)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            statuses = {m.status for m in members}
            if statuses != {A.BUILT}:
                if A.BUILT in statuses and not IN_FLIGHT & (statuses - {A.BUILT}):
                    # Part of the batch was given up meanwhile (re-sync skipped rows another
                    # worker held): the rest never left us and is re-batched, never signed.
                    # Those members still held the number (re-sync counted them): free it.
                    await supersede_rest(conn, [
                        (m.payout_uuid, m.number) for m in members if m.status == A.BUILT])
                return False
            await move_attempts(conn, A.SIGNED, _attempt_moves(members),
                                sets={"envelope_xdr": signed_xdr, "signed": True})
            await move_payouts(conn, S.QUEUED, [
                PayoutMove(m.payout_uuid, "signed", m.number) for m in members], actor=actor)
            return True

    async def refuse_unsent(self, batch_id: UUID, *, code: str, message: str) -> None:
        """The signer refused the batch: nothing left us, the number is free at once."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            moved = await move_attempts(conn, A.REJECTED, _attempt_moves(members),
                                        only_from=frozenset({A.BUILT}),
                                        sets={"result_code": code})
            await _fail_members(conn, members, code, [message] * len(members), "preparer")
            if moved:
                await release_sequence(conn, moved[0].source_account, moved[0].sequence)

    async def hold_channel_unsent(self, batch_id: UUID, *, reason: str, actor: str) -> bool:
        """The signer refused the batch because of its channel (core/refusals.py), in one SQL
        transaction: nothing left us (every member REJECTED, the number free at once), every
        payout goes back to the queue to be re-batched, not failed and not counted
        (CHANNEL_HELD), and the channel stops being leased. True if this call held it."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            moved = await move_attempts(conn, A.REJECTED, _attempt_moves(members),
                                        only_from=frozenset({A.BUILT}),
                                        sets={"result_code": CHANNEL_HELD})
            await requeue_many(conn, [
                PayoutMove(m.payout_uuid, f"{CHANNEL_HELD}: re-batched", m.number)
                for m in members], actor=actor, not_before=datetime.now(UTC))
            if not moved:
                return False
            held = await hold_channel(conn, moved[0].source_account, reason, actor=actor)
            await release_sequence(conn, moved[0].source_account, moved[0].sequence)
            return held

    async def rebuild_unsent(self, batch_id: UUID, *, reason: str = EXPIRED_UNSIGNED) -> bool:
        """The batch was built and never signed, and can no longer be signed as built (its
        max_time has passed, or one of its destinations was denied since): its built members
        are superseded and re-batched (uncounted), the number given back once. False when
        none is built any more."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            built = [(m.payout_uuid, m.number) for m in members if m.status is A.BUILT]
            if not built:
                return False
            await supersede_rest(conn, built, reason=reason)
            return True

    async def destinations(self, batch_id: UUID) -> list[str]:
        """The destinations a batch pays, one per member."""
        rows = await self.pool.fetch(
            """SELECT p.destination FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id
               WHERE a.batch_id = $1""", batch_id)
        return [r["destination"] for r in rows]

    async def confirm(
        self, batch_id: UUID, *, ledger: int, fee_charged: int,
        proof_of: Callable[[int, int], PaymentProof | None] | None = None,
    ) -> list[Payout]:
        """The batch landed: every member's payout CONFIRMED, the fee shared out in stroops
        (core/payment_proofs.fee_shares, so the shares add up), and each one's proof of
        payment, `proof_of(op_index, fee_share)` (op_index: the member's place in the
        transaction, an item of the call in a contract batch), recorded in the same SQL
        transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            by_op = sorted(members, key=lambda m: m.op_index)
            shares = dict(zip((m.payout_uuid for m in by_op),
                              fee_shares(fee_charged, max(1, len(members))), strict=False))
            fees = [shares[m.payout_uuid] for m in members]
            moved = await move_attempts(
                conn, A.INCLUDED, _attempt_moves(members, fee_stroops=fees),
                only_from=frozenset({A.SENT}),
                sets={"ledger": ledger, "result_code": "txSUCCESS"})
            confirmed = await move_payouts(conn, S.CONFIRMED, [
                PayoutMove(m.payout_uuid, f"included in ledger {ledger}", m.number,
                           {"network_fee_stroops": fee})
                for m, fee in zip(members, fees, strict=True)
            ], actor="confirmer", only_from=frozenset({S.SUBMITTED}),
                sets={"confirmed_at": NOW})
            if moved:
                await consumed_through(conn, moved[0].source_account, moved[0].sequence)
            if proof_of is not None:
                landed = {p.id for p in confirmed}
                proofs = [(member.payout_uuid, proof_of(member.op_index, fee))
                          for member, fee in zip(members, fees, strict=True)
                          if member.payout_uuid in landed]
                await record_proofs(conn, [(u, p) for u, p in proofs if p is not None])
            return confirmed

    async def op_indexes(self, batch_id: UUID) -> dict[UUID, int]:
        """Each member payout's operation in the batch transaction."""
        rows = await self.pool.fetch(
            "SELECT payout_id, op_index FROM payout_attempts WHERE batch_id = $1", batch_id)
        return {r["payout_id"]: r["op_index"] for r in rows if r["op_index"] is not None}

    async def failed_on_chain(
        self, batch_id: UUID, *, ledger: int, tx_code: str, op_codes: Sequence[str],
        max_attempts: int, delay: timedelta,
    ) -> dict[UUID, PayoutState]:
        """The batch was included and failed: the number and fee are consumed. Each member is
        judged by its own operation's result (core/batches.judge_failed_batch): the guilty
        fail with their reason, the innocent get a new attempt (re-batched)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            verdicts = judge_failed_batch(op_codes, [m.op_index for m in members],
                                          tx_code).verdicts
            moved = await move_attempts(
                conn, A.FAILED_ON_CHAIN,
                _attempt_moves(members, result_code=[v.code for v in verdicts]),
                sets={"ledger": ledger,
                      "proof": f"batch failed on chain in ledger {ledger}: {tx_code}"})
            tries = await _tries(conn, members)
            now = datetime.now(UTC)
            again, fail, messages, codes = [], [], [], []
            for m, verdict in zip(members, verdicts, strict=True):
                counted = tries[m.payout_uuid] if verdict.counts_as_attempt else 0
                if not verdict.fail and counted < max_attempts:
                    again.append(PayoutMove(
                        m.payout_uuid, f"{verdict.code}: re-batched", m.number,
                        {"next_attempt_at": now + (
                            delay if verdict.counts_as_attempt else timedelta(0))}))
                else:
                    fail.append(m)
                    codes.append(verdict.code if verdict.fail else "max_attempts")
                    messages.append(f"attempt {m.number} (batch op {m.op_index}): {verdict.code}")
            await requeue_many(conn, again, actor="confirmer")
            await _fail_members(conn, fail, codes, messages, "confirmer")
            if moved:
                await consumed_through(conn, moved[0].source_account, moved[0].sequence)
            return {**{m.payout_uuid: S.QUEUED for m in again},
                    **{m.payout_uuid: S.FAILED for m in fail}}

    async def dead(
        self, batch_id: UUID, *, code: str, proof: str, retry: bool, max_attempts: int,
        delay: timedelta, actor: str,
    ) -> None:
        """The batch is proven dead (the proof holds for the transaction, so for every
        member): its number is free and all its payouts are re-queued (or fail at
        max_attempts, or with a permanent code)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            moved = await move_attempts(conn, A.DEAD, _attempt_moves(members),
                                        sets={"result_code": code, "proof": proof})
            tries = await _tries(conn, members)
            again = [m for m in members if retry and tries[m.payout_uuid] < max_attempts]
            fail = [m for m in members if m not in again]
            await requeue_many(conn, [
                PayoutMove(m.payout_uuid, f"{code}: new attempt", m.number) for m in again
            ], actor=actor, not_before=datetime.now(UTC) + delay)
            await _fail_members(conn, fail, code if not retry else "max_attempts",
                                [f"attempt {m.number}: {code}" for m in fail], actor)
            if moved:
                await release_sequence(conn, moved[0].source_account, moved[0].sequence)

    async def abandon_sent(self, batch_id: UUID, *, code: str) -> None:
        """A rejection that can never become valid: every member ABANDONED (watched until it
        lands or is proven dead), its payout FAILED, the number given to the next
        reservation (see AttemptStore.abandon_sent)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            moved = await move_attempts(conn, A.ABANDONED, _attempt_moves(members),
                                        only_from=frozenset({A.SENT}),
                                        sets={"result_code": code, "next_poll_at": NOW})
            await _fail_members(conn, members, code,
                                [f"attempt {m.number}: {code}" for m in members], "sender")
            if moved:
                await release_sequence(conn, moved[0].source_account, moved[0].sequence)


async def rebuild_without(conn: asyncpg.Connection, batch_id: UUID, cancelled: UUID) -> None:
    """A payout of a built-but-unsent batch was cancelled (its own attempt already moved by
    the caller): the other members never left us either, so they are superseded and re-queued
    to be re-batched without it. The caller releases the shared number once."""
    await supersede_members(conn, [(m.payout_uuid, m.number)
                                   for m in await _lock_members(conn, batch_id)
                                   if m.payout_uuid != cancelled])


async def _lock_members(conn: asyncpg.Connection, batch_id: UUID) -> list[Member]:
    """Locks the members' payout rows in id order, then reads their attempts: a second
    statement, because under READ COMMITTED the locking statement keeps the attempt rows as
    they were before it waited (a cancel or another signer committed meanwhile)."""
    await conn.execute(
        """SELECT 1 FROM payouts p JOIN payout_attempts a ON a.payout_id = p.id
           WHERE a.batch_id = $1 ORDER BY p.id FOR UPDATE OF p""",
        batch_id,
    )
    rows = await conn.fetch(
        """SELECT payout_id, number, op_index, status FROM payout_attempts
           WHERE batch_id = $1 ORDER BY payout_id""",
        batch_id,
    )
    return [Member(r["payout_id"], r["number"], r["op_index"], A(r["status"])) for r in rows]


def _attempt_moves(members: Sequence[Member], **per_row: Sequence[object]) -> list[AttemptMove]:
    return [AttemptMove(m.payout_uuid, m.number, {c: v[i] for c, v in per_row.items()})
            for i, m in enumerate(members)]


async def _fail_members(conn: asyncpg.Connection, members: Sequence[Member],
                        codes: str | Sequence[str], messages: Sequence[str], actor: str) -> None:
    """FAILED, each with its code (reason and failure_code) and message."""
    each = [codes] * len(members) if isinstance(codes, str) else list(codes)
    await move_payouts(conn, S.FAILED, [
        PayoutMove(m.payout_uuid, code, m.number,
                   {"failure_code": code, "failure_message": message[:500]})
        for m, code, message in zip(members, each, messages, strict=True)
    ], actor=actor, sets={"needs_attempt": False})


async def _tries(conn: asyncpg.Connection, members: Sequence[Member]) -> dict[UUID, int]:
    """Attempts that count towards max_attempts, per member payout (superseded, re-batched
    and channel-held ones do not)."""
    rows = await conn.fetch(
        """SELECT payout_id, count(*) AS tries FROM payout_attempts
           WHERE payout_id = ANY($1::uuid[]) AND status <> 'superseded'
             AND coalesce(result_code, '') <> ALL($2::text[]) GROUP BY payout_id""",
        [m.payout_uuid for m in members], [REBATCHED, CHANNEL_HELD],
    )
    tries = {r["payout_id"]: int(r["tries"]) for r in rows}
    return {m.payout_uuid: tries.get(m.payout_uuid, 0) for m in members}
