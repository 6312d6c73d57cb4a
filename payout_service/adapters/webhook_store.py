"""PostgreSQL for webhook deliveries: the attempt log, the end of an attempt (delivered,
retried later or dead-lettered), the deliveries as operators list them, and redelivery.

Both outboxes (payout events, alert notifications; app/outbox.py) are read here; an event id
names its outbox (core/webhooks.py EventRef). Each outcome is one SQL transaction: the log
rows and the state of the event change together.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from payout_service.adapters.payout_store import token_time
from payout_service.core.webhooks import EventRef, parse_event_id

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection

DELIVERY_STATES = ("PENDING", "DELIVERED", "DEAD_LETTERED")
ATTEMPTS_SHOWN = 50  # per delivery in a listing, newest first


def _table(ref: EventRef) -> str:
    return "alert_notifications" if ref.alert else "outbox_events"


@dataclass(frozen=True)
class AttemptOutcome:
    url: str  # redacted
    status_code: int | None
    latency_ms: int
    error: str


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt: int
    url: str
    status_code: int | None
    latency_ms: int
    error: str
    attempted_at: datetime


@dataclass(frozen=True)
class Delivery:
    event_id: str
    event_type: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    dead_lettered_at: datetime | None
    last_error: str
    log: tuple[DeliveryAttempt, ...] = ()


async def _log_attempts(
    conn: asyncpg.Connection, ref: EventRef, attempt: int, outcomes: list[AttemptOutcome]
) -> None:
    await conn.executemany(
        """INSERT INTO webhook_delivery_attempts
               (event_id, attempt, url, status_code, latency_ms, error)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [(ref.event_id, attempt, o.url, o.status_code, o.latency_ms, o.error[:1000])
         for o in outcomes],
    )


async def record_delivered(
    pool: asyncpg.Pool, ref: EventRef, attempt: int, outcomes: list[AttemptOutcome], *,
    attempts_at_requeue: int,
) -> None:
    """Marks the event delivered unless it was claimed again or redelivered meanwhile: a
    redelivery asked for during this attempt is still sent."""
    async with pool.acquire() as conn, conn.transaction():
        await _log_attempts(conn, ref, attempt, outcomes)
        await conn.execute(
            f"""UPDATE {_table(ref)} SET delivered_at = now(), last_error = NULL
                WHERE id = $1 AND dead_lettered_at IS NULL AND attempts = $2
                  AND attempts_at_requeue = $3""",  # noqa: S608 - fixed names
            ref.row_id, attempt, attempts_at_requeue,
        )


async def record_failed(
    pool: asyncpg.Pool, ref: EventRef, attempt: int, outcomes: list[AttemptOutcome],
    error: str, *, retry_in_seconds: float | None, attempts_at_requeue: int,
) -> None:
    """retry_in_seconds None: the budget is spent, the event is dead-lettered. The state
    changes only if the event is still as this attempt claimed it (no later claim, no
    redelivery meanwhile): a stale outcome is logged and changes nothing else."""
    async with pool.acquire() as conn, conn.transaction():
        await _log_attempts(conn, ref, attempt, outcomes)
        if retry_in_seconds is None:
            await conn.execute(
                f"""UPDATE {_table(ref)} SET dead_lettered_at = now(), last_error = $2
                    WHERE id = $1 AND delivered_at IS NULL AND dead_lettered_at IS NULL
                      AND attempts = $3 AND attempts_at_requeue = $4""",  # noqa: S608
                ref.row_id, error[:1000], attempt, attempts_at_requeue,
            )
        else:
            await conn.execute(
                f"""UPDATE {_table(ref)}
                    SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
                    WHERE id = $1 AND attempts = $4 AND attempts_at_requeue = $5""",  # noqa: S608
                ref.row_id, retry_in_seconds, error[:1000], attempt, attempts_at_requeue,
            )


async def dead_lettered_count(db: Db) -> int:
    value = await db.fetchval(
        """SELECT (SELECT count(*) FROM outbox_events WHERE dead_lettered_at IS NOT NULL)
                + (SELECT count(*) FROM alert_notifications WHERE dead_lettered_at IS NOT NULL)""")
    return int(value or 0)


async def redeliver(db: Db, ref: EventRef) -> bool:
    """Queues the event again, due now, with a fresh retry budget; False if it does not
    exist. An attempt in flight meanwhile no longer changes the event's state (its outcome
    is logged), so the redelivery is sent whatever that attempt's answer."""
    row = await db.fetchrow(
        f"""UPDATE {_table(ref)} SET attempts_at_requeue = attempts,
               delivered_at = NULL, dead_lettered_at = NULL, next_attempt_at = now()
            WHERE id = $1 RETURNING id""",  # noqa: S608
        ref.row_id,
    )
    return row is not None


