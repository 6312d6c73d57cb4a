"""The watchdog alone, in a process of its own, so bench_payouts.py can measure what it costs:
payout-service's configuration from the environment, the same Watchdog and loop runner the
service starts. On SIGTERM it stops and prints one JSON line: the CPU seconds (user + system)
of its loop (start-up and imports not counted), of the whole process, and the steps it ran."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal

from payout_service.adapters.payout_store import create_pool
from payout_service.app.loops import run_loop
from payout_service.app.watchdog import watchdog_for
from payout_service.config import load_config
from payout_service.core.alert_config import AlertConfig


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    config = load_config(os.environ)
    pool = await create_pool(config.database_url, min_size=1, max_size=2)
    watchdog = watchdog_for(config, pool, AlertConfig())
    steps = 0

    async def step() -> int:
        nonlocal steps
        steps += 1
        return await watchdog.step()

    started = cpu_seconds()
    halt = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, halt.set)
    await run_loop("watchdog", step, interval=config.watchdog.interval_seconds, halt=halt,
                   pool=pool)
    await watchdog.close()
    await pool.close()
    print(json.dumps({"cpu_seconds": cpu_seconds() - started, "cpu_total": cpu_seconds(),
                      "steps": steps}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
