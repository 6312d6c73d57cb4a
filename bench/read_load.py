"""Loads N synthetic payouts straight into a migrated payout-service database, fast enough for
N = 10^7 (used by bench_reads.py; tests/programs/test_read_load.py checks it).

What is loaded: payouts spread over 8 states, D destinations (valid G... accounts, given by the
caller), 3 assets, creation times over the 30 days before `at`, one creation event per payout
and one transition event for each payout past ACCEPTED.

How it stays realistic while fast:
- Same rows as the service would hold. The indexes and keys of `payouts` and `payout_events`
  (and the foreign keys that point at them) are dropped before the bulk insert and created
  again after it from their own definitions (pg_get_indexdef / pg_get_constraintdef), so the
  loaded database has exactly the schema the migrations made (checked: `schema_of` before and
  after must be equal, else the load fails). Building an index once over sorted input is what
  makes 10^7 rows take minutes, not hours (maintaining 14 b-trees row by row, random uuids
  among them, is what made the old loader slow past cache).
- The aggregates (migration 030) are written by the service's own triggers: they stay enabled
  and fire once per inserted chunk (statement-level, transition tables), exactly as for a
  CreatePayoutBatch, so `payout_totals` and `payout_minutes` are what the service would have.
- The per-minute buckets older than the health windows are dropped as the service's alert
  evaluation drops them every 30 s (alert_store.drop_old_minutes): a running service never
  holds 30 days of them. Left in place, the first evaluation deletes them all and, with no
  autovacuum, every later one scans the dead rows (6 ms at 10^7: an artefact of the load).
- The tables are logged as usual (no UNLOGGED) and VACUUM ANALYZE runs at the end (this server
  runs with autovacuum off): statistics and the visibility map as a settled database has them.

The old loader's time went mostly elsewhere: it picked each payout's destination by subscripting
a 100,000-element text[] parameter, which PostgreSQL walks element by element (variable-length
elements), ~0.1 ms per row. Destinations now come from a temporary table by a join.
"""

from __future__ import annotations

import time
from datetime import datetime

import asyncpg

from payout_service.adapters.alert_store import drop_old_minutes

CHUNK = 1_000_000  # payouts per INSERT: the aggregate trigger sees each chunk as one statement
TABLES = ("payouts", "payout_events")  # their indexes and keys are built after the insert
STATES = ("ACCEPTED", "AWAITING_SIGNATURE", "QUEUED", "SUBMITTED", "CONFIRMED", "FAILED",
          "CANCELLED", "CONFIRMED")  # confirmed twice: most history is paid

LOAD_PAYOUTS = """
    INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters, destination,
        asset, gross_stroops, fee_stroops, net_stroops, state, mode, batch_id, failure_code,
        created_at, updated_at, confirmed_at)
    SELECT gen_random_uuid(), 'bench-' || i, 'bench-' || i, 'bench', '{}'::jsonb,
           d.account, (ARRAY['XLM', 'USDC', 'EURC'])[1 + i % 3],
           1000 + i % 997 * 10, 10, 990 + i % 997 * 10, s.state, 'EXTERNAL',
           'run-' || (i / 1000), CASE WHEN s.state = 'FAILED' THEN 'tx_failed' END,
           t.at, t.at + interval '5 seconds',
           CASE WHEN s.state = 'CONFIRMED' THEN t.at + interval '5 seconds' END
    FROM generate_series($1::bigint, $2::bigint) AS i
    JOIN pg_temp.bench_destinations AS d ON d.n = i % $3
    CROSS JOIN LATERAL (SELECT ($4::text[])[1 + i % 8] AS state) AS s
    CROSS JOIN LATERAL (SELECT $5::timestamptz - (i % 2592000) * interval '1 second' AS at) AS t"""

LOAD_EVENTS = """
    INSERT INTO payout_events (payout_id, from_state, to_state, reason, actor, at)
    SELECT id, NULL, 'ACCEPTED', 'created', 'bench', created_at FROM payouts
    UNION ALL
    SELECT id, 'ACCEPTED', state, 'bench', 'bench', updated_at FROM payouts
    WHERE state <> 'ACCEPTED'"""

