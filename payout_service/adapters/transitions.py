"""The one writer of `payouts.state` and `payout_attempts.status`.

Each change is one guarded statement, `UPDATE … WHERE id = $1 AND state = ANY($allowed)
RETURNING …`, where `allowed` comes from the pure tables in core/states.py; the audit event
and any outbox row are written on the same connection, inside the caller's SQL transaction
(invariant 4). No row matched means the move is not allowed from the row's current state:
IllegalTransition. tests/unit/test_one_writer.py fails if any other module writes a state.

Lock order, everywhere: the payout row first, then its attempt rows, then source_accounts
and released_sequences rows. Work queues take the first lock with SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from payout_service import metrics
from payout_service.adapters.payout_store import _attempt, payout_from_row
from payout_service.core.model import Attempt, Payout
from payout_service.core.states import (
    AttemptStatus,
    IllegalTransition,
    PayoutState,
    attempt_sources,
    payout_sources,
    requeue_target,
)

S = PayoutState


class Now:
    """SET column = now()."""


class Increment:
    """SET column = column + 1."""


NOW, INCREMENT = Now(), Increment()

# Columns a transition may set beside the state, with their SQL types (per-row values are
# bound as typed arrays); names are fixed here, values are bound.
PAYOUT_COLUMNS = {
    "needs_attempt": "boolean", "next_attempt_at": "timestamptz", "failure_code": "text",
    "failure_message": "text", "attempt_count": "integer", "unsigned_envelope_xdr": "text",
    "confirmed_at": "timestamptz", "network_fee_stroops": "bigint", "mode": "text",
}
ATTEMPT_COLUMNS = {
    "envelope_xdr": "text", "signed": "boolean", "result_code": "text", "proof": "text",
    "ledger": "integer", "fee_stroops": "bigint", "submitted_at": "timestamptz",
    "submitted_ledger": "integer", "send_count": "integer", "next_poll_at": "timestamptz",
    "last_sent_ledger": "integer", "classic_ops": "integer",
}
_COUNTED = frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED})
_OUTBOX = {S.CONFIRMED: "payout.confirmed", S.FAILED: "payout.failed"}


@dataclass(frozen=True)
class PayoutMove:
    """One payout of a set-based move: its own reason, attempt and per-row column values
    (every move of one call sets the same per-row columns)."""

    payout_uuid: UUID
    reason: str
    attempt: int | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptMove:
    payout_uuid: UUID
    number: int
    values: Mapping[str, Any] = field(default_factory=dict)


class _Args:
    """Bound parameters, numbered as they are added."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def bind(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _assignments(sets: Mapping[str, Any], columns: Mapping[str, str], args: _Args) -> str:
    parts = []
    for column, value in sets.items():
        if column not in columns:
            raise ValueError(f"a transition may not set {column!r}")
        if value is NOW:
            parts.append(f"{column} = now()")
        elif value is INCREMENT:
            parts.append(f"{column} = {column} + 1")
        else:
            parts.append(f"{column} = {args.bind(value)}")
    return "".join(f", {p}" for p in parts)


def _per_row(moves: Sequence[PayoutMove] | Sequence[AttemptMove], columns: Mapping[str, str],
             args: _Args) -> tuple[str, str, str]:
    """(unnest arguments, their aliases, assignments) for the per-row values of `moves`."""
    names = list(moves[0].values) if moves else []
    if any(list(m.values) != names for m in moves):
        raise ValueError("every move of one call sets the same per-row columns")
    unnest, aliases, sets = [], [], []
    for i, column in enumerate(names):
        if column not in columns:
            raise ValueError(f"a transition may not set {column!r}")
        unnest.append(f", {args.bind([m.values[column] for m in moves])}::{columns[column]}[]")
        aliases.append(f", v{i}")
        sets.append(f", {column} = i.v{i}")
    return "".join(unnest), "".join(aliases), "".join(sets)


