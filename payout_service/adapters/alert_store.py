"""PostgreSQL for health: metrics queries and the alerts table (one open alert per kind)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias
from uuid import UUID, uuid4

import asyncpg

from payout_service.adapters.sending_pause import pause_state
from payout_service.adapters.stats import PENDING_STATES, state_totals
from payout_service.adapters.watchdog_store import open_findings
from payout_service.adapters.webhook_store import dead_lettered_count
from payout_service.core.alert_config import AlertConfig
from payout_service.core.health import AlertKind, AlertThresholds, Condition, HealthMetrics, Level

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
    """From the aggregates (migration 030) and partial indexes, never a scan of payouts: the
    pending count from the per-state totals, the oldest pending payout as the first entry of
    payouts_pending_created_idx, the windows from per-minute buckets. A window ("last hour",
    "24 hours") is counted in whole minutes: it may include up to one minute more."""
    pending = await state_totals(db)
    row = await db.fetchrow(
        """SELECT
             (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                FROM payouts WHERE state IN ('ACCEPTED', 'AWAITING_SIGNATURE', 'QUEUED',
                                             'SUBMITTED')) AS oldest,
             (SELECT COALESCE(sum(count) FILTER (WHERE kind = 'failed'), 0)::bigint
                FROM payout_minutes WHERE kind IN ('failed', 'confirmed')
                  AND minute >= date_trunc('minute', now() - interval '1 hour')) AS failed,
             (SELECT COALESCE(sum(count) FILTER (WHERE kind = 'confirmed'), 0)::bigint
                FROM payout_minutes WHERE kind IN ('failed', 'confirmed')
                  AND minute >= date_trunc('minute', now() - interval '1 hour')) AS confirmed,
             (SELECT COALESCE(sum(gross), 0)::numeric FROM payout_minutes
                WHERE kind = 'live'
                  AND minute >= date_trunc('minute', now() - interval '24 hours'))
               AS amount_24h,
             (SELECT COALESCE(sum(count), 0)::bigint FROM payout_minutes
                WHERE kind = 'failed' AND code = ANY($1::text[])
                  AND minute >= date_trunc('minute', now() - interval '1 hour'))
             + (SELECT count(*) FROM system_errors WHERE at > now() - interval '1 hour')
               AS system_errors""",
        list(SYSTEM_FAILURE_CODES),
    )
    assert row is not None
    settled = row["failed"] + row["confirmed"]
    paused = await pause_state(db)
    held = await channels_held(db)
    return HealthMetrics(
        failure_rate=row["failed"] / settled if settled else 0.0,
        pending_count=sum(int(pending[s]["count"]) for s in PENDING_STATES if s in pending),
        oldest_pending_age_seconds=max(row["oldest"], 0.0),
        amount_last_24h_stroops=int(row["amount_24h"]),
        system_errors_last_hour=row["system_errors"],
        open_findings=await open_findings(db), sending_paused=paused.paused,
        paused_reason=paused.reason, channels_held=held.count, held_reason=held.reason,
        webhooks_dead_lettered=await dead_lettered_count(db),
        awaiting_funds=int(pending["AWAITING_FUNDS"]["count"]) if "AWAITING_FUNDS" in pending
        else 0,
    )


@dataclass(frozen=True)
class HeldChannels:
    count: int
    reason: str  # the most recent one's


async def channels_held(db: Db) -> HeldChannels:
    """Channels that stopped being leased for a fault of their own (held_reason set) that no
    operator has re-added or asked to merge away since."""
    row = await db.fetchrow(
        """SELECT count(*) AS n, (array_agg(held_reason ORDER BY updated_at DESC))[1] AS why
           FROM channel_accounts
           WHERE held_reason IS NOT NULL AND state IN ('draining', 'retired')
             AND NOT merge_requested""")
    assert row is not None
    return HeldChannels(int(row["n"]), row["why"] or "")


async def drop_old_minutes(db: Db) -> None:
    """Per-minute buckets older than the longest window (24 h) plus an hour are not read."""
    await db.execute(
        "DELETE FROM payout_minutes WHERE minute < now() - interval '25 hours'")


async def raise_or_refresh(db: Db, c: Condition) -> tuple[AlertRecord, bool]:
    """Opens an alert of this kind, or updates the open one (never a second open alert);
    says whether it was opened now."""
    row = await db.fetchrow(
        """INSERT INTO alerts (alert_id, kind, severity, message) VALUES ($1, $2, $3, $4)
           ON CONFLICT (kind) WHERE status <> 'RESOLVED'
           DO UPDATE SET severity = EXCLUDED.severity, message = EXCLUDED.message
           RETURNING *, (xmax = 0) AS opened_now""",
        uuid4(), c.kind.value, c.severity.name, c.message,
    )
    assert row is not None
    return _alert(row), bool(row["opened_now"])


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


# ---- alert configuration and notifications -----------------------------------------------

class StaleAlertConfig(Exception):
    """The update was based on a version that is no longer the current one."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the alert configuration is at version {current}")
        self.current = current


