"""Set-based moves through the one transition point (adapters/transitions.py), against
PostgreSQL: all or nothing, one audit event and outbox row per payout with its own values,
and a batch that costs a constant number of SQL statements whatever its size."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from stellar_sdk import Keypair

from payout_service import metrics
from payout_service.adapters.attempt_store import AttemptStore, NewAttempt
from payout_service.adapters.batch_store import BatchStore
from payout_service.adapters.payout_store import create_pool
from payout_service.adapters.sequences import Sequences
from payout_service.adapters.transitions import PayoutMove, move_payouts
from payout_service.adapters.work_queues import WorkQueues
from payout_service.core.model import Payout
from payout_service.core.states import IllegalTransition, PayoutState
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from .conftest import SOURCE
from .test_aggregates import LIVE

S = PayoutState


async def _accepted(stack: Any, count: int, prefix: str) -> list[UUID]:
    dest = Keypair.random().public_key
    await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(
        batch_id=f"set-{prefix}", items=[
            pb.CreatePayoutRequest(payout_id=f"{prefix}-{n}", destination=dest, amount="2",
                                   asset="XLM", idempotency_key=f"{prefix}-{n}")
            for n in range(count)]))
    rows = await stack.pool.fetch(
        "SELECT id FROM payouts WHERE payout_id LIKE $1 ORDER BY payout_id", f"{prefix}-%")
    assert len(rows) == count
    return [r["id"] for r in rows]


async def _snapshot(pool: asyncpg.Pool, ids: list[UUID]) -> tuple[Any, ...]:
    states = await pool.fetch(
        "SELECT id, state, failure_code FROM payouts WHERE id = ANY($1) ORDER BY id", ids)
    events = await pool.fetchval(
        "SELECT count(*) FROM payout_events WHERE payout_id = ANY($1)", ids)
    outbox = await pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE payout_id = ANY($1)", ids)
    return tuple(tuple(r) for r in states), events, outbox


async def test_a_set_move_is_all_or_nothing(stack_factory):
    stack = await stack_factory(**LIVE)
    ids = await _accepted(stack, 5, "aon")
    async with stack.pool.acquire() as conn, conn.transaction():
        await move_payouts(conn, S.CANCELLED, [PayoutMove(ids[3], "test")], actor="test")
    before = await _snapshot(stack.pool, ids)

    with pytest.raises(IllegalTransition) as refused:
        async with stack.pool.acquire() as conn, conn.transaction():
            await move_payouts(conn, S.QUEUED, [PayoutMove(i, "test") for i in ids],
                               actor="test")
    assert refused.value.current == S.CANCELLED
    assert await _snapshot(stack.pool, ids) == before, "one refused row: nothing written"

    with pytest.raises(ValueError, match="twice"):
        async with stack.pool.acquire() as conn, conn.transaction():
            await move_payouts(conn, S.QUEUED, [PayoutMove(ids[0], "a"),
                                                PayoutMove(ids[0], "b")], actor="test")


async def test_each_payout_of_a_set_move_gets_its_own_values_event_and_outbox_row(
        stack_factory):
    stack = await stack_factory(**LIVE)
    ids = await _accepted(stack, 4, "own")
    counted = metrics.PAYOUTS_TERMINAL.labels("failed")._value.get()
    async with stack.pool.acquire() as conn, conn.transaction():
        moved = await move_payouts(conn, S.FAILED, [
            PayoutMove(i, f"reason-{n}", None, {"failure_code": f"code-{n}",
                                                 "failure_message": f"message {n}"})
            for n, i in enumerate(ids)
        ], actor="set-test", sets={"needs_attempt": False})
    assert [p.id for p in moved] == ids, "returned in the order of the moves"
    assert all(isinstance(p, Payout) and p.state == S.FAILED for p in moved)
    rows = await stack.pool.fetch(
        "SELECT id, failure_code, failure_message, needs_attempt FROM payouts WHERE id = ANY($1)",
        ids)
    assert {r["id"]: (r["failure_code"], r["failure_message"], r["needs_attempt"])
            for r in rows} == {i: (f"code-{n}", f"message {n}", False)
                               for n, i in enumerate(ids)}
    events = await stack.pool.fetch(
        """SELECT payout_id, from_state, to_state, reason, actor FROM payout_events
           WHERE payout_id = ANY($1) AND actor = 'set-test'""", ids)
    assert sorted((e["payout_id"], e["reason"]) for e in events) == sorted(
        (i, f"reason-{n}") for n, i in enumerate(ids))
    assert {(e["from_state"], e["to_state"]) for e in events} == {("ACCEPTED", "FAILED")}
    outbox = await stack.pool.fetch(
        "SELECT payout_id, payload FROM outbox_events WHERE payout_id = ANY($1)", ids)
    assert sorted((o["payout_id"], o["payload"]["failure_code"]) for o in outbox) == sorted(
        (i, f"code-{n}") for n, i in enumerate(ids))
    assert metrics.PAYOUTS_TERMINAL.labels("failed")._value.get() == counted + len(ids)


class _Counting:
    """Counts the SQL statements the pool's one connection runs."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        self.count += 1


