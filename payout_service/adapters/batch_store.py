"""Batch attempts in PostgreSQL (issue 14): one transaction, one attempt row per payout.

The members of a batch share its source, sequence number, envelope and hash, and move
together: every function here locks all the batch's payout rows (in id order: the documented
lock order, payouts first), moves each member through adapters/transitions.py, and touches
the sequence number once, in one SQL transaction. The database refuses a payout in two live
batches (migration 020: one live attempt per payout).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from payout_service.adapters.attempt_store import NewAttempt, _fail
from payout_service.adapters.payout_store import _attempt, payout_from_row
from payout_service.adapters.sequences import (
    consumed_through,
    lease_channel,
    release_sequence,
    reserve_sequence,
)
from payout_service.adapters.transitions import NOW, move_attempt, move_payout, requeue
from payout_service.adapters.work_queues import supersede_member, supersede_rest
from payout_service.core.batches import REBATCHED, judge_batch_member
from payout_service.core.model import Attempt, Payout
from payout_service.core.states import IN_FLIGHT, AttemptStatus, PayoutState

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


class BatchStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create_batch(
        self, payout_uuids: Sequence[UUID], build: BatchBuilder, *, source_account: str,
        channels: tuple[str, ...] = (),
    ) -> list[tuple[Payout, Attempt]]:
        """Locks the payouts that still need an attempt (SKIP LOCKED: another worker's are
        left out), reserves ONE sequence number, stores one attempt per payout sharing the
        envelope. Empty if none could be locked or no channel is free."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT * FROM payouts WHERE id = ANY($1::uuid[]) AND needs_attempt
                   ORDER BY id FOR UPDATE SKIP LOCKED""",
                list(payout_uuids),
            )
            by_id = {r["id"]: payout_from_row(r) for r in rows}
            payouts = [by_id[u] for u in payout_uuids if u in by_id]  # the planned order
            if not payouts:
                return []
            source = source_account
            if channels:
                leased = await lease_channel(conn, channels)
                if leased is None:
                    return []
                source = leased
            sequence = await reserve_sequence(conn, source)
            new = build(payouts, source, sequence)
            batch_id = uuid4()
            created = []
            for index, payout in enumerate(payouts):
                number = payout.attempt_count + 1
                arow = await conn.fetchrow(
                    """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                           min_time, max_time, envelope_xdr, tx_hash, fee_stroops, status,
                           trace_context, batch_id, op_index)
                       VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'built',$10,$11,$12) RETURNING *""",
                    payout.id, number, new.source_account, new.sequence, new.min_time,
                    new.max_time, new.envelope_xdr, new.tx_hash, new.fee_stroops,
                    payout.trace_context, batch_id, index,
                )
                built = await move_payout(
                    conn, payout.id, payout.state, reason=f"batch {batch_id} op {index} built",
                    actor="preparer", attempt=number, only_from=frozenset({payout.state}),
                    sets={"needs_attempt": False, "attempt_count": number},
                )
                created.append((built, _attempt(arow, built)))
            return created

    async def store_signed(self, batch_id: UUID, signed_xdr: str, *, actor: str) -> bool:
        """The signed envelope for every member; the payouts are QUEUED. False if the batch
        is no longer built (cancelled, superseded meanwhile)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            statuses = {m: await _status(conn, m) for m in members}
            if set(statuses.values()) != {A.BUILT}:
                if A.BUILT in statuses.values() and not IN_FLIGHT & {
                        s for s in statuses.values() if s != A.BUILT}:
                    # Part of the batch was given up meanwhile (re-sync skipped rows another
                    # worker held): the rest never left us and is re-batched, never signed.
                    # Those members still held the number (re-sync counted them): free it.
                    await supersede_rest(conn, [
                        (m.payout_uuid, m.number) for m, st in statuses.items() if st == A.BUILT])
                return False
            for m in members:
                await move_attempt(conn, m.payout_uuid, m.number, A.SIGNED,
                                   sets={"envelope_xdr": signed_xdr, "signed": True})
                await move_payout(conn, m.payout_uuid, S.QUEUED, reason="signed", actor=actor,
                                  attempt=m.number)
            return True

    async def refuse_unsent(self, batch_id: UUID, *, code: str, message: str) -> None:
        """The signer refused the batch: nothing left us, the number is free at once."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            lead = None
            for m in members:
                lead = await move_attempt(conn, m.payout_uuid, m.number, A.REJECTED,
                                          only_from=frozenset({A.BUILT}),
                                          sets={"result_code": code})
                await _fail(conn, m.payout_uuid, code, message, m.number, "preparer")
            if lead is not None:
                await release_sequence(conn, lead.source_account, lead.sequence)

    async def confirm(self, batch_id: UUID, *, ledger: int, fee_charged: int) -> list[Payout]:
        """The batch landed: every member's payout CONFIRMED, the fee shared out in stroops
        (the remainder to the first operation, so the shares add up)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            share, rest = divmod(fee_charged, max(1, len(members)))
            confirmed = []
            lead = None
            for m in members:
                fee = share + (rest if m.op_index == 0 else 0)
                lead = await move_attempt(conn, m.payout_uuid, m.number, A.INCLUDED,
                                          only_from=frozenset({A.SENT}), sets={
                                              "ledger": ledger, "fee_stroops": fee,
                                              "result_code": "txSUCCESS"})
                confirmed.append(await move_payout(
                    conn, m.payout_uuid, S.CONFIRMED, reason=f"included in ledger {ledger}",
                    actor="confirmer", attempt=m.number, only_from=frozenset({S.SUBMITTED}),
                    sets={"confirmed_at": NOW, "network_fee_stroops": fee},
                ))
            if lead is not None:
                await consumed_through(conn, lead.source_account, lead.sequence)
            return confirmed

    async def failed_on_chain(
        self, batch_id: UUID, *, ledger: int, tx_code: str, op_codes: Sequence[str],
        max_attempts: int, delay: timedelta,
    ) -> dict[UUID, PayoutState]:
        """The batch was included and failed: the number and fee are consumed. Each member is
        judged by its own operation's result (core/batches.judge_batch_member): the guilty
        fail with their reason, the innocent get a new attempt (re-batched)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            outcome: dict[UUID, PayoutState] = {}
            lead = None
            for m in members:
                verdict = judge_batch_member(op_codes, m.op_index, tx_code)
                lead = await move_attempt(
                    conn, m.payout_uuid, m.number, A.FAILED_ON_CHAIN,
                    sets={"result_code": verdict.code, "ledger": ledger,
                          "proof": f"batch failed on chain in ledger {ledger}: {tx_code}"},
                )
                tries = await _tries(conn, m.payout_uuid) if verdict.counts_as_attempt else 0
                if not verdict.fail and tries < max_attempts:
                    await requeue(conn, m.payout_uuid, attempt=m.number,
                                  reason=f"{verdict.code}: re-batched", actor="confirmer",
                                  not_before=datetime.now(UTC) + (
                                      delay if verdict.counts_as_attempt else timedelta(0)))
                    outcome[m.payout_uuid] = S.QUEUED
                else:
                    code = verdict.code if verdict.fail else "max_attempts"
                    await _fail(conn, m.payout_uuid, code,
                                f"attempt {m.number} (batch op {m.op_index}): {verdict.code}",
                                m.number, "confirmer")
                    outcome[m.payout_uuid] = S.FAILED
            if lead is not None:
                await consumed_through(conn, lead.source_account, lead.sequence)
            return outcome

    async def dead(
        self, batch_id: UUID, *, code: str, proof: str, retry: bool, max_attempts: int,
        delay: timedelta, actor: str,
    ) -> None:
        """The batch is proven dead (the proof holds for the transaction, so for every
        member): its number is free and all its payouts are re-queued (or fail at
        max_attempts, or with a permanent code)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            lead = None
            for m in members:
                lead = await move_attempt(conn, m.payout_uuid, m.number, A.DEAD,
                                          sets={"result_code": code, "proof": proof})
                if retry and await _tries(conn, m.payout_uuid) < max_attempts:
                    await requeue(conn, m.payout_uuid, attempt=m.number,
                                  reason=f"{code}: new attempt", actor=actor,
                                  not_before=datetime.now(UTC) + delay)
                else:
                    await _fail(conn, m.payout_uuid, code if not retry else "max_attempts",
                                f"attempt {m.number}: {code}", m.number, actor)
            if lead is not None:
                await release_sequence(conn, lead.source_account, lead.sequence)

    async def abandon_sent(self, batch_id: UUID, *, code: str) -> None:
        """A rejection that can never become valid: every member ABANDONED (watched until it
        lands or is proven dead), its payout FAILED, the number given to the next
        reservation (see AttemptStore.abandon_sent)."""
        async with self.pool.acquire() as conn, conn.transaction():
            members = await _lock_members(conn, batch_id)
            lead = None
            for m in members:
                lead = await move_attempt(conn, m.payout_uuid, m.number, A.ABANDONED,
                                          only_from=frozenset({A.SENT}),
                                          sets={"result_code": code, "next_poll_at": NOW})
                await _fail(conn, m.payout_uuid, code, f"attempt {m.number}: {code}",
                            m.number, "sender")
            if lead is not None:
                await release_sequence(conn, lead.source_account, lead.sequence)


