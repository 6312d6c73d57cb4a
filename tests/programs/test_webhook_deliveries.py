"""Webhooks a receiver can trust, end to end: the service's outbox delivers to the README's
receiver example on loopback HTTP, which verifies the timestamped signature; a replay is not
processed again (a seen event id) or is refused (a timestamp past the tolerance); an operator's
redelivery arrives with the same event id; every attempt is logged; an event whose retry
budget is spent is dead-lettered and raises an alert until it is redelivered."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest
from stellar_sdk import Keypair

from examples.webhook_receiver import Receiver
from payout_service.adapters import webhook_store
from payout_service.app.outbox import claim_due_events
from payout_service.cli import payoutctl
from payout_service.cli import webhooks as cli_webhooks
from payout_service.core.health import AlertKind
from payout_service.core.webhooks import EventRef
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.waiting import eventually

from .conftest import confirm

NEW, OLD = "whsec-new-0123456789", "whsec-old-0123456789"


class Recorder:
    """What the receiver processed and every request it got (headers and raw body)."""

    def __init__(self, secrets: list[str], failing: bool = False,
                 failing_status: int = 503) -> None:
        self.processed: list[dict[str, Any]] = []
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.failing, self.failing_status = failing, failing_status
        self.clock_offset = 0.0
        self.receiver = Receiver(secrets, self.processed.append,
                                 clock=lambda: time.time() + self.clock_offset)
        original = self.receiver.handle

        def handle(headers: Any, body: bytes) -> tuple[int, str]:
            answer = (self.failing_status, "down") if self.failing \
                else original(headers, body)
            self.requests.append((dict(headers.items()), body, answer[0]))
            return answer

        self.receiver.handle = handle  # type: ignore[method-assign]


@pytest.fixture
def served() -> Iterator[Any]:
    servers = []

    def serve(recorder: Recorder) -> str:
        server = recorder.receiver.server("127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/hook"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


async def _pay(stack, payout_id: str) -> None:
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id=payout_id, destination=Keypair.random().public_key, amount="1", asset="XLM",
        idempotency_key=f"k-{payout_id}",
    ))
    await confirm(stack.pool, payout_id)


async def _until(predicate, what: str, within: float = 15.0) -> None:
    async def check() -> bool:
        return bool(predicate())
    await eventually(check, what=what, within=within, interval=0.02)


async def _event_ids_page_by_page(stack, page_size: int) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        reply = await stack.admin.ListWebhookDeliveries(
            apb.ListWebhookDeliveriesRequest(page_size=page_size, page_token=token))
        seen += [d.event_id for d in reply.deliveries]
        token = reply.next_page_token
        if not token:
            return seen


async def _post(url: str, headers: dict[str, str], body: bytes) -> int:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, headers=headers) as response:
        return response.status


async def test_a_delivery_verifies_a_replay_is_refused_and_a_redelivery_keeps_its_id(
    stack_factory, served
):
    # The receiver has rolled to NEW and still accepts OLD; the service signs with both.
    recorder = Recorder([NEW])
    url = served(recorder)
    stack = await stack_factory(PAYOUTS_WEBHOOK_URLS=url, PAYOUTS_WEBHOOK_SECRETS=f"{NEW},{OLD}")
    await _pay(stack, "p-1")
    await _until(lambda: recorder.processed, "the first delivery")
    [event] = recorder.processed
    headers, body, status = recorder.requests[0]
    assert status == 204 and event["type"] == "payout.confirmed"
    event_id = headers["Stellar-Payouts-Event-Id"]
    assert event_id == str(event["id"])
    assert headers["Stellar-Payouts-Signature"].count("v1=") == 2

    # Replayed at once: the signature is still fresh, the event id is not: not processed.
    assert await _post(url, headers, body) == 200
    # Replayed later: refused on the timestamp before the event id is even looked at.
    recorder.clock_offset = 301
    assert await _post(url, headers, body) == 401
    recorder.clock_offset = 0
    assert len(recorder.processed) == 1

    # An operator redelivers: same event id, freshly signed, acknowledged as a duplicate.
    reply = await stack.admin.RedeliverWebhook(apb.RedeliverWebhookRequest(event_id=event_id))
    assert reply.delivery.event_id == event_id
    await _until(lambda: len(recorder.requests) == 4, "the redelivery")
    again_headers, again_body, again_status = recorder.requests[3]
    assert again_headers["Stellar-Payouts-Event-Id"] == event_id and again_body == body
    assert again_status == 200 and len(recorder.processed) == 1

    # Every attempt is in the log, the redelivery as attempt 2.
    async def delivered_twice() -> bool:
        listed = await stack.admin.ListWebhookDeliveries(
            apb.ListWebhookDeliveriesRequest(event_id=event_id))
        return bool(listed.deliveries) and len(listed.deliveries[0].log) == 2 and \
            listed.deliveries[0].state == apb.WEBHOOK_DELIVERY_STATE_DELIVERED
    await eventually(delivered_twice, what="the redelivery logged", within=10, interval=0.05)
    listed = await stack.admin.ListWebhookDeliveries(
        apb.ListWebhookDeliveriesRequest(event_id=event_id))
    [delivery] = listed.deliveries
    assert [a.attempt for a in delivery.log] == [2, 1]
    assert [a.status_code for a in delivery.log] == [200, 204]
    assert all(a.url == url and a.error == "" for a in delivery.log)
    assert delivery.event_type == "payout.confirmed" and delivery.attempts == 2


async def test_a_signature_with_a_rotated_out_secret_is_refused(stack_factory, served):
    recorder = Recorder([OLD])  # the service no longer signs with OLD
    url = served(recorder)
    stack = await stack_factory(PAYOUTS_WEBHOOK_URLS=url, PAYOUTS_WEBHOOK_SECRETS=NEW,
                                PAYOUTS_WEBHOOK_BACKOFF_SECONDS="60")
    await _pay(stack, "p-1")
    await _until(lambda: recorder.requests, "the delivery")
    assert recorder.requests[0][2] == 401 and recorder.processed == []

    async def logged() -> bool:
        return bool(await stack.pool.fetchval("SELECT count(*) FROM webhook_delivery_attempts"))
    await eventually(logged, what="the attempt logged", within=10, interval=0.05)
    row = await stack.pool.fetchrow(
        "SELECT status_code, error FROM webhook_delivery_attempts")
    assert (row["status_code"], row["error"]) == (401, "HTTP 401")


# 700: not an HTTP status, but three digits a client's parser accepts; it must fail the
# attempt like any other, be logged without a status code, and still reach the dead letter.
@pytest.mark.parametrize("answer", [503, 700])
async def test_after_the_retry_budget_an_event_is_dead_lettered_with_an_alert(
    stack_factory, served, answer
):
    recorder = Recorder([NEW], failing=True, failing_status=answer)
    url = served(recorder)
    stack = await stack_factory(PAYOUTS_WEBHOOK_URLS=url, PAYOUTS_WEBHOOK_SECRETS=NEW,
                                PAYOUTS_WEBHOOK_BACKOFF_SECONDS="0.02",
                                PAYOUTS_WEBHOOK_MAX_ATTEMPTS="3")
    await _pay(stack, "p-1")

    async def dead() -> bool:
        reply = await stack.admin.ListWebhookDeliveries(apb.ListWebhookDeliveriesRequest(
            states=[apb.WEBHOOK_DELIVERY_STATE_DEAD_LETTERED]))
        return len(reply.deliveries) == 1
    await eventually(dead, what="the dead letter", within=15, interval=0.05)
    await asyncio.sleep(0.3)
    assert len(recorder.requests) == 3, "no retry after the budget"
    [delivery] = (await stack.admin.ListWebhookDeliveries(
        apb.ListWebhookDeliveriesRequest())).deliveries
    assert delivery.attempts == 3 and f"HTTP {answer}" in delivery.last_error
    logged = answer if answer <= 599 else 0  # 0: no status code in the log
    assert [a.status_code for a in delivery.log] == [logged] * 3
    assert all(a.latency_ms >= 0 for a in delivery.log)

    monitor = stack.programs.monitor
    raised = await monitor.evaluate()
    assert AlertKind.WEBHOOKS_DEAD_LETTERED in {a.kind for a in raised}

    # The receiver is back; the operator redelivers: delivered, same id, the alert clears.
    recorder.failing = False
    await stack.admin.RedeliverWebhook(
        apb.RedeliverWebhookRequest(event_id=delivery.event_id))
    await _until(lambda: recorder.processed, "the redelivery")
    assert str(recorder.processed[0]["id"]) == delivery.event_id

    async def delivered() -> bool:
        reply = await stack.admin.ListWebhookDeliveries(apb.ListWebhookDeliveriesRequest(
            states=[apb.WEBHOOK_DELIVERY_STATE_DELIVERED]))
        return len(reply.deliveries) == 1
    await eventually(delivered, what="the delivered state", within=10, interval=0.05)
    assert AlertKind.WEBHOOKS_DEAD_LETTERED not in {a.kind for a in await monitor.evaluate()}


async def test_webhook_admin_rpcs_name_the_bad_field_and_unknown_events(stack):
    for call, request, field in [
        (stack.admin.RedeliverWebhook, apb.RedeliverWebhookRequest(event_id="x7"), "event_id"),
        (stack.admin.RedeliverWebhook, apb.RedeliverWebhookRequest(), "event_id"),
        (stack.admin.ListWebhookDeliveries,
         apb.ListWebhookDeliveriesRequest(event_id="alert-"), "event_id"),
        (stack.admin.ListWebhookDeliveries,
         apb.ListWebhookDeliveriesRequest(states=[99]), "states"),
        (stack.admin.ListWebhookDeliveries,
         apb.ListWebhookDeliveriesRequest(page_size=501), "page_size"),
        (stack.admin.ListWebhookDeliveries,
         apb.ListWebhookDeliveriesRequest(page_token="bm9wZQ=="), "page_token"),
        (stack.admin.ListWebhookDeliveries, apb.ListWebhookDeliveriesRequest(
            page_token=base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00|5").decode()),
         "page_token"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert field in (caught.value.details() or ""), (field, caught.value.details())
    for event_id in ("12345", "alert-9"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.admin.RedeliverWebhook(apb.RedeliverWebhookRequest(event_id=event_id))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_deliveries_are_listed_newest_first_page_by_page(stack):
    for n in range(5):
        await _pay(stack, f"p-{n}")
    seen = await _event_ids_page_by_page(stack, 2)
    assert len(seen) == 5 and len(set(seen)) == 5
    assert [int(i) for i in seen] == sorted((int(i) for i in seen), reverse=True)
    pending = await stack.admin.ListWebhookDeliveries(apb.ListWebhookDeliveriesRequest(
        states=[apb.WEBHOOK_DELIVERY_STATE_PENDING]))
    assert len(pending.deliveries) == 5, "no URL configured: nothing leaves the outbox"


async def test_payoutctl_webhooks_lists_and_redelivers(stack):
    await _pay(stack, "p-1")
    [delivery] = (await stack.admin.ListWebhookDeliveries(
        apb.ListWebhookDeliveriesRequest())).deliveries

    async def ctl(*argv: str) -> str:
        args = payoutctl.parser().parse_args(list(argv))
        return cli_webhooks.render(await cli_webhooks.run(stack.channel, args), args.output)

    listed = await ctl("-o", "table", "webhooks", "list", "--state", "pending")
    assert listed.splitlines()[0].split()[:3] == ["EVENT_ID", "TYPE", "STATE"]
    assert listed.splitlines()[1].split()[:4] == [delivery.event_id, "payout.confirmed",
                                                  "pending", "0"]
    assert "next page" not in listed
    again = await ctl("webhooks", "redeliver", delivery.event_id)
    assert json.loads(again)["delivery"]["event_id"] == delivery.event_id


async def test_a_redelivery_asked_for_during_an_attempt_is_still_sent(stack):
    await _pay(stack, "p-1")
    [claimed] = await claim_due_events(stack.pool, 1, 60)
    ref = EventRef(False, claimed.id)
    assert await webhook_store.redeliver(stack.pool, ref)
    # The attempt that was in flight succeeds: logged, but the event stays due for the
    # redelivery.
    await webhook_store.record_delivered(
        stack.pool, ref, claimed.attempts,
        [webhook_store.AttemptOutcome("http://127.0.0.1/hook", 204, 3, "")],
        attempts_at_requeue=claimed.attempts_at_requeue)
    found = await webhook_store.get_delivery(stack.pool, ref)
    assert found is not None and found.state == "PENDING" and len(found.log) == 1
    [again] = await claim_due_events(stack.pool, 1, 60)
    assert (again.id, again.attempts, again.attempts_at_requeue) == (claimed.id, 2, 1)


async def test_payout_events_and_alert_notifications_page_together(stack):
    await _pay(stack, "p-1")
    alert_id = uuid.uuid4()
    await stack.pool.execute(
        "INSERT INTO alerts (alert_id, kind, severity, message) "
        "VALUES ($1, 'SYSTEM_ERROR', 'CRITICAL', 'test')", alert_id)
    for _ in range(2):
        await stack.pool.execute(
            "INSERT INTO alert_notifications (alert_id, event_type, payload, urls) "
            "VALUES ($1, 'alert.raised', '{}', ARRAY['http://127.0.0.1:1/x'])", alert_id)
    await _pay(stack, "p-2")
    seen = await _event_ids_page_by_page(stack, 1)
    first, second = (await stack.pool.fetch("SELECT id FROM alert_notifications ORDER BY id"))
    payouts = await stack.pool.fetch("SELECT id FROM outbox_events ORDER BY id")
    assert seen == [str(payouts[1]["id"]), f"alert-{second['id']}", f"alert-{first['id']}",
                    str(payouts[0]["id"])]
