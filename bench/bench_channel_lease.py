"""How the channel lease scales with the pool: one lease (the reserving SQL transaction's
`lease_channel` + `reserve_sequence`) against pools of N channels, some busy with an
attempt in flight (half, or all but --free), and a history of included attempts. Prints the
mean and p99 per lease for each N and the ratio to the smallest pool, measured in the same run.

Not a test: nothing is asserted on timings.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_channel_lease.py --pools 8,64,512 --history 20000 --free 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import asyncpg
from stellar_sdk import Keypair

from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.sequences import lease_channel, reserve_sequence


async def fresh_database(url: str) -> str:
    name = f"bench_lease_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str, dsn: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


async def attempts(
    pool: asyncpg.Pool, sources: list[str], status: str, per_source: int, first: int
) -> None:
    rows = []
    for source in sources:
        for n in range(per_source):
            ref = uuid.uuid4()
            rows.append((ref, source, first + n, status, ref.hex))
    await pool.executemany(
        """WITH p AS (
               INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
                   destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode)
               VALUES ($1::uuid, $5, $5, 'f', '{}', $2, 'XLM', 1, 0, 1, 'SUBMITTED',
                       'SIGNER_SERVICE') RETURNING id)
           INSERT INTO payout_attempts (payout_id, number, source_account, sequence, min_time,
               max_time, envelope_xdr, tx_hash, fee_stroops, status)
           SELECT id, 1, $2, $3, now(), now(), 'x', $5, 100, $4 FROM p""",
        rows,
    )


async def measure(pool: asyncpg.Pool, leases: int) -> list[float]:
    took = []
    for _ in range(leases):
        start = time.perf_counter()
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            leased = await lease_channel(conn, ("seed",))
            assert leased is not None  # noqa: S101 - half the pool is free
            await reserve_sequence(conn, leased)
            await tx.rollback()  # leave the pool as it was: every lease sees the same state
        took.append(time.perf_counter() - start)
    return took


async def one_pool(
    url: str, channels: int, history: int, leases: int, free: int | None
) -> tuple[float, float]:
    dsn = await fresh_database(url)
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        accounts = [Keypair.random().public_key for _ in range(channels)]
        await ChannelRegistry(pool).seed({a: f"ch-{n}" for n, a in enumerate(accounts)})
        await pool.executemany(
            "INSERT INTO source_accounts (account, next_sequence) VALUES ($1, 1000)",
            [(a,) for a in accounts])
        # The lease scans in account order: the free ones last is the worst case.
        accounts.sort()
        busy = accounts[: channels - (free if free is not None else channels // 2)]
        await attempts(pool, busy, "sent", 1, first=10**9)
        await attempts(pool, accounts, "included", max(1, history // channels), first=0)
        await pool.execute("ANALYZE")
        await measure(pool, 20)  # warm-up
        took = sorted(await measure(pool, leases))
        await pool.close()
        return statistics.fmean(took), took[int(len(took) * 0.99) - 1]
    finally:
        await drop_database(url, dsn)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pools", default="8,64,512", help="channel counts, comma-separated")
    p.add_argument("--history", type=int, default=20_000, help="included attempts in total")
    p.add_argument("--leases", type=int, default=500, help="leases measured per pool")
    p.add_argument("--free", type=int, default=None,
                   help="channels with nothing in flight (default: half the pool); the busy "
                        "ones come first in the lease's scan order")
    args = p.parse_args()
    url = os.environ["DATABASE_URL"]
    sizes = [int(n) for n in args.pools.split(",")]
    results = {n: await one_pool(url, n, args.history, args.leases, args.free) for n in sizes}
    base = results[sizes[0]][0]
    print(f"{'channels':>9} {'mean ms':>9} {'p99 ms':>8} {'ratio':>6}")
    for n, (mean, p99) in results.items():
        print(f"{n:>9} {mean * 1000:>9.3f} {p99 * 1000:>8.3f} {mean / base:>6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
