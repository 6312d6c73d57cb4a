"""A signer refusal that is about the channel, not the payout (core/refusals.py), against real
parts: PostgreSQL, the real signer over mTLS (SoftHSM keys, its real policy), the sandbox over
HTTP. The payouts are not failed: the channel is held with its reason, the payouts go from the
payer, each paid once (the sandbox's ledger)."""

from __future__ import annotations

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.channel_store import ChannelRegistry, hold_channel
from payout_service.core.channels import ChannelState
from signer_service.testing import running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from tests.integration.test_live_with_signer import channel_world, pay_all, signer_env

XLM = 10_000_000
FRIENDBOT = 10_000 * XLM


def g() -> str:
    return Keypair.random().public_key


@pytest.fixture
async def sandbox():
    async with RunningSandbox(ledger_interval=0.2, seed=14) as running:
        yield running


@pytest.mark.parametrize("batch_mode", ["off", "classic"])
async def test_a_payer_policy_without_the_channel_holds_the_channel_and_fails_no_payout(
    payout_service_factory, sandbox, tmp_path, batch_mode
):
    """The paying key's `source_accounts` lacks "@channel_keys" and the channel's G...: it
    refuses every channel transaction (rule source_accounts). A channel added at run time is
    held at its first refusal (draining, then retired; its reason in ListChannels) and the
    payouts, re-queued (not failed), confirm from the payer. Re-adding the
    channel (`payoutctl channels add`) clears the hold."""
    world = await channel_world(sandbox, channels=1, payouts=4)
    payer = world.source.public_key
    [(channel_id, channel)] = world.channels.items()
    # The payer's key: only itself as a source. The channel's key: itself and the payer (the
    # operations' source), so only the payer's key refuses.
    world.policy["source_accounts"] = [payer]
    world.policy["payments"] = {"assets": ["native"]}  # classic batches too
    settings = {channel_id: {"role": "channel", "policy": {
        "merge_into": payer, "source_accounts": [payer, channel.public_key]}}}
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=world.source.secret,
        extra_keys=world.channel_secrets, policy=world.policy, key_settings=settings,
    ) as signer:
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=payer, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", PAYOUTS_CHANNEL_POOL_INTERVAL_MS="100",
            PAYOUTS_BATCH_MODE=batch_mode, **signer_env(signer),
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as conn:
            stub = payout_pb2_grpc.PayoutServiceStub(conn)
            admin = admin_pb2_grpc.PayoutAdminServiceStub(conn)
            added = await admin.AddChannels(apb.AddChannelsRequest(channels=[
                apb.ChannelKey(key_id=channel_id, public_key=channel.public_key)]))
            assert added.channels[0].state == apb.CHANNEL_STATE_ACTIVE
            await pay_all(stub, "cb", world.dests)
            [listed] = (await admin.ListChannels(apb.ListChannelsRequest())).channels
            assert listed.state in (apb.CHANNEL_STATE_DRAINING, apb.CHANNEL_STATE_RETIRED)
            assert listed.held_reason.startswith(
                "signer refused with the payer's key: rule source_accounts: "), listed
            assert channel.public_key in listed.held_reason
            # After the fix, the operator brings it back: active, the hold cleared.
            back = await admin.AddChannels(apb.AddChannelsRequest(channels=[
                apb.ChannelKey(key_id=channel_id, public_key=channel.public_key)]))
            assert (back.channels[0].state, back.channels[0].held_reason) == (
                apb.CHANNEL_STATE_ACTIVE, "")
    attempts = await service.pool.fetch(
        """SELECT p.payout_id, a.source_account, a.status, a.result_code
           FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id""")
    included = {r["payout_id"]: r["source_account"] for r in attempts
                if r["status"] == "included"}
    assert included == {f"cb-{n}": payer for n in range(len(world.dests))}
    refused = [r for r in attempts if r["status"] == "rejected"]
    assert refused, "the channel was leased and refused at least once"
    assert {(r["source_account"], r["result_code"]) for r in refused} == {
        (channel.public_key, "channel_held")}
    assert {r["status"] for r in attempts} == {"included", "rejected"}
    # The channel's number was given back: its next transaction is the chain's next one.
    chain_seq = int((await sandbox.account(channel.public_key))["sequence"])
    assert await service.pool.fetchval(
        "SELECT next_sequence FROM source_accounts WHERE account = $1",
        channel.public_key) == chain_seq + 1
    assert not await service.pool.fetchval(
        "SELECT count(*) FROM released_sequences WHERE account = $1", channel.public_key)
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, XLM) for d in world.dests), "each destination paid exactly once"
    for dest in world.dests:
        assert (await sandbox.balances(dest))["native"] == FRIENDBOT + XLM


