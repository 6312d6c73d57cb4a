"""PayoutAdminService's screening RPCs: the allow and deny lists of destinations (admin-only
like the rest of the service: the interceptor checks the identity). AdminServicer mixes
this in; the decision itself is core/screening.py."""

from __future__ import annotations

import logging

import grpc

from payout_service.adapters import screening_store as store
from payout_service.adapters.screening_store import StoredEntry
from payout_service.api.convert import timestamp
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.app.monitoring import Monitor
from payout_service.core.errors import FieldViolation, NotFoundError, ValidationFailed
from payout_service.core.screening import (
    ListKind,
    ScreeningEntry,
    address_problem,
    normalise_address,
    reason_problem,
)
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb

log = logging.getLogger(__name__)

LIST_TO_PB = {k: apb.ScreeningList.Value(f"SCREENING_LIST_{k.name}") for k in ListKind}
PB_TO_LIST = {v: k for k, v in LIST_TO_PB.items()}
DEFAULT_PAGE, MAX_PAGE = 100, 500


def entry_to_pb(s: StoredEntry) -> apb.ScreeningEntry:
    return apb.ScreeningEntry(
        destination=s.entry.address, list=LIST_TO_PB[s.entry.kind], reason=s.entry.reason,
        added_by=s.added_by, created_at=timestamp(s.created_at))


def _target(destination: str, listed: int, reason: str) -> tuple[str, ListKind, str]:
    """(normalised address, list, reason) of an add or remove request, or every violation."""
    address = normalise_address(destination)
    violations = []
    if problem := address_problem(address):
        violations.append(FieldViolation("destination", problem))
    if listed not in PB_TO_LIST:
        violations.append(FieldViolation("list", "must be ALLOW or DENY"))
    if problem := reason_problem(reason):
        violations.append(FieldViolation("reason", problem))
    if violations:
        raise ValidationFailed(violations)
    return address, PB_TO_LIST[listed], reason.strip()


def _page_after(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    address, _, kind = token.partition(":")
    if address_problem(address) or kind not in {k.value for k in ListKind}:
        raise ValidationFailed([FieldViolation("page_token", "is not a token this server gave")])
    return address, kind


class ScreeningAdmin:
    monitor: Monitor

    @handles_errors
    async def AddScreeningEntry(  # noqa: N802 - gRPC method name
        self, request: apb.AddScreeningEntryRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.AddScreeningEntryResponse:
        address, kind, reason = _target(request.destination, request.list, request.reason)
        actor = caller_identity(context)
        stored, created = await store.add_entry(
            self.monitor.pool, ScreeningEntry(address, kind, reason), actor=actor,
            correlation_id=corr)
        log.info("screening entry added" if created else "screening entry already listed",
                 extra={"destination": address, "list": kind.value, "actor": actor,
                        "correlation_id": corr})
        return apb.AddScreeningEntryResponse(entry=entry_to_pb(stored), created=created)

    @handles_errors
    async def RemoveScreeningEntry(  # noqa: N802
        self, request: apb.RemoveScreeningEntryRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.RemoveScreeningEntryResponse:
        address, kind, reason = _target(request.destination, request.list, request.reason)
        actor = caller_identity(context)
        removed = await store.remove_entry(self.monitor.pool, address, kind, reason=reason,
                                           actor=actor, correlation_id=corr)
        if removed is None:
            raise NotFoundError(f"{address} is not on the {kind.value} list")
        log.info("screening entry removed", extra={
            "destination": address, "list": kind.value, "actor": actor, "correlation_id": corr})
        return apb.RemoveScreeningEntryResponse(entry=entry_to_pb(removed))

    @handles_errors
    async def ListScreeningEntries(  # noqa: N802
        self, request: apb.ListScreeningEntriesRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.ListScreeningEntriesResponse:
        violations = []
        if request.list and request.list not in PB_TO_LIST:
            violations.append(FieldViolation("list", "must be ALLOW, DENY or unspecified"))
        if request.page_size > MAX_PAGE:
            violations.append(FieldViolation("page_size", f"must be at most {MAX_PAGE}"))
        if violations:
            raise ValidationFailed(violations)
        after = _page_after(request.page_token)
        size = request.page_size or DEFAULT_PAGE
        page = await store.list_entries(
            self.monitor.pool, PB_TO_LIST[request.list] if request.list else None,
            limit=size + 1, after=after)
        more = len(page) > size
        page = page[:size]
        last = page[-1].entry if page else None
        return apb.ListScreeningEntriesResponse(
            entries=[entry_to_pb(s) for s in page],
            next_page_token=f"{last.address}:{last.kind.value}" if more and last else "")
