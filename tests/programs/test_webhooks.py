"""Outbox delivery to webhooks: HMAC signature, retries with backoff, at least once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from stellar_sdk import Keypair

from payout_service.app.outbox import claim_due_events
from payout_service.config import ConfigError, load_webhooks
from payout_service.core.webhooks import (
    backoff_seconds,
    event_body,
    legacy_signature,
    verify_legacy,
)
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.waiting import eventually

from .conftest import confirm

SECRET = "whsec-test-0123456789"


def test_legacy_signature_is_hmac_sha256_of_the_body():
    body = b'{"id":1}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert legacy_signature(body, SECRET) == f"sha256={expected}"
    assert verify_legacy(body, SECRET, f"sha256={expected}")
    assert not verify_legacy(body + b" ", SECRET, f"sha256={expected}")


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    for attempts in range(1, 12):
        ceiling = min(300.0, 2.0 ** (attempts - 1))
        delays = {backoff_seconds(attempts, base=1.0, cap=300.0, rng=rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jittered"
    assert backoff_seconds(10_000, base=1.0, cap=300.0) <= 300.0


def test_webhook_settings_need_a_secret_and_hide_it():
    with pytest.raises(ConfigError, match="PAYOUTS_WEBHOOK_SECRET"):
        load_webhooks({"PAYOUTS_WEBHOOK_URLS": "http://127.0.0.1:1/hook"})
    settings = load_webhooks({"PAYOUTS_WEBHOOK_URLS": "http://a/x, http://b/y",
                              "PAYOUTS_WEBHOOK_SECRET": SECRET})
    assert settings.urls == ("http://a/x", "http://b/y")
    assert SECRET not in repr(settings)


@dataclass
class Receiver:
    """Records every POST, checks its signature, and fails the first `failures` of them."""

    failures: int = 0
    received: list[dict[str, object]] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_legacy(body, SECRET, request.headers.get("X-Payout-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.append(json.loads(body))
        if len(self.received) <= self.failures:
            return web.Response(status=503)
        return web.Response(status=204)


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    flaky, steady = Receiver(failures=2), Receiver()
    app = web.Application()
    app.router.add_post("/flaky", flaky.handle)
    app.router.add_post("/steady", steady.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    flaky.url, steady.url = (f"http://127.0.0.1:{port}/flaky", f"http://127.0.0.1:{port}/steady")
    yield flaky, steady
    await runner.cleanup()


async def wait_until(predicate, within: float = 10.0) -> None:
    await eventually(predicate, what="the webhook condition", within=within, interval=0.02)


async def test_confirmed_event_is_signed_retried_and_delivered_to_every_url(
    stack_factory, receivers, caplog
):
    """The payout is moved to CONFIRMED in SQL with its outbox row, as the pipeline does."""
    caplog.set_level(logging.DEBUG)
    flaky, steady = receivers
    stack = await stack_factory(
        PAYOUTS_WEBHOOK_URLS=f"{flaky.url},{steady.url}", PAYOUTS_WEBHOOK_SECRET=SECRET,
        PAYOUTS_WEBHOOK_BACKOFF_SECONDS="0.05",
    )
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id="p-1", destination=Keypair.random().public_key, amount="1", asset="XLM",
        idempotency_key="k-1",
    ))
    tx_hash = await confirm(stack.pool, "p-1")

    async def first_failure_seen() -> bool:
        return len(flaky.received) >= 1

    await wait_until(first_failure_seen)
    row = await stack.pool.fetchrow("SELECT * FROM outbox_events")
    if len(flaky.received) <= flaky.failures:
        assert row["delivered_at"] is None, "delivered only once every URL answered 2xx"

    async def delivered() -> bool:
        return bool(await stack.pool.fetchval(
            "SELECT delivered_at IS NOT NULL FROM outbox_events"
        ))

    await wait_until(delivered)
    row = await stack.pool.fetchrow("SELECT * FROM outbox_events")
    assert row["attempts"] == 3 and row["last_error"] is None
    assert len(flaky.received) == 3, "two 503s, then the 2xx"
    assert len(steady.received) == 3, "at least once: re-sent with every retry"
    assert flaky.bad_signatures == steady.bad_signatures == 0
    event = steady.received[0]
    assert event["type"] == "payout.confirmed" and event["id"] == row["id"]
    assert event["data"]["tx_hash"] == tx_hash  # type: ignore[index]
    await asyncio.sleep(0.2)
    assert len(steady.received) == 3, "nothing is sent after delivery"
    assert SECRET not in caplog.text


async def test_claims_skip_locked_rows_and_a_lost_lease_is_delivered_again(stack):
    dest = Keypair.random().public_key
    for n in range(6):
        await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
            payout_id=f"p-{n}", destination=dest, amount="1", asset="XLM",
            idempotency_key=f"k-{n}",
        ))
        await confirm(stack.pool, f"p-{n}")
    first, second = await asyncio.gather(
        claim_due_events(stack.pool, 6, 0.2), claim_due_events(stack.pool, 6, 0.2)
    )
    ids = [e.id for e in first] + [e.id for e in second]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6, "each row claimed once"
    assert await claim_due_events(stack.pool, 6, 0.2) == [], "leased"
    # The claimer "died" without delivering: once the lease runs out the rows are due again.
    await asyncio.sleep(0.3)
    again = await claim_due_events(stack.pool, 6, 60)
    assert len(again) == 6 and all(e.attempts == 2 for e in again)


def test_body_is_stable_across_retries():
    from datetime import UTC, datetime

    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert event_body(1, "payout.confirmed", at, {"b": 1, "a": 2}) == event_body(
        1, "payout.confirmed", at, {"a": 2, "b": 1}
    )
