"""Read latencies as history grows: loads N payouts straight into PostgreSQL (generate_series,
with their audit events and the aggregates consistent), then times each read RPC and the
background queries, for each N.

payout-service runs in live mode (external signing, no reachable Stellar RPC: its loops back
off) on a fresh database per N; reads go over loopback gRPC, one at a time. Not a test:
nothing is asserted on timings. Needs DATABASE_URL (or the machine's PostgreSQL binaries).

    python bench/bench_reads.py --sizes 10000,1000000
    python bench/bench_reads.py --sizes 10000,1000000,10000000   # 10^7 loads for a while

The load: payouts spread over 8 states, 100,000 destinations (or N/10 if fewer), 3 assets,
creation times over the last 30 days, one creation event per payout and one transition event
for each payout past ACCEPTED. Aggregates are maintained by the triggers of migration 030 as
the payouts are inserted (in chunks); the audit events are written with foreign-key checks
off for the load only (they reference the rows just inserted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
from stellar_sdk import Keypair, StrKey

from payout_service.adapters.payout_store import PayoutStore, archive_settled_events
from payout_service.adapters.work_queues import WorkQueues
from payout_service.config import load_config
from payout_service.embedded_postgres import EmbeddedPostgres, free_port
from payout_service.main import start_service
from payout_service.metrics import refresh_gauges
from payout_service.programs import alert_store
from stellar_payouts_pb.payout.v1 import admin_pb2 as admin
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

sys.path.insert(0, os.path.dirname(__file__))
from bench_payouts import fresh_database  # noqa: E402 - a sibling script, not a package

CHUNK = 250_000
Timing = tuple[str, float, float]  # label, median ms, p99 ms
STATES = ("ACCEPTED", "AWAITING_SIGNATURE", "QUEUED", "SUBMITTED", "CONFIRMED", "FAILED",
          "CANCELLED", "CONFIRMED")  # confirmed twice: most history is paid

LOAD_PAYOUTS = """
    INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters, destination,
        asset, gross_stroops, fee_stroops, net_stroops, state, mode, batch_id, failure_code,
        created_at, updated_at, confirmed_at)
    SELECT gen_random_uuid(), 'bench-' || i, 'bench-' || i, 'bench', '{}'::jsonb,
           ($3::text[])[1 + i % cardinality($3::text[])], (ARRAY['XLM', 'USDC', 'EURC'])[1 + i % 3],
           1000 + i % 997 * 10, 10, 990 + i % 997 * 10, s.state, 'EXTERNAL',
           'run-' || (i / 1000), CASE WHEN s.state = 'FAILED' THEN 'tx_failed' END,
           t.at, t.at + interval '5 seconds',
           CASE WHEN s.state = 'CONFIRMED' THEN t.at + interval '5 seconds' END
    FROM generate_series($1::bigint, $2::bigint) AS i
    CROSS JOIN LATERAL (SELECT ($4::text[])[1 + i % 8] AS state) AS s
    CROSS JOIN LATERAL (SELECT now() - (i % 2592000) * interval '1 second' AS at) AS t"""

LOAD_EVENTS = """
    INSERT INTO payout_events (payout_id, from_state, to_state, reason, actor, at)
    SELECT id, NULL, 'ACCEPTED', 'created', 'bench', created_at FROM payouts
    UNION ALL
    SELECT id, 'ACCEPTED', state, 'bench', 'bench', updated_at FROM payouts
    WHERE state <> 'ACCEPTED'"""


def destinations_for(n: int) -> list[str]:
    """Valid G... account ids (the API checks them), made from random bytes: fast."""
    return [StrKey.encode_ed25519_public_key(secrets.token_bytes(32))
            for _ in range(max(1, min(100_000, n // 10)))]


async def load(database_url: str, n: int, destinations: list[str]) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        for first in range(1, n + 1, CHUNK):
            last = min(n, first + CHUNK - 1)
            await conn.execute(LOAD_PAYOUTS, first, last, destinations, list(STATES))
        await conn.execute("SET session_replication_role = replica")  # FK checks off: load only
        await conn.execute(LOAD_EVENTS)
        await conn.execute("RESET session_replication_role")
        await conn.execute("VACUUM ANALYZE payouts")
        await conn.execute("VACUUM ANALYZE payout_events")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def timed(label: str, samples: int, call: Callable[[int], Awaitable[Any]]) -> Timing:
    await call(0)  # warm
    took = []
    for i in range(samples):
        started = time.perf_counter()
        await call(i + 1)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return label, statistics.median(took), took[min(len(took) - 1, int(0.99 * len(took)))]


async def measure(admin_url: str, n: int, samples: int) -> tuple[float, list[Timing]]:
    database_url = await fresh_database(admin_url)
    service = await start_service(load_config({
        "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
        "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "external",
        "SOROBAN_RPC_URL": f"http://127.0.0.1:{free_port()}",
    }))
    try:
        destinations = destinations_for(n)
        load_seconds = await load(database_url, n, destinations)
        queues = WorkQueues(service.pool)
        results = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            payouts = payout_pb2_grpc.PayoutServiceStub(channel)
            admin_stub = admin_pb2_grpc.PayoutAdminServiceStub(channel)
            page = await payouts.ListPayouts(pb.ListPayoutsRequest(page_size=50))
            token = page.next_page_token

            def some(i: int) -> int:
                return 1 + (i * 7919) % n

            def dest(i: int) -> str:
                return destinations[some(i) % len(destinations)]

            store = PayoutStore(service.pool)
            uuids = [r["id"] for r in await service.pool.fetch(
                "SELECT id FROM payouts WHERE payout_id = ANY($1::text[])",
                [f"bench-{some(i)}" for i in range(samples + 1)])]

            checks: list[tuple[str, Callable[[int], Awaitable[Any]]]] = [
                ("GetPayout", lambda i: payouts.GetPayout(
                    pb.GetPayoutRequest(payout_id=f"bench-{some(i)}"))),
                ("ListPayouts first page (50)", lambda i: payouts.ListPayouts(
                    pb.ListPayoutsRequest(page_size=50))),
                ("ListPayouts next page (50)", lambda i: payouts.ListPayouts(
                    pb.ListPayoutsRequest(page_size=50, page_token=token))),
                ("ListPayouts state=QUEUED (50)", lambda i: payouts.ListPayouts(
                    pb.ListPayoutsRequest(page_size=50, states=[pb.PAYOUT_STATE_QUEUED]))),
                ("ListPayouts by destination", lambda i: payouts.ListPayouts(
                    pb.ListPayoutsRequest(page_size=50, destination=dest(i)))),
                ("GetPayoutStats overall", lambda i: payouts.GetPayoutStats(
                    pb.GetPayoutStatsRequest())),
                ("GetPayoutStats per destination", lambda i: payouts.GetPayoutStats(
                    pb.GetPayoutStatsRequest(destination=dest(i)))),
                ("GetSystemHealth", lambda i: admin_stub.GetSystemHealth(
                    admin.GetSystemHealthRequest())),
                ("ListRuns", lambda i: admin_stub.ListRuns(admin.ListRunsRequest())),
                ("monitoring: alert evaluation", lambda i: service.programs.monitor.evaluate()
                 if service.programs else asyncio.sleep(0)),
                ("monitoring: health metrics", lambda i: alert_store.health_metrics(
                    service.pool)),
                ("monitoring: /metrics gauges", lambda i: refresh_gauges(service.pool)),
                ("pipeline: payouts needing an attempt", lambda i: queues.payouts_needing_attempt(
                    50)),
                ("WatchPayout's trail read (events_after)", lambda i: store.events_after(
                    uuids[i % len(uuids)], 0)),
                # Payouts settled more than a day ago (most of the load): each step moves the
                # events of the next 50 to the archive, as the retention loop does.
                ("retention: archive step (50 payouts)", lambda i: archive_settled_events(
                    service.pool, older_than=timedelta(days=1), max_payouts=50)),
            ]
            for label, check in checks:
                results.append(await timed(label, samples, check))
    finally:
        await service.stop(grace=0)
    return load_seconds, results


async def main() -> None:
    logging.getLogger("payout_service").setLevel(logging.ERROR)  # loops find no RPC: expected
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000",
                        help="comma-separated payout counts (e.g. 10000,1000000,10000000)")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    given_url = os.environ.get("DATABASE_URL")
    embedded = None if given_url else EmbeddedPostgres().start()
    admin_url = given_url or embedded.dsn  # type: ignore[union-attr]
    try:
        table: dict[int, tuple[float, list[Timing]]] = {}
        for n in sizes:
            table[n] = await measure(admin_url, n, args.samples)
            print(f"N = {n:,}: loaded in {table[n][0]:.1f} s", flush=True)
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"{'read (median / p99 ms over ' + str(args.samples) + ' calls)':44s}"
          + "".join(f"{'N=' + format(n, ','):>22s}" for n in sizes))
    for row, (label, _, _) in enumerate(table[sizes[0]][1]):
        cells = "".join(
            f"{table[n][1][row][1]:>12.2f} / {table[n][1][row][2]:>7.2f}" for n in sizes)
        print(f"{label:44s}{cells}")


if __name__ == "__main__":
    asyncio.run(main())
