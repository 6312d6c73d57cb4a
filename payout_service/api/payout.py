"""gRPC servicer for payout.v1.PayoutService: decode, call the desk, encode. No logic here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from payout_service.adapters.payout_store import PayoutFilter
from payout_service.api.convert import (
    PB_TO_STATE,
    STATE_TO_PB,
    attempt_to_pb,
    memo_from_pb,
    payout_to_pb,
    timestamp,
)
from payout_service.api.errors import handles_errors, streams_errors
from payout_service.api.exports import export_payouts
from payout_service.api.identity import caller_identity
from payout_service.api.payout_requests import create_batch, get_statement, get_stats
from payout_service.app.desk import PayoutDesk
from payout_service.core.errors import FieldViolation, NotFoundError, ValidationFailed
from payout_service.core.model import Payout
from payout_service.core.states import TERMINAL, PayoutState
from payout_service.core.validation import quote
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
WATCH_POLL_SECONDS = 0.2


class PayoutServicer(payout_pb2_grpc.PayoutServiceServicer):  # type: ignore[misc]
    def __init__(self, desk: PayoutDesk) -> None:
        self.desk = desk

    @handles_errors
    async def CreatePayout(  # noqa: N802 - gRPC method name
        self, request: pb.CreatePayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.CreatePayoutResponse:
        validated = self.desk.validate(
            {
                "payout_id": request.payout_id, "destination": request.destination,
                "amount": request.amount, "asset": request.asset,
                "idempotency_key": request.idempotency_key,
                "metadata": dict(request.metadata), "reference": request.reference,
                "memo": memo_from_pb(request.memo if request.HasField("memo") else None),
            }
        )
        result = await self.desk.create(
            validated, actor=caller_identity(context), correlation_id=corr
        )
        log.info("payout created" if result.created else "payout replayed", extra={
            "payout_id": result.payout.payout_id, "correlation_id": corr,
            "state": result.payout.state.value, "gross_stroops": result.payout.gross_stroops,
        })
        return pb.CreatePayoutResponse(payout=payout_to_pb(result.payout), created=result.created)

    @handles_errors
    async def GetPayout(  # noqa: N802
        self, request: pb.GetPayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.GetPayoutResponse:
        if not request.payout_id:
            raise ValidationFailed([FieldViolation("payout_id", "is required")])
        payout = await self.desk.store.get_payout(request.payout_id)
        if payout is None:
            raise NotFoundError(f"payout {quote(request.payout_id)} not found")
        response = pb.GetPayoutResponse(payout=payout_to_pb(payout))
        if request.include_attempts:
            attempts = await self.desk.store.list_attempts(payout.id)
            response.attempts.extend(attempt_to_pb(a) for a in attempts)
        return response

    @handles_errors
    async def ListPayouts(  # noqa: N802
        self, request: pb.ListPayoutsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.ListPayoutsResponse:
        if request.page_size > MAX_PAGE_SIZE:
            raise ValidationFailed(
                [FieldViolation("page_size", f"must be at most {MAX_PAGE_SIZE}")]
            )
        unknown = [s for s in request.states if s not in PB_TO_STATE]
        if unknown:
            raise ValidationFailed([FieldViolation("states", "contains an unknown state")])
        filt = PayoutFilter(
            states=[PB_TO_STATE[s] for s in request.states],
            destination=request.destination or None,
            round_id=request.round_id or None,
            batch_id=request.batch_id or None,
        )
        payouts, token = await self.desk.store.list_payouts(
            filt, page_size=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token or None,
        )
        return pb.ListPayoutsResponse(
            payouts=[payout_to_pb(p) for p in payouts], next_page_token=token or ""
        )

    async def _payout_or_404(self, ident: str) -> Payout:
        if not ident:
            raise ValidationFailed([FieldViolation("payout_id", "is required")])
        payout = await self.desk.store.get_payout(ident)
        if payout is None:
            raise NotFoundError(f"payout {quote(ident)} not found")
        return payout

    @handles_errors
    async def SubmitSignedTransaction(  # noqa: N802
        self, request: pb.SubmitSignedTransactionRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> pb.SubmitSignedTransactionResponse:
        payout = await self._payout_or_404(request.payout_id)
        await self.desk.accept_signed(payout, request.signed_envelope_xdr,
                                      actor=caller_identity(context))
        fresh = await self._payout_or_404(request.payout_id)
        return pb.SubmitSignedTransactionResponse(payout=payout_to_pb(fresh))

    @handles_errors
    async def RetryPayout(  # noqa: N802
        self, request: pb.RetryPayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.RetryPayoutResponse:
        payout = await self._payout_or_404(request.payout_id)
        await self.desk.retry(
            payout, actor=caller_identity(context), reason=request.reason or "operator retry"
        )
        fresh = await self._payout_or_404(payout.payout_id)
        return pb.RetryPayoutResponse(payout=payout_to_pb(fresh))

    @handles_errors
    async def CancelPayout(  # noqa: N802
        self, request: pb.CancelPayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.CancelPayoutResponse:
        payout = await self._payout_or_404(request.payout_id)
        await self.desk.cancel(
            payout, actor=caller_identity(context), reason=request.reason or "cancelled"
        )
        fresh = await self._payout_or_404(payout.payout_id)
        return pb.CancelPayoutResponse(payout=payout_to_pb(fresh))

    @streams_errors
    async def WatchPayout(  # noqa: N802
        self, request: pb.WatchPayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> AsyncIterator[pb.WatchPayoutResponse]:
        """Each message is the payout as it is at that moment (its state always agrees with
        its attempt, hash and failure) with the event that brought it there: first the payout
        as it is now, then each change until a terminal state. A state held for less than one
        poll may be skipped. Polls the audit trail, so a change made by any replica is seen."""
        payout = await self._payout_or_404(request.payout_id)
        last_event = 0
        while True:
            events = await self.desk.store.events_after(payout.id, last_event)
            if events:
                last_event = events[-1]["id"]
                fresh = await self._payout_or_404(payout.payout_id)
                # The event that led to the state just read; none when a newer event landed
                # between the two reads (the next poll has it).
                reached = next(
                    (e for e in reversed(events) if e["to_state"] == fresh.state.value), None
                )
                if reached is not None:
                    previous = reached["from_state"]
                    yield pb.WatchPayoutResponse(
                        payout=payout_to_pb(fresh),
                        previous_state=STATE_TO_PB[PayoutState(previous)] if previous
                        else pb.PAYOUT_STATE_UNSPECIFIED,
                        changed_at=timestamp(reached["at"]),
                    )
                    if fresh.state in TERMINAL:
                        return
            await asyncio.sleep(WATCH_POLL_SECONDS)

    @handles_errors
    async def CreatePayoutBatch(  # noqa: N802
        self, request: pb.CreatePayoutBatchRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.CreatePayoutBatchResponse:
        return await create_batch(
            self.desk, request, actor=caller_identity(context), correlation_id=corr
        )

    @handles_errors
    async def GetPayoutStats(  # noqa: N802
        self, request: pb.GetPayoutStatsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.GetPayoutStatsResponse:
        return await get_stats(self.desk, request)

    @handles_errors
    async def GetPayoutStatement(  # noqa: N802
        self, request: pb.GetPayoutStatementRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.GetPayoutStatementResponse:
        return await get_statement(self.desk, request)

    @streams_errors
    async def ExportPayouts(  # noqa: N802
        self, request: pb.ExportPayoutsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> AsyncIterator[pb.ExportPayoutsResponse]:
        async for chunk in export_payouts(self.desk, request):
            yield chunk
