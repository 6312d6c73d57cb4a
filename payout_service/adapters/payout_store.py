"""PostgreSQL store for payouts: plain SQL, one SQL transaction per state change."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

# Pools come from adapters/database.py (failover-aware); re-exported for the stores' callers.
from payout_service.adapters.database import create_pool as create_pool
from payout_service.adapters.database import redacted_dsn as redacted_dsn
from payout_service.adapters.proof_store import proofs_of
from payout_service.core.errors import FieldViolation, InvalidArgument
from payout_service.core.model import Attempt, Payout
from payout_service.core.states import AttemptStatus, PayoutState

log = logging.getLogger(__name__)


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
    memo_type: str | None = None
    memo_value: str | None = None
    muxed_id: int | None = None


@dataclass(frozen=True)
class PayoutFilter:
    states: Sequence[PayoutState] = ()
    destination: str | None = None
    round_id: str | None = None
    batch_id: str | None = None


_ATTEMPT_COLUMNS = [n for n in Attempt.__dataclass_fields__
                    if n not in ("payout_ref", "correlation_id")]
# Selected beside `a.*` where the payout's ids should travel with the attempt (log lines).
PAYOUT_IDS = "p.payout_id AS payout_ref, p.correlation_id"


def _attempt(row: asyncpg.Record, payout: Payout | None = None) -> Attempt:
    fields = {name: row[name] for name in _ATTEMPT_COLUMNS}
    fields["status"] = AttemptStatus(row["status"])
    if payout is not None:
        fields.update(payout_ref=payout.payout_id, correlation_id=payout.correlation_id)
    elif "payout_ref" in row.keys():
        fields.update(payout_ref=row["payout_ref"], correlation_id=row["correlation_id"])
    return Attempt(**fields)


def payout_from_row(row: asyncpg.Record, attempt: Attempt | None = None) -> Payout:
    fields = {n: row[n] for n in Payout.__dataclass_fields__
              if n not in ("current_attempt", "proof")}
    fields["state"] = PayoutState(fields["state"])
    if fields["muxed_id"] is not None:
        fields["muxed_id"] = int(fields["muxed_id"])  # numeric(20, 0): a uint64
    return Payout(**fields, current_attempt=attempt)


class PayoutStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def find_by_idempotency_key(self, key: str) -> Payout | None:
        row = await self.pool.fetchrow("SELECT * FROM payouts WHERE idempotency_key = $1", key)
        return payout_from_row(row) if row else None

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

        if len(filt.states) == 1:
            # Equality, so the (state, created_at, id) index yields rows in page order.
            clauses.append(f"state = {arg(filt.states[0].value)}")
        elif filt.states:
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
        attempts = await self._current_attempts(rows[:page_size])
        proofs = await proofs_of(self.pool, [r["id"] for r in rows[:page_size]
                                             if r["state"] == PayoutState.CONFIRMED])
        payouts = [replace(payout_from_row(r, attempts.get(r["id"])), proof=proofs.get(r["id"]))
                   for r in rows[:page_size]]
        next_token = None
        if len(rows) > page_size:
            last = payouts[-1]
            next_token = encode_page_token(last.created_at, last.id)
        return payouts, next_token

    async def _current_attempts(self, rows: list[asyncpg.Record]) -> dict[UUID, Attempt]:
        """Each listed payout's current attempt (its hash and ledger), one primary-key probe
        per payout in a single statement, as GetPayout shows it."""
        keys = [(r["id"], r["attempt_count"]) for r in rows if r["attempt_count"]]
        if not keys:
            return {}
        found = await self.pool.fetch(
            "SELECT a.* FROM unnest($1::uuid[], $2::int[]) AS k(payout_id, number)"
            " JOIN payout_attempts a USING (payout_id, number)",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        return {row["payout_id"]: _attempt(row) for row in found}

    async def events_after(self, payout_uuid: UUID, after_id: int) -> list[asyncpg.Record]:
        """The payout's audit trail after event `after_id`, in order: payout_events and, for
        a payout settled long ago, the archive (migration 060); one index probe in each."""
        return list(await self.pool.fetch(_EVENTS_AFTER, payout_uuid, after_id))


_EVENT_COLUMNS = "id, payout_id, from_state, to_state, attempt, reason, actor, correlation_id, at"
_EVENTS_AFTER = f"""
    SELECT {_EVENT_COLUMNS} FROM payout_events WHERE payout_id = $1 AND id > $2
    UNION ALL
    SELECT {_EVENT_COLUMNS} FROM payout_events_archive WHERE payout_id = $1 AND id > $2
    ORDER BY id"""  # noqa: S608 - fixed column names; values are bound parameters
SETTLED = ("CONFIRMED", "FAILED", "CANCELLED")
# The next settled payouts past the cursor, their events moved in the same statement.
_ARCHIVE_EVENTS = f"""
    WITH batch AS (
        SELECT id, updated_at FROM payouts
        WHERE state IN {SETTLED} AND (updated_at, id) > ($1::timestamptz, $2::uuid)
          AND updated_at < now() - $3::interval
        ORDER BY updated_at, id LIMIT $4),
    moved AS (
        DELETE FROM payout_events WHERE payout_id = ANY(ARRAY(SELECT id FROM batch))
        RETURNING {_EVENT_COLUMNS}),
    archived AS (
        INSERT INTO payout_events_archive ({_EVENT_COLUMNS})
        SELECT {_EVENT_COLUMNS} FROM moved RETURNING 1),
    last AS (SELECT updated_at, id FROM batch ORDER BY updated_at DESC, id DESC LIMIT 1)
    SELECT (SELECT count(*) FROM batch) AS payouts, (SELECT count(*) FROM archived) AS events,
           (SELECT updated_at FROM last) AS after_updated, (SELECT id FROM last) AS after_payout
