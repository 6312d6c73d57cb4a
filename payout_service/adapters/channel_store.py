"""The channel registry in PostgreSQL (migration 040); the lifecycle transactions are in
channel_operations.py.

One writer of a channel's state: `move_channels`, an UPDATE guarded by the states the pure table in
core/channels.py allows as sources, with its channel_events row in the same SQL transaction.
Lock order, as for payouts: channel row, then source_accounts (the sequence module).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from payout_service.core.channels import (
    ChannelState,
    sources_of,
)

S = ChannelState


class ChannelConflict(Exception):
    """A channel or key id already registered differently: names what clashes."""

    def __init__(self, field: str, message: str, *, account: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.account = account  # the channel of the request that clashed


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


def _channel(row: asyncpg.Record) -> Channel:
    return Channel(
        account=row["account"], key_id=row["key_id"], state=S(row["state"]),
        origin=row["origin"], balance_stroops=row["balance_stroops"],
        in_flight=bool(row["in_flight"]), merge_requested=row["merge_requested"],
        top_up_stroops=row["top_up_stroops"], updated_at=row["updated_at"],
        held_reason=row["held_reason"],
    )


async def move_channels(
    conn: asyncpg.Connection, accounts: Sequence[str], target: ChannelState, *, actor: str,
    reason: str = "", operation: uuid.UUID | None = None,
    sources: frozenset[ChannelState] | None = None,
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


async def hold_channel(conn: asyncpg.Connection, account: str, reason: str, *,
                       actor: str) -> bool:
    """An active channel leaves the leasable set (draining, then retired once nothing is in
    flight) with `held_reason` for operators, inside the caller's SQL transaction; re-adding it
    after the fix (`payoutctl channels add`, AddChannels) brings it back and clears the reason,
    autosize never does. False if it was not active (already held, retired by an operator, or
    not a channel): its state and reason are left as they are."""
    if not await move_channels(conn, [account], S.DRAINING, actor=actor, reason=reason[:200],
                               sources=frozenset({S.ACTIVE})):
        return False
    await conn.execute(
        "UPDATE channel_accounts SET held_reason = $2 WHERE account = $1", account, reason)
    return True


# in_flight_attempts: kept by the triggers of migration 050 on payout_attempts.
_LIST = "SELECT c.*, c.in_flight_attempts > 0 AS in_flight FROM channel_accounts c"


async def _insert(
    conn: asyncpg.Connection, account: str, key_id: str, state: ChannelState, origin: str, *,
    actor: str, starting_balance: int | None = None,
) -> bool:
    """One channel row and its first event, inside the caller's SQL transaction. False when
    the same account and key id are already registered (also when a concurrent call just
    registered them); any other clash raises ChannelConflict. Callers insert in account
    order, so two registrations that overlap wait for each other instead of deadlocking."""
    try:
        async with conn.transaction():  # a savepoint: a clash leaves nothing behind
            await conn.execute(
                """INSERT INTO channel_accounts (account, key_id, state, origin,
                       starting_balance_stroops) VALUES ($1, $2, $3, $4, $5)""",
                account, key_id, state.value, origin, starting_balance,
            )
    except asyncpg.UniqueViolationError:
        # Read after the clash: a concurrent winner has committed by now, so this sees it.
        existing = await conn.fetchrow(
            """SELECT account, key_id FROM channel_accounts WHERE account = $1 OR key_id = $2
               ORDER BY account = $1 DESC LIMIT 1""",
            account, key_id,
        )
        if existing is None:  # the clashing row is gone again: nothing to compare with
            raise ChannelConflict("account", f"channel {account} clashed with a registration "
                                  "that was then undone; try again", account=account) from None
        if existing["account"] == account and existing["key_id"] == key_id:
            return False
        if existing["account"] == account:
            raise ChannelConflict("key_id", f"channel {account} is registered with "
                                  f"key id {existing['key_id']}, not {key_id}",
                                  account=account) from None
        raise ChannelConflict("key_id", f"key id {key_id} already belongs to channel "
                              f"{existing['account']}", account=account) from None
    await conn.execute(
        """INSERT INTO channel_events (account, from_state, to_state, actor, reason)
           VALUES ($1, NULL, $2, $3, $4)""",
        account, state.value, actor, origin,
    )
    return True


class ChannelRegistry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def seed(self, channels: Mapping[str, str]) -> None:
        """PAYOUTS_CHANNEL_ACCOUNTS (account -> key id): registered active once. A channel the
        operators retired stays retired across restarts (the table wins over the seed)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for account, key_id in sorted(channels.items()):
                await _insert(conn, account, key_id, S.ACTIVE, "seed", actor="seed")

    async def add_active(self, keys: Sequence[tuple[str, str]], *, actor: str) -> int:
        """Accounts already on chain with their keys in the signer: leasable at once. A
        retired one of the same key comes back. All or none: one SQL transaction. Returns how
        many were new or came back."""
        async with self.pool.acquire() as conn, conn.transaction():
            again = [account for account, key_id in sorted(keys)
                     if not await _insert(conn, account, key_id, S.ACTIVE, "added", actor=actor)]
            moved = await move_channels(conn, again, S.ACTIVE, actor=actor, reason="re-added")
            await conn.execute(
                "UPDATE channel_accounts SET held_reason = NULL WHERE account = ANY($1::text[])",
                moved)
            return len(keys) - len(again) + len(moved)

    async def add_pending(
        self, keys: Sequence[tuple[str, str]], starting_balance: int, *, actor: str
    ) -> int:
        """New channels for CreateAccount. Returns how many were new; re-registering a
        pending one keeps it (its create is retried), any other clash is refused. All or none,
        in one SQL transaction: the pool loop never sees half a registration (it would fund
        the first channels in one transaction and the rest in another)."""
        async with self.pool.acquire() as conn, conn.transaction():
            new = 0
            for account, key_id in sorted(keys):
                new += await _insert(conn, account, key_id, S.PENDING, "created", actor=actor,
                                     starting_balance=starting_balance)
            # Asked again: a pending channel held after a permanent failure is retried.
            await conn.execute(
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
            _LIST + " WHERE c.account = ANY($1::text[]) ORDER BY c.account", list(accounts)
        )
        return [_channel(r) for r in rows]

    async def in_states(self, states: Sequence[ChannelState] = ()) -> list[Channel]:
        wanted = [s.value for s in (states or tuple(ChannelState))]
        rows = await self.pool.fetch(
            _LIST + " WHERE c.state = ANY($1::text[]) ORDER BY c.created_at, c.account", wanted
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
            moved = await move_channels(conn, accounts, S.DRAINING, actor=actor, reason="retire",
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
            # Re-activated after the fix: a hold's reason (core/refusals.py) is cleared too.
            await conn.execute(
                """UPDATE channel_accounts SET merge_requested = false, held_reason = NULL
                   WHERE account = ANY($1::text[]) AND state IN ('draining', 'retired')""",
                list(accounts),
            )
            return await move_channels(conn, accounts, S.ACTIVE, actor=actor, reason="re-activated",
                               sources=frozenset({S.DRAINING, S.RETIRED}))

    async def hold(self, account: str, reason: str, *, actor: str) -> bool:
        """hold_channel in a SQL transaction of its own (a channel found at fault before any
        attempt uses it). True if this call held it."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await hold_channel(conn, account, reason, actor=actor)

    async def spare(self, limit: int) -> list[str]:
        """Funded channels not taking work, draining ones first (they are warm). A held one
        (the signer refused for it) waits for an operator to add it again."""
        rows = await self.pool.fetch(
            """SELECT account FROM channel_accounts
               WHERE state IN ('draining', 'retired') AND NOT merge_requested
                 AND held_reason IS NULL
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
        locked first (a preparer that leased it holds that lock until its attempt, and the
        row's in-flight count, are committed); the locked row is its latest version."""
        retired: list[str] = []
        draining = await self.pool.fetch(
            "SELECT account FROM channel_accounts WHERE state = 'draining'"
        )
        for row in draining:
            async with self.pool.acquire() as conn, conn.transaction():
                busy = await conn.fetchval(
                    """SELECT in_flight_attempts FROM channel_accounts
                       WHERE account = $1 AND state = 'draining' FOR UPDATE""",
                    row["account"],
                )
                if busy is None or busy > 0:
                    continue
                retired += await move_channels(conn, [row["account"]], S.RETIRED, actor=actor,
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
