"""Outbox delivery: POSTs each payout.confirmed / payout.failed event to every webhook URL.

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
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from payout_service.programs.settings import WebhookSettings
from payout_service.programs.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    backoff_seconds,
    event_body,
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


def redacted(url: str) -> str:
    """scheme://host/path: no credentials or query string in logs and rows."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def claim_due_events(
    pool: asyncpg.Pool, limit: int, lease_seconds: float
) -> list[OutboxEvent]:
    rows = await pool.fetch(
        """WITH due AS (
               SELECT id FROM outbox_events
               WHERE delivered_at IS NULL AND next_attempt_at <= now()
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE outbox_events o SET attempts = o.attempts + 1,
               next_attempt_at = now() + make_interval(secs => $2)
           FROM due WHERE o.id = due.id
           RETURNING o.id, o.event_type, o.payload, o.created_at, o.attempts""",
        limit, lease_seconds,
    )
    return [OutboxEvent(r["id"], r["event_type"], r["payload"], r["created_at"], r["attempts"])
            for r in rows]


async def mark_delivered(pool: asyncpg.Pool, event_id: int) -> None:
    await pool.execute(
        "UPDATE outbox_events SET delivered_at = now(), last_error = NULL WHERE id = $1", event_id
    )


async def reschedule(pool: asyncpg.Pool, event_id: int, delay: float, error: str) -> None:
    await pool.execute(
        """UPDATE outbox_events SET next_attempt_at = now() + make_interval(secs => $2),
               last_error = $3 WHERE id = $1""",
        event_id, delay, error[:1000],
    )


class OutboxDelivery:
    def __init__(self, pool: asyncpg.Pool, settings: WebhookSettings) -> None:
        self.pool = pool
        self.settings = settings
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
        if not self.settings.urls:
            return 0
        events = await claim_due_events(self.pool, CLAIM_BATCH, self.lease_seconds)
        outcomes = await asyncio.gather(*(self._deliver(e) for e in events))
        return sum(outcomes)

    async def _deliver(self, event: OutboxEvent) -> bool:
        body = event_body(event.id, event.event_type, event.created_at, event.payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(body, self.settings.secret),
            EVENT_ID_HEADER: str(event.id),
        }
        errors = []
        for url in self.settings.urls:
            problem = await self._post(url, body, headers)
            if problem:
                errors.append(f"{redacted(url)}: {problem}")
        if not errors:
            await mark_delivered(self.pool, event.id)
            return True
        delay = backoff_seconds(
            event.attempts, base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
        )
        await reschedule(self.pool, event.id, delay, "; ".join(errors))
        log.warning("webhook delivery failed; will retry", extra={
            "outbox_event_id": event.id, "attempts": event.attempts,
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
