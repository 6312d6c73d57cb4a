"""A signer refusal that is about the channel, not the payout (core/refusals.py), against real
parts: PostgreSQL, the real signer over mTLS (SoftHSM keys, its real policy), the sandbox over
HTTP. The payouts are not failed: the channel is held with its reason, the payouts go from the
payer, each paid once (the sandbox's ledger)."""

from __future__ import annotations

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.channel_store import ChannelRegistry, hold_channel
from payout_service.adapters.sequences import Sequences
from payout_service.core.channels import ChannelState
from signer_service.testing import running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.integration.test_live_against_sandbox import wait_for_state
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
    refuses every channel transaction (rule source_accounts). AddChannels asks the signer
    first (CheckTransaction) and refuses the channel, naming the rule. One registered before
    the policy changed (written to the registry directly here) is held at its first refusal
    (draining, then retired; its reason in ListChannels) and the payouts, re-queued (not
    failed), confirm from the payer."""
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
            request = apb.AddChannelsRequest(channels=[
                apb.ChannelKey(key_id=channel_id, public_key=channel.public_key)])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.AddChannels(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "channels[0].key_id" in str(refused.value.trailing_metadata()) or \
                "channels[0].key_id" in refused.value.details()
            assert "rule source_accounts" in refused.value.details()
            assert not (await admin.ListChannels(apb.ListChannelsRequest())).channels
            chain_seq = int((await sandbox.account(channel.public_key))["sequence"])
            await Sequences(service.pool).ensure_source(channel.public_key, chain_seq)
            await ChannelRegistry(service.pool).add_active(
                [(channel.public_key, channel_id)], actor="before the policy changed")
            await pay_all(stub, "cb", world.dests)
            [listed] = (await admin.ListChannels(apb.ListChannelsRequest())).channels
            assert listed.state in (apb.CHANNEL_STATE_DRAINING, apb.CHANNEL_STATE_RETIRED)
            assert listed.held_reason.startswith(
                "signer refused with the payer's key: rule source_accounts: "), listed
            assert channel.public_key in listed.held_reason
            health = await admin.GetSystemHealth(apb.GetSystemHealthRequest())
            assert health.metrics.channels_held == 1
            assert apb.ALERT_KIND_CHANNELS_HELD in {a.kind for a in health.active_alerts} or \
                health.level != apb.HEALTH_LEVEL_HEALTHY
            # Re-adding it before the policy is fixed is refused again.
            with pytest.raises(grpc.aio.AioRpcError) as again:
                await admin.AddChannels(request)
            assert again.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    attempts = await service.pool.fetch(
        """SELECT p.payout_id, a.source_account, a.status, a.result_code, a.submitted_at
           FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id""")
    included = {r["payout_id"]: r["source_account"] for r in attempts
                if r["status"] == "included"}
    assert included == {f"cb-{n}": payer for n in range(len(world.dests))}
    refused = [r for r in attempts if r["status"] == "rejected"]
    assert refused, "the channel was leased and refused at least once"
    assert {(r["source_account"], r["result_code"]) for r in refused} == {
        (channel.public_key, "channel_held")}
    # Besides those: on a loaded machine an attempt may be re-sequenced before it left us
    # (superseded, never sent); nothing else.
    assert {"included", "rejected"} <= {r["status"] for r in attempts} <= {
        "included", "rejected", "superseded"}, [dict(r) for r in attempts]
    assert all(r["submitted_at"] is None for r in attempts if r["status"] == "superseded")
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
    """Two channels registered at start-up; the signer holds the key of one only. The start-up
    check asks the signer about each (CheckTransaction, nothing signed): the other (the
    lowest account, so the lease would try it first) is held before any payout is built on
    it; every payout confirms through the good channel."""
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
    assert {r["status"] for r in attempts} == {"included"}, "the bad channel was never leased"
    assert {r["source_account"] for r in attempts} == {good.public_key}
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, XLM) for d in world.dests), "each destination paid exactly once"


async def test_a_payer_policy_refusing_the_payer_itself_fails_payouts_but_holds_no_channel(
    payout_service_factory, sandbox, tmp_path
):
    """The paying key's `source_accounts` lists only "@channel_keys": the payer itself is
    refused as the operations' source (the signer names the account). No channel would do
    better: holding them one after another would empty the pool and still pay nothing. The
    channel is accepted and stays active; the payouts fail as without channels
    (signer_refused), where the failure-rate alert and the refusals metric show it."""
    world = await channel_world(sandbox, channels=2, payouts=2)
    payer = world.source.public_key
    world.policy["source_accounts"] = ["@channel_keys"]
    # The channel keys' own policies accept the payer as the operations' source: only the
    # paying key is misconfigured.
    settings = {key_id: {"role": "channel", "policy": {
        "merge_into": payer, "source_accounts": [payer, key.public_key]}}
        for key_id, key in world.channels.items()}
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=world.source.secret,
        extra_keys=world.channel_secrets, policy=world.policy, key_settings=settings,
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
            for n, dest in enumerate(world.dests):
                await stub.CreatePayout(pb.CreatePayoutRequest(
                    payout_id=f"ck-{n}", destination=dest, amount="1", asset="XLM",
                    idempotency_key=f"ck-{n}"))
            failed = [await wait_for_state(stub, f"ck-{n}", pb.PAYOUT_STATE_FAILED)
                      for n in range(len(world.dests))]
            listed = (await admin.ListChannels(apb.ListChannelsRequest())).channels
    assert {f.failure.code for f in failed} == {"signer_refused"}
    assert [(c.state, c.held_reason) for c in listed] == [
        (apb.CHANNEL_STATE_ACTIVE, "")] * len(world.channels)
    assert not await sandbox.transfers()


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
