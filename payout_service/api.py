"""gRPC servicer for payout.v1.PayoutService: decode, call the desk, encode. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from payout_service.convert import PB_TO_STATE, attempt_to_pb, payout_to_pb
from payout_service.core.validation import FieldViolation, ValidationFailed
from payout_service.grpc_errors import NotFoundError, handles_errors, streams_errors
from payout_service.payouts import PayoutDesk
from payout_service.store import PayoutFilter
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def caller_identity(context: grpc.aio.ServicerContext) -> str:
    """Client certificate CN when the caller uses mTLS, else its peer address."""
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or auth.get("x509_subject_alternative_name")
    if names:
        return str(names[0].decode())
    return str(context.peer())


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
            }
        )
        result = await self.desk.create(
            validated, actor=caller_identity(context), correlation_id=corr
        )
        return pb.CreatePayoutResponse(payout=payout_to_pb(result.payout), created=result.created)

    @handles_errors
    async def GetPayout(  # noqa: N802
        self, request: pb.GetPayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> pb.GetPayoutResponse:
        if not request.payout_id:
            raise ValidationFailed([FieldViolation("payout_id", "is required")])
        payout = await self.desk.store.get_payout(request.payout_id)
        if payout is None:
            raise NotFoundError(f"payout {request.payout_id!r} not found")
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

    @streams_errors
    async def WatchPayout(  # noqa: N802
        self, request: pb.WatchPayoutRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> AsyncIterator[pb.WatchPayoutResponse]:
        raise NotImplementedError("WatchPayout arrives with live execution (issue 5)")
        yield pb.WatchPayoutResponse()  # pragma: no cover - makes this an async generator