async def move_payout(
    conn: asyncpg.Connection, payout_uuid: UUID, target: PayoutState, *, reason: str,
    actor: str, attempt: int | None = None, only_from: frozenset[PayoutState] | None = None,
    sets: Mapping[str, Any] | None = None,
) -> Payout:
    """Moves the payout to `target` if its current state allows it (narrowed further by
    `only_from`), with its audit event, its outbox event and the terminal-state counter."""
    [payout] = await move_payouts(conn, target, [PayoutMove(payout_uuid, reason, attempt)],
                                  actor=actor, only_from=only_from, sets=sets)
    return payout


async def move_payouts(
    conn: asyncpg.Connection, target: PayoutState, moves: Sequence[PayoutMove], *, actor: str,
    only_from: frozenset[PayoutState] | None = None, sets: Mapping[str, Any] | None = None,
) -> list[Payout]:
    """Moves every payout of `moves` to `target` in one guarded statement, or none: if one is
    not in an allowed state, IllegalTransition (the caller's SQL transaction rolls back). One
    statement for the events and one for the outbox rows, whatever the number of payouts.
    Returns the payouts in the order of `moves`."""
    if not moves:
        return []
    ids = [m.payout_uuid for m in moves]
    if len(set(ids)) != len(ids):
        raise ValueError("a payout appears twice in one move")
    allowed = payout_sources(target)
    if only_from is not None:
        allowed &= only_from
    args = _Args()
    ids_arg, target_arg = args.bind(ids), args.bind(target.value)
    allowed_arg = args.bind([s.value for s in allowed])
    attempts_arg = args.bind([m.attempt for m in moves])
    reasons_arg = args.bind([m.reason for m in moves])
    common = _assignments(sets or {}, PAYOUT_COLUMNS, args)
    unnest, aliases, per_row = _per_row(moves, PAYOUT_COLUMNS, args)
    # The CTE locks the rows in id order (the lock order) and keeps the states they had,
    # for the audit events.
    rows = await conn.fetch(
        f"""WITH before AS (SELECT id, state FROM payouts WHERE id = ANY({ids_arg}::uuid[])
                            ORDER BY id FOR UPDATE),
                 i AS (SELECT * FROM unnest({ids_arg}::uuid[], {attempts_arg}::integer[],
                                            {reasons_arg}::text[]{unnest})
                       AS t(id, attempt, reason{aliases}))
            UPDATE payouts p SET state = {target_arg}, updated_at = now(){common}{per_row}
            FROM before JOIN i ON i.id = before.id
            WHERE p.id = before.id AND before.state = ANY({allowed_arg}::text[])
            RETURNING p.*, before.state AS from_state, i.attempt AS move_attempt,
                      i.reason AS move_reason""",  # noqa: S608 - fixed column names
        *args.values,
    )
    if len(rows) != len(moves):
        moved = {r["id"] for r in rows}
        stuck = next(u for u in ids if u not in moved)
        current = await conn.fetchval("SELECT state FROM payouts WHERE id = $1", stuck)
        raise IllegalTransition(PayoutState(current) if current else None, target)
    changed = [r for r in rows if r["from_state"] != target]  # same state: a new attempt only
    if changed:
        await conn.execute(
            """INSERT INTO payout_events (payout_id, from_state, to_state, attempt, reason,
                   actor, correlation_id)
               SELECT id, from_state, $2, attempt, reason, $3, correlation_id
               FROM unnest($1::uuid[], $4::text[], $5::integer[], $6::text[], $7::text[])
                 AS t(id, from_state, attempt, reason, correlation_id)""",
            [r["id"] for r in changed], target.value, actor,
            [r["from_state"] for r in changed], [r["move_attempt"] for r in changed],
            [r["move_reason"] for r in changed], [r["correlation_id"] for r in changed],
        )
        if target in _OUTBOX:
            await _outbox(conn, changed, _OUTBOX[target])
        if target in _COUNTED:
            metrics.PAYOUTS_TERMINAL.labels(target.value.lower()).inc(len(changed))
    by_id = {r["id"]: payout_from_row(r) for r in rows}
    return [by_id[u] for u in ids]


