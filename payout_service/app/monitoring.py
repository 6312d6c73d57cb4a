"""Health and alerts use cases: evaluate the conditions, keep one open alert per kind."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from payout_service.adapters import alert_store
from payout_service.adapters.alert_store import AlertRecord
from payout_service.core.alert_config import AlertConfig, validate_alert_config
from payout_service.core.errors import (
    FieldViolation,
    NotFoundError,
    PreconditionFailed,
    ValidationFailed,
)
from payout_service.core.health import AlertThresholds, HealthMetrics, Level, conditions, level_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    level: Level
    metrics: HealthMetrics
    active_alerts: list[AlertRecord]


def _alert_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ValidationFailed([FieldViolation("alert_id", "must be an alert id (UUID)")]) from None


class Monitor:
    """Evaluates the conditions against the stored alert configuration (read on every step,
    so an update is in force at the next evaluation) and queues a notification for every
    alert raised, acknowledged or resolved, in the SQL transaction that changes it."""

    def __init__(self, pool: asyncpg.Pool, seed: AlertThresholds, *, can_sign: bool = True) -> None:
        self.pool = pool
        self.seed = AlertConfig(thresholds=seed)
        self.can_sign = can_sign  # a webhook secret is set

    async def config(self) -> AlertConfig:
        return await alert_store.alert_config(self.pool, self.seed)

    async def update_config(
        self, wanted: AlertConfig, *, based_on: int, actor: str, correlation_id: str
    ) -> AlertConfig:
        validate_alert_config(wanted)
        if wanted.webhook_urls and not self.can_sign:
            raise PreconditionFailed(
                "PAYOUTS_WEBHOOK_SECRETS",
                "alert notifications are signed with PAYOUTS_WEBHOOK_SECRETS (or "
                "PAYOUTS_WEBHOOK_SECRET), which is not set",
                "WEBHOOK_SECRET",
            )
        try:
            saved = await alert_store.save_alert_config(
                self.pool, wanted, self.seed, based_on=based_on, actor=actor,
                correlation_id=correlation_id,
            )
        except alert_store.StaleAlertConfig as err:
            raise PreconditionFailed(
                "alert_config.version", f"{err}; read it again and reapply the change",
                "VERSION",
            ) from None
        log.info("alert configuration changed", extra={
            "version": saved.version, "actor": actor, "correlation_id": correlation_id,
            "enabled": saved.enabled,
        })
        return saved

    async def evaluate(self) -> list[AlertRecord]:
        """One evaluation: raise or refresh what holds, resolve what cleared. Nothing is
        raised while alerting is disabled."""
        config = await self.config()
        if not config.enabled:
            return []
        await alert_store.drop_old_minutes(self.pool)
        found = conditions(await alert_store.health_metrics(self.pool), config.thresholds)
        urls = config.webhook_urls
        async with self.pool.acquire() as conn, conn.transaction():
            opened = []
            for condition in found:
                alert, now = await alert_store.raise_or_refresh(conn, condition)
                if now:
                    await alert_store.notify(conn, alert, "alert.raised", urls)
                opened.append(alert)
            cleared = await alert_store.resolve_cleared(conn, [c.kind for c in found])
            for alert in cleared:
                await alert_store.notify(conn, alert, "alert.resolved", urls)
        for alert in cleared:
            log.info("alert cleared", extra={"alert_id": str(alert.alert_id), "kind": alert.kind})
        return opened

    async def health(self) -> Health:
        config = await self.config()
        metrics = await alert_store.health_metrics(self.pool)
        level = level_of(conditions(metrics, config.thresholds))
        active = await alert_store.list_alerts(self.pool, ["ACTIVE", "ACKNOWLEDGED"])
        return Health(level, metrics, active)

    async def alerts(self, statuses: list[str]) -> list[AlertRecord]:
        return await alert_store.list_alerts(self.pool, statuses)

    async def acknowledge(self, alert_id: str, actor: str) -> AlertRecord:
        ident = _alert_id(alert_id)
        done = await self._change(ident, "alert.acknowledged",
                                  lambda conn: alert_store.acknowledge(conn, ident, actor))
        return done or await self._explain(ident, "acknowledged", "ACTIVE")

    async def resolve(self, alert_id: str) -> AlertRecord:
        ident = _alert_id(alert_id)
        done = await self._change(ident, "alert.resolved",
                                  lambda conn: alert_store.resolve(conn, ident))
        return done or await self._explain(ident, "resolved", "ACTIVE or ACKNOWLEDGED")

    async def _change(
        self, ident: UUID, event_type: str,
        apply: Callable[[asyncpg.Connection], Awaitable[AlertRecord | None]],
    ) -> AlertRecord | None:
        config = await self.config()
        async with self.pool.acquire() as conn, conn.transaction():
            done = await apply(conn)
            if done is not None and config.enabled:
                await alert_store.notify(conn, done, event_type, config.webhook_urls)
        return done

    async def _explain(self, ident: UUID, action: str, allowed: str) -> AlertRecord:
        alert = await alert_store.get_alert(self.pool, ident)
        if alert is None:
            raise NotFoundError(f"alert {ident} not found")
        raise PreconditionFailed(
            f"alerts/{ident}", f"alert is {alert.status}; only {allowed} alerts can be {action}"
        )
