"""PayoutAdminService's watchdog RPCs: status, findings, pause and resume of sending
(admin-only like the rest of the service: the interceptor checks the identity).
AdminServicer mixes this in."""

from __future__ import annotations

import logging

import grpc

from payout_service.adapters import watchdog_store as store
from payout_service.adapters.restore_store import unreconciled_restore
from payout_service.adapters.sending_pause import PauseState, pause_state, set_paused
from payout_service.adapters.watchdog_store import FINDING_STATUSES, FindingRecord
from payout_service.api.convert import timestamp, total
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.app.monitoring import Monitor
from payout_service.config import WatchdogConfig
from payout_service.core.errors import (
    FieldViolation,
    NotFoundError,
    PreconditionFailed,
    ValidationFailed,
)
from payout_service.core.watchdog import FINDING_KINDS
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb

log = logging.getLogger(__name__)

KIND_TO_PB = {k: apb.WatchdogFindingKind.Value(f"WATCHDOG_FINDING_KIND_{k.upper()}")
              for k in FINDING_KINDS}
PB_TO_KIND = {v: k for k, v in KIND_TO_PB.items()}
STATUS_TO_PB = {s: apb.WatchdogFindingStatus.Value(f"WATCHDOG_FINDING_STATUS_{s.upper()}")
                for s in FINDING_STATUSES}
PB_TO_STATUS = {v: k for k, v in STATUS_TO_PB.items()}
DEFAULT_PAGE, MAX_PAGE, STATUS_FINDINGS = 50, 500, 100


def finding_to_pb(f: FindingRecord) -> apb.WatchdogFinding:
    return apb.WatchdogFinding(
        finding_id=f.id, kind=KIND_TO_PB[f.kind], status=STATUS_TO_PB[f.status],
        tx_hash=f.tx_hash or "", ledger=f.ledger or 0, ledger_to=f.ledger_to or 0,
        payout_id=f.payout_ref or (str(f.payout_id) if f.payout_id else ""),
        accounts=f.accounts, amount=total(f.amount) if f.amount is not None else None,
        asset=f.asset or "", detail=f.detail, first_seen=timestamp(f.first_seen),
        acknowledged_by=f.acknowledged_by or "", acknowledged_at=timestamp(f.acknowledged_at),
        resolved_by=f.resolved_by or "", resolved_at=timestamp(f.resolved_at),
        resolution=f.resolution or "",
    )


def pause_to_pb(p: PauseState) -> apb.SendingPause:
    return apb.SendingPause(paused=p.paused, reason=p.reason, changed_by=p.changed_by,
                            changed_at=timestamp(p.changed_at), finding_id=p.finding_id or 0)


def _reason(text: str) -> str:
    if not text.strip():
        raise ValidationFailed([FieldViolation("reason", "is required (it is audited)")])
    return text.strip()


def _finding_id(value: int) -> int:
    if value <= 0 or value > 2**63 - 1:
        raise ValidationFailed([FieldViolation("finding_id", "must be a finding id (from "
                                                             "ListWatchdogFindings)")])
    return value


