"""PostgreSQL store for payouts: plain SQL, one SQL transaction per state change."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from payout_service.core.model import Attempt, Payout
from payout_service.core.states import PayoutState


@dataclass(frozen=True)
class NewPayout:
    payout_id: str
    idempotency_key: str
    fingerprint: str
    parameters: dict[str, Any]
    destination: str
    asset: str
    gross_stroops: int
    fee_stroops: int
    net_stroops: int
    state: PayoutState
    mode: str
    unsigned_envelope_xdr: str | None
    metadata: dict[str, str]
    reference: str
    correlation_id: str
    round_id: str | None = None
    batch_id: str | None = None
    trace_context: str = ""


class PayoutIdTaken(Exception):
    """The caller's payout_id already belongs to a payout with another idempotency key."""


@dataclass(frozen=True)
class PayoutFilter:
    states: Sequence[PayoutState] = ()
    destination: str | None = None
    round_id: str | None = None
    batch_id: str | None = None


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None  # noqa: S101 - asyncpg types the pool as Optional
    return pool


_ATTEMPT_COLUMNS = [n for n in Attempt.__dataclass_fields__
                    if n not in ("payout_ref", "correlation_id")]
# Selected beside `a.*` where the payout's ids should travel with the attempt (log lines).
PAYOUT_IDS = "p.payout_id AS payout_ref, p.correlation_id"


def _attempt(row: asyncpg.Record, payout: Payout | None = None) -> Attempt:
    fields = {name: row[name] for name in _ATTEMPT_COLUMNS}
    if payout is not None:
        fields.update(payout_ref=payout.payout_id, correlation_id=payout.correlation_id)
    elif "payout_ref" in row.keys():
        fields.update(payout_ref=row["payout_ref"], correlation_id=row["correlation_id"])
    return Attempt(**fields)


def payout_from_row(row: asyncpg.Record, attempt: Attempt | None = None) -> Payout:
    fields = {n: row[n] for n in Payout.__dataclass_fields__ if n != "current_attempt"}
    fields["state"] = PayoutState(fields["state"])
    return Payout(**fields, current_attempt=attempt)


class PayoutStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def find_by_idempotency_key(self, key: str) -> Payout | None:
        row = await self.pool.fetchrow("SELECT * FROM payouts WHERE idempotency_key = $1", key)
        return payout_from_row(row) if row else None

    async def insert_payout(self, new: NewPayout, *, actor: str) -> tuple[Payout, bool]:
        """Inserts the payout and its first audit event atomically.

        Returns (payout, True) when created, (existing, False) when the idempotency key was
        already used. Raises PayoutIdTaken if only the payout_id collides.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            created = await insert_payout_in(conn, new, actor=actor)
            if created is not None:
                return created, True
        existing = await self.find_by_idempotency_key(new.idempotency_key)
        if existing is None:
            raise PayoutIdTaken(new.payout_id)
        return existing, False

    async def get_payout(self, ident: str) -> Payout | None:
        """By server id (UUID) or by the caller's payout_id."""
        return await get_payout_in(self.pool, ident)

    async def list_attempts(self, payout_uuid: UUID) -> list[Attempt]:
        rows = await self.pool.fetch(
            "SELECT * FROM payout_attempts WHERE payout_id = $1 ORDER BY number", payout_uuid
        )
        return [_attempt(r) for r in rows]

    async def list_payouts(
        self, filt: PayoutFilter, *, page_size: int, page_token: str | None
    ) -> tuple[list[Payout], str | None]:
        """Newest first, keyset-paginated on (created_at, id)."""
        clauses, args = [], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if filt.states:
            clauses.append(f"state = ANY({arg([s.value for s in filt.states])}::text[])")
        if filt.destination:
            clauses.append(f"destination = {arg(filt.destination)}")
        if filt.round_id:
            clauses.append(f"round_id = {arg(filt.round_id)}")
        if filt.batch_id:
            clauses.append(f"batch_id = {arg(filt.batch_id)}")
        if page_token:
            created_at, last_id = decode_page_token(page_token)
            clauses.append(f"(created_at, id) < ({arg(created_at)}, {arg(last_id)})")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        # Clauses are fixed strings; every value is a bound parameter.
        sql = (
            f"SELECT * FROM payouts {where} ORDER BY created_at DESC, id DESC "  # noqa: S608
            f"LIMIT {arg(page_size + 1)}"
        )
        rows = await self.pool.fetch(sql, *args)
        payouts = [payout_from_row(r) for r in rows[:page_size]]
        next_token = None
        if len(rows) > page_size:
            last = payouts[-1]
            next_token = encode_page_token(last.created_at, last.id)
        return payouts, next_token

    async def events_after(self, payout_uuid: UUID, after_id: int) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM payout_events WHERE payout_id = $1 AND id > $2 ORDER BY id",
                payout_uuid, after_id,
            )
        )


