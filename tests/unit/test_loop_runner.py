"""The one loop runner: a failing step backs off, is counted and is recorded for
GetSystemHealth; a busy step runs again at once. Real PostgreSQL for system_errors."""

from __future__ import annotations

import asyncio

from payout_service import metrics
from payout_service.adapters.ledger import LedgerUnavailable
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import create_pool
from payout_service.app.loops import backoff_after, run_loop


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


async def test_a_nudge_ends_the_idle_wait_and_one_during_a_step_is_not_lost():
    """The idle interval here is an hour: only nudges can make the step run again."""
    halt, nudge = asyncio.Event(), asyncio.Event()
    calls = 0
    second_started = asyncio.Event()

    async def step() -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            nudge.set()  # work appears while this step runs: the next one must not wait
            second_started.set()
        if calls == 3:
            halt.set()
        return 0

    runner = asyncio.create_task(
        run_loop("nudged", step, interval=3600, halt=halt, pool=None, nudge=nudge))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert calls == 1, "idle: waits for the interval or a nudge"
    nudge.set()
    await asyncio.wait_for(runner, 5)
    assert second_started.is_set() and calls == 3
