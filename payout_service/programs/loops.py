"""A background loop that survives its own errors: logs them, records them, goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)


async def record_system_error(pool: asyncpg.Pool, source: str, message: str) -> None:
    try:
        await pool.execute(
            "INSERT INTO system_errors (source, message) VALUES ($1, $2)", source, message[:500]
        )
    except (asyncpg.PostgresError, OSError):
        log.warning("could not record a system error", extra={"source": source})


async def run_every(
    name: str, interval: float, step: Callable[[], Awaitable[object]], halt: asyncio.Event,
    pool: asyncpg.Pool,
) -> None:
    """Runs `step` every `interval` seconds until `halt` is set."""
    while not halt.is_set():
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a loop must outlive one bad step
            log.exception("background step failed", extra={"loop": name})
            if not halt.is_set():
                await record_system_error(pool, name, f"{type(err).__name__}: {err}")
        try:
            await asyncio.wait_for(halt.wait(), interval)
        except TimeoutError:
            pass