async def rebuild_without(conn: asyncpg.Connection, batch_id: UUID, cancelled: UUID) -> None:
    """A payout of a built-but-unsent batch was cancelled (its own attempt already moved by
    the caller): the other members never left us either, so they are superseded and re-queued
    to be re-batched without it. The caller releases the shared number once."""
    for m in await _lock_members(conn, batch_id):
        if m.payout_uuid == cancelled:
            continue
        await supersede_member(conn, m.payout_uuid, m.number)


async def _lock_members(conn: asyncpg.Connection, batch_id: UUID) -> list[Member]:
    rows = await conn.fetch(
        """SELECT p.id, a.number, a.op_index FROM payouts p JOIN payout_attempts a
             ON a.payout_id = p.id WHERE a.batch_id = $1 ORDER BY p.id FOR UPDATE OF p""",
        batch_id,
    )
    return [Member(r["id"], r["number"], r["op_index"]) for r in rows]


async def _status(conn: asyncpg.Connection, member: Member) -> AttemptStatus:
    return A(await conn.fetchval(
        "SELECT status FROM payout_attempts WHERE payout_id = $1 AND number = $2",
        member.payout_uuid, member.number,
    ))


async def _tries(conn: asyncpg.Connection, payout_uuid: UUID) -> int:
    tries: int = await conn.fetchval(
        """SELECT count(*) FROM payout_attempts WHERE payout_id = $1
           AND status <> 'superseded' AND result_code IS DISTINCT FROM $2""",
        payout_uuid, REBATCHED,
    )
    return tries
