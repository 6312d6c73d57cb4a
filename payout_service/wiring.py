"""Registers RoundService and PayoutAdminService and starts the programs' background loops.

main.start_service calls start_programs(server, desk, ledger, config.programs) before
server.start(), adds Programs.service_names to reflection and health, and awaits
Programs.stop() on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import grpc

from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.payout_store import archive_settled_events
from payout_service.api.admin import AdminServicer
from payout_service.api.rounds import RoundServicer
from payout_service.app.approvals import Approvals
from payout_service.app.desk import PayoutDesk
from payout_service.app.loops import run_loop
from payout_service.app.monitoring import Monitor
from payout_service.app.outbox import ALERT_NOTIFICATIONS, OutboxDelivery
from payout_service.app.reconcile import reconcile_job
from payout_service.app.rounds import RoundDesk
from payout_service.app.scheduled_runs import ScheduledRuns
from payout_service.config import ProgramsConfig
from stellar_payouts_pb.payout.v1 import admin_pb2, admin_pb2_grpc, rounds_pb2, rounds_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    rounds_pb2.DESCRIPTOR.services_by_name["RoundService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["PayoutAdminService"].full_name,
)


@dataclass
class Programs:
    config: ProgramsConfig
    rounds: RoundDesk
    runs: ScheduledRuns
    monitor: Monitor
    outbox: OutboxDelivery
    alert_outbox: OutboxDelivery
    admin: AdminServicer | None = None
    service_names: tuple[str, ...] = SERVICE_NAMES
    halt: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def evaluate_alerts(self) -> None:
        """The alert loop's step: periodic. It answers None, never the alerts still open: to
        run_loop a step's result is work done (run again at once), so answering the open
        alerts made the loop spin, evaluating back to back, for as long as any alert held."""
        await self.monitor.evaluate()

    async def archive_events(self) -> int:
        """The retention loop's step: one batch of settled payouts' events to the archive;
        busy (run again at once) until caught up."""
        moved = await archive_settled_events(
            self.monitor.pool, older_than=timedelta(days=self.config.events_retention_days))
        if moved.payouts:
            log.info("events archived", extra={"payouts": moved.payouts, "events": moved.events})
        return moved.payouts

    async def stop(self) -> None:
        """Stops the loops (each finishes its current step) and closes the HTTP client."""
        self.halt.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        await self.outbox.close()
        await self.alert_outbox.close()


async def start_programs(
    server: grpc.aio.Server, desk: PayoutDesk, ledger: LedgerGateway | None,
    settings: ProgramsConfig, *, loops: bool = True,
) -> Programs:
    pool = desk.store.pool
    programs = Programs(
        config=settings, rounds=RoundDesk(desk), runs=ScheduledRuns(desk),
        monitor=Monitor(pool, settings.thresholds, can_sign=bool(settings.webhooks.secrets)),
        outbox=OutboxDelivery(pool, settings.webhooks),
        alert_outbox=OutboxDelivery(pool, settings.webhooks, ALERT_NOTIFICATIONS),
    )
    rounds_pb2_grpc.add_RoundServiceServicer_to_server(RoundServicer(programs.rounds), server)
    programs.admin = AdminServicer(
        programs.monitor, programs.runs, ledger.lookup if ledger else None,
        Approvals(pool, desk.config) if desk.config.approval_rules is not None else None)
    admin_pb2_grpc.add_PayoutAdminServiceServicer_to_server(programs.admin, server)
    if loops:
        steps: list[tuple[str, float, Callable[[], Awaitable[object]]]] = [
            ("settle_rounds", settings.settle_interval, programs.rounds.settle),
            ("scheduler", settings.scheduler_interval, programs.runs.run_if_due),
            ("alert_evaluation", settings.alert_interval, programs.evaluate_alerts),
            # Alert notifications carry their own URLs (the alert configuration's).
            ("alert_notifications", settings.outbox_interval, programs.alert_outbox.deliver_due),
        ]
        if ledger is not None:
            lookup, every = ledger.lookup, settings.reconcile_interval
            steps.append(("reconcile", every,
                          lambda: reconcile_job(pool, lookup, every)))
        if settings.events_retention_days > 0:
            steps.append(("events_retention", settings.events_retention_interval,
                          programs.archive_events))
        if settings.webhooks.urls:
            steps.append(("outbox_delivery", settings.outbox_interval, programs.outbox.deliver_due))
        else:
            log.warning("PAYOUTS_WEBHOOK_URLS is empty: payout events stay in the outbox")
        programs.tasks = [
            asyncio.create_task(
                run_loop(name, step, interval=every, halt=programs.halt, pool=pool))
            for name, every, step in steps
        ]
    return programs