async def record_event(
    conn: asyncpg.Connection,
    payout_uuid: UUID,
    from_state: PayoutState | None,
    to_state: PayoutState,
    *,
    reason: str,
    actor: str,
    correlation_id: str = "",
    attempt: int | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO payout_events (payout_id, from_state, to_state, attempt, reason, actor,
               correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        payout_uuid, from_state.value if from_state else None, to_state.value, attempt,
        reason, actor, correlation_id,
    )


class InvalidPageToken(ValueError):
    pass


def encode_page_token(created_at: datetime, payout_uuid: UUID) -> str:
    raw = f"{created_at.isoformat()}|{payout_uuid}".encode()
    return base64.urlsafe_b64encode(raw).decode()


# Tokens this service issues carry a row's timestamptz: aware, and in PostgreSQL's range once
# converted to UTC (a crafted year-1 or year-9999 time with an offset is not).
TOKEN_TIMES = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


def token_time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None or not TOKEN_TIMES[0] <= when <= TOKEN_TIMES[1]:
        raise ValueError("not a time this service issues")
    return when


def decode_page_token(token: str) -> tuple[datetime, UUID]:
    try:
        created, ident = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return token_time(created), UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPageToken("page_token is not a token this service issued") from None


async def insert_payout_in(
    conn: asyncpg.Connection, new: NewPayout, *, actor: str
) -> Payout | None:
    """Inserts the payout with its creation event on `conn` (the caller owns the SQL
    transaction). None when the idempotency key or payout_id already exists."""
    row = await conn.fetchrow(
        """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
               destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode,
               unsigned_envelope_xdr, metadata, reference, correlation_id, round_id,
               batch_id, needs_attempt, trace_context)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)
           ON CONFLICT DO NOTHING
           RETURNING *""",
        uuid4(), new.payout_id, new.idempotency_key, new.fingerprint, new.parameters,
        new.destination, new.asset, new.gross_stroops, new.fee_stroops,
        new.net_stroops, new.state.value, new.mode, new.unsigned_envelope_xdr,
        new.metadata, new.reference, new.correlation_id, new.round_id, new.batch_id,
        new.state == PayoutState.ACCEPTED, new.trace_context,
    )
    if row is None:
        return None
    await record_event(
        conn, row["id"], None, new.state, reason="created", actor=actor,
        correlation_id=new.correlation_id,
    )
    return payout_from_row(row)


async def get_payout_in(db: asyncpg.Pool | asyncpg.Connection, ident: str) -> Payout | None:
    try:
        as_uuid: UUID | None = UUID(ident)
    except ValueError:
        as_uuid = None
    row = await db.fetchrow(
        "SELECT * FROM payouts WHERE payout_id = $1 OR id = $2 LIMIT 1", ident, as_uuid
    )
    if row is None:
        return None
    attempt = None
    if row["attempt_count"]:
        arow = await db.fetchrow(
            "SELECT * FROM payout_attempts WHERE payout_id = $1 AND number = $2",
            row["id"], row["attempt_count"],
        )
        attempt = _attempt(arow) if arow else None
    return payout_from_row(row, attempt)
