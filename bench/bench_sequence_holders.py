"""What one definition of sequence holders costs (migration 130) with a history of attempts:
storing a batch of 100 attempts and a single attempt with the insert check on and off, a
re-sync's holder read, a release's "held?" probe, and the planner's "being created?" read
(migration 131). Prints the mean per operation, measured in the same run.

Not a test: nothing is asserted on timings.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_sequence_holders.py --history 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import asyncpg

from payout_service.adapters.migrations import apply_migrations

SOURCE = "G" + "A" * 55
CHECK = "payout_attempts_one_holder_per_number"
INSERT = """INSERT INTO payout_attempts (payout_id, number, source_account, sequence, min_time,
                max_time, envelope_xdr, tx_hash, fee_stroops, status, batch_id, op_index)
            SELECT u, $3::integer, $1, $2::bigint, now(), now(), 'x', 'h' || $2::bigint, 100,
                   'built', $4::uuid,
                   CASE WHEN $4::uuid IS NULL THEN NULL ELSE o - 1 END
            FROM unnest($5::uuid[]) WITH ORDINALITY AS t(u, o)"""


async def load(conn: asyncpg.Connection, history: int) -> None:
    """`history` included attempts of one source, 100 per batch, every 7th a CreateAccount."""
    await conn.execute("INSERT INTO source_accounts VALUES ($1, $2)", SOURCE, history + 10)
    await conn.execute(
        """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
               destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode)
           SELECT md5(i::text)::uuid, 'p' || i, 'k' || i, 'f', '{}', 'G', 'XLM', 10, 0, 10,
                  'CONFIRMED', 'SIGNER_SERVICE' FROM generate_series(1, $1) i""", history)
    await conn.execute(
        """INSERT INTO payout_attempts (payout_id, number, source_account, sequence, min_time,
               max_time, envelope_xdr, tx_hash, fee_stroops, status, batch_id, op_index,
               creates_account)
           SELECT md5(i::text)::uuid, 1, $1, i / 100, now(), now(), 'x', md5((i / 100)::text),
                  100, 'included', md5('b' || (i / 100)::text)::uuid, i % 100,
                  CASE WHEN i % 7 = 0 THEN 'G' || lpad(i::text, 55, 'A') END
           FROM generate_series(1, $2) i""", SOURCE, history)
    await conn.execute("VACUUM ANALYZE")  # no autovacuum of the load during the timings


async def store(conn: asyncpg.Connection, payouts: list[uuid.UUID], sequence: int,
                number: int, batch: bool) -> None:
    """One attempt per payout at one number (a batch, or a single attempt), then given up so
    the payouts can take the next one."""
    async with conn.transaction():
        await conn.execute(INSERT, SOURCE, sequence, number, uuid.uuid4() if batch else None,
                           payouts)
        await conn.execute("""UPDATE payout_attempts SET status = 'superseded'
                              WHERE payout_id = ANY($1::uuid[]) AND number = $2""",
                           payouts, number)


async def timed(label: str, runs: int, step: object) -> None:
    """`runs` steps after one untimed warm-up (plans of statements and of the check)."""
    await step(runs)  # type: ignore[operator]
    started = time.perf_counter()
    for n in range(runs):
        await step(n)  # type: ignore[operator]
    print(f"{label}: {(time.perf_counter() - started) * 1000 / runs:.2f} ms")


async def main(history: int, runs: int) -> None:
    url = os.environ["DATABASE_URL"]
    name = f"bench_holders_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/" + name)
    try:
        await apply_migrations(conn)
        started = time.perf_counter()
        await load(conn, history)
        print(f"loaded {history} attempts in {time.perf_counter() - started:.0f} s")
        batch = [uuid.UUID(int=i + 1) for i in range(100)]
        await conn.execute(
            """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
                   destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode)
               SELECT u, u::text, u::text, 'f', '{}', 'G', 'XLM', 10, 0, 10, 'QUEUED',
                      'SIGNER_SERVICE' FROM unnest($1::uuid[]) u""", batch)
        top = history + 100
        for label, switch in (("check on", "ENABLE"), ("check off", "DISABLE")) * 2:
            await conn.execute(f"ALTER TABLE payout_attempts {switch} TRIGGER {CHECK}")
            top += 2 * (runs + 1)
            await timed(f"store a batch of 100, {label}", runs,
                        lambda n, t=top: store(conn, batch, t + n, 10 + t + n, True))
            top += 2 * (runs + 1)
            await timed(f"store a single attempt, {label}", runs,
                        lambda n, t=top: store(conn, batch[:1], t + n, 10 + t + n, False))
        await conn.execute(f"ALTER TABLE payout_attempts ENABLE TRIGGER {CHECK}")
        await timed("re-sync: holders above the chain", runs, lambda n: conn.fetch(
            "SELECT sequence FROM sequence_holders WHERE account = $1 AND sequence > $2",
            SOURCE, history // 100 - 10))
        await timed("release: is the number held?", runs, lambda n: conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM sequence_holders
                              WHERE account = $1 AND sequence = $2)""", SOURCE, n))
        await timed("plan: accounts being created (100 asked)", runs, lambda n: conn.fetch(
            """SELECT creates_account FROM payout_attempts
               WHERE creates_account = ANY($1::text[])
                 AND status IN ('built', 'signed', 'sent', 'abandoned')""",
            ["G" + str(n * 100 + k).rjust(55, "A") for k in range(100)]))
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.history, args.runs))
