"""PostgreSQL for destination screening (migration 200): the allow and deny lists, and the
audit trail of every change, written in the same SQL transaction as the change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from payout_service.core.screening import ListKind, ScreeningEntry

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class StoredEntry:
    entry: ScreeningEntry
    added_by: str
    created_at: datetime


def _stored(row: asyncpg.Record) -> StoredEntry:
    return StoredEntry(ScreeningEntry(row["address"], ListKind(row["list_kind"]), row["reason"]),
                       row["added_by"], row["created_at"])


async def entries_for(db: Db, addresses: Sequence[str]) -> list[ScreeningEntry]:
    """The entries of these addresses, on either list (the primary key serves the lookup)."""
    if not addresses:
        return []
    rows = await db.fetch(
        "SELECT address, list_kind, reason FROM screening_entries WHERE address = ANY($1)",
        list(addresses))
    return [ScreeningEntry(r["address"], ListKind(r["list_kind"]), r["reason"]) for r in rows]


async def add_entry(pool: asyncpg.Pool, entry: ScreeningEntry, *, actor: str,
                    correlation_id: str) -> tuple[StoredEntry, bool]:
    """(the stored entry, True) or, if the address is already on that list, (the earlier
    entry, False), unchanged and not audited again."""
    async with pool.acquire() as conn, conn.transaction():
        # The no-op update locks and returns the existing row; xmax = 0 only on an insert.
        row = await conn.fetchrow(
            """INSERT INTO screening_entries (address, list_kind, reason, added_by)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (address, list_kind) DO UPDATE SET reason = screening_entries.reason
               RETURNING *, (xmax = 0) AS inserted""",
            entry.address, entry.kind.value, entry.reason, actor)
        if row["inserted"]:
            await _audit(conn, entry, "added", entry.reason, actor, correlation_id)
    return _stored(row), bool(row["inserted"])


async def remove_entry(pool: asyncpg.Pool, address: str, kind: ListKind, *, reason: str,
                       actor: str, correlation_id: str) -> StoredEntry | None:
    """The removed entry, or None if the address was not on that list."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "DELETE FROM screening_entries WHERE address = $1 AND list_kind = $2 RETURNING *",
            address, kind.value)
        if row is None:
            return None
        removed = _stored(row)
        await _audit(conn, removed.entry, "removed", reason, actor, correlation_id)
    return removed


async def _audit(conn: asyncpg.Connection, entry: ScreeningEntry, change: str, reason: str,
                 actor: str, correlation_id: str) -> None:
    await conn.execute(
        """INSERT INTO screening_changes (address, list_kind, change, reason, actor,
                                          correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        entry.address, entry.kind.value, change, reason, actor, correlation_id)


async def list_entries(db: Db, kind: ListKind | None, *, limit: int,
                       after: tuple[str, str] | None) -> list[StoredEntry]:
    """Ordered by address then list; `after` is the (address, list) the previous page ended
    with."""
    rows = await db.fetch(
        """SELECT * FROM screening_entries
           WHERE ($1::text IS NULL OR list_kind = $1)
             AND ($2::text IS NULL OR (address, list_kind) > ($2, $3))
           ORDER BY address, list_kind LIMIT $4""",
        kind.value if kind else None, after[0] if after else None,
        after[1] if after else None, limit)
    return [_stored(r) for r in rows]
