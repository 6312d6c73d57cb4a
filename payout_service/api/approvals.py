"""PayoutAdminService's approval RPCs (admin-only like the rest of the service; the approver
checks are app/approvals.py). AdminServicer mixes this in."""

from __future__ import annotations

import grpc

from payout_service.api.convert import payout_to_pb
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.app.approvals import Approvals
from payout_service.core.errors import PreconditionFailed
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb


class ApprovalAdmin:
    approvals: Approvals | None

    def _approvals(self) -> Approvals:
        if self.approvals is None:
            raise PreconditionFailed("approvals", "approvals are off (no PAYOUTS_APPROVERS)",
                                     kind="APPROVAL")
        return self.approvals

    @handles_errors
    async def ApprovePayout(  # noqa: N802 - gRPC method name
        self, request: apb.ApprovePayoutRequest, context: grpc.aio.ServicerContext, corr: str,
    ) -> apb.ApprovePayoutResponse:
        approved = await self._approvals().approve(
            request.payout_id, identity=caller_identity(context),
            public_key=request.approver_public_key, signature=request.signature,
            expires_at=request.expires_at, correlation_id=corr)
        return apb.ApprovePayoutResponse(payout=payout_to_pb(approved.payout),
                                         approvals=approved.approvals,
                                         required=approved.required)

    @handles_errors
    async def RejectPayout(  # noqa: N802
        self, request: apb.RejectPayoutRequest, context: grpc.aio.ServicerContext, corr: str,
    ) -> apb.RejectPayoutResponse:
        rejected = await self._approvals().reject(
            request.payout_id, identity=caller_identity(context), reason=request.reason)
        return apb.RejectPayoutResponse(payout=payout_to_pb(rejected))
