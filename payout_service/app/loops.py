"""The one runner of background loops: pipeline loops (prepare, send, confirm) and program
loops (rounds, schedules, alerts, reconciliation, outbox) alike.

A step returns how much work it did (a busy step runs again at once) or None. A failing step
never spins: the runner waits `interval`, doubled after each consecutive failure up to
MAX_BACKOFF_SECONDS, logs one line per backoff step, counts the failure in
`payouts_system_errors_total{component}` (or `payouts_rpc_errors_total` when Stellar RPC is
down) and records it in `system_errors`, which GetSystemHealth and the SYSTEM_ERROR alert
read. A step that met a read-only database session (a demoted primary) expires the pool, so
the retry reconnects to whichever host is primary now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from payout_service import metrics
from payout_service.adapters.database import expire_if_read_only
from payout_service.adapters.ledger import LedgerUnavailable

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0

Step = Callable[[], Awaitable[object]]


async def record_system_error(pool: asyncpg.Pool, source: str, message: str) -> None:
    try:
        await pool.execute(
            "INSERT INTO system_errors (source, message) VALUES ($1, $2)", source, message[:500]
        )
    except (asyncpg.PostgresError, OSError):
        log.warning("could not record a system error", extra={"source": source})


def backoff_after(failures: int, interval: float) -> float:
    """Pure: the wait after `failures` consecutive failures (0: the normal interval)."""
    if failures <= 0:
        return interval
    return float(min(MAX_BACKOFF_SECONDS, max(interval, 0.5) * 2 ** (failures - 1)))


async def run_loop(
    name: str, step: Step, *, interval: float, halt: asyncio.Event, pool: asyncpg.Pool,
    nudge: asyncio.Event | None = None,
) -> None:
    """Runs `step` until `halt` is set. An idle wait ends early when `nudge` is set (work
    for this loop just appeared in this process); failures back off regardless."""
    failures = 0
    while not halt.is_set():
        if nudge is not None:
            nudge.clear()
        busy: object = 0
        try:
            busy = await step()
            if failures:
                log.info("loop recovered", extra={"loop": name, "failures": failures})
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a loop must outlive one bad step
            failures += 1
            wait = backoff_after(failures, interval)
            if await expire_if_read_only(pool, err):
                log.warning("database session read-only: reconnecting to the primary",
                            extra={"loop": name})
            if isinstance(err, LedgerUnavailable):
                metrics.RPC_ERRORS.labels(str(err) or "unavailable").inc()
            else:
                metrics.SYSTEM_ERRORS.labels(name).inc()
            log.warning("loop step failed; backing off", exc_info=failures == 1, extra={
                "loop": name, "error": f"{type(err).__name__}: {err}"[:300],
                "failures": failures, "retry_in_seconds": round(wait, 2)})
            if not halt.is_set():
                await record_system_error(pool, name, f"{type(err).__name__}: {err}")
            await _sleep(halt, wait)
            continue
        if not busy:
            await _sleep(halt, interval, nudge)


async def _sleep(halt: asyncio.Event, seconds: float, nudge: asyncio.Event | None = None,
                 ) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in (halt, nudge) if e is not None]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
