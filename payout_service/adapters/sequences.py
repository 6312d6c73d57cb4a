"""Sequence numbers and channel accounts in PostgreSQL (docs/design.md, "Sequence numbers
never block the account").

`source_accounts.next_sequence` is the next fresh number of a source; `released_sequences`
holds the free numbers below it (given back by attempts we gave up on, or holes found on
re-sync). A reservation takes the lowest free number first, so the invariant of
core/sequences.py holds: no abandoned number stops the account. Callers hold the payout row
lock already (lock order: payout, attempt, then these rows).

Who holds a number has one definition, the `sequence_holders` view (migration 130): payout
attempts and channel lifecycle transactions alike, since both reserve here, often on the same
account (the payer funds channels by default). Re-syncs and releases read it, and the
database refuses a second holder of one number.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from payout_service.core.sequences import resync


@dataclass(frozen=True)
class SourceCensus:
    leasable: int  # active channels with a sequence row
    free: int  # of those, with nothing in flight
    unsynced: tuple[str, ...]  # the payer or active channels with no sequence row yet


class Sequences:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_source(self, account: str, chain_sequence: int) -> None:
        await self.pool.execute(
            """INSERT INTO source_accounts (account, next_sequence) VALUES ($1, $2)
               ON CONFLICT (account) DO NOTHING""",
            account, chain_sequence + 1,
        )

    async def has_source(self, account: str) -> bool:
        return bool(
            await self.pool.fetchval("SELECT 1 FROM source_accounts WHERE account = $1", account)
        )

    async def census(self, payer: str) -> SourceCensus:
        """What a build pass needs to know about its sources, in one round trip: the active
        channels that can be leased (with a sequence row) and how many of them have nothing
        in flight (an estimate: no locks; the lease decides), and the sources still without a
        sequence row (the payer on a new database, channels seeded at start-up)."""
        row = await self.pool.fetchrow(
            """SELECT count(s.account) AS leasable,
                      count(s.account) FILTER (WHERE c.in_flight_attempts = 0) AS free,
                      coalesce(array_agg(c.account ORDER BY c.account)
                               FILTER (WHERE s.account IS NULL), '{}') AS unsynced,
                      NOT EXISTS (SELECT 1 FROM source_accounts WHERE account = $1)
                          AS payer_unsynced
               FROM channel_accounts c LEFT JOIN source_accounts s ON s.account = c.account
               WHERE c.state = 'active'""",
            payer,
        )
        unsynced = ((payer,) if row["payer_unsynced"] else ()) + tuple(row["unsynced"])
        return SourceCensus(row["leasable"], row["free"], unsynced)


async def lease_channel(conn: asyncpg.Connection, _unused: tuple[str, ...] = ()) -> str | None:
    """An active channel account with no attempt in flight, locked until the caller's
    transaction ends (SKIP LOCKED: concurrent preparers and replicas take different channels).

    Reads the registry, so a channel added or retired while the service runs is used or left
    at the next lease, no restart. The channel row stays locked until the attempt is
    committed, so the registry's drain check (which locks it first) sees that attempt.
    (The second argument is ignored: the registry alone decides, core/sources.py; it is kept
    for bench/bench_channel_lease.py.)

    "Nothing in flight" is the row's own count (migration 050: triggers on payout_attempts keep
    it in the statement that changes an attempt's status), read from a partial index of the
    free channels: a lease costs the same with 8 channels or 512, however many are busy. A
    concurrent leaser that just took a channel holds its row lock until its attempt (and the
    count) commits, so SKIP LOCKED never hands the same channel out twice."""
    leased: str | None = await conn.fetchval(
        """SELECT c.account FROM channel_accounts c
           JOIN source_accounts s ON s.account = c.account
           WHERE c.state = 'active' AND c.in_flight_attempts = 0
           ORDER BY c.account LIMIT 1
           FOR UPDATE OF c, s SKIP LOCKED"""
    )
    return leased


async def lock_source(conn: asyncpg.Connection, account: str) -> None:
    """Serialises reservations, releases and re-syncs of one source across replicas."""
    await conn.execute("SELECT 1 FROM source_accounts WHERE account = $1 FOR UPDATE", account)


async def reserve_sequence(conn: asyncpg.Connection, account: str) -> int:
    """The lowest free number, else the next fresh one."""
    await lock_source(conn, account)
    released: int | None = await conn.fetchval(
        """DELETE FROM released_sequences WHERE account = $1 AND sequence =
               (SELECT min(sequence) FROM released_sequences WHERE account = $1)
           RETURNING sequence""",
        account,
    )
    if released is not None:
        return released
    sequence: int = await conn.fetchval(
        """UPDATE source_accounts SET next_sequence = next_sequence + 1
           WHERE account = $1 RETURNING next_sequence - 1""",
        account,
    )
    return sequence


async def release_sequence(conn: asyncpg.Connection, account: str, sequence: int) -> None:
    """An attempt we gave up on frees its number: the top one lowers next_sequence, one below
    is kept for the next reservation (else that hole would hold every later transaction of
    the account at txBAD_SEQ). For an ABANDONED attempt the next reservation is its
    replacement: whichever of the two lands first consumes the number, the other never can.

    Called once the caller's own rows no longer hold the number: if anything else still holds
    it (a re-sync found it free and it was reserved again), it is not free, and stays so."""
    await lock_source(conn, account)
    if await _held(conn, account, sequence):
        return
    lowered = await conn.execute(
        """UPDATE source_accounts SET next_sequence = $2
           WHERE account = $1 AND next_sequence = $2::bigint + 1""",
        account, sequence,
    )
    if lowered == "UPDATE 0":
        await conn.execute(
            """INSERT INTO released_sequences (account, sequence)
               SELECT $1, $2 FROM source_accounts
               WHERE account = $1 AND next_sequence > $2::bigint
               ON CONFLICT DO NOTHING""",
            account, sequence,
        )


async def consumed_through(conn: asyncpg.Connection, account: str, sequence: int) -> None:
    """A transaction at `sequence` was included: the chain consumed every number up to it, so
    none of them may be handed out again (a stale free number would only collide)."""
    await lock_source(conn, account)
    await conn.execute(
        "DELETE FROM released_sequences WHERE account = $1 AND sequence <= $2",
        account, sequence,
    )
    await conn.execute(
        """UPDATE source_accounts SET next_sequence = $2::bigint + 1
           WHERE account = $1 AND next_sequence <= $2::bigint""",
        account, sequence,
    )


async def lowest_free(conn: asyncpg.Connection, account: str) -> int | None:
    found: int | None = await conn.fetchval(
        "SELECT min(sequence) FROM released_sequences WHERE account = $1", account
    )
    return found


async def renumber_from_chain(conn: asyncpg.Connection, account: str, chain_sequence: int) -> int:
    """After txBAD_SEQ, with the attempts that never left us already superseded by the caller:
    restart numbering from the chain. Returns the new next_sequence.

    Safety: nothing here rebuilds an envelope. Every holder that may still land (a payout
    attempt or a channel lifecycle transaction: sent, handed out, or reserved meanwhile by
    another worker) keeps its number (`held`); only numbers nobody holds become free, and
    numbers at or below the chain's are dropped (the chain consumed them). A free number
    reused by a new attempt while an ABANDONED envelope sits at it is safe: one source and
    sequence number is included at most once."""
    await lock_source(conn, account)
    held = [r["sequence"] for r in await conn.fetch(
        "SELECT sequence FROM sequence_holders WHERE account = $1 AND sequence > $2",
        account, chain_sequence,
    )]
    plan = resync(chain_sequence, held)
    await conn.execute(
        "UPDATE source_accounts SET next_sequence = $2, synced_at = now() WHERE account = $1",
        account, plan.next_sequence,
    )
    await conn.execute("DELETE FROM released_sequences WHERE account = $1", account)
    await conn.execute(
        """INSERT INTO released_sequences (account, sequence)
           SELECT $1, s FROM unnest($2::bigint[]) AS s""",
        account, plan.free,
    )
    return plan.next_sequence


async def _held(conn: asyncpg.Connection, account: str, sequence: int) -> bool:
    """Whether any payout attempt or channel lifecycle transaction holds this number."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM sequence_holders WHERE account = $1 AND sequence = $2)",
        account, sequence,
    ))
