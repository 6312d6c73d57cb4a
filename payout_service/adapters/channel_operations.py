"""The channel pool's lifecycle transactions in PostgreSQL (migration 040): create, top-up and
merge, with the exactly-once rules of payout attempts. `finish` ends one in one SQL
transaction with its channels' states (through the registry's one writer) and the source's
sequence bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from payout_service.adapters.channel_store import move_channels
from payout_service.adapters.sequences import (
    consumed_through,
    release_sequence,
    renumber_from_chain,
    reserve_sequence,
)
from payout_service.core.channels import (
    LIVE,
    ChannelState,
    IllegalChannelTransition,
    OperationKind,
    OperationStatus,
    channel_outcome,
    created_account_sequence,
)

S = ChannelState
_LIVE = [s.value for s in LIVE]


@dataclass(frozen=True)
class Operation:
    id: uuid.UUID
    kind: OperationKind
    source_account: str
    sequence: int
    max_time: datetime
    envelope_xdr: str
    tx_hash: str
    status: OperationStatus
    submitted_ledger: int | None
    last_rejection: str | None
    items: tuple[tuple[str, int], ...]
    last_sent_ledger: int | None = None  # core/pacing.resend_due

    @property
    def label(self) -> str:
        """What the signer's audit log records as the payout id of this signature."""
        return f"chop-{self.id}"


def _operation(row: asyncpg.Record, items: list[asyncpg.Record]) -> Operation:
    return Operation(
        id=row["id"], kind=OperationKind(row["kind"]), source_account=row["source_account"],
        sequence=row["sequence"], max_time=row["max_time"], envelope_xdr=row["envelope_xdr"],
        tx_hash=row["tx_hash"], status=OperationStatus(row["status"]),
        submitted_ledger=row["submitted_ledger"], last_rejection=row["last_rejection"],
        items=tuple((i["account"], i["amount_stroops"]) for i in items),
        last_sent_ledger=row["last_sent_ledger"],
    )


# Which channels a new operation of each kind takes, and the state they move to.
_CANDIDATES = {
    OperationKind.CREATE: """SELECT account, starting_balance_stroops AS amount
                             FROM channel_accounts WHERE state = 'pending'
                               AND live_operation IS NULL AND held_reason IS NULL
                             ORDER BY created_at, account LIMIT $1 FOR UPDATE SKIP LOCKED""",
    OperationKind.TOP_UP: """SELECT account, top_up_stroops AS amount FROM channel_accounts
                             WHERE top_up_stroops IS NOT NULL AND live_operation IS NULL
                               AND state IN ('active', 'draining', 'retired')
                             ORDER BY updated_at, account LIMIT $1 FOR UPDATE SKIP LOCKED""",
    OperationKind.MERGE: """SELECT account, 0::bigint AS amount FROM channel_accounts
                            WHERE state = 'retired' AND merge_requested
                              AND live_operation IS NULL
                            ORDER BY retired_at, account LIMIT $1 FOR UPDATE SKIP LOCKED""",
}
_MOVES_TO = {OperationKind.CREATE: S.FUNDING, OperationKind.MERGE: S.MERGING}


