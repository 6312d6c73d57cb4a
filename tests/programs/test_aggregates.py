"""Reads that stay flat: the aggregates (migration 030) equal a full recount after a random
workload, the group commit keeps idempotency under concurrent identical requests, and the hot
read queries use indexes on a table large enough for the planner to prefer a scan without
them."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import asyncpg
import grpc
from stellar_sdk import Keypair

from payout_service import metrics
from payout_service.adapters import alert_store
from payout_service.adapters.payout_store import (
    PayoutFilter,
    PayoutStore,
    get_payout_in,
    payouts_by_keys,
)
from payout_service.adapters.run_store import list_runs, run_payouts
from payout_service.adapters.stats import payout_stats
from payout_service.adapters.transitions import PayoutMove, move_payout, move_payouts
from payout_service.app.reconcile import confirmed_since
from payout_service.core.states import IllegalTransition, PayoutState, payout_sources
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from ..aggregate_recount import aggregate_differences
from .conftest import confirm, fail

LIVE = {"PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "external",
        "SOROBAN_RPC_URL": "http://127.0.0.1:9"}
DESTS = [Keypair.random().public_key for _ in range(5)]


def create_request(n: int | str, dest: str, amount: str = "10", *, key: str | None = None,
                   reference: str = "", payout_id: str | None = None,
                   asset: str = "XLM") -> pb.CreatePayoutRequest:
    return pb.CreatePayoutRequest(
        payout_id=payout_id or f"p-{n}", destination=dest, amount=amount, asset=asset,
        idempotency_key=key or f"k-{n}", reference=reference)


async def call(
    stack: Any, request: pb.CreatePayoutRequest
) -> pb.CreatePayoutResponse | grpc.StatusCode:
    try:
        return await stack.payouts.CreatePayout(request)
    except grpc.aio.AioRpcError as err:
        return err.code()


async def scan_stats(pool: asyncpg.Pool, destination: str = "") -> tuple[int, ...]:
    """The oracle: the full-table query GetPayoutStats ran before the aggregates."""
    row = await pool.fetchrow(
        """SELECT count(*), count(*) FILTER (WHERE state = 'CONFIRMED'),
                  count(*) FILTER (WHERE state = 'FAILED'),
                  count(*) FILTER (WHERE state IN ('ACCEPTED', 'AWAITING_APPROVAL',
                                                   'AWAITING_FUNDS', 'AWAITING_SIGNATURE',
                                                   'QUEUED', 'SUBMITTED')),
                  COALESCE(sum(gross_stroops) FILTER (
                      WHERE state NOT IN ('FAILED', 'CANCELLED')), 0),
                  COALESCE(sum(fee_stroops) FILTER (
                      WHERE state NOT IN ('FAILED', 'CANCELLED')), 0),
                  COALESCE(sum(net_stroops) FILTER (WHERE state = 'CONFIRMED'), 0)
           FROM payouts WHERE ($1 = '' OR destination = $1)""", destination)
    return tuple(int(v) for v in row)


async def random_moves(pool: asyncpg.Pool, rng: random.Random, rounds: int) -> int:
    """Random legal moves through the one transition point, from several connections at
    once (so several aggregate shards are written concurrently)."""
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM payouts")]
    moved = 0

    async def worker(seed: int) -> None:
        nonlocal moved
        local = random.Random(seed)
        for _ in range(rounds):
            chosen = local.sample(ids, k=min(3, len(ids)))
            if local.random() < 0.4:
                moved += await _set_move(pool, local, chosen)
                continue
            async with pool.acquire() as conn, conn.transaction():
                for ident in sorted(chosen):
                    state = PayoutState(await conn.fetchval(
                        "SELECT state FROM payouts WHERE id = $1 FOR UPDATE", ident))
                    targets = [t for t in PayoutState if state in payout_sources(t)]
                    if not targets:
                        continue
                    target = local.choice(targets)
                    sets: dict[str, Any] = {}
                    if target == PayoutState.FAILED:
                        sets["failure_code"] = local.choice(["tx_failed", "signer_refused"])
                    try:
                        await move_payout(conn, ident, target, reason="test", actor="test",
                                          sets=sets)
                        moved += 1
                    except IllegalTransition:
                        pass

    await asyncio.gather(*(worker(rng.randrange(1 << 30)) for _ in range(6)))
    return moved


async def _set_move(pool: asyncpg.Pool, rng: random.Random, chosen: list[Any]) -> int:
    """One multi-row statement (move_payouts) for every chosen payout that may reach a
    random target: the aggregate triggers see several rows change in one statement."""
    async with pool.acquire() as conn, conn.transaction():
        states = {r["id"]: PayoutState(r["state"]) for r in await conn.fetch(
            "SELECT id, state FROM payouts WHERE id = ANY($1) ORDER BY id FOR UPDATE", chosen)}
        target = rng.choice(list(PayoutState))
        able = [i for i in sorted(chosen) if states[i] in payout_sources(target)]
        values = {"failure_code": "tx_failed"} if target == PayoutState.FAILED else {}
        await move_payouts(conn, target, [PayoutMove(i, "set test", None, values)
                                          for i in able], actor="test")
        return len(able)


async def test_aggregates_equal_a_full_recount_after_a_random_workload(stack_factory):
    stack = await stack_factory(PAYOUTS_FEE_BPS=150, **LIVE)
    rng = random.Random(1409)
    requests = []
    for n in range(160):
        dest = rng.choice(DESTS)
        amount = str(rng.randrange(1, 10**6)) + "." + str(rng.randrange(10**7)).zfill(7)
        reference = f"ref-{rng.randrange(20)}" if rng.random() < 0.3 else ""
        asset = "XLM" if rng.random() < 0.8 else f"USDC:{DESTS[0]}"
        requests.append(create_request(n, dest, amount, reference=reference, asset=asset))
    # Replays (identical) and conflicts (same key, other amount) mixed in, all concurrent.
    requests += [requests[i] for i in rng.sample(range(160), 20)]
    requests += [create_request(i, DESTS[0], "3", key=f"k-{i}") for i in range(5)]
    rng.shuffle(requests)
    outcomes = await asyncio.gather(*(call(stack, r) for r in requests))
    assert any(isinstance(o, pb.CreatePayoutResponse) for o in outcomes)
    assert stack.desk.group.largest_group > 1, "concurrent calls were committed together"
    batch = pb.CreatePayoutBatchRequest(batch_id="b-1", items=[
        create_request(f"b{n}", rng.choice(DESTS), "2.5") for n in range(40)])
    await stack.payouts.CreatePayoutBatch(batch)

    assert await random_moves(stack.pool, rng, rounds=15) > 0
    # Writes as the pipeline and other tests make them, outside the transition point too.
    confirmed = await stack.pool.fetch(
        "SELECT payout_id FROM payouts WHERE state = 'ACCEPTED' ORDER BY payout_id LIMIT 4")
    await confirm(stack.pool, confirmed[0]["payout_id"])
    await fail(stack.pool, confirmed[1]["payout_id"], code="internal_error")
    await stack.pool.execute(
        "UPDATE payouts SET updated_at = now() - interval '2 hours' WHERE state = 'FAILED'")
    victim = confirmed[2]["payout_id"]
    async with stack.pool.acquire() as conn, conn.transaction():
        ident = await conn.fetchval("SELECT id FROM payouts WHERE payout_id = $1", victim)
        await conn.execute("DELETE FROM payout_attempts WHERE payout_id = $1", ident)
        await conn.execute("DELETE FROM outbox_events WHERE payout_id = $1", ident)
        await conn.execute("DELETE FROM payout_events WHERE payout_id = $1", ident)
        await conn.execute("DELETE FROM payouts WHERE id = $1", ident)

    assert await aggregate_differences(stack.pool) == {
        "totals_differ_from_recount": 0, "minutes_differ_from_recount": 0}
    for dest in ("", *DESTS):
        stats = await payout_stats(stack.pool, dest)
        assert (stats.count, stats.confirmed_count, stats.failed_count, stats.pending_count,
                stats.total_gross_stroops, stats.total_fees_stroops,
                stats.total_net_confirmed_stroops) == await scan_stats(stack.pool, dest)
    health = await alert_store.health_metrics(stack.pool)
    assert health.pending_count == (await scan_stats(stack.pool))[3]


async def test_concurrent_identical_requests_through_the_group_commit(stack_factory):
    stack = await stack_factory(**LIVE)
    dest = DESTS[1]

    same = await asyncio.gather(*(call(stack, create_request(1, dest)) for _ in range(32)))
    assert all(isinstance(o, pb.CreatePayoutResponse) for o in same), same
    assert sum(o.created for o in same) == 1, "one creation, every other call a replay"
    assert len({o.payout.id for o in same}) == 1

    other_amounts = await asyncio.gather(*(
        call(stack, create_request(2, dest, amount=str(10 + i))) for i in range(16)))
    won = [o for o in other_amounts if isinstance(o, pb.CreatePayoutResponse)]
    assert len(won) == 1 and won[0].created
    assert other_amounts.count(grpc.StatusCode.ALREADY_EXISTS) == 15

    one_reference = await asyncio.gather(*(
        call(stack, create_request(f"r{i}", dest, reference="round-7-winner-1"))
        for i in range(16)))
    assert sum(isinstance(o, pb.CreatePayoutResponse) for o in one_reference) == 1
    assert one_reference.count(grpc.StatusCode.INVALID_ARGUMENT) == 15

    one_payout_id = await asyncio.gather(*(
        call(stack, create_request(f"x{i}", dest, payout_id="shared-id")) for i in range(16)))
    assert sum(isinstance(o, pb.CreatePayoutResponse) for o in one_payout_id) == 1
    assert one_payout_id.count(grpc.StatusCode.ALREADY_EXISTS) == 15

    assert stack.desk.group.largest_group > 1
    rows = await stack.pool.fetch(
        """SELECT p.payout_id, count(e.id) AS events FROM payouts p
           JOIN payout_events e ON e.payout_id = p.id GROUP BY p.payout_id""")
    assert sorted(r["payout_id"] for r in rows) == sorted(
        ["p-1", "p-2", "shared-id", *[f"p-r{i}" for i in range(16)
                                     if isinstance(one_reference[i], pb.CreatePayoutResponse)]])
    assert all(r["events"] == 1 for r in rows), "one creation event per payout"
    assert await aggregate_differences(stack.pool) == {
        "totals_differ_from_recount": 0, "minutes_differ_from_recount": 0}


class Recording:
    """Stands in for the pool: runs each query and keeps it, to EXPLAIN it afterwards."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.queries.append((sql, args))
        return await self.pool.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.queries.append((sql, args))
        return await self.pool.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.queries.append((sql, args))
        return await self.pool.fetchval(sql, *args)