async def move_attempt(
    conn: asyncpg.Connection, payout_uuid: UUID, number: int, target: AttemptStatus, *,
    only_from: frozenset[AttemptStatus] | None = None, sets: Mapping[str, Any] | None = None,
) -> Attempt:
    """Moves one attempt to `target` if the attempt table allows it from its status."""
    [attempt] = await move_attempts(conn, target, [AttemptMove(payout_uuid, number)],
                                    only_from=only_from, sets=sets)
    return attempt


async def move_attempts(
    conn: asyncpg.Connection, target: AttemptStatus, moves: Sequence[AttemptMove], *,
    only_from: frozenset[AttemptStatus] | None = None, sets: Mapping[str, Any] | None = None,
) -> list[Attempt]:
    """Moves every attempt of `moves` to `target` in one guarded statement, or none
    (IllegalTransition). The caller holds their payouts' locks (the lock order)."""
    if not moves:
        return []
    keys = [(m.payout_uuid, m.number) for m in moves]
    if len(set(keys)) != len(keys):
        raise ValueError("an attempt appears twice in one move")
    allowed = attempt_sources(target)
    if only_from is not None:
        allowed &= only_from
    args = _Args()
    ids_arg, numbers_arg = args.bind([k[0] for k in keys]), args.bind([k[1] for k in keys])
    target_arg, allowed_arg = args.bind(target.value), args.bind([s.value for s in allowed])
    common = _assignments(sets or {}, ATTEMPT_COLUMNS, args)
    unnest, aliases, per_row = _per_row(moves, ATTEMPT_COLUMNS, args)
    rows = await conn.fetch(
        f"""UPDATE payout_attempts a SET status = {target_arg}, updated_at = now(){common}{per_row}
            FROM unnest({ids_arg}::uuid[], {numbers_arg}::integer[]{unnest})
              AS i(payout_id, number{aliases})
            WHERE a.payout_id = i.payout_id AND a.number = i.number
              AND a.status = ANY({allowed_arg}::text[])
            RETURNING a.*""",  # noqa: S608 - fixed column names
        *args.values,
    )
    if len(rows) != len(moves):
        moved = {(r["payout_id"], r["number"]) for r in rows}
        payout_uuid, number = next(k for k in keys if k not in moved)
        current = await conn.fetchval(
            "SELECT status FROM payout_attempts WHERE payout_id = $1 AND number = $2",
            payout_uuid, number,
        )
        raise IllegalTransition(AttemptStatus(current) if current else None, target,
                                what=f"attempt {number}")
    by_key = {(r["payout_id"], r["number"]): _attempt(r) for r in rows}
    return [by_key[k] for k in keys]


async def _outbox(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record],
                  event_type: str) -> None:
    """Queued in the state change's own SQL transaction, so an event exists if and only if
    the payout reached that state (never before confirmation on chain)."""
    attempts = {(a["payout_id"], a["number"]): a for a in await conn.fetch(
        """SELECT a.payout_id, a.number, a.tx_hash, a.ledger FROM payout_attempts a
           JOIN unnest($1::uuid[], $2::integer[]) AS k(payout_id, number)
             ON a.payout_id = k.payout_id AND a.number = k.number""",
        [r["id"] for r in rows], [r["attempt_count"] for r in rows],
    )}
    payloads = []
    for row in rows:
        attempt = attempts.get((row["id"], row["attempt_count"]))
        payloads.append((row["id"], event_type, {
            "type": event_type, "id": str(row["id"]), "payout_id": row["payout_id"],
            "destination": row["destination"], "asset": row["asset"],
            "gross_stroops": row["gross_stroops"], "fee_stroops": row["fee_stroops"],
            "net_stroops": row["net_stroops"], "state": row["state"],
            "tx_hash": attempt["tx_hash"] if attempt else None,
            "ledger": attempt["ledger"] if attempt else None,
            "failure_code": row["failure_code"], "correlation_id": row["correlation_id"],
            "round_id": row["round_id"], "batch_id": row["batch_id"],
            # What the payee is credited by (exchange deposits); the muxed id is a uint64, as
            # text so a JSON reader with doubles keeps every digit.
            "memo": ({"type": row["memo_type"], "value": row["memo_value"]}
                     if row["memo_type"] is not None else None),
            "muxed_id": str(row["muxed_id"]) if row["muxed_id"] is not None else None,
        }))
    await conn.executemany(
        "INSERT INTO outbox_events (payout_id, event_type, payload) VALUES ($1, $2, $3)",
        payloads,
    )


