"""The channel registry and its lifecycle transactions in PostgreSQL (migration 040).

One writer of a channel's state: `_move`, an UPDATE guarded by the states the pure table in
core/channels.py allows as sources, with its channel_events row in the same SQL transaction.
Lock order, as for payouts: channel row, then source_accounts (the sequence module).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

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
    sources_of,
)
from payout_service.core.states import IN_FLIGHT

S = ChannelState
_IN_FLIGHT = [s.value for s in IN_FLIGHT]
_LIVE = [s.value for s in LIVE]


class ChannelConflict(Exception):
    """A channel or key id already registered differently: names what clashes."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Channel:
    account: str
    key_id: str
    state: ChannelState
    origin: str
    balance_stroops: int | None
    in_flight: bool
    merge_requested: bool
    top_up_stroops: int | None
    updated_at: datetime
    held_reason: str | None = None


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

    @property
    def label(self) -> str:
        """What the signer's audit log records as the payout id of this signature."""
        return f"chop-{self.id}"


BuildTx = Callable[[int], tuple[str, str, int]]  # sequence -> (envelope_xdr, tx_hash, fee)


def _channel(row: asyncpg.Record) -> Channel:
    return Channel(
        account=row["account"], key_id=row["key_id"], state=S(row["state"]),
        origin=row["origin"], balance_stroops=row["balance_stroops"],
        in_flight=bool(row["in_flight"]), merge_requested=row["merge_requested"],
        top_up_stroops=row["top_up_stroops"], updated_at=row["updated_at"],
        held_reason=row["held_reason"],
    )


async def _move(
    conn: asyncpg.Connection, accounts: Sequence[str], target: ChannelState, *, actor: str,
    reason: str = "", operation: uuid.UUID | None = None, sources: frozenset[ChannelState] | None
    = None,
) -> list[str]:
    """The one writer of channel_accounts.state. Returns the accounts that moved."""
    allowed = [s.value for s in (sources if sources is not None else sources_of(target))]
    rows = await conn.fetch(
        """WITH moved AS (
               UPDATE channel_accounts c SET state = $2, updated_at = now(),
                   retired_at = CASE WHEN $2 IN ('retired', 'merging', 'merged')
                                     THEN coalesce(c.retired_at, now()) END
               FROM channel_accounts old
               WHERE c.account = old.account AND c.account = ANY($1::text[])
                 AND c.state = ANY($3::text[])
               RETURNING c.account, old.state AS from_state)
           INSERT INTO channel_events (account, from_state, to_state, actor, reason,
                                       operation_id)
           SELECT account, from_state, $2, $4, $5, $6 FROM moved
           RETURNING account""",
        list(accounts), target.value, allowed, actor, reason, operation,
    )
    return [r["account"] for r in rows]


_LIST = """SELECT c.*, EXISTS (SELECT 1 FROM payout_attempts a
                               WHERE a.source_account = c.account
                                 AND a.status = ANY($1::text[])) AS in_flight
           FROM channel_accounts c"""