def scanned_tables(plan: dict[str, Any]) -> set[str]:
    found = {plan["Relation Name"]} if plan.get("Node Type") == "Seq Scan" else set()
    for child in plan.get("Plans", []):
        found |= scanned_tables(child)
    return found


async def test_hot_reads_use_indexes_on_a_large_table(stack_factory):
    stack = await stack_factory(**LIVE)
    pool = stack.pool
    # 60,000 payouts over 8 states, 2,000 destinations, 50 batches: without the indexes the
    # planner scans (checked by dropping them below).
    await pool.execute(
        """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
               destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode,
               batch_id, created_at, updated_at)
           SELECT gen_random_uuid(), 'load-' || i, 'load-' || i, 'f', '{}', 'G' || (i % 2000),
                  'XLM', 100, 1, 99,
                  (ARRAY['ACCEPTED', 'AWAITING_SIGNATURE', 'QUEUED', 'SUBMITTED', 'CONFIRMED',
                         'FAILED', 'CANCELLED', 'BUILT'])[1 + i % 8],
                  'EXTERNAL', 'batch-' || (i % 50),
                  now() - i * interval '1 second', now() - i * interval '1 second'
           FROM generate_series(1, 60000) AS i""")
    await pool.execute(
        """INSERT INTO payout_events (payout_id, to_state, reason)
           SELECT id, state, 'created' FROM payouts""")
    await pool.execute("ANALYZE")
    rec = Recording(pool)
    store = PayoutStore(rec)  # type: ignore[arg-type]
    page, token = await store.list_payouts(PayoutFilter(), page_size=50, page_token=None)
    await store.list_payouts(PayoutFilter(), page_size=50, page_token=token)
    await store.list_payouts(PayoutFilter(states=[PayoutState.QUEUED]), page_size=50,
                             page_token=token)
    await store.list_payouts(PayoutFilter(destination="G7"), page_size=50, page_token=None)
    await store.list_payouts(PayoutFilter(batch_id="batch-3"), page_size=50, page_token=token)
    await get_payout_in(rec, "load-77")  # type: ignore[arg-type]
    await get_payout_in(rec, str(page[0].id))  # type: ignore[arg-type]
    await store.events_after(page[0].id, 0)
    await payouts_by_keys(rec, ["load-5", "load-6"])  # type: ignore[arg-type]
    await payout_stats(rec)  # type: ignore[arg-type]
    await payout_stats(rec, "G7")  # type: ignore[arg-type]
    await alert_store.health_metrics(rec)  # type: ignore[arg-type]
    await metrics.refresh_gauges(rec)  # type: ignore[arg-type]
    await confirmed_since(rec, 1)  # type: ignore[arg-type]
    runs = await list_runs(rec, 10)  # type: ignore[arg-type]
    await run_payouts(rec, [r.run_id for r in runs] or ["batch-3"])  # type: ignore[arg-type]
    assert len(rec.queries) >= 16

    async def seq_scans() -> dict[str, set[str]]:
        found = {}
        for sql, args in rec.queries:
            plan = json.loads(await pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            tables = scanned_tables(plan[0]["Plan"]) & {"payouts", "payout_events"}
            if tables:
                found[" ".join(sql.split())[:120]] = tables
        return found

    assert await seq_scans() == {}
    # The check can fail: without the history indexes the same queries scan payouts.
    await pool.execute("""DROP INDEX payouts_created_idx, payouts_state_created_idx,
                              payouts_pending_created_idx, payouts_submitted_updated_idx""")
    await pool.execute("ANALYZE payouts")
    assert await seq_scans() != {}
