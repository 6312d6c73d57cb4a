"""PostgreSQL for health: metrics queries and the alerts table (one open alert per kind)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias
from uuid import UUID, uuid4

import asyncpg

from payout_service.programs.health import AlertKind, Condition, HealthMetrics, Level
from payout_service.programs.stats import PENDING_STATES

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection

# Failure codes that say the system (not the payee or the chain) broke.
SYSTEM_FAILURE_CODES = (
    "signer_refused", "signer_hash_mismatch", "source_account_missing", "internal_error",
)


@dataclass(frozen=True)
class AlertRecord:
    alert_id: UUID
    kind: AlertKind
    severity: Level
    status: str
    message: str
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str
    resolved_at: datetime | None


def _alert(row: asyncpg.Record) -> AlertRecord:
    return AlertRecord(
        alert_id=row["alert_id"], kind=AlertKind(row["kind"]), severity=Level[row["severity"]],
        status=row["status"], message=row["message"], raised_at=row["raised_at"],
        acknowledged_at=row["acknowledged_at"], acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
    )


async def health_metrics(db: Db) -> HealthMetrics:
    row = await db.fetchrow(
        """SELECT
             (SELECT count(*) FROM payouts WHERE state = 'FAILED'
                AND updated_at > now() - interval '1 hour') AS failed,
             (SELECT count(*) FROM payouts WHERE state = 'CONFIRMED'
                AND COALESCE(confirmed_at, updated_at) > now() - interval '1 hour') AS confirmed,
             (SELECT count(*) FROM payouts WHERE state = ANY($1::text[])) AS pending,
             (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                FROM payouts WHERE state = ANY($1::text[])) AS oldest,
             (SELECT COALESCE(sum(gross_stroops), 0)::numeric FROM payouts
                WHERE created_at > now() - interval '24 hours'
                  AND state NOT IN ('FAILED', 'CANCELLED')) AS amount_24h,
             (SELECT count(*) FROM payouts WHERE state = 'FAILED'
                AND failure_code = ANY($2::text[])
                AND updated_at > now() - interval '1 hour')
             + (SELECT count(*) FROM system_errors WHERE at > now() - interval '1 hour')
               AS system_errors""",
        list(PENDING_STATES), list(SYSTEM_FAILURE_CODES),
    )
    assert row is not None
    settled = row["failed"] + row["confirmed"]
    return HealthMetrics(
        failure_rate=row["failed"] / settled if settled else 0.0,
        pending_count=row["pending"], oldest_pending_age_seconds=max(row["oldest"], 0.0),
        amount_last_24h_stroops=int(row["amount_24h"]),
        system_errors_last_hour=row["system_errors"],
    )


async def raise_or_refresh(db: Db, c: Condition) -> AlertRecord:
    """Opens an alert of this kind, or updates the open one (never a second open alert)."""
    row = await db.fetchrow(
        """INSERT INTO alerts (alert_id, kind, severity, message) VALUES ($1, $2, $3, $4)
           ON CONFLICT (kind) WHERE status <> 'RESOLVED'
           DO UPDATE SET severity = EXCLUDED.severity, message = EXCLUDED.message
           RETURNING *""",
        uuid4(), c.kind.value, c.severity.name, c.message,
    )
    assert row is not None
    return _alert(row)


async def resolve_cleared(db: Db, holding: list[AlertKind]) -> list[AlertRecord]:
    """Resolves the open alerts whose condition no longer holds."""
    rows = await db.fetch(
        """UPDATE alerts SET status = 'RESOLVED', resolved_at = now()
           WHERE status <> 'RESOLVED' AND NOT (kind = ANY($1::text[])) RETURNING *""",
        [k.value for k in holding],
    )
    return [_alert(r) for r in rows]


async def list_alerts(db: Db, statuses: list[str]) -> list[AlertRecord]:
    rows = await db.fetch(
        """SELECT * FROM alerts WHERE cardinality($1::text[]) = 0 OR status = ANY($1::text[])
           ORDER BY raised_at DESC, alert_id LIMIT 500""",
        statuses,
    )
    return [_alert(r) for r in rows]


async def acknowledge(db: Db, alert_id: UUID, actor: str) -> AlertRecord | None:
    row = await db.fetchrow(
        """UPDATE alerts SET status = 'ACKNOWLEDGED', acknowledged_at = now(),
               acknowledged_by = $2
           WHERE alert_id = $1 AND status = 'ACTIVE' RETURNING *""",
        alert_id, actor,
    )
    return _alert(row) if row else None


async def resolve(db: Db, alert_id: UUID) -> AlertRecord | None:
    row = await db.fetchrow(
        """UPDATE alerts SET status = 'RESOLVED', resolved_at = now()
           WHERE alert_id = $1 AND status <> 'RESOLVED' RETURNING *""",
        alert_id,
    )
    return _alert(row) if row else None


async def get_alert(db: Db, alert_id: UUID) -> AlertRecord | None:
    row = await db.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", alert_id)
    return _alert(row) if row else None