_STATE = """CASE WHEN delivered_at IS NOT NULL THEN 'DELIVERED'
                WHEN dead_lettered_at IS NOT NULL THEN 'DEAD_LETTERED'
                ELSE 'PENDING' END"""


def _newest_of(ref_alert: bool) -> str:
    """One outbox's next page, read backwards along its (created_at, id) index from the
    token: pages cost the page, not the rows before it. Ties on created_at are ordered by
    outbox (alerts after payouts), then id, as in list_deliveries."""
    table, source, prefix = (("alert_notifications", 1, "alert-") if ref_alert
                             else ("outbox_events", 0, ""))
    return f"""(SELECT {source} AS source, id, '{prefix}' || id AS event_id, event_type,
                   created_at, attempts, next_attempt_at, delivered_at, dead_lettered_at,
                   COALESCE(last_error, '') AS last_error, {_STATE} AS state
               FROM {table}
               WHERE (cardinality($1::text[]) = 0 OR {_STATE} = ANY($1::text[]))
                 AND ($2::timestamptz IS NULL OR (created_at <= $2 AND (created_at < $2
                      OR ({source}, id) < ($3::int, $4::bigint))))
               ORDER BY created_at DESC, id DESC LIMIT $5)"""  # noqa: S608 - fixed names


class InvalidDeliveryPageToken(ValueError):
    pass


def encode_page_token(created_at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{event_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        at, _, event_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        created_at = token_time(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidDeliveryPageToken("is not a token this server gave") from None
    if parse_event_id(event_id) is None:
        raise InvalidDeliveryPageToken("is not a token this server gave")
    return created_at, event_id


async def list_deliveries(
    db: Db, *, states: list[str], limit: int, after: tuple[datetime, str] | None,
) -> list[Delivery]:
    """Both outboxes, newest first; `after` is the (created_at, event_id) of the last row of
    the previous page."""
    last = parse_event_id(after[1]) if after else None
    rows = await db.fetch(
        f"""SELECT * FROM ({_newest_of(False)} UNION ALL {_newest_of(True)}) d
            ORDER BY created_at DESC, source DESC, id DESC LIMIT $5""",  # noqa: S608
        states, after[0] if after else None, int(last.alert) if last else 0,
        last.row_id if last else 0, limit,
    )
    logs = await _attempt_logs(db, [r["event_id"] for r in rows])
    return [_delivery(r, logs.get(r["event_id"], ())) for r in rows]


async def get_delivery(db: Db, ref: EventRef) -> Delivery | None:
    """By primary key of its own outbox (no scan of the union)."""
    row = await db.fetchrow(
        f"""SELECT $2::text AS event_id, event_type, created_at, attempts, next_attempt_at,
                   delivered_at, dead_lettered_at, COALESCE(last_error, '') AS last_error,
                   CASE WHEN delivered_at IS NOT NULL THEN 'DELIVERED'
                        WHEN dead_lettered_at IS NOT NULL THEN 'DEAD_LETTERED'
                        ELSE 'PENDING' END AS state
            FROM {_table(ref)} WHERE id = $1""",  # noqa: S608
        ref.row_id, ref.event_id,
    )
    if row is None:
        return None
    logs = await _attempt_logs(db, [ref.event_id])
    return _delivery(row, logs.get(ref.event_id, ()))


async def _attempt_logs(db: Db, event_ids: list[str]) -> dict[str, tuple[DeliveryAttempt, ...]]:
    rows = await db.fetch(
        """SELECT * FROM (
               SELECT a.*, row_number() OVER (PARTITION BY event_id ORDER BY id DESC) AS n
               FROM webhook_delivery_attempts a WHERE event_id = ANY($1::text[])) t
           WHERE n <= $2 ORDER BY event_id, id DESC""",
        event_ids, ATTEMPTS_SHOWN,
    )
    found: dict[str, list[DeliveryAttempt]] = {}
    for r in rows:
        found.setdefault(r["event_id"], []).append(DeliveryAttempt(
            attempt=r["attempt"], url=r["url"], status_code=r["status_code"],
            latency_ms=r["latency_ms"], error=r["error"], attempted_at=r["attempted_at"]))
    return {k: tuple(v) for k, v in found.items()}


def _delivery(row: asyncpg.Record, log: tuple[DeliveryAttempt, ...]) -> Delivery:
    pending = row["state"] == "PENDING"
    return Delivery(
        event_id=row["event_id"], event_type=row["event_type"], state=row["state"],
        attempts=row["attempts"], created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        delivered_at=row["delivered_at"], dead_lettered_at=row["dead_lettered_at"],
        last_error=row["last_error"], log=log,
    )
