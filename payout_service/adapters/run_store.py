"""PostgreSQL store for earnings, the schedule and run history: plain SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from payout_service.adapters.payout_store import payout_from_row
from payout_service.core.model import Payout
from payout_service.core.schedule import Frequency, Schedule

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class Earning:
    earning_id: str
    destination: str
    asset: str
    amount_stroops: int


@dataclass(frozen=True)
class Balance:
    destination: str
    asset: str
    amount_stroops: int
    earning_ids: list[str]


@dataclass(frozen=True)
class RunError:
    destination: str
    message: str


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    dry_run: bool
    trigger: str
    correlation_id: str
    payout_count: int
    skipped_below_threshold: int
    total_stroops: int
    errors: list[RunError]
    started_at: datetime
    finished_at: datetime | None
    next_run_at: datetime | None
    # A dry run's would-be payouts (payout_id, destination, asset, gross/fee/net stroops).
    planned: list[dict[str, Any]] = field(default_factory=list)


class BalanceOverCap(Exception):
    """The earning would lift the unpaid balance past what one payout can carry."""

    def __init__(self, balance_stroops: int) -> None:
        super().__init__("the unpaid balance would exceed the largest payout amount")
        self.balance_stroops = balance_stroops


@dataclass(frozen=True)
class Recorded:
    earning: Earning  # as stored: this one, or the one already recorded under its id
    balance_stroops: int


def _earning(row: asyncpg.Record) -> Earning:
    return Earning(row["earning_id"], row["destination"], row["asset"], row["amount_stroops"])


async def insert_earning(pool: asyncpg.Pool, earning: Earning, max_balance: int) -> Recorded:
    """Inserts the earning unless the destination's unpaid balance would pass max_balance
    (BalanceOverCap, nothing stored), or returns the one already recorded under its id.

    One SQL transaction under a lock per (destination, asset): two earnings recorded at once
    cannot both pass the cap. Runs only lower a balance, so they need not take the lock.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '|' || $2, 0))",
            earning.destination, earning.asset,
        )
        row = await conn.fetchrow(
            "SELECT * FROM earnings WHERE earning_id = $1", earning.earning_id
        )
        if row is None:
            balance = await unpaid_balance(conn, earning.destination, earning.asset)
            if balance + earning.amount_stroops > max_balance:
                raise BalanceOverCap(balance)
            row = await conn.fetchrow(
                """INSERT INTO earnings (earning_id, destination, asset, amount_stroops)
                   VALUES ($1, $2, $3, $4) RETURNING *""",
                earning.earning_id, earning.destination, earning.asset, earning.amount_stroops,
            )
        assert row is not None
        stored = _earning(row)
        return Recorded(stored, await unpaid_balance(conn, stored.destination, stored.asset))


async def unpaid_balance(db: Db, destination: str, asset: str) -> int:
    value = await db.fetchval(
        """SELECT COALESCE(sum(amount_stroops), 0)::numeric FROM earnings
           WHERE destination = $1 AND asset = $2 AND run_id IS NULL""",
        destination, asset,
    )
    return int(value)


async def unpaid_balances(db: Db) -> list[Balance]:
    # numeric: balances recorded before the cap existed may pass int64 (a run reports them).
    rows = await db.fetch(
        """SELECT destination, asset, sum(amount_stroops)::numeric AS amount,
                  array_agg(earning_id ORDER BY earning_id) AS ids
           FROM earnings WHERE run_id IS NULL
           GROUP BY destination, asset ORDER BY destination, asset"""
    )
    return [Balance(r["destination"], r["asset"], int(r["amount"]), list(r["ids"]))
            for r in rows]


async def mark_earnings_paid(
    conn: asyncpg.Connection, earning_ids: Sequence[str], run_id: str, payout_id: str
) -> int:
    result = await conn.execute(
        """UPDATE earnings SET run_id = $2, payout_id = $3
           WHERE earning_id = ANY($1::text[]) AND run_id IS NULL""",
        list(earning_ids), run_id, payout_id,
    )
    return int(result.split()[-1])


def _schedule(row: asyncpg.Record) -> Schedule:
    return Schedule(
        enabled=row["enabled"], frequency=Frequency(row["frequency"]),
        day_of_week=row["day_of_week"], day_of_month=row["day_of_month"], hour=row["hour"],
        minute=row["minute"], timezone=row["timezone"],
        minimum_threshold_stroops=row["minimum_threshold_stroops"],
        next_run_at=row["next_run_at"],
    )


async def get_schedule(db: Db) -> Schedule:
    row = await db.fetchrow("SELECT * FROM payout_schedule WHERE id = 1")
    assert row is not None, "migration 002 inserts the schedule row"
    return _schedule(row)


