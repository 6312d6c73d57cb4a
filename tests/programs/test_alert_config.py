"""Seed 003's alert configuration at run time: read and changed through admin RPCs (validated,
persisted, audited), in force at the next evaluation, and alerts delivered to its webhooks."""

from __future__ import annotations

import math

import grpc
import pytest
from stellar_sdk import Keypair

from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.programs.helpers import field_violations
from tests.programs.test_webhooks import SECRET, Receiver, receivers, wait_until  # noqa: F401


def config(**fields: object) -> apb.AlertConfig:
    base: dict[str, object] = {
        "enabled": True, "failure_rate_warning": 0.1, "failure_rate_critical": 0.25,
        "pending_count": 50, "processing_delay_seconds_warning": 900,
        "processing_delay_seconds_critical": 3600, "amount_24h": pb.Amount(decimal="10000"),
        "system_errors": 0,
    }
    base.update(fields)
    return apb.AlertConfig(**base)  # type: ignore[arg-type]


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_the_environment_seeds_the_config_and_updates_are_persisted_and_audited(
    stack_factory,
):
    stack = await stack_factory(PAYOUTS_ALERT_PENDING_COUNT="7",
                                PAYOUTS_ALERT_FAILURE_RATE="0.2")
    seeded = (await stack.admin.GetAlertConfig(apb.GetAlertConfigRequest())).config
    assert (seeded.pending_count, seeded.failure_rate_warning, seeded.version) == (7, 0.2, 1)
    assert seeded.enabled and seeded.updated_by == "environment"

    saved = (await stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(
        config=config(pending_count=3, version=1)))).config
    assert saved.pending_count == 3 and saved.version == 2
    assert saved.amount_24h.stroops == 10_000 * 10**7
    # Persisted: another replica on the same database reads it, whatever its environment.
    other = await stack_factory(PAYOUTS_ALERT_PENDING_COUNT="99")
    assert (await other.admin.GetAlertConfig(apb.GetAlertConfigRequest())).config.version == 2
    (audit,) = await stack.pool.fetch("SELECT * FROM alert_config_audit")
    assert audit["version"] == 2 and audit["previous"]["pending_count"] == 7
    assert audit["config"]["pending_count"] == 3 and audit["actor"]


async def test_an_update_based_on_an_old_version_is_refused(stack):
    await stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(config=config()))
    err = await refused(stack.admin.UpdateAlertConfig(
        apb.UpdateAlertConfigRequest(config=config(version=1))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 2" in err.details()


@pytest.mark.parametrize(("fields", "bad"), [
    ({"failure_rate_warning": 1.5}, "config.failure_rate_warning"),
    ({"failure_rate_warning": 0.3, "failure_rate_critical": 0.2}, "config.failure_rate_critical"),
    ({"processing_delay_seconds_warning": math.nan}, "config.processing_delay_seconds_warning"),
    ({"processing_delay_seconds_critical": math.inf},
     "config.processing_delay_seconds_critical"),
    ({"pending_count": 2**63}, "config.pending_count"),
    ({"amount_24h": pb.Amount(stroops=-1)}, "config.amount_24h.stroops"),
    ({"amount_24h": pb.Amount(decimal="-1")}, "config.amount_24h.decimal"),
    ({"webhook_urls": ["ftp://example.com/x"]}, "config.webhook_urls[0]"),
    ({"webhook_urls": ["http://"]}, "config.webhook_urls[0]"),
    ({"webhook_urls": [f"https://h{i}.example/x" for i in range(11)]}, "config.webhook_urls"),
])
async def test_a_bad_config_is_invalid_argument_naming_the_field_and_stores_nothing(
    stack, fields, bad
):
    err = await refused(stack.admin.UpdateAlertConfig(
        apb.UpdateAlertConfigRequest(config=config(**fields))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad in field_violations(err)
    assert (await stack.admin.GetAlertConfig(apb.GetAlertConfigRequest())).config.version == 1


async def test_webhook_targets_need_the_signing_secret(stack):
    err = await refused(stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(
        config=config(webhook_urls=["https://alerts.example/hook"]))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PAYOUTS_WEBHOOK_SECRET" in err.details()


async def big_payout(stack) -> None:
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id="big", idempotency_key="big", destination=Keypair.random().public_key,
        amount="5", asset="XLM"))


async def test_the_next_evaluation_uses_the_new_thresholds_and_the_enabled_flag(stack):
    await big_payout(stack)
    assert await stack.programs.monitor.evaluate() == []
    await stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(
        config=config(amount_24h=pb.Amount(decimal="1"), enabled=False)))
    assert await stack.programs.monitor.evaluate() == [], "disabled: nothing raised"
    health = await stack.admin.GetSystemHealth(apb.GetSystemHealthRequest())
    assert health.level == apb.HEALTH_LEVEL_WARNING, "health still reports the level"
    await stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(
        config=config(amount_24h=pb.Amount(decimal="1"))))
    (raised,) = await stack.programs.monitor.evaluate()
    assert raised.kind == "AMOUNT_THRESHOLD"


async def test_raised_acknowledged_and_resolved_alerts_reach_the_webhooks_signed(
    stack_factory, receivers,  # noqa: F811
):
    flaky, steady = receivers
    stack = await stack_factory(PAYOUTS_WEBHOOK_SECRET=SECRET)
    await big_payout(stack)
    urls = [flaky.url, steady.url]
    await stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(
        config=config(amount_24h=pb.Amount(decimal="1"), webhook_urls=urls)))
    (raised,) = await stack.programs.monitor.evaluate()
    await stack.programs.monitor.evaluate()  # still holds: no second notification
    await stack.admin.AcknowledgeAlert(apb.AcknowledgeAlertRequest(alert_id=str(raised.alert_id)))
    await stack.admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(
        config=config(webhook_urls=urls)))
    await stack.programs.monitor.evaluate()  # the condition cleared: resolved

    async def delivered() -> bool:
        return await stack.pool.fetchval(
            "SELECT count(*) = 3 AND bool_and(delivered_at IS NOT NULL) "
            "FROM alert_notifications")

    await wait_until(delivered, within=30)
    # Receivers deduplicate on the event id (a retry goes to every URL again).
    events = sorted({e["id"]: e for e in steady.received}.values(),
                    key=lambda e: int(e["id"].removeprefix("alert-")))
    assert [e["type"] for e in events] == ["alert.raised", "alert.acknowledged",
                                           "alert.resolved"]
    assert {e["data"]["alert_id"] for e in events} == {str(raised.alert_id)}
    assert events[1]["data"]["acknowledged_by"] and events[2]["data"]["status"] == "RESOLVED"
    assert steady.bad_signatures == flaky.bad_signatures == 0
    # At least once: the flaky receiver's failed deliveries were retried until it took them.
    assert {e["type"] for e in flaky.received[flaky.failures:]} == {
        "alert.raised", "alert.acknowledged", "alert.resolved"}
    pending = await stack.pool.fetchval(
        "SELECT count(*) FROM alert_notifications WHERE delivered_at IS NULL")
    assert pending == 0