def _builder(tx_hash: str) -> Any:
    def build(payouts: list[Payout], source: str, sequence: int) -> NewAttempt:
        now = datetime.now(UTC)
        return NewAttempt(source, sequence, now, now + timedelta(minutes=1), "AAAA", tx_hash, 100)
    return build


async def _batch_statements(url: str, ids: list[UUID], tx_hash: str) -> dict[str, int]:
    """Runs a batch through create → signed → sent → confirmed; statements per step."""
    pool = await create_pool(url, min_size=1, max_size=1)
    counter = _Counting()
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(counter)
        store, queues = BatchStore(pool), WorkQueues(pool)
        steps: dict[str, int] = {}

        async def step(name: str, work: Any) -> Any:
            start = counter.count
            result = await work
            steps[name] = counter.count - start
            return result

        created = await step("create", store.create_batch(
            ids, _builder(tx_hash), source_account=SOURCE))
        assert len(created) == len(ids)
        batch_id = created[0][1].batch_id
        assert batch_id is not None
        assert await step("sign", store.store_signed(batch_id, "AAAA", actor="test"))
        sent = await step("send", queues.claim_for_sending(1000, 50))
        assert len(sent) == len(ids)
        confirmed = await step("confirm", store.confirm(batch_id, ledger=51, fee_charged=1001))
        assert {p.state for p in confirmed} == {S.CONFIRMED}
        assert sum(p.network_fee_stroops or 0 for p in confirmed) == 1001
        return steps
    finally:
        await pool.close()


async def test_a_batch_costs_the_same_statements_for_3_payouts_as_for_60(
        stack_factory, fresh_database):
    stack = await stack_factory(**LIVE)
    await Sequences(stack.pool).ensure_source(SOURCE, 100)
    small = await _batch_statements(fresh_database, await _accepted(stack, 3, "small"), "aa")
    large = await _batch_statements(fresh_database, await _accepted(stack, 60, "large"), "bb")
    assert small == large, (small, large)
    assert sum(small.values()) < 60, small  # was about 8 per payout and step