class ChannelOperations:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def build(
        self, kind: OperationKind, funding_account: str, limit: int,
        build: Callable[[str, int, list[tuple[str, int]]], tuple[str, str, int, datetime]],
        *, actor: str,
    ) -> Operation | None:
        """One SQL transaction: takes up to `limit` channels wanting `kind`, reserves the
        next sequence number of the transaction's source (the funding account, or for a
        merge the channel itself), stores the built envelope, marks the channels. None when
        there is nothing to do or the source already has a live lifecycle transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            picked = [(r["account"], r["amount"]) for r in
                      await conn.fetch(_CANDIDATES[kind], limit)]
            if not picked:
                return None
            source = picked[0][0] if kind is OperationKind.MERGE else funding_account
            live = await conn.fetchval(
                """SELECT 1 FROM channel_operations
                   WHERE source_account = $1 AND status = ANY($2::text[])""",
                source, _LIVE,
            )
            if live:
                return None
            sequence = await reserve_sequence(conn, source)
            envelope_xdr, tx_hash, fee, max_time = build(source, sequence, picked)
            op_id = uuid.uuid4()
            total = sum(amount for _, amount in picked)
            row = await conn.fetchrow(
                """INSERT INTO channel_operations (id, kind, source_account, sequence, max_time,
                       envelope_xdr, tx_hash, fee_stroops, total_stroops, status)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'built') RETURNING *""",
                op_id, kind.value, source, sequence, max_time, envelope_xdr, tx_hash, fee,
                total,
            )
            accounts = [a for a, _ in picked]
            await conn.execute(
                """INSERT INTO channel_operation_items (operation_id, account, amount_stroops)
                   SELECT $1, a, n FROM unnest($2::text[], $3::bigint[]) AS t(a, n)""",
                op_id, accounts, [amount for _, amount in picked],
            )
            await conn.execute(
                """UPDATE channel_accounts SET live_operation = $1, top_up_stroops = NULL,
                       updated_at = now() WHERE account = ANY($2::text[])""",
                op_id, accounts,
            )
            if kind in _MOVES_TO:
                moved = await move_channels(conn, accounts, _MOVES_TO[kind], actor=actor,
                                    reason=f"{kind.value} built", operation=op_id)
                if len(moved) != len(accounts):
                    raise IllegalChannelTransition(accounts[0], S.PENDING, _MOVES_TO[kind])
            items = await conn.fetch(
                "SELECT * FROM channel_operation_items WHERE operation_id = $1", op_id
            )
            return _operation(row, items)

    async def live(self) -> list[Operation]:
        rows = await self.pool.fetch(
            """SELECT * FROM channel_operations WHERE status = ANY($1::text[])
               ORDER BY source_account, sequence""",
            _LIVE,
        )
        items = await self.pool.fetch(
            "SELECT * FROM channel_operation_items WHERE operation_id = ANY($1::uuid[])",
            [r["id"] for r in rows],
        )
        by_op: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for i in items:
            by_op.setdefault(i["operation_id"], []).append(i)
        return [_operation(r, by_op.get(r["id"], [])) for r in rows]

    async def recent(self, limit: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            """SELECT o.*, (SELECT count(*) FROM channel_operation_items i
                            WHERE i.operation_id = o.id) AS channels
               FROM channel_operations o ORDER BY created_at DESC LIMIT $1""",
            limit,
        )
        return rows

    async def _set_status(
        self, conn: asyncpg.Connection, op: Operation, target: OperationStatus,
        sources: frozenset[OperationStatus], **fields: object,
    ) -> bool:
        sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(fields, start=4))
        status = await conn.execute(
            f"""UPDATE channel_operations SET status = $2, updated_at = now()
                {', ' + sets if sets else ''}
                WHERE id = $1 AND status = ANY($3::text[])""",  # noqa: S608 - names are ours
            op.id, target.value, [s.value for s in sources], *fields.values(),
        )
        return bool(status != "UPDATE 0")

    async def store_signed(self, op: Operation, envelope_xdr: str) -> bool:
        """The signed envelope is stored before anything is sent (invariant 3)."""
        async with self.pool.acquire() as conn:
            return await self._set_status(conn, op, OperationStatus.SIGNED,
                                          frozenset({OperationStatus.BUILT}),
                                          envelope_xdr=envelope_xdr)

    async def mark_sent(self, op: Operation, latest_ledger: int) -> bool:
        """Marked before the first send: from here the envelope may land at any time."""
        async with self.pool.acquire() as conn:
            return await self._set_status(conn, op, OperationStatus.SENT,
                                          frozenset({OperationStatus.SIGNED}),
                                          submitted_ledger=latest_ledger,
                                          last_sent_ledger=latest_ledger)

    async def record_resend(self, op: Operation, latest_ledger: int) -> bool:
        """Takes this ledger's one re-send of a sent operation (core/pacing.resend_due);
        False if it was sent or re-sent at this ledger already, or is no longer sent."""
        status = await self.pool.execute(
            """UPDATE channel_operations SET last_sent_ledger = $2, updated_at = now()
               WHERE id = $1 AND status = 'sent'
                 AND (last_sent_ledger IS NULL OR last_sent_ledger < $2)""",
            op.id, latest_ledger,
        )
        return bool(status == "UPDATE 1")

    async def record_rejection(self, op: Operation, code: str) -> None:
        await self.pool.execute(
            "UPDATE channel_operations SET last_rejection = $2, updated_at = now() "
            "WHERE id = $1", op.id, code,
        )

    async def finish(
        self, op: Operation, status: OperationStatus, *, ledger: int | None = None,
        result_code: str | None = None, proof: str | None = None,
        chain_sequence: int | None = None, give_up: str | None = None,
        actor: str = "channel_pool",
    ) -> bool:
        """Ends a live operation in one SQL transaction: its status, its channels' states,
        and the source's sequence bookkeeping (included or failed on chain: the number is
        consumed; dead or refused before sending: it is free again). With `give_up` (a
        permanent failure) its channels are held: not created or merged again until an
        operator asks again."""
        if status in LIVE:
            raise ValueError(f"{status} is not an end state")
        succeeded = status is OperationStatus.INCLUDED
        async with self.pool.acquire() as conn, conn.transaction():
            allowed = LIVE if status is not OperationStatus.REJECTED else \
                frozenset({OperationStatus.BUILT})
            if not await self._set_status(conn, op, status, allowed, ledger=ledger,
                                          result_code=result_code, proof=proof):
                return False
            accounts = [a for a, _ in op.items]
            if status in (OperationStatus.INCLUDED, OperationStatus.FAILED_ON_CHAIN):
                await consumed_through(conn, op.source_account, op.sequence)
            elif chain_sequence is not None:
                # Dead after txBAD_SEQ: our numbering was off; restart it from the chain.
                await renumber_from_chain(conn, op.source_account, chain_sequence)
            else:
                await release_sequence(conn, op.source_account, op.sequence)
            outcome = channel_outcome(op.kind, succeeded)
            if outcome.state_to is not None and outcome.state_from is not None:
                await move_channels(conn, accounts, outcome.state_to, actor=actor,
                            reason=f"{op.kind.value} {status.value}", operation=op.id,
                            sources=frozenset({outcome.state_from}))
            if succeeded and op.kind is OperationKind.CREATE and ledger is not None:
                await conn.execute(
                    """INSERT INTO source_accounts (account, next_sequence)
                       SELECT a, $2::bigint + 1 FROM unnest($1::text[]) AS a
                       ON CONFLICT (account) DO NOTHING""",
                    accounts, created_account_sequence(ledger),
                )
                await conn.execute(
                    """UPDATE channel_accounts c SET balance_stroops = i.amount_stroops,
                           balance_read_at = now()
                       FROM channel_operation_items i
                       WHERE i.operation_id = $1 AND i.account = c.account""",
                    op.id,
                )
            if succeeded and op.kind is OperationKind.TOP_UP:
                await conn.execute(
                    """UPDATE channel_accounts c
                       SET balance_stroops = c.balance_stroops + i.amount_stroops
                       FROM channel_operation_items i
                       WHERE i.operation_id = $1 AND i.account = c.account""",
                    op.id,
                )
            if succeeded and op.kind is OperationKind.MERGE:
                await conn.execute(
                    """UPDATE channel_accounts SET balance_stroops = 0, merge_requested = false
                       WHERE account = ANY($1::text[])""",
                    accounts,
                )
            if give_up is not None and op.kind is not OperationKind.TOP_UP:
                await conn.execute(
                    """UPDATE channel_accounts SET held_reason = $2, merge_requested = false
                       WHERE live_operation = $1""",
                    op.id, give_up[:500],
                )
            await conn.execute(
                """UPDATE channel_accounts SET live_operation = NULL, updated_at = now()
                   WHERE live_operation = $1""",
                op.id,
            )
            return True
