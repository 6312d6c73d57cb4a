"""gRPC servicer for payout.v1.RoundService: decode, call the round desk, encode."""

from __future__ import annotations

import grpc

from payout_service.adapters import round_store
from payout_service.adapters.round_store import Round
from payout_service.api.convert import memo_from_pb, payout_to_pb, timestamp, total
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.app.rounds import RoundDesk
from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.rounds import RoundState, WinnerInput
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from stellar_payouts_pb.payout.v1 import rounds_pb2_grpc

STATE_TO_PB = {s: rpb.RoundState.Value(f"ROUND_STATE_{s.value}") for s in RoundState}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def round_to_pb(r: Round) -> rpb.Round:
    return rpb.Round(
        round_id=r.round_id, state=STATE_TO_PB[r.state], asset=r.asset,
        winner_count=r.winner_count, total=total(r.total_stroops),
        created_at=timestamp(r.created_at), closed_at=timestamp(r.closed_at),
        resolved_at=timestamp(r.resolved_at), settled_at=timestamp(r.settled_at),
        resolved_by=r.resolved_by,
    )


class RoundServicer(rounds_pb2_grpc.RoundServiceServicer):  # type: ignore[misc]
    def __init__(self, rounds: RoundDesk) -> None:
        self.rounds = rounds

    @handles_errors
    async def CreateRound(  # noqa: N802 - gRPC method name
        self, request: rpb.CreateRoundRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> rpb.CreateRoundResponse:
        created = await self.rounds.create(request.round_id, request.asset)
        return rpb.CreateRoundResponse(round=round_to_pb(created))

    @handles_errors
    async def GetRound(  # noqa: N802
        self, request: rpb.GetRoundRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> rpb.GetRoundResponse:
        found = await self.rounds.get(request.round_id)
        payouts = await self.rounds.payouts(found.round_id)
        return rpb.GetRoundResponse(
            round=round_to_pb(found), payouts=[payout_to_pb(p) for p in payouts]
        )

    @handles_errors
    async def ListRounds(  # noqa: N802
        self, request: rpb.ListRoundsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> rpb.ListRoundsResponse:
        if request.page_size > MAX_PAGE_SIZE:
            too_big = FieldViolation("page_size", f"must be at most {MAX_PAGE_SIZE}")
            raise ValidationFailed([too_big])
        if any(s not in PB_TO_STATE for s in request.states):
            raise ValidationFailed([FieldViolation("states", "contains an unknown state")])
        await self.rounds.settle()
        rounds, token = await round_store.list_rounds(
            self.rounds.pool, [PB_TO_STATE[s] for s in request.states],
            page_size=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token or None,
        )
        return rpb.ListRoundsResponse(
            rounds=[round_to_pb(r) for r in rounds], next_page_token=token or ""
        )

    @handles_errors
    async def CloseRound(  # noqa: N802
        self, request: rpb.CloseRoundRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> rpb.CloseRoundResponse:
        return rpb.CloseRoundResponse(round=round_to_pb(await self.rounds.close(request.round_id)))

    @handles_errors
    async def ResolveRound(  # noqa: N802 - admin-only: enforced by the server interceptor
        self, request: rpb.ResolveRoundRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> rpb.ResolveRoundResponse:
        winners = [WinnerInput(w.rank, w.destination, w.amount,
                               memo_from_pb(w.memo if w.HasField("memo") else None))
                   for w in request.winners]
        result = await self.rounds.resolve(
            request.round_id, winners, actor=caller_identity(context), correlation_id=corr
        )
        return rpb.ResolveRoundResponse(
            round=round_to_pb(result.round), payouts=[payout_to_pb(p) for p in result.payouts]
        )
