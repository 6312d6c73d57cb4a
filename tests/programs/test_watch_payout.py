"""WatchPayout: every message is a consistent snapshot (a state never shown with the attempt
of a later state), first the payout as it is now, then each change until a terminal state."""

from __future__ import annotations

from stellar_sdk import Keypair

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.programs.conftest import confirm


async def created(stack, payout_id: str) -> pb.Payout:
    reply = await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id=payout_id, idempotency_key=payout_id, destination=Keypair.random().public_key,
        amount="5", asset="XLM"))
    return reply.payout


async def test_the_first_message_is_the_payout_as_it_is_now(stack):
    await created(stack, "w-1")
    tx_hash = await confirm(stack.pool, "w-1")
    messages = [m async for m in stack.payouts.WatchPayout(
        pb.WatchPayoutRequest(payout_id="w-1"), timeout=10)]
    assert len(messages) == 1
    (only,) = messages
    assert only.payout.state == pb.PAYOUT_STATE_CONFIRMED
    assert only.payout.tx_hash == tx_hash
    assert only.previous_state == pb.PAYOUT_STATE_BUILT


async def test_changes_stream_and_no_message_mixes_states(stack):
    payout = await created(stack, "w-2")
    # As the pipeline would leave it: queued, nothing sent yet.
    async with stack.pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE payouts SET state = 'QUEUED' WHERE payout_id = 'w-2'")
        await conn.execute(
            """INSERT INTO payout_events (payout_id, from_state, to_state, reason)
               VALUES ($1, 'BUILT', 'QUEUED', 'test')""", payout.id)
    stream = stack.payouts.WatchPayout(pb.WatchPayoutRequest(payout_id="w-2"), timeout=10)
    first = await stream.read()
    assert first.payout.state == pb.PAYOUT_STATE_QUEUED and not first.payout.tx_hash
    tx_hash = await confirm(stack.pool, "w-2")
    second = await stream.read()
    assert second.payout.state == pb.PAYOUT_STATE_CONFIRMED
    assert second.previous_state == pb.PAYOUT_STATE_QUEUED
    assert second.payout.tx_hash == tx_hash
    assert second.changed_at.ToDatetime() >= first.changed_at.ToDatetime()
