"""The one loop runner: a failing step backs off, is counted and is recorded for
GetSystemHealth; a busy step runs again at once. Real PostgreSQL for system_errors."""

from __future__ import annotations

import asyncio

from payout_service import metrics
from payout_service.adapters.ledger import LedgerUnavailable
from payout_service.adapters.payout_store import create_pool
from payout_service.loops import backoff_after, run_loop
from payout_service.migrations import apply_migrations


def test_backoff_doubles_from_the_interval_up_to_a_cap():
    assert backoff_after(0, 0.2) == 0.2
    assert [backoff_after(n, 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


async def test_failures_back_off_are_counted_and_recorded(fresh_database):
    pool = await create_pool(fresh_database)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    halt = asyncio.Event()
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def step() -> int:
        calls.append(loop.time())
        if len(calls) <= 2:
            raise RuntimeError("signer unavailable")
        if len(calls) == 3:
            raise LedgerUnavailable("HTTP 503")
        halt.set()
        return 0

    before = metrics.SYSTEM_ERRORS.labels("test-loop")._value.get()
    rpc_before = metrics.RPC_ERRORS.labels("HTTP 503")._value.get()
    await asyncio.wait_for(run_loop("test-loop", step, interval=0.01, halt=halt, pool=pool), 10)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) == 4
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gaps[2] >= 1.95, gaps  # 0.5, 1, 2 s
    assert metrics.SYSTEM_ERRORS.labels("test-loop")._value.get() == before + 2
    assert metrics.RPC_ERRORS.labels("HTTP 503")._value.get() == rpc_before + 1
    recorded = await pool.fetch("SELECT source, message FROM system_errors ORDER BY id")
    assert [r["source"] for r in recorded] == ["test-loop"] * 3
    assert "signer unavailable" in recorded[0]["message"]
    await pool.close()
