"""PostgreSQL for the watchdog (migration 110): its position and lease, the service's own
transactions by hash, what the chain paid, the findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import asyncpg

from payout_service.core.watchdog import (
    ChainPayment,
    ConfirmedPayout,
    Finding,
    Known,
    Position,
    paid_twice,
)

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection
FINDING_STATUSES = ("open", "acknowledged", "resolved")


class LeaseLost(Exception):
    """Another replica holds the watchdog's lease, or moved its position since it was read:
    whatever this step found is rolled back (the holder reads the same ledgers)."""


@dataclass(frozen=True)
class WatchdogState:
    start_ledger: int
    position: Position
    latest_ledger: int
    confirmed_checked_until: datetime
    transactions_read: int
    pages_read: int
    fees_charged_stroops: int
    lease_owner: str | None
    updated_at: datetime


@dataclass(frozen=True)
class FindingRecord:
    id: int
    kind: str
    tx_hash: str | None
    ledger: int | None
    ledger_to: int | None
    payout_id: UUID | None
    payout_ref: str | None
    accounts: list[str]
    amount: int | None
    asset: str | None
    detail: str
    status: str
    first_seen: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


def _state(row: asyncpg.Record) -> WatchdogState:
    return WatchdogState(
        start_ledger=row["start_ledger"],
        position=Position(row["verified_ledger"], row["cursor"]),
        latest_ledger=row["latest_ledger"],
        confirmed_checked_until=row["confirmed_checked_until"],
        transactions_read=row["transactions_read"], pages_read=row["pages_read"],
        fees_charged_stroops=int(row["fees_charged_stroops"]), lease_owner=row["lease_owner"],
        updated_at=row["updated_at"],
    )


def _finding(row: asyncpg.Record) -> FindingRecord:
    return FindingRecord(
        id=row["id"], kind=row["kind"], tx_hash=row["tx_hash"], ledger=row["ledger"],
        ledger_to=row["ledger_to"], payout_id=row["payout_id"], payout_ref=row["payout_ref"],
        accounts=list(row["accounts"]),
        amount=int(row["amount"]) if row["amount"] is not None else None, asset=row["asset"],
        detail=row["detail"], status=row["status"], first_seen=row["first_seen"],
        acknowledged_by=row["acknowledged_by"], acknowledged_at=row["acknowledged_at"],
        resolved_by=row["resolved_by"], resolved_at=row["resolved_at"],
        resolution=row["resolution"],
    )


async def state(db: Db) -> WatchdogState | None:
    row = await db.fetchrow("SELECT * FROM watchdog_state WHERE id = 1")
    return _state(row) if row else None


async def begin(db: Db, start_ledger: int) -> None:
    """The first start: the watchdog begins at `start_ledger` (the latest ledger then); a
    replica that lost the race keeps the winner's row."""
    start = Position.starting_at(start_ledger)
    await db.execute(
        """INSERT INTO watchdog_state (id, start_ledger, verified_ledger, cursor, latest_ledger,
               confirmed_checked_until)
           VALUES (1, $1, $2, $3, $1, now()) ON CONFLICT (id) DO NOTHING""",
        start_ledger, start.verified_ledger, start.cursor,
    )


async def take_lease(db: Db, owner: str, seconds: float) -> WatchdogState | None:
    """The state, if `owner` holds the lease now (renewed) or it was free or expired."""
    row = await db.fetchrow(
        """UPDATE watchdog_state
           SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
           WHERE id = 1 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < now())
           RETURNING *""",
        owner, seconds,
    )
    return _state(row) if row else None


async def release_lease(db: Db, owner: str) -> None:
    await db.execute(
        "UPDATE watchdog_state SET lease_owner = NULL, lease_until = NULL "
        "WHERE id = 1 AND lease_owner = $1", owner)


async def advance(
    conn: asyncpg.Connection, owner: str, read_from: Position, to: Position, *,
    latest_ledger: int, transactions: int, fees_stroops: int, lease_seconds: float,
) -> None:
    """Moves the position and renews the lease, compare-and-set on the lease and the cursor
    this step read from. Raises LeaseLost (the caller's SQL transaction then rolls back)."""
    moved = await conn.fetchval(
        """UPDATE watchdog_state
           SET verified_ledger = $3, cursor = $4, latest_ledger = GREATEST(latest_ledger, $5),
               transactions_read = transactions_read + $6, pages_read = pages_read + 1,
               fees_charged_stroops = fees_charged_stroops + $7, updated_at = now(),
               lease_until = now() + make_interval(secs => $8)
           WHERE id = 1 AND lease_owner = $1 AND lease_until >= now() AND cursor = $2
           RETURNING 1""",
        owner, read_from.cursor, to.verified_ledger, to.cursor, latest_ledger, transactions,
        fees_stroops, lease_seconds,
    )
    if moved is None:
        raise LeaseLost(owner)


