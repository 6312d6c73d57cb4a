"""PostgreSQL store for earnings, the schedule and run history: plain SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from payout_service.programs.schedule import Frequency, Schedule

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
    payout_ids: list[str] = field(default_factory=list)


async def insert_earning(db: Db, earning: Earning) -> Earning:
    """Inserts the earning, or returns the one already recorded under its id."""
    row = await db.fetchrow(
        """INSERT INTO earnings (earning_id, destination, asset, amount_stroops)
           VALUES ($1, $2, $3, $4) ON CONFLICT (earning_id) DO NOTHING RETURNING *""",
        earning.earning_id, earning.destination, earning.asset, earning.amount_stroops,
    )
    if row is None:
        row = await db.fetchrow("SELECT * FROM earnings WHERE earning_id = $1", earning.earning_id)
    assert row is not None
    return Earning(row["earning_id"], row["destination"], row["asset"], row["amount_stroops"])


async def unpaid_balance(db: Db, destination: str, asset: str) -> int:
    value = await db.fetchval(
        """SELECT COALESCE(sum(amount_stroops), 0)::bigint FROM earnings
           WHERE destination = $1 AND asset = $2 AND run_id IS NULL""",
        destination, asset,
    )
    return int(value)


async def unpaid_balances(db: Db) -> list[Balance]:
    rows = await db.fetch(
        """SELECT destination, asset, sum(amount_stroops)::bigint AS amount,
                  array_agg(earning_id ORDER BY earning_id) AS ids
           FROM earnings WHERE run_id IS NULL
           GROUP BY destination, asset ORDER BY destination, asset"""
    )
    return [Balance(r["destination"], r["asset"], r["amount"], list(r["ids"])) for r in rows]


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


async def finish_run(
    db: Db, run_id: str, *, payout_count: int, skipped: int, total_stroops: int,
    errors: list[RunError], next_run_at: datetime | None,
) -> RunRecord:
    row = await db.fetchrow(
        """UPDATE scheduled_runs SET payout_count = $2, skipped_below_threshold = $3,
               total_stroops = $4, errors = $5, finished_at = clock_timestamp(),
               next_run_at = $6
           WHERE run_id = $1 RETURNING *""",
        run_id, payout_count, skipped, total_stroops,
        [{"destination": e.destination, "message": e.message} for e in errors], next_run_at,
    )
    assert row is not None
    return _run(row)


def _run(row: asyncpg.Record) -> RunRecord:
    errors: list[dict[str, Any]] = row["errors"] or []
    return RunRecord(
        run_id=row["run_id"], dry_run=row["dry_run"], trigger=row["trigger"],
        correlation_id=row["correlation_id"], payout_count=row["payout_count"],
        skipped_below_threshold=row["skipped_below_threshold"],
        total_stroops=row["total_stroops"],
        errors=[RunError(e["destination"], e["message"]) for e in errors],
        started_at=row["started_at"], finished_at=row["finished_at"],
        next_run_at=row["next_run_at"],
    )


async def list_runs(db: Db, limit: int) -> list[RunRecord]:
    rows = await db.fetch(
        "SELECT * FROM scheduled_runs ORDER BY started_at DESC, run_id DESC LIMIT $1", limit
    )
    return [_run(r) for r in rows]
