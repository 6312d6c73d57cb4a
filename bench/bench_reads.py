"""Read latencies as history grows: loads N payouts straight into PostgreSQL (generate_series,
with their audit events and the aggregates consistent), then times each read RPC and the
background queries, for each N.

payout-service runs in live mode (external signing, no reachable Stellar RPC: its loops back
off) on a fresh database per N; reads go over loopback gRPC, one at a time. Not a test:
nothing is asserted on timings. Needs DATABASE_URL (or the machine's PostgreSQL binaries).

    python bench/bench_reads.py --sizes 10000,1000000
    python bench/bench_reads.py --sizes 10000,1000000,10000000
    python bench/bench_reads.py --sizes 10000000 --keep   # keep the database, for EXPLAIN
    python bench/bench_reads.py --sizes 10000000 --reuse postgresql://.../bench_...  # read it again

The load (read_load.py, which says how it stays realistic): payouts spread over 8 states,
100,000 destinations (or N/10 if fewer), 3 assets, creation times over the last 30 days, one
creation event per payout and one transition event for each payout past ACCEPTED; the
aggregates written by the triggers of migration 030, the indexes and keys built after the
bulk insert, VACUUM ANALYZE at the end. Each database is dropped after its reads unless --keep.
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
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from stellar_sdk import Keypair, StrKey

from payout_service.adapters import alert_store
from payout_service.adapters.embedded_postgres import EmbeddedPostgres, free_port
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore, archive_settled_events
from payout_service.adapters.work_queues import WorkQueues
from payout_service.app.reconcile import confirmed_since
from payout_service.config import load_config
from payout_service.main import start_service
from payout_service.metrics import refresh_gauges
from stellar_payouts_pb.payout.v1 import admin_pb2 as admin
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

sys.path.insert(0, os.path.dirname(__file__))
from bench_payouts import fresh_database  # noqa: E402 - a sibling script, not a package
from read_load import load_payouts  # noqa: E402

Timing = tuple[str, float, float]  # label, median ms, p99 ms


def destinations_for(n: int) -> list[str]:
    """Valid G... account ids (the API checks them), made from random bytes: fast."""
    return [StrKey.encode_ed25519_public_key(secrets.token_bytes(32))
            for _ in range(max(1, min(100_000, n // 10)))]


async def load(database_url: str, n: int, destinations: list[str]) -> dict[str, float]:
    """Migrates the empty database and loads it (read_load.py), before the service starts:
    the service then opens a database with history, as after a restart."""
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        return await load_payouts(conn, n, destinations, datetime.now(UTC))
    finally:
        await conn.close()


async def timed(label: str, samples: int, call: Callable[[int], Awaitable[Any]]) -> Timing:
    await call(0)  # warm
    took = []
    for i in range(samples):
        started = time.perf_counter()
        await call(i + 1)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return label, statistics.median(took), took[min(len(took) - 1, int(0.99 * len(took)))]


async def loaded_destinations(database_url: str, n: int) -> list[str]:
    """The destinations of a database loaded earlier (--reuse): payout bench-i went to
    destination i % D."""
    count = max(1, min(100_000, n // 10))
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT payout_id, destination FROM payouts WHERE payout_id = ANY($1::text[])",
            [f"bench-{i}" for i in range(count, 2 * count)])
    finally:
        await conn.close()
    by_index = {int(r["payout_id"].split("-")[1]) % count: r["destination"] for r in rows}
    return [by_index[i] for i in range(count)]


async def measure(admin_url: str, n: int, samples: int, keep: bool,
                  reuse: str | None = None) -> tuple[dict[str, float], list[Timing]]:
    if reuse:
        database_url, phases = reuse, {}
        destinations = await loaded_destinations(database_url, n)
    else:
        database_url = await fresh_database(admin_url)
        destinations = destinations_for(n)
        phases = await load(database_url, n, destinations)
    service = await start_service(load_config({
        "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
        "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "external",
        "SOROBAN_RPC_URL": f"http://127.0.0.1:{free_port()}",
    }))
    try:
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
                # O(window), not O(history): the rows confirmed in the periodic run's window
                # (two hours at the default hourly interval), on a partial index.
                ("reconciliation: confirmed in 2 h window", lambda i: confirmed_since(
                    service.pool, 2)),
                ("retention: archive step (50 payouts)", lambda i: archive_settled_events(
                    service.pool, older_than=timedelta(days=1), max_payouts=50)),
            ]
            for label, check in checks:
                results.append(await timed(label, samples, check))
    finally:
        await service.stop(grace=0)
        if keep or reuse:
            print(f"N = {n:,}: kept {database_url}", flush=True)
        else:
            await drop_database(admin_url, database_url)
    return phases, results


async def drop_database(admin_url: str, database_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database_url.rsplit("/", 1)[1]}" '
                           "WITH (FORCE)")
    finally:
        await conn.close()


async def main() -> None:
    logging.getLogger("payout_service").setLevel(logging.ERROR)  # loops find no RPC: expected
    # The loaded CONFIRMED payouts have no transaction: reconciliation logs each as a mismatch.
    logging.getLogger("payout_service.app.reconcile").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000",
                        help="comma-separated payout counts (e.g. 10000,1000000,10000000)")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--keep", action="store_true",
                        help="keep each loaded database (default: dropped after its reads)")
    parser.add_argument("--reuse", metavar="DATABASE_URL",
                        help="read a database kept earlier (one size: the N it was loaded with)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.reuse and len(sizes) != 1:
        parser.error("--reuse reads one database: give the one size it was loaded with")
    given_url = os.environ.get("DATABASE_URL")
    embedded = None if given_url else EmbeddedPostgres().start()
    admin_url = given_url or embedded.dsn  # type: ignore[union-attr]
    try:
        table: dict[int, tuple[dict[str, float], list[Timing]]] = {}
        for n in sizes:
            table[n] = await measure(admin_url, n, args.samples, args.keep, args.reuse)
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in table[n][0].items())
            print(f"N = {n:,}: loaded in {sum(table[n][0].values()):.1f} s ({phases})",
                  flush=True)
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
