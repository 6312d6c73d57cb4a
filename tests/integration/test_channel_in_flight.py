"""The channel's in-flight count (migration 050) against real PostgreSQL: triggers on
payout_attempts keep `channel_accounts.in_flight_attempts` equal to a recount, whatever
statement changes an attempt (one row, many rows, insert, update, delete), and the lease
reads it: a channel with an attempt in flight is never leased, a free one is.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.sequences import Sequences, lease_channel
from payout_service.core.states import IN_FLIGHT, AttemptStatus


async def channels(db: asyncpg.Pool, count: int) -> list[str]:
    accounts = sorted(Keypair.random().public_key for _ in range(count))
    await ChannelRegistry(db).seed({a: f"ch-{n}" for n, a in enumerate(accounts)})
    await db.executemany(
        "INSERT INTO source_accounts (account, next_sequence) VALUES ($1, 1000)",
        [(a,) for a in accounts])
    return accounts


async def attempts(db: asyncpg.Pool, rows: list[tuple[str, int, str]]) -> None:
    """One INSERT statement per call: (source, sequence, status) each with its own payout."""
    refs = [uuid.uuid4() for _ in rows]
    await db.execute(
        """WITH p AS (
               INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
                   destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode)
               SELECT r, r::text, r::text, 'f', '{}', s, 'XLM', 1, 0, 1, 'SUBMITTED',
                      'SIGNER_SERVICE'
               FROM unnest($1::uuid[], $2::text[]) AS t (r, s) RETURNING id, destination)
           INSERT INTO payout_attempts (payout_id, number, source_account, sequence, min_time,
               max_time, envelope_xdr, tx_hash, fee_stroops, status)
           SELECT p.id, 1, t.s, t.q, now(), now(), 'x', p.id::text, 100, t.st
           FROM p JOIN unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[])
                AS t (r, s, q, st) ON t.r = p.id""",
        refs, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
    )


async def counts_match_a_recount(db: asyncpg.Pool) -> dict[str, int]:
    rows = await db.fetch(
        """SELECT c.account, c.in_flight_attempts,
                  (SELECT count(*) FROM payout_attempts a
                   WHERE a.source_account = c.account
                     AND a.status = ANY($1::text[])) AS recount
           FROM channel_accounts c""",
        [s.value for s in IN_FLIGHT],
    )
    assert [(r["account"], r["in_flight_attempts"]) for r in rows] == \
        [(r["account"], r["recount"]) for r in rows]
    return {r["account"]: r["in_flight_attempts"] for r in rows}


async def test_the_sql_in_flight_statuses_are_core_states_in_flight(pool):
    for status in AttemptStatus:
        in_flight = await pool.fetchval("SELECT attempt_in_flight($1)", status.value)
        assert in_flight == (status in IN_FLIGHT), status


async def test_the_count_follows_every_statement_and_the_lease_skips_busy_channels(pool):
    a, b, c = await channels(pool, 3)
    await attempts(pool, [(a, 1, "built"), (a, 2, "included"), (b, 1, "sent")])
    assert await counts_match_a_recount(pool) == {a: 1, b: 1, c: 0}
    async with pool.acquire() as conn, conn.transaction():
        assert await lease_channel(conn) == c, "the only channel with nothing in flight"
    # Many rows in one statement (a batch of attempts on one channel).
    await attempts(pool, [(c, n, "built") for n in range(1, 4)])
    assert await counts_match_a_recount(pool) == {a: 1, b: 1, c: 3}
    async with pool.acquire() as conn, conn.transaction():
        assert await lease_channel(conn) is None
    census = await Sequences(pool).census(Keypair.random().public_key)
    assert (census.leasable, census.free) == (3, 0)
    # In flight to in flight changes nothing; out of flight frees the channel.
    await pool.execute(
        "UPDATE payout_attempts SET status = 'signed' WHERE source_account = $1", c)
    await pool.execute(
        "UPDATE payout_attempts SET status = 'included' WHERE source_account = $1", a)
    assert await counts_match_a_recount(pool) == {a: 0, b: 1, c: 3}
    async with pool.acquire() as conn, conn.transaction():
        assert await lease_channel(conn) == a
    # Two sources in one statement, in and out of flight at once.
    await pool.execute(
        """UPDATE payout_attempts SET status = CASE status WHEN 'sent' THEN 'dead'
                                                          ELSE 'sent' END,
                                      proof = 'a proof of death'
           WHERE source_account = ANY($1::text[])""",
        [b, c],
    )
    assert await counts_match_a_recount(pool) == {a: 0, b: 0, c: 3}
    await pool.execute("DELETE FROM payout_attempts WHERE source_account = $1", c)
    assert await counts_match_a_recount(pool) == {a: 0, b: 0, c: 0}
    census = await Sequences(pool).census(Keypair.random().public_key)
    assert (census.leasable, census.free) == (3, 3)


async def test_a_channel_registered_after_its_account_has_attempts_in_flight_starts_busy(pool):
    (a,) = await channels(pool, 1)
    late = Keypair.random().public_key
    await pool.execute(
        "INSERT INTO source_accounts (account, next_sequence) VALUES ($1, 1000)", late)
    await attempts(pool, [(late, 1, "sent")])
    assert await ChannelRegistry(pool).add_active([(late, "late")], actor="test") == 1
    assert await counts_match_a_recount(pool) == {a: 0, late: 1}
    async with pool.acquire() as conn, conn.transaction():
        assert await lease_channel(conn) == a


async def test_the_database_refuses_a_negative_count(pool):
    (a,) = await channels(pool, 1)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE channel_accounts SET in_flight_attempts = -1 WHERE account = $1", a)
