"""Payout statistics, overall or per destination.

Money stays integer stroops; only the success rate is a float.
- pending: not terminal (ACCEPTED, AWAITING_SIGNATURE, QUEUED, SUBMITTED);
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

import asyncpg

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