_INDEXES = """
    SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i
    WHERE i.indrelid = ANY($1::regclass[])
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                                                      AND c.contype IN ('p', 'u', 'x'))
    ORDER BY 1"""
# Keys of the loaded tables, and every foreign key on or into them (dropping a key needs its
# referencing foreign keys gone first).
_CONSTRAINTS = """
    SELECT c.conrelid::regclass::text AS table_name, c.conname AS name, c.contype::text AS kind,
           pg_get_constraintdef(c.oid) AS definition
    FROM pg_constraint c
    WHERE (c.contype IN ('p', 'u') AND c.conrelid = ANY($1::regclass[]))
       OR (c.contype = 'f' AND (c.conrelid = ANY($1::regclass[])
                                OR c.confrelid = ANY($1::regclass[])))
    ORDER BY 1, 2"""


async def schema_of(conn: asyncpg.Connection) -> list[str]:
    """Every index and constraint of the public schema, as SQL: equal lists, same schema."""
    rows = await conn.fetch(
        """SELECT pg_get_indexdef(i.indexrelid) AS d FROM pg_index i
           JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relnamespace = 'public'::regnamespace
           UNION ALL
           SELECT c.conrelid::regclass::text || ' ' || c.conname || ' '
                  || pg_get_constraintdef(c.oid)
           FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace
           UNION ALL
           SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger
           WHERE NOT tgisinternal""")
    return sorted(r["d"] for r in rows)


async def load_payouts(conn: asyncpg.Connection, n: int, destinations: list[str],
                       at: datetime, *, indexes_after: bool = True) -> dict[str, float]:
    """Inserts payouts 'bench-1' .. 'bench-N' and their events; returns seconds per phase.
    indexes_after=False keeps every index and key in place during the insert (the slow way,
    as the service itself writes: the reference the test compares the fast way with)."""
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal started
        phases[phase] = time.perf_counter() - started
        started = time.perf_counter()

    before = await schema_of(conn)
    indexes = await conn.fetch(_INDEXES, list(TABLES)) if indexes_after else []
    constraints = await conn.fetch(_CONSTRAINTS, list(TABLES)) if indexes_after else []
    foreign = [c for c in constraints if c["kind"] == "f"]
    keys = [c for c in constraints if c["kind"] != "f"]
    for c in (*foreign, *keys):
        await conn.execute(f'ALTER TABLE {c["table_name"]} DROP CONSTRAINT "{c["name"]}"')
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    await conn.execute(
        "CREATE TEMP TABLE bench_destinations (n bigint PRIMARY KEY, account text NOT NULL)")
    await conn.copy_records_to_table("bench_destinations", records=list(enumerate(destinations)))
    await conn.execute("ANALYZE pg_temp.bench_destinations")
    lap("drop")
    for first in range(1, n + 1, CHUNK):
        await conn.execute(LOAD_PAYOUTS, first, min(n, first + CHUNK - 1), len(destinations),
                           list(STATES), at)
    lap("payouts")
    await conn.execute(LOAD_EVENTS)
    await conn.execute("DROP TABLE pg_temp.bench_destinations")
    lap("events")
    await conn.execute("SET maintenance_work_mem = '1GB'")
    for c in keys:
        await conn.execute(
            f'ALTER TABLE {c["table_name"]} ADD CONSTRAINT "{c["name"]}" {c["definition"]}')
    for index in indexes:
        await conn.execute(index["definition"])
    for c in foreign:
        await conn.execute(
            f'ALTER TABLE {c["table_name"]} ADD CONSTRAINT "{c["name"]}" {c["definition"]}')
    await conn.execute("RESET maintenance_work_mem")
    lap("indexes")
    after = await schema_of(conn)
    if after != before:
        raise RuntimeError("the loaded schema differs from the migrated one: "
                           f"{sorted(set(before) ^ set(after))}")
    await drop_old_minutes(conn)
    for table in (*TABLES, "payout_minutes"):
        await conn.execute(f"VACUUM ANALYZE {table}")
    await conn.execute("ANALYZE")
    lap("vacuum analyze")
    return phases
