"""Outbox delivery: POSTs each event to every webhook URL, signed (webhooks.py).

Two queues share it: payout events (`outbox_events`: payout.confirmed / payout.failed, to
PAYOUTS_WEBHOOK_URLS) and alert notifications (`alert_notifications`: alert.raised /
acknowledged / resolved, to the URLs the alert configuration named when the event was written,
with event ids `alert-<n>` so receivers deduplicating on X-Payout-Event-Id never mix the two).

Rows are claimed with FOR UPDATE SKIP LOCKED and leased by pushing next_attempt_at forward,
so replicas share the work and a replica that dies mid-delivery only delays it: delivery is
at least once. delivered_at is set only once every URL has answered 2xx; otherwise the row
is retried with exponential backoff and jitter. The secret never reaches a log or a row.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from payout_service.config import WebhookSettings
from payout_service.core.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    backoff_seconds,
    event_body,
    redacted,
    signature,
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
               WHERE delivered_at IS NULL AND next_attempt_at <= now()
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE {queue.table} o SET attempts = o.attempts + 1,
               next_attempt_at = now() + make_interval(secs => $2)
           FROM due WHERE o.id = due.id
           RETURNING o.id, o.event_type, o.payload, o.created_at, o.attempts{urls}""",  # noqa: S608
        limit, lease_seconds,
    )
    return [OutboxEvent(r["id"], r["event_type"], r["payload"], r["created_at"], r["attempts"],
                        tuple(r["urls"]) if queue.urls_column else None)
            for r in rows]


async def mark_delivered(pool: asyncpg.Pool, event_id: int, queue: Queue = PAYOUT_EVENTS) -> None:
    await pool.execute(
        f"UPDATE {queue.table} SET delivered_at = now(), last_error = NULL WHERE id = $1",  # noqa: S608
        event_id,
    )


async def reschedule(
    pool: asyncpg.Pool, event_id: int, delay: float, error: str, queue: Queue = PAYOUT_EVENTS
) -> None:
    await pool.execute(
        f"""UPDATE {queue.table} SET next_attempt_at = now() + make_interval(secs => $2),
               last_error = $3 WHERE id = $1""",  # noqa: S608
        event_id, delay, error[:1000],
    )


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
        events = await claim_due_events(self.pool, CLAIM_BATCH, self.lease_seconds, self.queue)
        outcomes = await asyncio.gather(*(self._deliver(e) for e in events))
        return sum(outcomes)

    async def _deliver(self, event: OutboxEvent) -> bool:
        shown_id = f"{self.queue.id_prefix}{event.id}"
        body = event_body(shown_id if self.queue.id_prefix else event.id, event.event_type,
                          event.created_at, event.payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(body, self.settings.secret),
            EVENT_ID_HEADER: shown_id,
        }
        errors = []
        for url in self.settings.urls if event.urls is None else event.urls:
            problem = await self._post(url, body, headers)
            if problem:
                errors.append(f"{redacted(url)}: {problem}")
        if not errors:
            await mark_delivered(self.pool, event.id, self.queue)
            return True
        delay = backoff_seconds(
            event.attempts, base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
        )
        await reschedule(self.pool, event.id, delay, "; ".join(errors), self.queue)
        log.warning("webhook delivery failed; will retry", extra={
            "outbox_event_id": shown_id, "attempts": event.attempts,
            "retry_in_seconds": round(delay, 3), "errors": errors,
        })
        return False

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as err:
            return type(err).__name__