def _config(row: asyncpg.Record) -> AlertConfig:
    return AlertConfig(
        enabled=row["enabled"],
        thresholds=AlertThresholds(
            failure_rate_warning=row["failure_rate_warning"],
            failure_rate_critical=row["failure_rate_critical"],
            pending_count=row["pending_count"],
            delay_seconds_warning=row["delay_seconds_warning"],
            delay_seconds_critical=row["delay_seconds_critical"],
            amount_24h_stroops=row["amount_24h_stroops"], system_errors=row["system_errors"],
        ),
        webhook_urls=tuple(row["webhook_urls"]), version=row["version"],
        updated_at=row["updated_at"], updated_by=row["updated_by"],
    )


def _config_values(c: AlertConfig) -> tuple[object, ...]:
    t = c.thresholds
    return (c.enabled, t.failure_rate_warning, t.failure_rate_critical, t.pending_count,
            t.delay_seconds_warning, t.delay_seconds_critical, t.amount_24h_stroops,
            t.system_errors, list(c.webhook_urls))


async def alert_config(db: Db, seed: AlertConfig) -> AlertConfig:
    """The configuration in force; the first read stores `seed` (from PAYOUTS_ALERT_*)."""
    row = await db.fetchrow("SELECT * FROM alert_config WHERE id = 1")
    if row is None:
        await db.execute(
            """INSERT INTO alert_config (id, enabled, failure_rate_warning,
                   failure_rate_critical, pending_count, delay_seconds_warning,
                   delay_seconds_critical, amount_24h_stroops, system_errors, webhook_urls,
                   updated_by)
               VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, 'environment')
               ON CONFLICT (id) DO NOTHING""",
            *_config_values(seed),
        )
        row = await db.fetchrow("SELECT * FROM alert_config WHERE id = 1")
    assert row is not None
    return _config(row)


async def save_alert_config(
    pool: asyncpg.Pool, wanted: AlertConfig, seed: AlertConfig, *, based_on: int, actor: str,
    correlation_id: str,
) -> AlertConfig:
    """Replaces the configuration and writes its audit row in one SQL transaction.
    based_on: the version the change was made from (0: whatever is current)."""
    async with pool.acquire() as conn, conn.transaction():
        await alert_config(conn, seed)
        row = await conn.fetchrow("SELECT * FROM alert_config WHERE id = 1 FOR UPDATE")
        assert row is not None
        previous = _config(row)
        if based_on and based_on != previous.version:
            raise StaleAlertConfig(previous.version)
        row = await conn.fetchrow(
            """UPDATE alert_config SET enabled = $1, failure_rate_warning = $2,
                   failure_rate_critical = $3, pending_count = $4, delay_seconds_warning = $5,
                   delay_seconds_critical = $6, amount_24h_stroops = $7, system_errors = $8,
                   webhook_urls = $9, version = version + 1, updated_at = now(),
                   updated_by = $10
               WHERE id = 1 RETURNING *""",
            *_config_values(wanted), actor,
        )
        assert row is not None
        saved = _config(row)
        await conn.execute(
            """INSERT INTO alert_config_audit (version, actor, correlation_id, previous, config)
               VALUES ($1, $2, $3, $4, $5)""",
            saved.version, actor, correlation_id, previous.as_document(), saved.as_document(),
        )
    return saved


def notification_payload(alert: AlertRecord) -> dict[str, object]:
    def at(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "alert_id": str(alert.alert_id), "kind": alert.kind.value,
        "severity": alert.severity.name, "status": alert.status, "message": alert.message,
        "raised_at": at(alert.raised_at), "acknowledged_at": at(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by, "resolved_at": at(alert.resolved_at),
    }


async def notify(db: Db, alert: AlertRecord, event_type: str, urls: tuple[str, ...]) -> None:
    """Queues a notification in the caller's SQL transaction (nothing when no URL is set)."""
    if urls:
        await db.execute(
            """INSERT INTO alert_notifications (alert_id, event_type, payload, urls)
               VALUES ($1, $2, $3, $4)""",
            alert.alert_id, event_type, notification_payload(alert), list(urls),
        )