def _page_token(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or not 0 < int(text) <= 2**63 - 1:
        raise ValidationFailed([FieldViolation("page_token", "is not a token this server gave")])
    return int(text)


class WatchdogAdmin:
    monitor: Monitor
    watchdog_settings: WatchdogConfig = WatchdogConfig(enabled=False)

    @handles_errors
    async def GetWatchdogStatus(  # noqa: N802 - gRPC method name
        self, request: apb.GetWatchdogStatusRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.GetWatchdogStatusResponse:
        pool = self.monitor.pool
        found = await store.state(pool)
        reply = apb.GetWatchdogStatusResponse(
            enabled=self.watchdog_settings.enabled, started=found is not None,
            pause_on_finding=self.watchdog_settings.pause_on_finding,
            sending=pause_to_pb(await pause_state(pool)),
            open_findings=[finding_to_pb(f) for f in await store.list_findings(
                pool, statuses=("open", "acknowledged"), kinds=(), before_id=0,
                limit=STATUS_FINDINGS)],
        )
        if found is not None:
            p = found.position
            reply.start_ledger, reply.verified_ledger = found.start_ledger, p.verified_ledger
            reply.cursor, reply.latest_ledger = str(p.cursor), found.latest_ledger
            reply.lag_ledgers = max(0, found.latest_ledger - p.verified_ledger)
            reply.last_read_at.CopyFrom(timestamp(found.updated_at))
            reply.lease_owner = found.lease_owner or ""
            reply.transactions_read, reply.pages_read = found.transactions_read, found.pages_read
            reply.fees_charged.CopyFrom(total(found.fees_charged_stroops))
        return reply

    @handles_errors
    async def ListWatchdogFindings(  # noqa: N802
        self, request: apb.ListWatchdogFindingsRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.ListWatchdogFindingsResponse:
        violations = []
        if any(s not in PB_TO_STATUS for s in request.statuses):
            violations.append(FieldViolation("statuses", "contains an unknown status"))
        if any(k not in PB_TO_KIND for k in request.kinds):
            violations.append(FieldViolation("kinds", "contains an unknown kind"))
        if request.page_size > MAX_PAGE:
            violations.append(FieldViolation("page_size", f"must be at most {MAX_PAGE}"))
        if violations:
            raise ValidationFailed(violations)
        size = request.page_size or DEFAULT_PAGE
        found = await store.list_findings(
            self.monitor.pool, statuses=[PB_TO_STATUS[s] for s in request.statuses],
            kinds=[PB_TO_KIND[k] for k in request.kinds],
            before_id=_page_token(request.page_token), limit=size + 1)
        more = len(found) > size
        found = found[:size]
        return apb.ListWatchdogFindingsResponse(
            findings=[finding_to_pb(f) for f in found],
            next_page_token=str(found[-1].id) if more else "")

    @handles_errors
    async def AcknowledgeWatchdogFinding(  # noqa: N802
        self, request: apb.AcknowledgeWatchdogFindingRequest,
        context: grpc.aio.ServicerContext, corr: str,
    ) -> apb.AcknowledgeWatchdogFindingResponse:
        finding_id = _finding_id(request.finding_id)
        done = await store.acknowledge_finding(self.monitor.pool, finding_id,
                                               caller_identity(context))
        return apb.AcknowledgeWatchdogFindingResponse(
            finding=finding_to_pb(done or await self._explain(finding_id, "OPEN")))

    @handles_errors
    async def ResolveWatchdogFinding(  # noqa: N802
        self, request: apb.ResolveWatchdogFindingRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.ResolveWatchdogFindingResponse:
        finding_id = _finding_id(request.finding_id)
        reason, actor = _reason(request.reason), caller_identity(context)
        done = await store.resolve_finding(self.monitor.pool, finding_id, actor, reason)
        if done is not None:
            log.warning("watchdog finding resolved", extra={
                "finding_id": finding_id, "kind": done.kind, "actor": actor,
                "correlation_id": corr, "reason": reason})
        return apb.ResolveWatchdogFindingResponse(
            finding=finding_to_pb(done or await self._explain(finding_id,
                                                              "OPEN or ACKNOWLEDGED")))

    async def _explain(self, finding_id: int, allowed: str) -> FindingRecord:
        finding = await store.get_finding(self.monitor.pool, finding_id)
        if finding is None:
            raise NotFoundError(f"watchdog finding {finding_id} not found")
        raise PreconditionFailed(
            f"watchdog_findings/{finding_id}",
            f"the finding is {finding.status.upper()}; only {allowed} findings can be changed")

    @handles_errors
    async def PauseSending(  # noqa: N802
        self, request: apb.PauseSendingRequest, context: grpc.aio.ServicerContext, corr: str,
    ) -> apb.PauseSendingResponse:
        return apb.PauseSendingResponse(sending=await self._set(True, request.reason,
                                                                context, corr))

    @handles_errors
    async def ResumeSending(  # noqa: N802
        self, request: apb.ResumeSendingRequest, context: grpc.aio.ServicerContext, corr: str,
    ) -> apb.ResumeSendingResponse:
        return apb.ResumeSendingResponse(sending=await self._set(False, request.reason,
                                                                 context, corr))

    async def _set(self, paused: bool, reason_text: str, context: grpc.aio.ServicerContext,
                   corr: str) -> apb.SendingPause:
        reason, actor = _reason(reason_text), caller_identity(context)
        pool = self.monitor.pool
        restore = None if paused else await unreconciled_restore(pool)
        if restore is not None:
            raise PreconditionFailed(
                "sending_hold", f"a restored database is held until it is reconciled with "
                f"the chain ({restore[:80]}): python -m payout_service.cli.restore reconcile")
        changed = await set_paused(pool, paused, reason=reason, actor=actor,
                                   correlation_id=corr)
        if changed is not None:
            log.warning("sending paused" if paused else "sending resumed", extra={
                "actor": actor, "reason": reason, "correlation_id": corr})
        return pause_to_pb(changed or await pause_state(pool))
