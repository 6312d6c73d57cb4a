"""gRPC servicer for payout.v1.PayoutAdminService. Authorization is the interceptor's job."""

from __future__ import annotations

from typing import Any

import grpc

from payout_service.adapters.alert_store import AlertRecord
from payout_service.adapters.run_store import RunRecord
from payout_service.api.approvals import ApprovalAdmin
from payout_service.api.channels import ChannelAdmin
from payout_service.api.convert import amount, amount_from_pb, payout_to_pb, timestamp, total
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.api.screening import ScreeningAdmin
from payout_service.api.watchdog import WatchdogAdmin
from payout_service.api.webhooks import WebhookAdmin
from payout_service.app.approvals import Approvals
from payout_service.app.monitoring import Monitor
from payout_service.app.reconcile import MAX_LOOKBACK_HOURS, Lookup, reconcile
from payout_service.app.scheduled_runs import ScheduledRuns
from payout_service.core.alert_config import AlertConfig
from payout_service.core.errors import FieldViolation, PreconditionFailed, ValidationFailed
from payout_service.core.health import AlertKind, AlertThresholds, Level
from payout_service.core.model import Payout
from payout_service.core.schedule import Frequency, Schedule
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

LEVEL_TO_PB = {level: apb.HealthLevel.Value(f"HEALTH_LEVEL_{level.name}") for level in Level}
KIND_TO_PB = {kind: apb.AlertKind.Value(f"ALERT_KIND_{kind.value}") for kind in AlertKind}
STATUSES = ("ACTIVE", "ACKNOWLEDGED", "RESOLVED")
STATUS_TO_PB = {s: apb.AlertStatus.Value(f"ALERT_STATUS_{s}") for s in STATUSES}
PB_TO_STATUS = {v: k for k, v in STATUS_TO_PB.items()}
FREQ_TO_PB = {f: apb.ScheduleFrequency.Value(f"SCHEDULE_FREQUENCY_{f.value}") for f in Frequency}
PB_TO_FREQ = {v: k for k, v in FREQ_TO_PB.items()}
DEFAULT_RUNS = 20
MAX_RUNS = 200


def alert_to_pb(a: AlertRecord) -> apb.Alert:
    return apb.Alert(
        alert_id=str(a.alert_id), kind=KIND_TO_PB[a.kind], severity=LEVEL_TO_PB[a.severity],
        status=STATUS_TO_PB[a.status], message=a.message, raised_at=timestamp(a.raised_at),
        acknowledged_at=timestamp(a.acknowledged_at), resolved_at=timestamp(a.resolved_at),
        acknowledged_by=a.acknowledged_by,
    )


def schedule_to_pb(s: Schedule) -> apb.Schedule:
    return apb.Schedule(
        enabled=s.enabled, frequency=FREQ_TO_PB[s.frequency], day_of_week=s.day_of_week,
        day_of_month=s.day_of_month, hour=s.hour, minute=s.minute, timezone=s.timezone,
        minimum_threshold=amount(s.minimum_threshold_stroops),
        next_run_at=timestamp(s.next_run_at),
    )


def schedule_from_pb(msg: apb.Schedule) -> Schedule:
    violations: list[FieldViolation] = []
    if msg.frequency not in PB_TO_FREQ:
        violations.append(FieldViolation("schedule.frequency", "must be DAILY, WEEKLY or MONTHLY"))
    stroops = amount_from_pb(msg.minimum_threshold, "schedule.minimum_threshold", violations)
    if violations:
        raise ValidationFailed(violations)
    return Schedule(
        enabled=msg.enabled, frequency=PB_TO_FREQ[msg.frequency], day_of_week=msg.day_of_week,
        day_of_month=msg.day_of_month, hour=msg.hour, minute=msg.minute,
        timezone=msg.timezone, minimum_threshold_stroops=stroops,
    )


def alert_config_to_pb(c: AlertConfig) -> apb.AlertConfig:
    t = c.thresholds
    return apb.AlertConfig(
        enabled=c.enabled, failure_rate_warning=t.failure_rate_warning,
        failure_rate_critical=t.failure_rate_critical, pending_count=t.pending_count,
        processing_delay_seconds_warning=t.delay_seconds_warning,
        processing_delay_seconds_critical=t.delay_seconds_critical,
        amount_24h=amount(t.amount_24h_stroops), system_errors=t.system_errors,
        webhook_urls=list(c.webhook_urls), version=c.version,
        updated_at=timestamp(c.updated_at), updated_by=c.updated_by,
    )


