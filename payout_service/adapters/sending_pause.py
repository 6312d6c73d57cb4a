"""Sending paused (migration 111): one row every replica's sender reads, set by an operator or
by the watchdog, cleared by an operator only. Every change writes an audit row in the same SQL
transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection

# The sender reads the flag at most this often: a pause takes effect within a second, and a
# busy sender costs the database one read a second for it.
CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class PauseState:
    paused: bool
    reason: str
    changed_by: str
    changed_at: datetime
    finding_id: int | None


class SendingPause:
    """The sender's cheap read of the flag, cached for CACHE_SECONDS."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._paused = False
        self._read_at = float("-inf")

    async def paused(self) -> bool:
        now = time.monotonic()
        if now - self._read_at >= CACHE_SECONDS:
            self._paused = bool(await self.pool.fetchval(
                "SELECT paused FROM sending_pause WHERE id = 1"))
            self._read_at = now
        return self._paused


def _state(row: asyncpg.Record) -> PauseState:
    return PauseState(row["paused"], row["reason"], row["changed_by"], row["changed_at"],
                      row["finding_id"])


async def pause_state(db: Db) -> PauseState:
    row = await db.fetchrow("SELECT * FROM sending_pause WHERE id = 1")
    assert row is not None  # noqa: S101 - migration 111 inserts it
    return _state(row)


async def set_paused(
    db: Db, paused: bool, *, reason: str, actor: str, correlation_id: str = "",
    finding_id: int | None = None,
) -> PauseState | None:
    """Pauses or resumes; None when it already was (nothing written). One statement: the
    guarded update and its audit row."""
    row = await db.fetchrow(
        """WITH changed AS (
               UPDATE sending_pause SET paused = $1, reason = $2, changed_by = $3,
                   changed_at = now(), finding_id = $5
               WHERE id = 1 AND paused <> $1
               RETURNING *),
           audited AS (
               INSERT INTO sending_pause_audit (paused, reason, actor, correlation_id,
                                                finding_id)
               SELECT paused, reason, changed_by, $4, finding_id FROM changed)
           SELECT * FROM changed""",
        paused, reason, actor, correlation_id, finding_id,
    )
    return _state(row) if row else None
