"""Outbox delivery: POSTs each event to every webhook URL, signed (core/webhooks.py).

Two queues share it: payout events (`outbox_events`: payout.confirmed / payout.failed, to
PAYOUTS_WEBHOOK_URLS) and alert notifications (`alert_notifications`: alert.raised /
acknowledged / resolved, to the URLs the alert configuration named when the event was written,
with event ids `alert-<n>` so receivers deduplicating on the event id never mix the two).

Rows are claimed with FOR UPDATE SKIP LOCKED and leased by pushing next_attempt_at forward,
so replicas share the work and a replica that dies mid-delivery only delays it: delivery is
at least once. delivered_at is set only once every URL has answered 2xx; otherwise the row
is retried with exponential backoff and jitter until its retry budget
(PAYOUTS_WEBHOOK_MAX_ATTEMPTS) is spent, then dead-lettered: kept, no longer retried, counted
by the monitor (an alert) until an operator redelivers it. Every POST is logged with its
status code and latency (adapters/webhook_store.py). Each POST is signed at the moment it is
sent, so its timestamp is fresh on every retry. Secrets never reach a log or a row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from payout_service.adapters.webhook_store import AttemptOutcome, record_delivered, record_failed
from payout_service.config import WebhookSettings
from payout_service.core.webhooks import (
    EVENT_ID_HEADER,
    LEGACY_EVENT_ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    EventRef,
    backoff_seconds,
    budget_spent,
    event_body,
    legacy_signature,
    redacted,
    sign,
)

log = logging.getLogger(__name__)
CLAIM_BATCH = 20


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    urls: tuple[str, ...] | None = None  # None: the queue's configured URLs
    attempts_at_requeue: int = 0


@dataclass(frozen=True)
class Queue:
    """An outbox table: its name, how its URLs are chosen and how its event ids are shown."""

    table: str
    urls_column: str | None = None
    id_prefix: str = ""


PAYOUT_EVENTS = Queue("outbox_events")
ALERT_NOTIFICATIONS = Queue("alert_notifications", urls_column="urls", id_prefix="alert-")


async def claim_due_events(
    pool: asyncpg.Pool, limit: int, lease_seconds: float, queue: Queue = PAYOUT_EVENTS
) -> list[OutboxEvent]:
    urls = f", o.{queue.urls_column} AS urls" if queue.urls_column else ""
    # The table and column names come from the two Queue constants above, never from input.
    rows = await pool.fetch(
        f"""WITH due AS (
               SELECT id FROM {queue.table}
               WHERE delivered_at IS NULL AND dead_lettered_at IS NULL
                 AND next_attempt_at <= now()
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE {queue.table} o SET attempts = o.attempts + 1,
               next_attempt_at = now() + make_interval(secs => $2)
           FROM due WHERE o.id = due.id
           RETURNING o.id, o.event_type, o.payload, o.created_at, o.attempts,
                     o.attempts_at_requeue{urls}""",  # noqa: S608
        limit, lease_seconds,
    )
    return [OutboxEvent(r["id"], r["event_type"], r["payload"], r["created_at"], r["attempts"],
                        tuple(r["urls"]) if queue.urls_column else None,
                        r["attempts_at_requeue"])
            for r in rows]


class OutboxDelivery:
    def __init__(
        self, pool: asyncpg.Pool, settings: WebhookSettings, queue: Queue = PAYOUT_EVENTS
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.queue = queue
        self._session: aiohttp.ClientSession | None = None
        # Long enough for every URL to time out once before another replica may retry.
        self.lease_seconds = max(60.0, 2 * settings.timeout_seconds * len(settings.urls))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
        return self._session

    async def deliver_due(self) -> int:
        """One pass; returns how many events were fully delivered."""
        if not self.settings.urls and not self.queue.urls_column:
            return 0
        if not self.settings.secrets:
            return 0  # nothing can be signed: events wait (configuration refuses URLs alone)
        events = await claim_due_events(self.pool, CLAIM_BATCH, self.lease_seconds, self.queue)
        outcomes = await asyncio.gather(*(self._deliver(e) for e in events))
        return sum(outcomes)

    async def _deliver(self, event: OutboxEvent) -> bool:
        ref = EventRef(bool(self.queue.id_prefix), event.id)
        shown_id = ref.event_id
        body = event_body(shown_id if ref.alert else event.id, event.event_type,
                          event.created_at, event.payload)
        outcomes = [await self._post(url, body, shown_id)
                    for url in (self.settings.urls if event.urls is None else event.urls)]
        errors = [f"{o.url}: {o.error}" for o in outcomes if o.error]
        if not errors:
            await record_delivered(self.pool, ref, event.attempts, outcomes,
                                   attempts_at_requeue=event.attempts_at_requeue)
            return True
        error = "; ".join(errors)
        if budget_spent(event.attempts - event.attempts_at_requeue, self.settings.max_attempts):
            await record_failed(self.pool, ref, event.attempts, outcomes, error,
                                retry_in_seconds=None,
                                attempts_at_requeue=event.attempts_at_requeue)
            log.error("webhook dead-lettered: retry budget spent", extra={
                "outbox_event_id": shown_id, "attempts": event.attempts, "errors": errors,
            })
            return False
        delay = backoff_seconds(
            event.attempts, base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
        )
        await record_failed(self.pool, ref, event.attempts, outcomes, error,
                            retry_in_seconds=delay, attempts_at_requeue=event.attempts_at_requeue)
        log.warning("webhook delivery failed; will retry", extra={
            "outbox_event_id": shown_id, "attempts": event.attempts,
            "retry_in_seconds": round(delay, 3), "errors": errors,
        })
        return False

    def _headers(self, body: bytes, event_id: str) -> dict[str, str]:
        secrets = self.settings.secrets
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, int(time.time()), secrets),
            EVENT_ID_HEADER: event_id,
            LEGACY_SIGNATURE_HEADER: legacy_signature(body, secrets[0]),
            LEGACY_EVENT_ID_HEADER: event_id,
        }

    async def _post(self, url: str, body: bytes, event_id: str) -> AttemptOutcome:
        started = time.monotonic()
        status: int | None = None
        try:
            async with self._client().post(url, data=body,
                                           headers=self._headers(body, event_id)) as response:
                problem = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
                # HTTP status codes are 100-599; the log keeps only those (a parser accepts
                # any three digits, and an odd one is still a failure, named in `problem`).
                status = response.status if 100 <= response.status <= 599 else None
        except (aiohttp.ClientError, TimeoutError) as err:
            problem = type(err).__name__
        latency_ms = max(0, round((time.monotonic() - started) * 1000))
        return AttemptOutcome(redacted(url), status, latency_ms, problem)
