"""Health levels and alerts: pure conditions, then raise/ack/resolve over gRPC."""

from __future__ import annotations

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.config import ConfigError, load_thresholds
from payout_service.core.health import (
    AlertKind,
    AlertThresholds,
    HealthMetrics,
    Level,
    conditions,
    level_of,
)
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.waiting import eventually

from .conftest import confirm, fail

QUIET = HealthMetrics(0.0, 0, 0.0, 0, 0)
T = AlertThresholds()


def kinds(metrics: HealthMetrics) -> dict[AlertKind, Level]:
    return {c.kind: c.severity for c in conditions(metrics, T)}


def test_defaults_match_the_prometheus_rules():
    t = load_thresholds({})
    assert (t.failure_rate_warning, t.failure_rate_critical) == (0.10, 0.25)
    assert t.pending_count == 50
    assert (t.delay_seconds_warning, t.delay_seconds_critical) == (900, 3600)
    assert t.amount_24h_stroops == 10_000 * 10_000_000
    custom = load_thresholds(
        {"PAYOUTS_ALERT_AMOUNT_24H": "12.5", "PAYOUTS_ALERT_PENDING_COUNT": "3"}
    )
    assert custom.amount_24h_stroops == 125_000_000 and custom.pending_count == 3
    with pytest.raises(ConfigError, match="PAYOUTS_ALERT_FAILURE_RATE"):
        load_thresholds({"PAYOUTS_ALERT_FAILURE_RATE": "lots"})


@pytest.mark.parametrize("metrics,expected", [
    (QUIET, {}),
    (HealthMetrics(0.10, 50, 900.0, 10_000 * 10**7, 0), {}),  # at the thresholds: not above
    (HealthMetrics(0.11, 0, 0, 0, 0), {AlertKind.FAILURE_RATE: Level.WARNING}),
    (HealthMetrics(0.26, 0, 0, 0, 0), {AlertKind.FAILURE_RATE: Level.CRITICAL}),
    (HealthMetrics(0, 51, 0, 0, 0), {AlertKind.PENDING_THRESHOLD: Level.WARNING}),
    (HealthMetrics(0, 0, 901, 0, 0), {AlertKind.PROCESSING_DELAY: Level.WARNING}),
    (HealthMetrics(0, 0, 3601, 0, 0), {AlertKind.PROCESSING_DELAY: Level.CRITICAL}),
    (HealthMetrics(0, 0, 0, 10_000 * 10**7 + 1, 0), {AlertKind.AMOUNT_THRESHOLD: Level.WARNING}),
    (HealthMetrics(0, 0, 0, 0, 1), {AlertKind.SYSTEM_ERROR: Level.CRITICAL}),
])
def test_conditions_from_metrics(metrics, expected):
    assert kinds(metrics) == expected


def test_level_is_the_worst_condition():
    assert level_of([]) == Level.HEALTHY
    assert level_of(conditions(HealthMetrics(0.11, 51, 0, 0, 0), T)) == Level.WARNING
    assert level_of(conditions(HealthMetrics(0.11, 0, 0, 0, 1), T)) == Level.CRITICAL


async def make_failures(stack, failed: int, confirmed: int) -> None:
    dest = Keypair.random().public_key
    for n in range(failed + confirmed):
        await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
            payout_id=f"p-{n}", destination=dest, amount="1", asset="XLM",
            idempotency_key=f"k-{n}",
        ))
        if n < failed:
            await fail(stack.pool, f"p-{n}")
        else:
            await confirm(stack.pool, f"p-{n}")


async def test_health_reports_metrics_and_level(stack):
    healthy = await stack.admin.GetSystemHealth(apb.GetSystemHealthRequest())
    assert healthy.level == apb.HEALTH_LEVEL_HEALTHY and not healthy.active_alerts
    await make_failures(stack, failed=1, confirmed=3)
    await stack.pool.execute(
        "UPDATE payouts SET state = 'QUEUED', created_at = now() - interval '20 minutes' "
        "WHERE payout_id = 'p-3'"
    )
    health = await stack.admin.GetSystemHealth(apb.GetSystemHealthRequest())
    m = health.metrics
    assert m.failure_rate == pytest.approx(1 / 3)  # 1 failed, 2 confirmed in the hour
    assert m.pending_count == 1 and 1190 < m.oldest_pending_age_seconds < 1300
    assert m.amount_last_24h.stroops == 3 * 10_000_000  # failed payouts are not counted
    assert health.level == apb.HEALTH_LEVEL_CRITICAL