def alert_config_from_pb(msg: apb.AlertConfig) -> AlertConfig:
    violations: list[FieldViolation] = []
    stroops = amount_from_pb(msg.amount_24h, "config.amount_24h", violations)
    if violations:
        raise ValidationFailed(violations)
    return AlertConfig(
        enabled=msg.enabled, webhook_urls=tuple(msg.webhook_urls),
        thresholds=AlertThresholds(
            failure_rate_warning=msg.failure_rate_warning,
            failure_rate_critical=msg.failure_rate_critical, pending_count=msg.pending_count,
            delay_seconds_warning=msg.processing_delay_seconds_warning,
            delay_seconds_critical=msg.processing_delay_seconds_critical,
            amount_24h_stroops=stroops, system_errors=msg.system_errors,
        ),
    )


def planned_to_pb(p: dict[str, Any], run_id: str) -> pb.Payout:
    """A dry run's would-be payout: no id, no state, never stored as a payout."""
    return pb.Payout(
        payout_id=p["payout_id"], idempotency_key=p["idempotency_key"],
        destination=p["destination"], asset=p["asset"], gross=amount(p["gross_stroops"]),
        fee=amount(p["fee_stroops"]), net=amount(p["net_stroops"]), metadata=p["metadata"],
        batch_id=run_id,
    )


def run_to_pb(r: RunRecord, payouts: list[Payout]) -> apb.Run:
    """The run with the payouts it created, or, for a dry run, those it would have."""
    msg = _run_fields(r)
    msg.payouts.extend(payout_to_pb(p) for p in payouts)
    msg.payouts.extend(planned_to_pb(p, r.run_id) for p in r.planned)
    return msg


def _run_fields(r: RunRecord) -> apb.Run:
    return apb.Run(
        run_id=r.run_id, dry_run=r.dry_run, trigger=r.trigger, payout_count=r.payout_count,
        skipped_below_threshold=r.skipped_below_threshold, total=total(r.total_stroops),
        started_at=timestamp(r.started_at), finished_at=timestamp(r.finished_at),
        errors=[apb.RunError(destination=e.destination, message=e.message) for e in r.errors],
        next_run_at=timestamp(r.next_run_at), correlation_id=r.correlation_id,
    )