async def save_schedule(db: Db, s: Schedule) -> Schedule:
    row = await db.fetchrow(
        """UPDATE payout_schedule SET enabled = $1, frequency = $2, day_of_week = $3,
               day_of_month = $4, hour = $5, minute = $6, timezone = $7,
               minimum_threshold_stroops = $8, next_run_at = $9, updated_at = now()
           WHERE id = 1 RETURNING *""",
        s.enabled, s.frequency.value, s.day_of_week, s.day_of_month, s.hour, s.minute,
        s.timezone, s.minimum_threshold_stroops, s.next_run_at,
    )
    assert row is not None
    return _schedule(row)


async def set_next_run(db: Db, next_run_at: datetime | None) -> None:
    await db.execute(
        "UPDATE payout_schedule SET next_run_at = $1, updated_at = now() WHERE id = 1",
        next_run_at,
    )


async def insert_run(db: Db, run_id: str, *, dry_run: bool, trigger: str, corr: str) -> None:
    await db.execute(
        """INSERT INTO scheduled_runs (run_id, dry_run, trigger, correlation_id)
           VALUES ($1, $2, $3, $4)""",
        run_id, dry_run, trigger, corr,
    )


@dataclass(frozen=True)
class RunSummary:
    """What a run did, written once when it finishes."""

    run_id: str
    dry_run: bool
    trigger: str
    correlation_id: str
    payout_count: int = 0
    skipped: int = 0
    total_stroops: int = 0
    errors: list[RunError] = field(default_factory=list)
    planned: list[dict[str, Any]] = field(default_factory=list)


async def finish_run(db: Db, run: RunSummary, next_run_at: datetime | None) -> RunRecord:
    """Writes the finished run: completes the row of a real run (inserted when it started,
    so its payouts can point at it), or inserts a dry run's whole row in one statement."""
    row = await db.fetchrow(
        """INSERT INTO scheduled_runs (run_id, dry_run, trigger, correlation_id, payout_count,
               skipped_below_threshold, total_stroops, errors, planned, finished_at, next_run_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp(), $10)
           ON CONFLICT (run_id) DO UPDATE SET payout_count = EXCLUDED.payout_count,
               skipped_below_threshold = EXCLUDED.skipped_below_threshold,
               total_stroops = EXCLUDED.total_stroops, errors = EXCLUDED.errors,
               planned = EXCLUDED.planned, finished_at = EXCLUDED.finished_at,
               next_run_at = EXCLUDED.next_run_at
           RETURNING *""",
        run.run_id, run.dry_run, run.trigger, run.correlation_id, run.payout_count, run.skipped,
        run.total_stroops,
        [{"destination": e.destination, "message": e.message} for e in run.errors],
        run.planned, next_run_at,
    )
    assert row is not None
    return _run(row)


async def close_abandoned_runs(db: Db) -> int:
    """Finishes runs whose replica stopped mid-run (called under the run lock, so none of
    them is still running): their payouts stand, the row says the run was cut short."""
    result = await db.execute(
        """UPDATE scheduled_runs SET finished_at = clock_timestamp(),
               errors = errors || jsonb_build_array(jsonb_build_object(
                   'destination', '', 'message', $1::text))
           WHERE finished_at IS NULL""",
        "run abandoned: the replica running it stopped before finishing",
    )
    return int(result.split()[-1])


def _run(row: asyncpg.Record) -> RunRecord:
    errors: list[dict[str, Any]] = row["errors"] or []
    return RunRecord(
        run_id=row["run_id"], dry_run=row["dry_run"], trigger=row["trigger"],
        correlation_id=row["correlation_id"], payout_count=row["payout_count"],
        skipped_below_threshold=row["skipped_below_threshold"],
        total_stroops=int(row["total_stroops"]),
        errors=[RunError(e["destination"], e["message"]) for e in errors],
        started_at=row["started_at"], finished_at=row["finished_at"],
        next_run_at=row["next_run_at"], planned=list(row["planned"] or []),
    )


async def list_runs(db: Db, limit: int) -> list[RunRecord]:
    rows = await db.fetch(
        "SELECT * FROM scheduled_runs ORDER BY started_at DESC, run_id DESC LIMIT $1", limit
    )
    return [_run(r) for r in rows]


async def run_payouts(db: Db, run_ids: Sequence[str]) -> dict[str, list[Payout]]:
    """The payouts each real run created (their batch_id is the run id), oldest first."""
    rows = await db.fetch(
        """SELECT * FROM payouts WHERE batch_id = ANY($1::text[])
           ORDER BY created_at, payout_id""",
        list(run_ids),
    )
    found: dict[str, list[Payout]] = {run_id: [] for run_id in run_ids}
    for row in rows:
        found[row["batch_id"]].append(payout_from_row(row))
    return found
