"""PayoutAdminService's channel pool RPCs (admin-only like the rest of the service: the
interceptor checks the identity). AdminServicer mixes this in."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from payout_service.adapters.channel_store import Channel
from payout_service.api.convert import amount, amount_from_pb, timestamp, total
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.app.channel_pool import ChannelKey, ChannelPool
from payout_service.core.channel_plan import PlanError, resize
from payout_service.core.channels import ChannelState
from payout_service.core.errors import FieldViolation, PreconditionFailed, ValidationFailed
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

STATE_TO_PB = {s: apb.ChannelState.Value(f"CHANNEL_STATE_{s.name}") for s in ChannelState}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}
RECENT_OPERATIONS = 20


def channel_to_pb(c: Channel) -> apb.Channel:
    return apb.Channel(
        account=c.account, key_id=c.key_id, state=STATE_TO_PB[c.state],
        balance=amount(c.balance_stroops) if c.balance_stroops is not None else None,
        in_flight=c.in_flight, merge_requested=c.merge_requested,
        top_up=amount(c.top_up_stroops) if c.top_up_stroops else None,
        updated_at=timestamp(c.updated_at), origin=c.origin, held_reason=c.held_reason or "",
    )


def keys_from_pb(keys: Iterable[apb.ChannelKey]) -> list[ChannelKey]:
    return [ChannelKey(key_id=k.key_id, account=k.public_key) for k in keys]


def input_amount(msg: pb.Amount, name: str) -> int:
    """An input Amount in stroops, or INVALID_ARGUMENT naming the field."""
    violations: list[FieldViolation] = []
    stroops = amount_from_pb(msg, name, violations)
    if violations:
        raise ValidationFailed(violations)
    return stroops


class ChannelAdmin:
    channels: ChannelPool | None = None

    def _pool(self) -> ChannelPool:
        if self.channels is None:
            raise PreconditionFailed("PAYOUTS_LIVE_EXECUTION",
                                     "the channel pool runs with live execution only",
                                     "CHANNEL_POOL")
        return self.channels

    @handles_errors
    async def ListChannels(  # noqa: N802 - gRPC method name
        self, request: apb.ListChannelsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.ListChannelsResponse:
        pool = self._pool()
        if any(s not in PB_TO_STATE for s in request.states):
            raise ValidationFailed([FieldViolation("states", "contains an unknown state")])
        channels = await pool.registry.in_states([PB_TO_STATE[s] for s in request.states])
        ops = await pool.operations.recent(RECENT_OPERATIONS)
        return apb.ListChannelsResponse(
            channels=[channel_to_pb(c) for c in channels],
            operations=[apb.ChannelOperation(
                operation_id=str(o["id"]), kind=o["kind"], status=o["status"],
                tx_hash=o["tx_hash"], channels=o["channels"], total=total(o["total_stroops"]),
                result_code=o["result_code"] or "", created_at=timestamp(o["created_at"]),
            ) for o in ops],
        )

    @handles_errors
    async def AddChannels(  # noqa: N802
        self, request: apb.AddChannelsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.AddChannelsResponse:
        added = await self._pool().add(keys_from_pb(request.channels),
                                       actor=caller_identity(context))
        return apb.AddChannelsResponse(channels=[channel_to_pb(c) for c in added])

    @handles_errors
    async def CreateChannels(  # noqa: N802
        self, request: apb.CreateChannelsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.CreateChannelsResponse:
        if not request.HasField("starting_balance"):
            raise ValidationFailed([FieldViolation("starting_balance", "is required")])
        balance = input_amount(request.starting_balance, "starting_balance")
        created = await self._pool().create(keys_from_pb(request.channels), balance,
                                            actor=caller_identity(context))
        return apb.CreateChannelsResponse(channels=[channel_to_pb(c) for c in created])

    @handles_errors
    async def TopUpChannels(  # noqa: N802
        self, request: apb.TopUpChannelsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.TopUpChannelsResponse:
        below = input_amount(request.below, "below")
        to = input_amount(request.to, "to")
        pool = self._pool()
        wanted = await pool.top_up(below, to)
        channels = await pool.registry.get(list(wanted))
        return apb.TopUpChannelsResponse(
            channels=[channel_to_pb(c) for c in channels], total=total(sum(wanted.values())),
        )

    @handles_errors
    async def RetireChannels(  # noqa: N802
        self, request: apb.RetireChannelsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.RetireChannelsResponse:
        retired = await self._pool().retire(list(request.accounts), merge=request.merge,
                                            actor=caller_identity(context))
        return apb.RetireChannelsResponse(channels=[channel_to_pb(c) for c in retired])

    @handles_errors
    async def PlanChannels(  # noqa: N802
        self, request: apb.PlanChannelsRequest, context: grpc.aio.ServicerContext, corr: str
    ) -> apb.PlanChannelsResponse:
        try:
            plan, queued, counts = await self._pool().plan(
                queued_per_ledger=request.queued_payouts_per_ledger or None,
                payouts_per_transaction=request.payouts_per_transaction or None,
                close_time_ms=request.close_time_ms or None,
            )
        except PlanError as err:
            raise ValidationFailed([FieldViolation(err.field, err.message)]) from None
        active = counts[ChannelState.ACTIVE]
        spare = counts[ChannelState.DRAINING] + counts[ChannelState.RETIRED]
        change = resize(plan.target, active, spare)
        return apb.PlanChannelsResponse(
            needed=plan.needed, target=plan.target,
            queued_payouts_per_ledger=plan.queued_payouts_per_ledger,
            transactions_per_ledger=plan.transactions_per_ledger,
            ceiling_payouts_per_minute=plan.ceiling_payouts_per_minute,
            limited_by=plan.limited_by, queued_payouts=queued, active=active, spare=spare,
            reactivate=change.reactivate, drain=change.drain, create=change.create,
        )
