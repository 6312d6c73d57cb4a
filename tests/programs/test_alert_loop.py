"""The alert evaluation loop is periodic: while alerts stay open it still waits its interval
between evaluations (run_loop reads a step's result as work done and runs again at once:
back to back, the alert step would be most of payout-service's SQL and a sixth of its CPU)."""

from __future__ import annotations

import asyncio

from payout_service.programs.monitoring import Monitor


async def test_open_alerts_do_not_make_the_alert_loop_spin(stack_factory, monkeypatch):
    evaluations: list[int] = []
    first = asyncio.Event()

    async def evaluate_with_an_open_alert(self: Monitor) -> list[object]:
        await asyncio.sleep(0)
        evaluations.append(1)
        first.set()
        return [object()]  # what Monitor.evaluate answers while an alert is open

    monkeypatch.setattr(Monitor, "evaluate", evaluate_with_an_open_alert)
    await stack_factory(PAYOUTS_ALERT_INTERVAL_SECONDS="3600")
    await first.wait()
    for _ in range(200):  # turns of the event loop a spinning loop would evaluate in
        await asyncio.sleep(0)
    assert len(evaluations) == 1