async def known(db: Db, hashes: Sequence[str]) -> dict[str, Known]:
    """The service's own transactions among `hashes`: payout attempts (any status) and
    channel lifecycle operations. One round trip, on the hash indexes."""
    rows = await db.fetch(
        """SELECT tx_hash, payout_id, min(number) AS attempt FROM payout_attempts
           WHERE tx_hash = ANY($1::text[]) GROUP BY tx_hash, payout_id
           UNION ALL
           SELECT tx_hash, NULL, NULL FROM channel_operations WHERE tx_hash = ANY($1::text[])""",
        list(hashes),
    )
    payouts: dict[str, list[tuple[UUID, int]]] = {}
    channel_ops: set[str] = set()
    for r in rows:
        if r["payout_id"] is None:
            channel_ops.add(r["tx_hash"])
        else:
            payouts.setdefault(r["tx_hash"], []).append((r["payout_id"], r["attempt"]))
    return {h: Known(tuple(payouts.get(h, ())), h in channel_ops)
            for h in set(payouts) | channel_ops}


async def record_payments(
    conn: asyncpg.Connection, payments: Sequence[ChainPayment]
) -> list[Finding]:
    """Records what the chain paid, in one statement, and returns a `paid_twice` finding for
    each payout the chain had already paid by another transaction. (Two transactions for one
    payout within `payments` are judge_page's to find: the statement's snapshot does not see
    its own rows.)"""
    if not payments:
        return []
    rows = await conn.fetch(
        """WITH incoming AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[])
                   AS t(payout_id, tx_hash, ledger, attempt)),
           added AS (
               INSERT INTO chain_payments (payout_id, tx_hash, ledger, attempt)
               SELECT payout_id, tx_hash, ledger, attempt FROM incoming
               ON CONFLICT (payout_id, tx_hash) DO NOTHING
               RETURNING payout_id, tx_hash, ledger, attempt)
           SELECT a.payout_id, a.tx_hash, a.ledger, a.attempt,
                  c.tx_hash AS other_hash, c.ledger AS other_ledger
           FROM added a JOIN chain_payments c
             ON c.payout_id = a.payout_id AND c.tx_hash <> a.tx_hash""",
        [p.payout_id for p in payments], [p.tx_hash for p in payments],
        [p.ledger for p in payments], [p.attempt for p in payments],
    )
    return [paid_twice(ChainPayment(r["payout_id"], r["tx_hash"], r["ledger"], r["attempt"]),
                       r["other_hash"], r["other_ledger"]) for r in rows]


async def add_findings(
    conn: asyncpg.Connection, findings: Sequence[Finding]
) -> list[tuple[int, Finding]]:
    """Inserts the findings not recorded before (by dedupe key); returns those, with ids."""
    if not findings:
        return []
    rows = await conn.fetch(
        """INSERT INTO watchdog_findings (kind, dedupe_key, tx_hash, ledger, ledger_to,
               payout_id, accounts, amount, asset, detail)
           SELECT kind, key, tx_hash, ledger, ledger_to, payout_id,
                  COALESCE(string_to_array(NULLIF(accounts, ''), ','), '{}'), amount, asset,
                  left(detail, 2000)
           FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::uuid[],
                       $7::text[], $8::numeric[], $9::text[], $10::text[])
               AS f(kind, key, tx_hash, ledger, ledger_to, payout_id, accounts, amount, asset,
                    detail)
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id, dedupe_key""",
        [f.kind for f in findings], [f.dedupe_key for f in findings],
        [f.tx_hash for f in findings], [f.ledger for f in findings],
        [f.ledger_to for f in findings], [f.payout_id for f in findings],
        [",".join(f.accounts) for f in findings], [f.amount for f in findings],
        [f.asset for f in findings], [f.detail for f in findings],
    )
    by_key = {f.dedupe_key: f for f in findings}
    return [(r["id"], by_key[r["dedupe_key"]]) for r in rows]


async def gaps(db: Db) -> list[tuple[int, int]]:
    rows = await db.fetch(
        "SELECT ledger, ledger_to FROM watchdog_findings WHERE kind = 'watchdog_gap'")
    return [(r["ledger"], r["ledger_to"]) for r in rows]


