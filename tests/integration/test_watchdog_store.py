"""The watchdog's PostgreSQL guarantees (adapters/watchdog_store.py) on a real database: one
replica at a time moves the position, a page read twice is recorded once, a second paying
transaction is found by the one statement that records it, and the confirmation walk never
reads past a transaction still open."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from payout_service.adapters import watchdog_store as store
from payout_service.core.watchdog import ChainPayment, Position, toid
from tests.programs.helpers import confirmed_history
from tests.programs.test_aggregates import Recording, scanned_tables


async def test_one_replica_moves_the_position_and_a_stale_one_cannot(pool: asyncpg.Pool):
    await store.begin(pool, 100)
    await store.begin(pool, 999)  # a replica that lost the race keeps the winner's row
    a = await store.take_lease(pool, "replica-a", 30)
    assert a is not None and a.position == Position.starting_at(100)
    assert await store.take_lease(pool, "replica-b", 30) is None, "the lease is held"

    async with pool.acquire() as conn, conn.transaction():
        await store.advance(conn, "replica-a", a.position, Position(104, toid(105)),
                            latest_ledger=104, transactions=3, fees_stroops=300,
                            lease_seconds=30)
    # replica-a stalls past its lease; replica-b takes over and reads on.
    await pool.execute("UPDATE watchdog_state SET lease_until = now() - interval '1 second'")
    b = await store.take_lease(pool, "replica-b", 30)
    assert b is not None and b.position == Position(104, toid(105))
    with pytest.raises(store.LeaseLost):
        async with pool.acquire() as conn, conn.transaction():
            await store.advance(conn, "replica-a", b.position, Position(110, toid(111)),
                                latest_ledger=110, transactions=9, fees_stroops=900,
                                lease_seconds=30)
    # replica-b read the same page; a stale cursor is refused even with the lease.
    with pytest.raises(store.LeaseLost):
        async with pool.acquire() as conn, conn.transaction():
            await store.advance(conn, "replica-b", a.position, Position(110, toid(111)),
                                latest_ledger=110, transactions=9, fees_stroops=900,
                                lease_seconds=30)
    final = await store.state(pool)
    assert final is not None
    assert (final.position, final.transactions_read, final.fees_charged_stroops,
            final.lease_owner) == (Position(104, toid(105)), 3, 300, "replica-b")


async def test_the_database_refuses_a_cursor_outside_the_next_ledger(pool: asyncpg.Pool):
    await store.begin(pool, 100)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE watchdog_state SET verified_ledger = 150")


async def test_a_page_read_again_is_recorded_once_and_a_second_payer_is_found(
    pool: asyncpg.Pool,
):
    payout, h1, h2 = uuid4(), "1" * 64, "2" * 64
    first = [ChainPayment(payout, h1, 40, 1)]
    async with pool.acquire() as conn, conn.transaction():
        assert await store.record_payments(conn, first) == []
        assert await store.record_payments(conn, first) == [], "the same transaction again"
        [twice] = await store.record_payments(conn, [ChainPayment(payout, h2, 47, 2)])
        assert (twice.kind, twice.payout_id, twice.tx_hash) == ("paid_twice", payout, h2)
        assert h1 in twice.detail
        assert len(await store.add_findings(conn, [twice])) == 1
        assert await store.add_findings(conn, [twice]) == [], "one row per finding"
    assert await pool.fetchval("SELECT count(*) FROM chain_payments") == 2
    assert await store.open_findings(pool) == {"paid_twice": 1}


async def test_the_confirmation_walk_stops_at_the_oldest_open_transaction(
    pool: asyncpg.Pool,
):
    """confirmed_at is the confirming transaction's start: while one is open, nothing after
    its start is read (it may still commit a confirmation dated then)."""
    async with pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        started = await other.fetchval("SELECT now()")
        _, horizon = await store.confirmed_after(pool, datetime(2020, 1, 1, tzinfo=UTC), 10)
        assert horizon == started
        await tx.rollback()
    _, later = await store.confirmed_after(pool, datetime(2020, 1, 1, tzinfo=UTC), 10)
    assert later > started


async def test_the_watchdog_s_reads_use_indexes_on_a_large_history(pool: asyncpg.Pool):
    """What a step reads stays flat as history grows: the page's hashes through the hash
    index on payout_attempts (whatever the attempts' status), the confirmations since the
    last step through payouts_confirmed_at_idx, the chain payment by its key."""
    await confirmed_history(pool)  # 60,000 payouts; each gets one attempt below
    await pool.execute(
        """INSERT INTO payout_attempts (payout_id, number, source_account, sequence, min_time,
               max_time, envelope_xdr, tx_hash, fee_stroops, status, ledger, proof)
           SELECT id, 1, 'G', row_number() OVER (), now(), now(), 'AAAA',
                  md5(payout_id) || md5(payout_id || 'x'),  100,
                  CASE WHEN state = 'CONFIRMED' THEN 'included' ELSE 'dead' END, 5,
                  'a proof of death'
           FROM payouts""")
    await pool.execute("ANALYZE payouts; ANALYZE payout_attempts")
    hashes = [r["tx_hash"] for r in await pool.fetch(
        "SELECT tx_hash FROM payout_attempts ORDER BY random() LIMIT 200")]
    recorded = Recording(pool)
    assert len(await store.known(recorded, hashes)) == 200  # type: ignore[arg-type]
    await store.confirmed_after(  # type: ignore[arg-type]
        recorded, datetime.now(UTC) - timedelta(minutes=2), 5000)
    plans = [await plan(pool, sql, args) for sql, args in recorded.queries
             if "pg_stat_activity" not in sql]
    assert len(plans) == 2
    for scanned, text in plans:
        assert not scanned & {"payouts", "payout_attempts", "chain_payments"}, text
    assert "payout_attempts_tx_hash_idx" in plans[0][1]
    assert "payouts_confirmed_at_idx" in plans[1][1]
    # The check can fail: without the hash index the lookup reads every attempt.
    await pool.execute("DROP INDEX payout_attempts_tx_hash_idx")
    scanned, text = await plan(pool, *recorded.queries[0])
    assert "payout_attempts" in scanned, text


async def plan(pool: asyncpg.Pool, sql: str, args: tuple[Any, ...]) -> tuple[set[str], str]:
    """The tables the plan scans sequentially, and the whole plan as text."""
    found = json.loads(await pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    return scanned_tables(found[0]["Plan"]), json.dumps(found)
