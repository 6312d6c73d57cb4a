"""Health and alerts use cases: evaluate the conditions, keep one open alert per kind."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from payout_service.core.validation import FieldViolation, ValidationFailed
from payout_service.grpc_errors import NotFoundError, PreconditionFailed
from payout_service.programs import alert_store
from payout_service.programs.alert_store import AlertRecord
from payout_service.programs.health import HealthMetrics, Level, conditions, level_of
from payout_service.programs.settings import AlertThresholds

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
    def __init__(self, pool: asyncpg.Pool, thresholds: AlertThresholds) -> None:
        self.pool = pool
        self.thresholds = thresholds

    async def evaluate(self) -> list[AlertRecord]:
        """One evaluation: raise or refresh what holds, resolve what cleared."""
        found = conditions(await alert_store.health_metrics(self.pool), self.thresholds)
        async with self.pool.acquire() as conn, conn.transaction():
            opened = [await alert_store.raise_or_refresh(conn, c) for c in found]
            cleared = await alert_store.resolve_cleared(conn, [c.kind for c in found])
        for alert in cleared:
            log.info("alert cleared", extra={"alert_id": str(alert.alert_id), "kind": alert.kind})
        return opened

    async def health(self) -> Health:
        metrics = await alert_store.health_metrics(self.pool)
        level = level_of(conditions(metrics, self.thresholds))
        active = await alert_store.list_alerts(self.pool, ["ACTIVE", "ACKNOWLEDGED"])
        return Health(level, metrics, active)

    async def alerts(self, statuses: list[str]) -> list[AlertRecord]:
        return await alert_store.list_alerts(self.pool, statuses)

    async def acknowledge(self, alert_id: str, actor: str) -> AlertRecord:
        ident = _alert_id(alert_id)
        done = await alert_store.acknowledge(self.pool, ident, actor)
        return done or await self._explain(ident, "acknowledged", "ACTIVE")

    async def resolve(self, alert_id: str) -> AlertRecord:
        ident = _alert_id(alert_id)
        done = await alert_store.resolve(self.pool, ident)
        return done or await self._explain(ident, "resolved", "ACTIVE or ACKNOWLEDGED")

    async def _explain(self, ident: UUID, action: str, allowed: str) -> AlertRecord:
        alert = await alert_store.get_alert(self.pool, ident)
        if alert is None:
            raise NotFoundError(f"alert {ident} not found")
        raise PreconditionFailed(
            f"alerts/{ident}", f"alert is {alert.status}; only {allowed} alerts can be {action}"
        )
