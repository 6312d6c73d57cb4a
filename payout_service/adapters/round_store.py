"""PostgreSQL store for rounds: plain SQL; a resolution is one SQL transaction."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from payout_service.adapters.payout_store import InvalidPageToken, payout_from_row, token_time
from payout_service.core.model import Payout
from payout_service.core.rounds import RoundState, round_id_problem

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class Round:
    round_id: str
    state: RoundState
    asset: str
    winner_count: int
    total_stroops: int
    resolved_by: str
    created_at: datetime
    closed_at: datetime | None
    resolved_at: datetime | None
    settled_at: datetime | None


def _round(row: asyncpg.Record) -> Round:
    fields = {n: row[n] for n in Round.__dataclass_fields__}
    fields["state"] = RoundState(fields["state"])
    fields["total_stroops"] = int(fields["total_stroops"])  # numeric: a sum may pass int64
    return Round(**fields)


async def insert_round(db: Db, round_id: str, asset: str) -> Round | None:
    """None when the round already exists."""
    row = await db.fetchrow(
        """INSERT INTO rounds (round_id, asset) VALUES ($1, $2)
           ON CONFLICT (round_id) DO NOTHING RETURNING *""",
        round_id, asset,
    )
    return _round(row) if row else None


async def get_round(db: Db, round_id: str, *, for_update: bool = False) -> Round | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await db.fetchrow(f"SELECT * FROM rounds WHERE round_id = $1{lock}", round_id)  # noqa: S608
    return _round(row) if row else None


async def close_round(db: Db, round_id: str) -> Round | None:
    """OPEN -> CLOSED; None when the round is not OPEN (the caller says why)."""
    row = await db.fetchrow(
        """UPDATE rounds SET state = 'CLOSED', closed_at = now()
           WHERE round_id = $1 AND state = 'OPEN' RETURNING *""",
        round_id,
    )
    return _round(row) if row else None


async def mark_resolved(
    conn: asyncpg.Connection, round_id: str, *, winner_count: int, total_stroops: int,
    actor: str,
) -> Round:
    row = await conn.fetchrow(
        """UPDATE rounds SET state = 'RESOLVED', resolved_at = now(), winner_count = $2,
               total_stroops = $3, resolved_by = $4
           WHERE round_id = $1 AND state = 'CLOSED' RETURNING *""",
        round_id, winner_count, total_stroops, actor,
    )
    if row is None:
        raise RuntimeError(f"round {round_id} left CLOSED while locked")
    return _round(row)


async def round_payouts(db: Db, round_id: str) -> list[Payout]:
    rows = await db.fetch(
        "SELECT * FROM payouts WHERE round_id = $1 ORDER BY created_at, payout_id", round_id
    )
    return [payout_from_row(r) for r in rows]


async def settle_resolved_rounds(db: Db, round_id: str | None = None) -> list[str]:
    """RESOLVED -> SETTLED for every round whose payouts are all CONFIRMED."""
    rows = await db.fetch(
        """UPDATE rounds r SET state = 'SETTLED', settled_at = now()
           WHERE r.state = 'RESOLVED' AND ($1::text IS NULL OR r.round_id = $1)
             AND EXISTS (SELECT 1 FROM payouts p WHERE p.round_id = r.round_id)
             AND NOT EXISTS (SELECT 1 FROM payouts p
                             WHERE p.round_id = r.round_id AND p.state <> 'CONFIRMED')
           RETURNING r.round_id""",
        round_id,
    )
    return [r["round_id"] for r in rows]


async def round_counts_by_state(db: Db) -> dict[RoundState, int]:
    """Rounds per state, every state present (zero included): for the round metrics."""
    counts = dict.fromkeys(RoundState, 0)
    for row in await db.fetch("SELECT state, count(*) AS n FROM rounds GROUP BY state"):
        counts[RoundState(row["state"])] = row["n"]
    return counts


def encode_token(created_at: datetime, round_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{round_id}".encode()).decode()


def decode_token(token: str) -> tuple[datetime, str]:
    try:
        created, round_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        if round_id_problem(round_id):
            raise ValueError("not a round id")
        return token_time(created), round_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidPageToken("page_token is not a token this service issued") from None


async def list_rounds(
    db: Db, states: Sequence[RoundState], *, page_size: int, page_token: str | None
) -> tuple[list[Round], str | None]:
    """Newest first, keyset-paginated on (created_at, round_id)."""
    after: tuple[datetime, str] | None = decode_token(page_token) if page_token else None
    rows = await db.fetch(
        """SELECT * FROM rounds
           WHERE (cardinality($1::text[]) = 0 OR state = ANY($1::text[]))
             AND ($2::timestamptz IS NULL OR (created_at, round_id) < ($2, $3))
           ORDER BY created_at DESC, round_id DESC LIMIT $4""",
        [s.value for s in states], after[0] if after else None, after[1] if after else "",
        page_size + 1,
    )
    rounds = [_round(r) for r in rows[:page_size]]
    token = None
    if len(rows) > page_size:
        token = encode_token(rounds[-1].created_at, rounds[-1].round_id)
    return rounds, token