"""  # noqa: S608 - fixed names; values are bound parameters


@dataclass(frozen=True)
class Archived:
    payouts: int
    events: int


async def archive_settled_events(pool: asyncpg.Pool, *, older_than: timedelta,
                                 max_payouts: int = 1000) -> Archived:
    """One step of events retention (migration 060): the events of the next `max_payouts`
    payouts settled more than `older_than` ago move to payout_events_archive, and the cursor
    advances past them, in one SQL transaction (the cursor row's lock keeps replicas from
    running it twice at once). Returns what moved; payouts == 0 when caught up."""
    async with pool.acquire() as conn, conn.transaction():
        cursor = await conn.fetchrow(
            "SELECT after_updated, after_payout FROM payout_events_retention WHERE id = 1 "
            "FOR UPDATE")
        row = await conn.fetchrow(_ARCHIVE_EVENTS, cursor["after_updated"],
                                  cursor["after_payout"], older_than, max_payouts)
        if row["payouts"]:
            await conn.execute(
                """UPDATE payout_events_retention SET after_updated = $1, after_payout = $2,
                       payouts = payouts + $3, events = events + $4, ran_at = now()
                   WHERE id = 1""",
                row["after_updated"], row["after_payout"], row["payouts"], row["events"])
        return Archived(row["payouts"], row["events"])


class InvalidPageToken(InvalidArgument, ValueError):
    @property
    def violations(self) -> list[FieldViolation]:  # type: ignore[override]
        return [FieldViolation("page_token", str(self))]


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


_INSERT_COLUMNS = (
    ("id", "uuid"), ("payout_id", "text"), ("idempotency_key", "text"),
    ("fingerprint", "text"), ("parameters", "jsonb"), ("destination", "text"),
    ("asset", "text"), ("gross_stroops", "bigint"), ("fee_stroops", "bigint"),
    ("net_stroops", "bigint"), ("state", "text"), ("mode", "text"),
    ("unsigned_envelope_xdr", "text"), ("metadata", "jsonb"), ("reference", "text"),
    ("correlation_id", "text"), ("round_id", "text"), ("batch_id", "text"),
    ("needs_attempt", "boolean"), ("trace_context", "text"), ("memo_type", "text"),
    ("memo_value", "text"), ("muxed_id", "numeric"),
)
# One statement, one round trip: the payouts and, for each row actually inserted, its
# creation event (the aggregates follow by trigger, migration 030).
_INSERT_NAMES = ", ".join(c for c, _ in _INSERT_COLUMNS)
_INSERT_ARRAYS = ", ".join(
    f"${i}::{t}[]" for i, (_, t) in enumerate(_INSERT_COLUMNS, start=1))
_ACTORS_ARG = f"${len(_INSERT_COLUMNS) + 1}"
# Fixed names and placeholders only; every value is a bound parameter.
_INSERT_SQL = f"""
    WITH inserted AS (
        INSERT INTO payouts ({_INSERT_NAMES}) SELECT * FROM unnest({_INSERT_ARRAYS})
        ON CONFLICT DO NOTHING
        RETURNING id, idempotency_key, state, correlation_id, created_at, updated_at),
    events AS (
        INSERT INTO payout_events (payout_id, from_state, to_state, reason, actor,
                                   correlation_id)
        SELECT inserted.id, NULL, inserted.state, 'created', a.actor, inserted.correlation_id
        FROM inserted JOIN unnest($1::uuid[], {_ACTORS_ARG}::text[]) AS a(id, actor)
            ON a.id = inserted.id)
    SELECT id, idempotency_key, created_at, updated_at FROM inserted"""  # noqa: S608


async def insert_payouts_in(
    db: asyncpg.Connection | asyncpg.Pool, news: Sequence[NewPayout], *,
    actor: str | Sequence[str],
) -> list[Payout | None]:
    """Inserts the payouts and their creation events in one statement, on `db` (a
    connection whose SQL transaction the caller owns, or the pool: the statement is atomic by
    itself). `actor` is one caller for all, or one per item. In input order: the new payout,
    or None where the idempotency key or payout_id exists already (or repeats an earlier
    item)."""
    if not news:
        return []
    actors = [actor] * len(news) if isinstance(actor, str) else list(actor)
    ids = [uuid4() for _ in news]
    values = [
        (ident, n.payout_id, n.idempotency_key, n.fingerprint, n.parameters, n.destination,
         n.asset, n.gross_stroops, n.fee_stroops, n.net_stroops, n.state.value, n.mode,
         n.unsigned_envelope_xdr, n.metadata, n.reference, n.correlation_id, n.round_id,
         n.batch_id, n.state == PayoutState.ACCEPTED, n.trace_context, n.memo_type,
         n.memo_value, n.muxed_id)
        for ident, n in zip(ids, news, strict=True)
    ]
    rows = await db.fetch(_INSERT_SQL, *(list(column) for column in zip(*values, strict=True)),
                          actors)
    # The row is what was sent plus the defaults and times the database gave it: built here
    # rather than read back (RETURNING * decoded both jsonb columns of every row again).
    by_key = {r["idempotency_key"]: r for r in rows}
    out: list[Payout | None] = []
    for ident, n in zip(ids, news, strict=True):
        row = by_key.get(n.idempotency_key)
        out.append(_new_payout(n, row) if row is not None and row["id"] == ident else None)
    return out


def _new_payout(n: NewPayout, row: asyncpg.Record) -> Payout:
    """A just-inserted payout: the values inserted, the column defaults (migration 001)."""
    return Payout(
        id=row["id"], payout_id=n.payout_id, idempotency_key=n.idempotency_key,
        fingerprint=n.fingerprint, parameters=n.parameters, destination=n.destination,
        asset=n.asset, gross_stroops=n.gross_stroops, fee_stroops=n.fee_stroops,
        net_stroops=n.net_stroops, state=n.state, mode=n.mode,
        unsigned_envelope_xdr=n.unsigned_envelope_xdr, attempt_count=0, failure_code=None,
        failure_message=None, metadata=n.metadata, reference=n.reference,
        round_id=n.round_id, batch_id=n.batch_id, correlation_id=n.correlation_id,
        trace_context=n.trace_context, network_fee_stroops=None,
        created_at=row["created_at"], updated_at=row["updated_at"], confirmed_at=None,
        memo_type=n.memo_type, memo_value=n.memo_value, muxed_id=n.muxed_id)


async def payouts_by_keys(db: asyncpg.Pool | asyncpg.Connection, keys: Sequence[str],
                          ) -> dict[str, Payout]:
    rows = await db.fetch(
        "SELECT * FROM payouts WHERE idempotency_key = ANY($1::text[])", list(set(keys))
    )
    return {r["idempotency_key"]: payout_from_row(r) for r in rows}


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
    proof = None
    if row["state"] == PayoutState.CONFIRMED:
        proof = (await proofs_of(db, [row["id"]])).get(row["id"])
    return replace(payout_from_row(row, attempt), proof=proof)
