"""Payout statistics (seed 002 getWorkerPaymentStats), overall or per destination.

Money stays integer stroops; only the success rate is a float.
- pending: not terminal (ACCEPTED, AWAITING_SIGNATURE, QUEUED, SUBMITTED);
- total_gross / total_fees: every payout that is not FAILED or CANCELLED (paid or on its way);
- total_net_confirmed: what destinations actually received (CONFIRMED only).
Amounts of different assets are added as stroops; ask per destination for a single asset.
Sums are numeric in SQL (many int64 amounts can pass int64) and Python ints here.
"""

from __future__ import annotations

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


async def payout_stats(db: asyncpg.Pool | asyncpg.Connection, destination: str = "") -> PayoutStats:
    row = await db.fetchrow(
        """SELECT count(*) AS count,
                  count(*) FILTER (WHERE state = 'CONFIRMED') AS confirmed,
                  count(*) FILTER (WHERE state = 'FAILED') AS failed,
                  count(*) FILTER (WHERE state = ANY($2::text[])) AS pending,
                  COALESCE(sum(gross_stroops) FILTER (
                      WHERE state NOT IN ('FAILED', 'CANCELLED')), 0)::numeric AS gross,
                  COALESCE(sum(fee_stroops) FILTER (
                      WHERE state NOT IN ('FAILED', 'CANCELLED')), 0)::numeric AS fees,
                  COALESCE(sum(net_stroops) FILTER (WHERE state = 'CONFIRMED'), 0)::numeric
                      AS net_confirmed
           FROM payouts WHERE ($1 = '' OR destination = $1)""",
        destination, list(PENDING_STATES),
    )
    assert row is not None
    return PayoutStats(
        count=row["count"], confirmed_count=row["confirmed"], failed_count=row["failed"],
        pending_count=row["pending"], total_gross_stroops=int(row["gross"]),
        total_fees_stroops=int(row["fees"]),
        total_net_confirmed_stroops=int(row["net_confirmed"]),
    )