async def test_cancelling_a_batch_member_takes_the_batch_locks_in_id_order(stack_factory):
    """A batch step locks all members in id order. A cancel of the member with the highest
    id that locked its own row first and then the lower ids would wait on the step while the
    step waits on it (PostgreSQL's deadlock detector kills one): the cancel takes the same
    order, queues behind the first lock, and both finish."""
    stack = await stack_factory(**LIVE)
    await Sequences(stack.pool).ensure_source(SOURCE, 100)
    ids = await _accepted(stack, 4, "lock")
    created = await BatchStore(stack.pool).create_batch(ids, _builder("cc"),
                                                        source_account=SOURCE)
    batch_id = created[0][1].batch_id
    lowest, highest = min(ids), max(ids)
    step = await stack.pool.acquire()
    try:
        tx = step.transaction()
        await tx.start()
        await step.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", lowest)
        cancel = asyncio.create_task(
            AttemptStore(stack.pool).cancel(highest, actor="test", reason="test"))
        await asyncio.sleep(0.3)  # the cancel is now waiting for a lock
        assert not cancel.done()
        # The batch step goes on to the highest id, as _lock_members does.
        await step.execute("""SELECT 1 FROM payouts p JOIN payout_attempts a
                              ON a.payout_id = p.id WHERE a.batch_id = $1
                              ORDER BY p.id FOR UPDATE OF p""", batch_id)
        await tx.commit()
    finally:
        await stack.pool.release(step)
    cancelled = await asyncio.wait_for(cancel, 10)
    assert cancelled.state == S.CANCELLED
    states = dict(await stack.pool.fetch(
        "SELECT id, state FROM payouts WHERE id = ANY($1)", ids))
    assert states.pop(highest) == "CANCELLED"
    assert set(states.values()) == {"ACCEPTED"}, "the others wait to be re-batched"


async def test_a_batch_takes_at_most_its_limit_in_planned_order_skipping_locked_rows(
        stack_factory):
    stack = await stack_factory(**LIVE)
    await Sequences(stack.pool).ensure_source(SOURCE, 100)
    ids = await _accepted(stack, 6, "limit")
    planned = ids[::-1]
    other = await stack.pool.acquire()
    try:
        async with other.transaction():  # another worker holds the first planned payout
            await other.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", planned[0])
            created = await BatchStore(stack.pool).create_batch(
                planned, _builder("dd"), source_account=SOURCE, limit=3)
    finally:
        await stack.pool.release(other)
    assert [p.id for p, _ in created] == planned[1:4]
    assert [a.op_index for _, a in created] == [0, 1, 2]
    waiting = await stack.pool.fetch("SELECT id FROM payouts WHERE needs_attempt")
    assert {r["id"] for r in waiting} == {planned[0], *planned[4:]}


async def _built_batch(stack: Any, prefix: str) -> tuple[list[UUID], UUID]:
    await Sequences(stack.pool).ensure_source(SOURCE, 100)
    ids = await _accepted(stack, 3, prefix)
    created = await BatchStore(stack.pool).create_batch(ids, _builder(prefix),
                                                        source_account=SOURCE)
    batch_id = created[0][1].batch_id
    assert batch_id is not None
    return ids, batch_id


async def _behind_a_lock(stack: Any, lowest: UUID, *calls: Any) -> list[Any]:
    """Starts `calls` one after another while a third transaction holds the lowest payout
    row, so every call's locking statement takes its snapshot before any of them commits."""
    blocker = await stack.pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", lowest)
        tasks = []
        for call in calls:
            tasks.append(asyncio.create_task(call()))
            await asyncio.sleep(0.3)
        await tx.commit()
    finally:
        await stack.pool.release(blocker)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_two_workers_storing_the_same_signed_batch_one_gets_false(stack_factory):
    """Under READ COMMITTED a statement that waits for a lock re-reads only the rows it
    locks: batch steps decide on attempt statuses read after the locks (review finding)."""
    stack = await stack_factory(**LIVE)
    ids, batch_id = await _built_batch(stack, "two")
    store = BatchStore(stack.pool)
    results = await _behind_a_lock(
        stack, min(ids),
        lambda: store.store_signed(batch_id, "AAAA", actor="w1"),
        lambda: store.store_signed(batch_id, "AAAA", actor="w2"))
    assert sorted(map(repr, results)) == ["False", "True"], results


async def test_store_signed_behind_a_cancel_returns_false(stack_factory):
    stack = await stack_factory(**LIVE)
    ids, batch_id = await _built_batch(stack, "cxl")
    cancel, signed = await _behind_a_lock(
        stack, min(ids),
        lambda: AttemptStore(stack.pool).cancel(max(ids), actor="t", reason="t"),
        lambda: BatchStore(stack.pool).store_signed(batch_id, "AAAA", actor="w"))
    assert not isinstance(cancel, BaseException), cancel
    assert signed is False, signed