async def confirmed_after(
    db: Db, after: datetime, limit: int
) -> tuple[list[ConfirmedPayout], datetime]:
    """CONFIRMED payouts confirmed after `after`, in confirmation order, each with its
    included attempt and whether the chain paid it by that hash; and the horizon read up to.

    The horizon is the start of the oldest SQL transaction still open on this database:
    confirmed_at is the confirming transaction's now() (its start), so a confirmation that
    is not committed yet is never older than the horizon, and one at or before it is either
    visible now or never will be. On payouts_confirmed_at_idx, so a step reads only the
    confirmations since the last one."""
    horizon = await db.fetchval(
        """SELECT LEAST(now(), min(xact_start)) FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND xact_start IS NOT NULL""")
    rows = await db.fetch(
        """SELECT p.id, p.payout_id, COALESCE(p.confirmed_at, p.updated_at) AS at,
                  a.tx_hash, a.ledger,
                  EXISTS (SELECT 1 FROM chain_payments c
                          WHERE c.payout_id = p.id AND c.tx_hash = a.tx_hash) AS matched
           FROM payouts p
           LEFT JOIN LATERAL (
               SELECT tx_hash, ledger FROM payout_attempts
               WHERE payout_id = p.id AND status = 'included'
               ORDER BY number DESC LIMIT 1) a ON true
           WHERE p.state = 'CONFIRMED'
             AND COALESCE(p.confirmed_at, p.updated_at) > $1
             AND COALESCE(p.confirmed_at, p.updated_at) < $2
           ORDER BY COALESCE(p.confirmed_at, p.updated_at)
           LIMIT $3""",
        after, horizon, limit,
    )
    found = [ConfirmedPayout(r["id"], r["payout_id"], r["at"], r["tx_hash"], r["ledger"],
                             r["matched"]) for r in rows]
    return found, horizon


async def checked_confirmed(
    conn: asyncpg.Connection, owner: str, read_from: datetime, until: datetime
) -> None:
    """Compare-and-set of the confirmation check's time; raises LeaseLost."""
    moved = await conn.fetchval(
        """UPDATE watchdog_state SET confirmed_checked_until = $3
           WHERE id = 1 AND lease_owner = $1 AND confirmed_checked_until = $2 RETURNING 1""",
        owner, read_from, until,
    )
    if moved is None:
        raise LeaseLost(owner)


async def open_findings(db: Db) -> dict[str, int]:
    """Unresolved findings per kind (partial index)."""
    rows = await db.fetch(
        "SELECT kind, count(*) AS n FROM watchdog_findings WHERE status <> 'resolved' "
        "GROUP BY kind")
    return {r["kind"]: r["n"] for r in rows}


FINDING_COLUMNS = """f.*, (SELECT p.payout_id FROM payouts p WHERE p.id = f.payout_id)
                     AS payout_ref"""


async def list_findings(
    db: Db, *, statuses: Sequence[str], kinds: Sequence[str], before_id: int, limit: int
) -> list[FindingRecord]:
    """Newest first; `before_id` pages (0: from the newest)."""
    rows = await db.fetch(
        f"""SELECT {FINDING_COLUMNS} FROM watchdog_findings f
            WHERE (cardinality($1::text[]) = 0 OR f.status = ANY($1::text[]))
              AND (cardinality($2::text[]) = 0 OR f.kind = ANY($2::text[]))
              AND ($3 = 0 OR f.id < $3)
            ORDER BY f.id DESC LIMIT $4""",  # noqa: S608 - a constant column list
        list(statuses), list(kinds), before_id, limit,
    )
    return [_finding(r) for r in rows]


async def get_finding(db: Db, finding_id: int) -> FindingRecord | None:
    row = await db.fetchrow(
        f"SELECT {FINDING_COLUMNS} FROM watchdog_findings f WHERE f.id = $1",  # noqa: S608
        finding_id)
    return _finding(row) if row else None


async def acknowledge_finding(db: Db, finding_id: int, actor: str) -> FindingRecord | None:
    row = await db.fetchrow(
        f"""WITH changed AS (
                UPDATE watchdog_findings SET status = 'acknowledged', acknowledged_by = $2,
                    acknowledged_at = now()
                WHERE id = $1 AND status = 'open' RETURNING *)
            SELECT {FINDING_COLUMNS} FROM changed f""",  # noqa: S608
        finding_id, actor,
    )
    return _finding(row) if row else None


async def resolve_finding(
    db: Db, finding_id: int, actor: str, resolution: str
) -> FindingRecord | None:
    row = await db.fetchrow(
        f"""WITH changed AS (
                UPDATE watchdog_findings SET status = 'resolved',
                    acknowledged_by = COALESCE(acknowledged_by, $2),
                    acknowledged_at = COALESCE(acknowledged_at, now()),
                    resolved_by = $2, resolved_at = now(), resolution = $3
                WHERE id = $1 AND status <> 'resolved' RETURNING *)
            SELECT {FINDING_COLUMNS} FROM changed f""",  # noqa: S608
        finding_id, actor, resolution,
    )
    return _finding(row) if row else None