async def test_a_channel_whose_key_the_signer_lacks_is_held_and_the_others_carry_the_payouts(
    payout_service_factory, sandbox, tmp_path
):
    """Two channels registered at start-up; the signer holds the key of one only. The other
    (the lowest account, so the lease tries it first) is refused by the signer (NOT_FOUND, no
    rule) at its first payout and held; every payout confirms through the good channel."""
    world = await channel_world(sandbox, channels=2, payouts=4)
    payer = world.source.public_key
    (bad_id, bad), (good_id, good) = sorted(world.channels.items(),
                                            key=lambda item: item[1].public_key)
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=world.source.secret,
        extra_keys={good_id: good.secret}, policy=world.policy,
        key_settings={good_id: world.channel_settings[good_id]},
    ) as signer:
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=payer, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", **signer_env(signer),
            PAYOUTS_CHANNEL_ACCOUNTS=world.setting,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as conn:
            stub = payout_pb2_grpc.PayoutServiceStub(conn)
            admin = admin_pb2_grpc.PayoutAdminServiceStub(conn)
            await pay_all(stub, "nk", world.dests)
            listed = {c.account: c for c in
                      (await admin.ListChannels(apb.ListChannelsRequest())).channels}
    assert listed[good.public_key].state == apb.CHANNEL_STATE_ACTIVE
    assert listed[good.public_key].held_reason == ""
    assert listed[bad.public_key].state in (apb.CHANNEL_STATE_DRAINING,
                                            apb.CHANNEL_STATE_RETIRED)
    assert listed[bad.public_key].held_reason.startswith(
        "signer refused with the channel's key: rule none: NOT_FOUND"), listed[bad.public_key]
    attempts = await service.pool.fetch(
        "SELECT source_account, status, result_code FROM payout_attempts")
    assert {(r["source_account"], r["status"], r["result_code"]) for r in attempts
            if r["status"] != "included"} == {(bad.public_key, "rejected", "channel_held")}
    assert sum(r["status"] == "rejected" for r in attempts) == 1, \
        "the bad channel refused once, then was never leased again"
    assert {r["source_account"] for r in attempts if r["status"] == "included"} == \
        {good.public_key}
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, XLM) for d in world.dests), "each destination paid exactly once"


async def test_a_held_channel_is_never_brought_back_by_autosize_only_by_adding_it_again(pool):
    """hold_channel: active -> draining with its reason, once (a second hold keeps the first
    reason); autosize's spare channels skip it; AddChannels brings it back and clears it."""
    registry = ChannelRegistry(pool)
    held, spare = g(), g()
    await registry.add_active([(held, "channel-held"), (spare, "channel-spare")], actor="test")
    await registry.retire([spare], merge=False, actor="test")
    async with pool.acquire() as conn, conn.transaction():
        assert await hold_channel(conn, held, "first reason", actor="preparer")
        assert not await hold_channel(conn, held, "second reason", actor="preparer")
        assert not await hold_channel(conn, spare, "not active", actor="preparer")
    [channel] = await registry.get([held])
    assert (channel.state, channel.held_reason) == (ChannelState.DRAINING, "first reason")
    assert (await registry.get([spare]))[0].held_reason is None
    assert await registry.spare(10) == [spare]
    assert await registry.add_active([(held, "channel-held")], actor="operator") == 1
    [channel] = await registry.get([held])
    assert (channel.state, channel.held_reason) == (ChannelState.ACTIVE, None)
    events = await pool.fetch(
        "SELECT to_state, actor, reason FROM channel_events WHERE account = $1 ORDER BY id", held)
    assert [(e["to_state"], e["actor"], e["reason"]) for e in events] == [
        ("active", "test", "added"), ("draining", "preparer", "first reason"),
        ("active", "operator", "re-added")]