class ChannelRegistry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def seed(self, channels: Mapping[str, str]) -> None:
        """PAYOUTS_CHANNEL_ACCOUNTS (account -> key id): registered active once. A channel the
        operators retired stays retired across restarts (the table wins over the seed)."""
        for account, key_id in channels.items():
            await self._insert(account, key_id, S.ACTIVE, "seed", actor="seed", clash_ok=True)

    async def _insert(
        self, account: str, key_id: str, state: ChannelState, origin: str, *, actor: str,
        starting_balance: int | None = None, clash_ok: bool = False,
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            existing = await conn.fetchrow(
                "SELECT account, key_id FROM channel_accounts WHERE account = $1 OR key_id = $2",
                account, key_id,
            )
            if existing is not None:
                if existing["account"] == account and existing["key_id"] == key_id:
                    return False
                if existing["account"] == account:
                    raise ChannelConflict("key_id", f"channel {account} is registered with "
                                          f"key id {existing['key_id']}, not {key_id}")
                raise ChannelConflict("key_id", f"key id {key_id} already belongs to channel "
                                      f"{existing['account']}")
            try:
                async with conn.transaction():  # a savepoint: a clash leaves nothing behind
                    await conn.execute(
                        """INSERT INTO channel_accounts (account, key_id, state, origin,
                               starting_balance_stroops) VALUES ($1, $2, $3, $4, $5)""",
                        account, key_id, state.value, origin, starting_balance,
                    )
            except asyncpg.UniqueViolationError:
                if clash_ok:
                    return False  # another replica seeded it at the same time
                raise ChannelConflict("account", f"channel {account} was registered "
                                      "concurrently") from None
            await conn.execute(
                """INSERT INTO channel_events (account, from_state, to_state, actor, reason)
                   VALUES ($1, NULL, $2, $3, $4)""",
                account, state.value, actor, origin,
            )
            return True

    async def add_active(self, account: str, key_id: str, *, actor: str) -> bool:
        """An account already on chain with its key in the signer: leasable at once. A
        retired one of the same key comes back. False when nothing changed."""
        if await self._insert(account, key_id, S.ACTIVE, "added", actor=actor):
            return True
        async with self.pool.acquire() as conn, conn.transaction():
            return bool(await _move(conn, [account], S.ACTIVE, actor=actor, reason="re-added"))

    async def add_pending(
        self, keys: Sequence[tuple[str, str]], starting_balance: int, *, actor: str
    ) -> int:
        """New channels for CreateAccount. Returns how many were new; re-registering a
        pending one keeps it (its create is retried), any other clash is refused."""
        new = 0
        for account, key_id in keys:
            new += await self._insert(account, key_id, S.PENDING, "created", actor=actor,
                                      starting_balance=starting_balance)
        # Asked again: a pending channel held after a permanent failure is retried.
        await self.pool.execute(
            """UPDATE channel_accounts SET held_reason = NULL, starting_balance_stroops = $2,
                   updated_at = now()
               WHERE account = ANY($1::text[]) AND state = 'pending'""",
            [a for a, _ in keys], starting_balance,
        )
        return new

    async def key_of(self, account: str) -> str | None:
        key: str | None = await self.pool.fetchval(
            "SELECT key_id FROM channel_accounts WHERE account = $1", account
        )
        return key

    async def get(self, accounts: Sequence[str]) -> list[Channel]:
        rows = await self.pool.fetch(
            _LIST + " WHERE c.account = ANY($2::text[]) ORDER BY c.account",
            _IN_FLIGHT, list(accounts),
        )
        return [_channel(r) for r in rows]

    async def in_states(self, states: Sequence[ChannelState] = ()) -> list[Channel]:
        wanted = [s.value for s in (states or tuple(ChannelState))]
        rows = await self.pool.fetch(
            _LIST + " WHERE c.state = ANY($2::text[]) ORDER BY c.created_at, c.account",
            _IN_FLIGHT, wanted,
        )
        return [_channel(r) for r in rows]

    async def counts(self) -> dict[ChannelState, int]:
        rows = await self.pool.fetch(
            "SELECT state, count(*) AS n FROM channel_accounts GROUP BY state"
        )
        found = dict.fromkeys(ChannelState, 0)
        found.update({S(r["state"]): r["n"] for r in rows})
        return found

    async def retire(self, accounts: Sequence[str], *, merge: bool, actor: str) -> list[str]:
        """Active channels stop taking work (draining); with `merge`, once retired they are
        merged into the funding account. A retired one asked to merge is marked too."""
        async with self.pool.acquire() as conn, conn.transaction():
            moved = await _move(conn, accounts, S.DRAINING, actor=actor, reason="retire",
                                sources=frozenset({S.ACTIVE}))
            if merge:
                await conn.execute(
                    """UPDATE channel_accounts SET merge_requested = true, updated_at = now()
                       WHERE account = ANY($1::text[])
                         AND state IN ('active', 'draining', 'retired')""",
                    list(accounts),
                )
            return moved

    async def reactivate(self, accounts: Sequence[str], *, actor: str) -> list[str]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE channel_accounts SET merge_requested = false
                   WHERE account = ANY($1::text[]) AND state IN ('draining', 'retired')""",
                list(accounts),
            )
            return await _move(conn, accounts, S.ACTIVE, actor=actor, reason="re-activated",
                               sources=frozenset({S.DRAINING, S.RETIRED}))

    async def spare(self, limit: int) -> list[str]:
        """Funded channels not taking work, draining ones first (they are warm)."""
        rows = await self.pool.fetch(
            """SELECT account FROM channel_accounts
               WHERE state IN ('draining', 'retired') AND NOT merge_requested
               ORDER BY state = 'retired', updated_at LIMIT $1""",
            limit,
        )
        return [r["account"] for r in rows]

    async def newest_active(self, limit: int) -> list[str]:
        rows = await self.pool.fetch(
            """SELECT account FROM channel_accounts WHERE state = 'active'
               ORDER BY created_at DESC, account DESC LIMIT $1""",
            limit,
        )
        return [r["account"] for r in rows]

    async def retire_drained(self, *, actor: str = "channel_pool") -> list[str]:
        """Draining channels with nothing in flight become retired. Each channel row is
        locked first (a preparer that leased it holds that lock until its attempt is
        committed), then checked in a new statement, which sees that attempt."""
        retired: list[str] = []
        draining = await self.pool.fetch(
            "SELECT account FROM channel_accounts WHERE state = 'draining'"
        )
        for row in draining:
            async with self.pool.acquire() as conn, conn.transaction():
                locked = await conn.fetchval(
                    """SELECT account FROM channel_accounts
                       WHERE account = $1 AND state = 'draining' FOR UPDATE""",
                    row["account"],
                )
                if locked is None:
                    continue
                busy = await conn.fetchval(
                    """SELECT 1 FROM payout_attempts
                       WHERE source_account = $1 AND status = ANY($2::text[]) LIMIT 1""",
                    locked, _IN_FLIGHT,
                )
                if busy:
                    continue
                retired += await _move(conn, [locked], S.RETIRED, actor=actor,
                                       reason="drained: nothing in flight")
        return retired

    async def request_top_ups(self, amounts: Mapping[str, int]) -> int:
        """Marks channels for a top-up of the given amount; the lifecycle loop pays them."""
        if not amounts:
            return 0
        status = await self.pool.execute(
            """UPDATE channel_accounts c SET top_up_stroops = t.amount, updated_at = now()
               FROM unnest($1::text[], $2::bigint[]) AS t(account, amount)
               WHERE c.account = t.account AND c.state IN ('active', 'draining', 'retired')
                 AND c.live_operation IS NULL AND NOT c.merge_requested""",
            list(amounts), list(amounts.values()),
        )
        return int(status.split()[-1])

    async def record_balances(self, balances: Mapping[str, int | None]) -> None:
        known = {a: b for a, b in balances.items() if b is not None}
        await self.pool.execute(
            """UPDATE channel_accounts c SET balance_stroops = t.balance,
                   balance_read_at = now()
               FROM unnest($1::text[], $2::bigint[]) AS t(account, balance)
               WHERE c.account = t.account""",
            list(known), list(known.values()),
        )


def _operation(row: asyncpg.Record, items: list[asyncpg.Record]) -> Operation:
    return Operation(
        id=row["id"], kind=OperationKind(row["kind"]), source_account=row["source_account"],
        sequence=row["sequence"], max_time=row["max_time"], envelope_xdr=row["envelope_xdr"],
        tx_hash=row["tx_hash"], status=OperationStatus(row["status"]),
        submitted_ledger=row["submitted_ledger"], last_rejection=row["last_rejection"],
        items=tuple((i["account"], i["amount_stroops"]) for i in items),
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
                moved = await _move(conn, accounts, _MOVES_TO[kind], actor=actor,
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
                                          submitted_ledger=latest_ledger)

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
                await _move(conn, accounts, outcome.state_to, actor=actor,
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


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
