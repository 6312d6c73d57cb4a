"""Events retention (migration 060): the events of payouts settled long ago move to
payout_events_archive, whole payout by whole payout, with nothing lost, duplicated or
reordered in any payout's trail (PayoutStore.events_after reads both tables), each payout
visited once, and every statement on indexes. Real PostgreSQL, real gRPC."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg

from payout_service.adapters.payout_store import (
    _ARCHIVE_EVENTS,
    _EVENTS_AFTER,
    Archived,
    archive_settled_events,
)
from payout_service.adapters.transitions import move_payout
from payout_service.core.states import PayoutState
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from .conftest import confirm, fail
from .test_aggregates import DESTS, LIVE, create_request, scanned_tables

KEEP = timedelta(days=400)
NO_LOOP = {**LIVE, "PAYOUTS_EVENTS_RETENTION_DAYS": "0"}


async def trail(stack: Any, payout_id: str) -> list[tuple[Any, ...]]:
    ident = await stack.pool.fetchval("SELECT id FROM payouts WHERE payout_id = $1", payout_id)
    return [tuple(r.values()) for r in await stack.desk.store.events_after(ident, 0)]


async def age(pool: asyncpg.Pool, payout_id: str, days: float) -> None:
    """The payout settled (last changed) `days` ago, as if time had passed."""
    await pool.execute("UPDATE payouts SET updated_at = now() - $2::interval WHERE payout_id = $1",
                       payout_id, timedelta(days=days))


async def where_events_are(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    """payout_id -> (events in payout_events, events in the archive)."""
    rows = await pool.fetch(
        """SELECT p.payout_id,
                  (SELECT count(*) FROM payout_events e WHERE e.payout_id = p.id) AS live,
                  (SELECT count(*) FROM payout_events_archive a WHERE a.payout_id = p.id) AS old
           FROM payouts p""")
    return {r["payout_id"]: (r["live"], r["old"]) for r in rows}


async def test_settled_payouts_events_move_whole_and_every_trail_stays(stack_factory):
    stack = await stack_factory(**NO_LOOP)
    pool = stack.pool
    for n in range(6):
        await stack.payouts.CreatePayout(create_request(n, DESTS[n % 5]))
    await confirm(pool, "p-0")
    await fail(pool, "p-1")
    async with pool.acquire() as conn, conn.transaction():
        ident = await conn.fetchval("SELECT id FROM payouts WHERE payout_id = 'p-2'")
        await move_payout(conn, ident, PayoutState.CANCELLED, reason="test", actor="test")
    await confirm(pool, "p-3")
    for payout_id, days in (("p-0", 500), ("p-1", 401), ("p-2", 900), ("p-3", 399),
                            ("p-4", 800)):
        await age(pool, payout_id, days)  # p-3: settled recently; p-4: old but not settled
    trails = {f"p-{n}": await trail(stack, f"p-{n}") for n in range(6)}
    before = await where_events_are(pool)

    assert await archive_settled_events(pool, older_than=KEEP, max_payouts=2) == Archived(
        2, before["p-2"][0] + before["p-0"][0])  # oldest settlement first: p-2, then p-0
    assert await archive_settled_events(pool, older_than=KEEP, max_payouts=2) == Archived(
        1, before["p-1"][0])
    assert await archive_settled_events(pool, older_than=KEEP) == Archived(0, 0)

    after = await where_events_are(pool)
    assert after == {p: (0, live) if p in ("p-0", "p-1", "p-2") else (live, 0)
                     for p, (live, _) in before.items()}
    assert {p: await trail(stack, p) for p in trails} == trails, "no trail changed"
    cursor = await pool.fetchrow("SELECT payouts, events FROM payout_events_retention")
    assert (cursor["payouts"], cursor["events"]) == (3, sum(before[p][0] for p in
                                                            ("p-0", "p-1", "p-2")))

    # A payout settled long ago is still watched: its state and the event that led there.
    watched = [m async for m in stack.payouts.WatchPayout(pb.WatchPayoutRequest(
        payout_id="p-0"))]
    assert [m.payout.state for m in watched] == [pb.PAYOUT_STATE_CONFIRMED]
    assert watched[0].previous_state != pb.PAYOUT_STATE_UNSPECIFIED

    # A FAILED payout retried after its events were archived: new events in payout_events,
    # archived in turn once it settles again and that is old enough; one trail in id order.
    async with pool.acquire() as conn, conn.transaction():
        ident = await conn.fetchval("SELECT id FROM payouts WHERE payout_id = 'p-1'")
        await move_payout(conn, ident, PayoutState.QUEUED, reason="retry", actor="test")
        await move_payout(conn, ident, PayoutState.FAILED, reason="again", actor="test",
                          sets={"failure_code": "tx_failed"})
    retried = await trail(stack, "p-1")
    assert retried[:len(trails["p-1"])] == trails["p-1"] and len(retried) == \
        len(trails["p-1"]) + 2
    assert await archive_settled_events(pool, older_than=KEEP) == Archived(0, 0)
    # Time passes: its new settlement (later than the first, so past the cursor) gets old.
    await age(pool, "p-1", 400.5)
    assert await archive_settled_events(pool, older_than=KEEP) == Archived(1, 2)
    assert await trail(stack, "p-1") == retried
    assert (await where_events_are(pool))["p-1"] == (0, len(retried))


async def test_the_retention_loop_step_archives_until_caught_up(stack_factory):
    stack = await stack_factory(**NO_LOOP)
    await stack.payouts.CreatePayout(create_request(0, DESTS[0]))
    await confirm(stack.pool, "p-0")
    await age(stack.pool, "p-0", 31)
    programs = stack.programs
    programs.config = replace(programs.config, events_retention_days=30)
    assert await programs.archive_events() == 1, "busy: run again at once"
    assert await programs.archive_events() == 0, "caught up: wait the interval"
    assert (await where_events_are(stack.pool))["p-0"][0] == 0


async def test_retention_statements_use_indexes_on_a_large_table(stack_factory):
    stack = await stack_factory(**NO_LOOP)
    pool = stack.pool
    await pool.execute(
        """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
               destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode,
               created_at, updated_at)
           SELECT gen_random_uuid(), 'load-' || i, 'load-' || i, 'f', '{}', 'G' || (i % 2000),
                  'XLM', 100, 1, 99,
                  (ARRAY['ACCEPTED', 'QUEUED', 'CONFIRMED', 'FAILED', 'CANCELLED'])[1 + i % 5],
                  'EXTERNAL', now() - i * interval '10 minutes', now() - i * interval '10 minutes'
           FROM generate_series(1, 60000) AS i""")
    await pool.execute(
        """INSERT INTO payout_events (payout_id, to_state, reason)
           SELECT id, state, 'created' FROM payouts""")
    await pool.execute("ANALYZE")
    assert (await archive_settled_events(pool, older_than=KEEP, max_payouts=500)).payouts == 500
    await pool.execute("ANALYZE")
    cursor = await pool.fetchrow("SELECT after_updated, after_payout FROM payout_events_retention")
    some = await pool.fetchval("SELECT id FROM payouts WHERE payout_id = 'load-59000'")
    for sql, args in ((_ARCHIVE_EVENTS, (cursor["after_updated"], cursor["after_payout"],
                                         KEEP, 500)),
                      (_EVENTS_AFTER, (some, 0))):
        plan = json.loads(await pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
        assert scanned_tables(plan[0]["Plan"]) == set(), sql
    # The check can fail: without the settled-payouts index the batch scans payouts.
    await pool.execute("DROP INDEX payouts_settled_updated_idx")
    plan = json.loads(await pool.fetchval(
        f"EXPLAIN (FORMAT JSON) {_ARCHIVE_EVENTS}",
        cursor["after_updated"], cursor["after_payout"], KEEP, 500))
    assert "payouts" in scanned_tables(plan[0]["Plan"])