async def requeue(
    conn: asyncpg.Connection, payout_uuid: UUID, *, attempt: int, reason: str, actor: str,
    not_before: Any,
) -> Payout:
    """The payout needs a new attempt (its last one is proven dead or never left us)."""
    [payout] = await requeue_many(conn, [PayoutMove(payout_uuid, reason, attempt)],
                                  actor=actor, not_before=not_before)
    return payout


async def requeue_many(
    conn: asyncpg.Connection, moves: Sequence[PayoutMove], *, actor: str,
    not_before: Any = None,
) -> list[Payout]:
    """`requeue` for many payouts: one statement per current state (each goes to
    requeue_target of it). `not_before` applies to all, unless each move carries its own
    `next_attempt_at` value."""
    if not moves:
        return []
    current = {r["id"]: PayoutState(r["state"]) for r in await conn.fetch(
        "SELECT id, state FROM payouts WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        [m.payout_uuid for m in moves],
    )}
    by_state: dict[PayoutState, list[PayoutMove]] = {}
    for m in moves:
        if m.payout_uuid not in current:
            raise IllegalTransition(None, S.QUEUED)
        by_state.setdefault(current[m.payout_uuid], []).append(m)
    sets: dict[str, Any] = {"needs_attempt": True}
    if not_before is not None:
        sets["next_attempt_at"] = not_before
    out: dict[UUID, Payout] = {}
    for state, group in by_state.items():
        for payout in await move_payouts(conn, requeue_target(state), group, actor=actor,
                                         only_from=frozenset({state}), sets=sets):
            out[payout.id] = payout
    return [out[m.payout_uuid] for m in moves]


async def move_for_funds(pool: asyncpg.Pool, hold: Sequence[UUID], release: Sequence[UUID],
                         *, reason: str) -> tuple[int, int]:
    """The one place payouts enter and leave AWAITING_FUNDS: `hold` from ACCEPTED, `release`
    back to ACCEPTED (nothing was built, so it is built as if new). Each payout moves in a
    statement of its own, skipped if another worker changed it meanwhile (cancelled, built,
    or already moved). Returns (held, released)."""
    counts = [0, 0]
    for i, (ids, target, source) in enumerate((
            (hold, S.AWAITING_FUNDS, S.ACCEPTED), (release, S.ACCEPTED, S.AWAITING_FUNDS))):
        for payout_uuid in ids:
            async with pool.acquire() as conn, conn.transaction():
                # Only a payout with nothing built is held: another replica may have built
                # this one since it was read (its attempt then counts as in flight, and a
                # built payout in AWAITING_FUNDS could be neither signed nor rebuilt).
                if target == S.AWAITING_FUNDS and not await conn.fetchval(
                        "SELECT needs_attempt FROM payouts WHERE id = $1 FOR UPDATE",
                        payout_uuid):
                    continue
                try:
                    await move_payout(conn, payout_uuid, target, actor="preparer",
                                      reason=reason if target == S.AWAITING_FUNDS
                                      else "funds_available", only_from=frozenset({source}))
                except IllegalTransition:
                    continue
            counts[i] += 1
    return counts[0], counts[1]
