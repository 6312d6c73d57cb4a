"""GetPayoutStats: integer stroops for money, a float only for the success rate."""

from __future__ import annotations

import grpc
import pytest
from stellar_sdk import Keypair

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from .conftest import confirm, fail

A, B = Keypair.random().public_key, Keypair.random().public_key


async def create(stack, n: int, dest: str, amount: str) -> None:
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id=f"p-{n}", destination=dest, amount=amount, asset="XLM",
        idempotency_key=f"k-{n}",
    ))


async def test_stats_overall_and_per_destination(stack_factory):
    stack = await stack_factory(PAYOUTS_FEE_BPS=100)  # 1 %
    await create(stack, 1, A, "100")  # confirmed
    await create(stack, 2, A, "50")  # confirmed
    await create(stack, 3, A, "30")  # failed
    await create(stack, 4, A, "20")  # pending (QUEUED)
    await create(stack, 5, B, "7")  # BUILT
    await confirm(stack.pool, "p-1")
    await confirm(stack.pool, "p-2")
    await fail(stack.pool, "p-3")
    await stack.pool.execute("UPDATE payouts SET state = 'QUEUED' WHERE payout_id = 'p-4'")

    a = (await stack.payouts.GetPayoutStats(pb.GetPayoutStatsRequest(destination=A))).stats
    assert (a.count, a.confirmed_count, a.failed_count, a.pending_count) == (4, 2, 1, 1)
    # Gross and fees of every payout not failed or cancelled: 100 + 50 + 20.
    assert a.total_gross.stroops == 1_700_000_000 and a.total_gross.decimal == "170.0000000"
    assert a.total_fees.stroops == 17_000_000
    assert a.total_net_confirmed.stroops == 1_485_000_000  # 99 + 49.5
    assert a.success_rate == pytest.approx(2 / 3)

    overall = (await stack.payouts.GetPayoutStats(pb.GetPayoutStatsRequest())).stats
    assert overall.count == 5 and overall.pending_count == 1
    assert overall.total_gross.stroops == 1_770_000_000

    nobody = Keypair.random().public_key
    empty = (await stack.payouts.GetPayoutStats(pb.GetPayoutStatsRequest(destination=nobody)))
    assert empty.stats.count == 0 and empty.stats.success_rate == 0.0


async def test_stats_reject_a_malformed_destination(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.GetPayoutStats(pb.GetPayoutStatsRequest(destination="GXYZ"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