class AdminServicer(
    ApprovalAdmin, ChannelAdmin, ScreeningAdmin, WatchdogAdmin, WebhookAdmin,
    admin_pb2_grpc.PayoutAdminServiceServicer,  # type: ignore[misc]
):
    def __init__(self, monitor: Monitor, runs: ScheduledRuns, lookup: Lookup | None,
                 approvals: Approvals | None = None) -> None:
        self.monitor = monitor
        self.runs = runs
        self.lookup = lookup
        self.approvals = approvals

    @handles_errors
    async def GetSystemHealth(  # noqa: N802 - gRPC method name
        self, request: apb.GetSystemHealthRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.GetSystemHealthResponse:
        h = await self.monitor.health()
        m = h.metrics
        return apb.GetSystemHealthResponse(
            level=LEVEL_TO_PB[h.level],
            metrics=apb.HealthMetrics(
                failure_rate=m.failure_rate, pending_count=m.pending_count,
                oldest_pending_age_seconds=m.oldest_pending_age_seconds,
                amount_last_24h=total(m.amount_last_24h_stroops),
                system_errors_last_hour=m.system_errors_last_hour,
                open_watchdog_findings=dict(m.open_findings), sending_paused=m.sending_paused,
                channels_held=m.channels_held,
            ),
            active_alerts=[alert_to_pb(a) for a in h.active_alerts],
        )

    @handles_errors
    async def ListAlerts(  # noqa: N802
        self, request: apb.ListAlertsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.ListAlertsResponse:
        if any(s not in PB_TO_STATUS for s in request.statuses):
            raise ValidationFailed([FieldViolation("statuses", "contains an unknown status")])
        alerts = await self.monitor.alerts([PB_TO_STATUS[s] for s in request.statuses])
        return apb.ListAlertsResponse(alerts=[alert_to_pb(a) for a in alerts])

    @handles_errors
    async def AcknowledgeAlert(  # noqa: N802
        self, request: apb.AcknowledgeAlertRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.AcknowledgeAlertResponse:
        alert = await self.monitor.acknowledge(request.alert_id, caller_identity(context))
        return apb.AcknowledgeAlertResponse(alert=alert_to_pb(alert))

    @handles_errors
    async def ResolveAlert(  # noqa: N802
        self, request: apb.ResolveAlertRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.ResolveAlertResponse:
        return apb.ResolveAlertResponse(
            alert=alert_to_pb(await self.monitor.resolve(request.alert_id))
        )

    @handles_errors
    async def RecordEarning(  # noqa: N802
        self, request: apb.RecordEarningRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.RecordEarningResponse:
        balance = await self.runs.record_earning(
            destination=request.destination, amount=request.amount, asset=request.asset,
            earning_id=request.earning_id,
        )
        return apb.RecordEarningResponse(balance=total(balance))  # a sum of earnings

    @handles_errors
    async def GetSchedule(  # noqa: N802
        self, request: apb.GetScheduleRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.GetScheduleResponse:
        return apb.GetScheduleResponse(schedule=schedule_to_pb(await self.runs.schedule()))

    @handles_errors
    async def UpdateSchedule(  # noqa: N802
        self, request: apb.UpdateScheduleRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.UpdateScheduleResponse:
        if not request.HasField("schedule"):
            raise ValidationFailed([FieldViolation("schedule", "is required")])
        saved = await self.runs.update_schedule(schedule_from_pb(request.schedule))
        return apb.UpdateScheduleResponse(schedule=schedule_to_pb(saved))

    @handles_errors
    async def TriggerScheduledRun(  # noqa: N802
        self, request: apb.TriggerScheduledRunRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.TriggerScheduledRunResponse:
        result = await self.runs.trigger(dry_run=request.dry_run, trigger="manual",
                                         correlation_id=corr)
        return apb.TriggerScheduledRunResponse(run=run_to_pb(result.record, result.payouts))

    @handles_errors
    async def ListRuns(  # noqa: N802
        self, request: apb.ListRunsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.ListRunsResponse:
        if request.limit > MAX_RUNS:
            raise ValidationFailed([FieldViolation("limit", f"must be at most {MAX_RUNS}")])
        runs, payouts = await self.runs.history(request.limit or DEFAULT_RUNS)
        return apb.ListRunsResponse(runs=[run_to_pb(r, payouts[r.run_id]) for r in runs])

    @handles_errors
    async def Reconcile(  # noqa: N802
        self, request: apb.ReconcileRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.ReconcileResponse:
        if self.lookup is None:
            raise PreconditionFailed(
                "SOROBAN_RPC_URL", "reconciliation needs a Stellar RPC (SOROBAN_RPC_URL)",
                "LEDGER",
            )
        if request.lookback_hours > MAX_LOOKBACK_HOURS:
            raise ValidationFailed([FieldViolation(
                "lookback_hours", f"must be at most {MAX_LOOKBACK_HOURS} (RPC history)"
            )])
        result = await reconcile(self.runs.pool, self.lookup, request.lookback_hours or 24)
        return apb.ReconcileResponse(checked=result.checked, unverified=result.unverified,
                                     mismatches=[
            apb.Mismatch(payout_id=m.payout_id, tx_hash=m.tx_hash, problem=m.problem)
            for m in result.mismatches
        ])

    @handles_errors
    async def GetAlertConfig(  # noqa: N802
        self, request: apb.GetAlertConfigRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.GetAlertConfigResponse:
        return apb.GetAlertConfigResponse(config=alert_config_to_pb(await self.monitor.config()))

    @handles_errors
    async def UpdateAlertConfig(  # noqa: N802
        self, request: apb.UpdateAlertConfigRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.UpdateAlertConfigResponse:
        if not request.HasField("config"):
            raise ValidationFailed([FieldViolation("config", "is required")])
        saved = await self.monitor.update_config(
            alert_config_from_pb(request.config), based_on=request.config.version,
            actor=caller_identity(context), correlation_id=corr,
        )
        return apb.UpdateAlertConfigResponse(config=alert_config_to_pb(saved))
