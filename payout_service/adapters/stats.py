"""Payout statistics, overall or per destination, and the sums of a round's or a run's
statement.

Money stays integer stroops; only the success rate is a float.
- pending: not terminal (ACCEPTED, AWAITING_APPROVAL, AWAITING_SIGNATURE, QUEUED, SUBMITTED);
- total_gross / total_fees: every payout that is not FAILED or CANCELLED (paid or on its way);
- total_net_confirmed: what destinations actually received (CONFIRMED only).
Amounts of different assets are added as stroops; ask per destination for a single asset.
Sums are numeric in SQL (many int64 amounts can pass int64) and Python ints here. Read from
the aggregates the database maintains on every write (migration 030), never by scanning
payouts: the cost does not grow with history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from payout_service.core.statements import StatementLine, StatementScope
from payout_service.core.states import TERMINAL, PayoutState

PENDING_STATES = tuple(s.value for s in PayoutState if s not in TERMINAL)


@dataclass(frozen=True)
class PayoutStats:
    count: int
    confirmed_count: int
    failed_count: int
    pending_count: int
    total_gross_stroops: int
    total_fees_stroops: int
    total_net_confirmed_stroops: int

    @property
    def success_rate(self) -> float:
        settled = self.confirmed_count + self.failed_count
        return self.confirmed_count / settled if settled else 0.0


async def state_totals(db: asyncpg.Pool | asyncpg.Connection, scope: str = "all", key: str = "",
                       ) -> dict[str, asyncpg.Record]:
    """Count and sums per state of one aggregate scope (migration 030: 'all', 'asset' or
    'destination'), summed over its shards: at most 8 states x 64 shards, whatever the
    history."""
    rows = await db.fetch(
        """SELECT state, sum(count)::bigint AS count, sum(gross) AS gross, sum(fee) AS fee,
                  sum(net) AS net
           FROM payout_totals WHERE scope = $1 AND key = $2 GROUP BY state""",
        scope, key,
    )
    return {r["state"]: r for r in rows}


async def payout_stats(db: asyncpg.Pool | asyncpg.Connection, destination: str = "") -> PayoutStats:
    totals = await state_totals(db, "destination" if destination else "all", destination)

    def count(*states: str) -> int:
        return sum(int(totals[s]["count"]) for s in states if s in totals)

    def amount(column: str, states: Iterable[str]) -> int:
        return sum(int(totals[s][column]) for s in states if s in totals)

    live = [s.value for s in PayoutState if s not in (PayoutState.FAILED, PayoutState.CANCELLED)]
    return PayoutStats(
        count=count(*totals), confirmed_count=count("CONFIRMED"), failed_count=count("FAILED"),
        pending_count=count(*PENDING_STATES), total_gross_stroops=amount("gross", live),
        total_fees_stroops=amount("fee", live),
        total_net_confirmed_stroops=amount("net", ["CONFIRMED"]),
    )


# A column name per scope; each has its own index (migration 030).
_SCOPE_COLUMN = {"round": "round_id", "run": "batch_id"}
_SCOPE_TABLE = {"round": "rounds", "run": "scheduled_runs"}


async def statement_lines(
    pool: asyncpg.Pool, scope: StatementScope
) -> tuple[list[StatementLine], datetime] | None:
    """The scope's payouts summed by state and asset, and when they were read; None when no
    such round or run exists. One snapshot: the existence check and the sums agree. Unlike
    the stats above it reads the payouts themselves, through the scope's index: the cost
    is the size of the round or run, not of the history."""
    kind, key = ("round", scope.round_id) if scope.round_id else ("run", scope.run_id)
    column, table = _SCOPE_COLUMN[kind], _SCOPE_TABLE[kind]
    id_column = "round_id" if kind == "round" else "run_id"
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        # Names come from the fixed tables above; the key is a bound parameter.
        found = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {id_column} = $1)", key)  # noqa: S608
        if not found:
            return None
        rows = await conn.fetch(
            f"""SELECT state, asset, count(*) AS count, sum(gross_stroops) AS gross,
                       sum(fee_stroops) AS fee, sum(net_stroops) AS net,
                       coalesce(sum(network_fee_stroops), 0) AS network_fee,
                       count(network_fee_stroops) AS network_fee_known
                FROM payouts WHERE {column} = $1 GROUP BY state, asset""",  # noqa: S608
            key)
        as_of: datetime = await conn.fetchval("SELECT now()")
    return [StatementLine(PayoutState(r["state"]), r["asset"], int(r["count"]), int(r["gross"]),
                          int(r["fee"]), int(r["net"]), int(r["network_fee"]),
                          int(r["network_fee_known"])) for r in rows], as_of
