"""The aggregates of migration 030 against a full recount of payouts: SQL returning how many
aggregate groups differ from the recount (0 when they agree). Shared by the tests that run a
workload and then check."""

from __future__ import annotations

import asyncpg

_TOTALS = """
    SELECT scope, key, state, sum(count)::numeric AS count, sum(gross) AS gross,
           sum(fee) AS fee, sum(net) AS net
    FROM payout_totals GROUP BY scope, key, state
    HAVING sum(count) <> 0 OR sum(gross) <> 0 OR sum(fee) <> 0 OR sum(net) <> 0"""
_TOTALS_RECOUNT = """
    SELECT k.scope, k.key, p.state, count(*)::numeric, sum(p.gross_stroops)::numeric,
           sum(p.fee_stroops)::numeric, sum(p.net_stroops)::numeric
    FROM payouts p
    CROSS JOIN LATERAL (VALUES ('all', ''), ('asset', p.asset),
                               ('destination', p.destination)) AS k(scope, key)
    GROUP BY k.scope, k.key, p.state"""
_MINUTES = """
    SELECT kind, minute, code, sum(count)::numeric AS count, sum(gross) AS gross
    FROM payout_minutes GROUP BY kind, minute, code
    HAVING sum(count) <> 0 OR sum(gross) <> 0"""
_MINUTES_RECOUNT = """
    SELECT 'failed', date_trunc('minute', updated_at), COALESCE(failure_code, ''),
           count(*)::numeric, 0::numeric
    FROM payouts WHERE state = 'FAILED' GROUP BY 2, 3
    UNION ALL
    SELECT 'confirmed', date_trunc('minute', COALESCE(confirmed_at, updated_at)), '',
           count(*)::numeric, 0::numeric
    FROM payouts WHERE state = 'CONFIRMED' GROUP BY 2
    UNION ALL
    SELECT 'live', date_trunc('minute', created_at), '', count(*)::numeric,
           sum(gross_stroops)::numeric
    FROM payouts WHERE state NOT IN ('FAILED', 'CANCELLED') GROUP BY 2"""

RECOUNT_SQL = f"""SELECT
    (SELECT count(*) FROM (({_TOTALS}) EXCEPT ({_TOTALS_RECOUNT})
                           UNION ALL (({_TOTALS_RECOUNT}) EXCEPT ({_TOTALS})) ) t)
        AS totals_differ_from_recount,
    (SELECT count(*) FROM (({_MINUTES}) EXCEPT ({_MINUTES_RECOUNT})
                           UNION ALL (({_MINUTES_RECOUNT}) EXCEPT ({_MINUTES})) ) m)
        AS minutes_differ_from_recount"""  # noqa: S608 - fixed SQL


async def aggregate_differences(db: asyncpg.Pool | asyncpg.Connection) -> dict[str, int]:
    row = await db.fetchrow(RECOUNT_SQL)
    assert row is not None
    return dict(row)
