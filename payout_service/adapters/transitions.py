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

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

from payout_service import metrics
from payout_service.adapters.payout_store import _attempt, payout_from_row, record_event
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

# Columns a transition may set beside the state; names are fixed here, values are bound.
PAYOUT_COLUMNS = frozenset({
    "needs_attempt", "next_attempt_at", "failure_code", "failure_message", "attempt_count",
    "unsigned_envelope_xdr", "confirmed_at", "network_fee_stroops",
})
ATTEMPT_COLUMNS = frozenset({
    "envelope_xdr", "signed", "result_code", "proof", "ledger", "fee_stroops", "submitted_at",
    "submitted_ledger", "send_count", "next_poll_at",
})
_COUNTED = frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED})
_OUTBOX = {S.CONFIRMED: "payout.confirmed", S.FAILED: "payout.failed"}


def _assignments(sets: Mapping[str, Any], allowed: frozenset[str], first_arg: int,
                 ) -> tuple[str, list[Any]]:
    parts, args = [], []
    for column, value in sets.items():
        if column not in allowed:
            raise ValueError(f"a transition may not set {column!r}")
        if value is NOW:
            parts.append(f"{column} = now()")
        elif value is INCREMENT:
            parts.append(f"{column} = {column} + 1")
        else:
            args.append(value)
            parts.append(f"{column} = ${first_arg + len(args) - 1}")
    return "".join(f", {p}" for p in parts), args


async def move_payout(
    conn: asyncpg.Connection, payout_uuid: UUID, target: PayoutState, *, reason: str,
    actor: str, attempt: int | None = None, only_from: frozenset[PayoutState] | None = None,
    sets: Mapping[str, Any] | None = None,
) -> Payout:
    """Moves the payout to `target` if its current state allows it (narrowed further by
    `only_from`), with its audit event, its outbox event and the terminal-state counter."""
    allowed = payout_sources(target)
    if only_from is not None:
        allowed &= only_from
    extra, args = _assignments(sets or {}, PAYOUT_COLUMNS, 4)
    # The CTE locks the row and keeps the state it had, for the audit event.
    row = await conn.fetchrow(
        f"""WITH before AS (SELECT id, state FROM payouts WHERE id = $1 FOR UPDATE)
            UPDATE payouts p SET state = $2, updated_at = now(){extra}
            FROM before WHERE p.id = before.id AND before.state = ANY($3::text[])
            RETURNING p.*, before.state AS from_state""",  # noqa: S608 - fixed column names
        payout_uuid, target.value, [s.value for s in allowed], *args,
    )
    if row is None:
        current = await conn.fetchval("SELECT state FROM payouts WHERE id = $1", payout_uuid)
        raise IllegalTransition(PayoutState(current) if current else None, target)
    payout = payout_from_row(row)
    if row["from_state"] == target:
        return payout  # same state, new attempt: not a state change, no event
    await record_event(conn, payout_uuid, PayoutState(row["from_state"]), target,
                       attempt=attempt, reason=reason, actor=actor,
                       correlation_id=payout.correlation_id)
    if target in _OUTBOX:
        await _outbox(conn, row, _OUTBOX[target])
    if target in _COUNTED:
        metrics.PAYOUTS_TERMINAL.labels(target.value.lower()).inc()
    return payout


async def move_attempt(
    conn: asyncpg.Connection, payout_uuid: UUID, number: int, target: AttemptStatus, *,
    only_from: frozenset[AttemptStatus] | None = None, sets: Mapping[str, Any] | None = None,
) -> Attempt:
    """Moves one attempt to `target` if the attempt table allows it from its status."""
    allowed = attempt_sources(target)
    if only_from is not None:
        allowed &= only_from
    extra, args = _assignments(sets or {}, ATTEMPT_COLUMNS, 5)
    row = await conn.fetchrow(
        f"""UPDATE payout_attempts SET status = $3, updated_at = now(){extra}
            WHERE payout_id = $1 AND number = $2 AND status = ANY($4::text[])
            RETURNING *""",  # noqa: S608 - fixed column names
        payout_uuid, number, target.value, [s.value for s in allowed], *args,
    )
    if row is None:
        current = await conn.fetchval(
            "SELECT status FROM payout_attempts WHERE payout_id = $1 AND number = $2",
            payout_uuid, number,
        )
        raise IllegalTransition(AttemptStatus(current) if current else None, target,
                                what=f"attempt {number}")
    return _attempt(row)


async def _outbox(conn: asyncpg.Connection, row: asyncpg.Record, event_type: str) -> None:
    """Queued in the state change's own SQL transaction, so an event exists if and only if
    the payout reached that state (never before confirmation on chain)."""
    attempt = await conn.fetchrow(
        "SELECT tx_hash, ledger FROM payout_attempts WHERE payout_id = $1 AND number = $2",
        row["id"], row["attempt_count"],
    )
    payload = {
        "type": event_type, "id": str(row["id"]), "payout_id": row["payout_id"],
        "destination": row["destination"], "asset": row["asset"],
        "gross_stroops": row["gross_stroops"], "fee_stroops": row["fee_stroops"],
        "net_stroops": row["net_stroops"], "state": row["state"],
        "tx_hash": attempt["tx_hash"] if attempt else None,
        "ledger": attempt["ledger"] if attempt else None,
        "failure_code": row["failure_code"], "correlation_id": row["correlation_id"],
        "round_id": row["round_id"], "batch_id": row["batch_id"],
    }
    await conn.execute(
        "INSERT INTO outbox_events (payout_id, event_type, payload) VALUES ($1, $2, $3)",
        row["id"], event_type, payload,
    )


async def requeue(
    conn: asyncpg.Connection, payout_uuid: UUID, *, attempt: int, reason: str, actor: str,
    not_before: Any,
) -> Payout:
    """The payout needs a new attempt (its last one is proven dead or never left us)."""
    current = PayoutState(await conn.fetchval(
        "SELECT state FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid
    ))
    return await move_payout(
        conn, payout_uuid, requeue_target(current), reason=reason, actor=actor, attempt=attempt,
        only_from=frozenset({current}),
        sets={"needs_attempt": True, "next_attempt_at": not_before},
    )