async def test_alert_is_raised_once_acknowledged_resolved_and_raised_again(stack):
    await make_failures(stack, failed=2, confirmed=8)  # 20 %: warning
    monitor = stack.programs.monitor
    await monitor.evaluate()
    await monitor.evaluate()
    (alert,) = (await stack.admin.ListAlerts(apb.ListAlertsRequest())).alerts
    assert alert.kind == apb.ALERT_KIND_FAILURE_RATE and alert.severity == apb.HEALTH_LEVEL_WARNING
    assert alert.status == apb.ALERT_STATUS_ACTIVE

    acked = (await stack.admin.AcknowledgeAlert(
        apb.AcknowledgeAlertRequest(alert_id=alert.alert_id))).alert
    assert acked.status == apb.ALERT_STATUS_ACKNOWLEDGED and acked.acknowledged_by
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.admin.AcknowledgeAlert(apb.AcknowledgeAlertRequest(alert_id=alert.alert_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Worse now: the same alert escalates, it is not duplicated, and it stays acknowledged.
    await stack.pool.execute("UPDATE payouts SET state = 'FAILED' WHERE payout_id = 'p-2'")
    await monitor.evaluate()
    (escalated,) = (await stack.admin.ListAlerts(apb.ListAlertsRequest())).alerts
    assert escalated.alert_id == alert.alert_id
    assert escalated.severity == apb.HEALTH_LEVEL_CRITICAL
    assert escalated.status == apb.ALERT_STATUS_ACKNOWLEDGED
    health = await stack.admin.GetSystemHealth(apb.GetSystemHealthRequest())
    assert [a.alert_id for a in health.active_alerts] == [alert.alert_id]

    resolved = (await stack.admin.ResolveAlert(
        apb.ResolveAlertRequest(alert_id=alert.alert_id))).alert
    assert resolved.status == apb.ALERT_STATUS_RESOLVED and resolved.HasField("resolved_at")
    # The condition still holds, so the next evaluation opens a new alert (one, not two).
    await monitor.evaluate()
    await monitor.evaluate()
    active = (await stack.admin.ListAlerts(apb.ListAlertsRequest(
        statuses=[apb.ALERT_STATUS_ACTIVE]))).alerts
    assert len(active) == 1 and active[0].alert_id != alert.alert_id


async def test_alert_resolves_itself_when_the_condition_clears(stack):
    await make_failures(stack, failed=1, confirmed=1)
    (opened,) = await stack.programs.monitor.evaluate()
    await stack.pool.execute("UPDATE payouts SET state = 'CONFIRMED' WHERE state = 'FAILED'")
    assert await stack.programs.monitor.evaluate() == []
    (alert,) = (await stack.admin.ListAlerts(apb.ListAlertsRequest())).alerts
    assert alert.alert_id == str(opened.alert_id) and alert.status == apb.ALERT_STATUS_RESOLVED


async def test_system_errors_raise_a_critical_alert(stack):
    await stack.pool.execute(
        "INSERT INTO system_errors (source, message) VALUES ('scheduler', 'boom')"
    )
    (alert,) = await stack.programs.monitor.evaluate()
    assert alert.kind == AlertKind.SYSTEM_ERROR and alert.severity == Level.CRITICAL
    health = await stack.admin.GetSystemHealth(apb.GetSystemHealthRequest())
    assert health.metrics.system_errors_last_hour == 1


async def test_unknown_and_malformed_alert_ids(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.admin.ResolveAlert(
            apb.ResolveAlertRequest(alert_id="00000000-0000-0000-0000-000000000000")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.admin.ResolveAlert(apb.ResolveAlertRequest(alert_id="nope"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_evaluation_loop_raises_alerts_by_itself(stack_factory):
    stack = await stack_factory(PAYOUTS_ALERT_INTERVAL_SECONDS="0.05",
                                PAYOUTS_ALERT_PENDING_COUNT="0")
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id="p-1", destination=Keypair.random().public_key, amount="1", asset="XLM",
        idempotency_key="k-1",
    ))
    await stack.pool.execute("UPDATE payouts SET state = 'QUEUED'")

    async def alerts_raised() -> list[apb.Alert]:
        return list((await stack.admin.ListAlerts(apb.ListAlertsRequest())).alerts)

    alerts = await eventually(alerts_raised, what="an alert", interval=0.02)
    assert [a.kind for a in alerts] == [apb.ALERT_KIND_PENDING_THRESHOLD]
