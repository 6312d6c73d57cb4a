"""The channel pool end to end, every part real: the signer service over mTLS with its keys on
a SoftHSM token, the sandbox over HTTP, PostgreSQL, and `payoutctl channels` / `signerctl
channel-keys` as an operator runs them. The signer is started once: the channel keys it
signs with are generated on its token (and one destroyed) while it runs.

Channels are created by CreateAccount from the funding account (key of role funding), carry
the payouts (the paying key as operation source), are topped up, and one is retired and
merged back into the funding account (AccountMerge, signed by the channel's own key). No
PAYOUTS_CHANNEL_ACCOUNTS: the pool built with `payoutctl` alone switches channel mode on.
"""

from __future__ import annotations

import json

import grpc
from stellar_sdk import Keypair

from signer_service.testing import SOFTHSM_MODULE, run_signerctl, running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.integration.test_live_against_sandbox import wait_for_state
from tests.integration.test_live_with_signer import signer_env
from tests.integration.test_operator_tools import payoutctl
from tests.integration.watchdog_world import (
    eventually_found,
    findings,
    latest_ledger,
    pay_directly,
    verified_through,
)
from tests.waiting import eventually

XLM = 10_000_000
FRIENDBOT = 10_000 * XLM
TOKEN = ("--module", SOFTHSM_MODULE, "--token-label", "payouts")
NEW_CHANNELS = 3
PAYOUTS = 6


async def operator(target: str, *args: str) -> dict:
    code, out, err = await payoutctl("channels", *args, env={"PAYOUTCTL_TARGET": target})
    assert code == 0, err
    return json.loads(out) if out.strip() else {}


async def test_channels_created_in_the_signer_pay_are_topped_up_and_merge_home(
    payout_service_factory, tmp_path
):
    async with RunningSandbox(ledger_interval=0.2, seed=1414) as sandbox:
        payer, funding = Keypair.random(), Keypair.random()
        dests = [Keypair.random().public_key for _ in range(PAYOUTS)]
        for address in (payer.public_key, funding.public_key, *dests):
            await sandbox.fund(address)
        home = {"merge_into": funding.public_key}
        async with running_signer(
            tmp_path, network_passphrase=sandbox.passphrase, backend="pkcs11",
            hot_secret=payer.secret,  # imported onto the token: the paying key
            extra_keys={"funding": funding.secret},
            key_settings={
                "funding": {"role": "funding", "policy": {
                    "payments": {"assets": ["native"]},
                    "channel_funding": {"max_starting_balance_stroops": 10 * XLM,
                                        "max_top_up_stroops": 10 * XLM}}},
            },
            channel_keys={"label_prefix": "channel-", "refresh_seconds": 1, "policy": home},
        ) as signer:
            service = await payout_service_factory(
                PAYOUT_SOURCE_ACCOUNT=payer.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
                STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
                PAYOUTS_CONFIRM_POLL_MS="100", PAYOUTS_CHANNEL_POOL_INTERVAL_MS="100",
                **signer_env(signer),
                PAYOUTS_CHANNEL_FUNDING_ACCOUNT=funding.public_key,
                PAYOUTS_CHANNEL_FUNDING_KEY_ID="funding",
            )
            target = f"127.0.0.1:{service.port}"
            async with grpc.aio.insecure_channel(target) as channel:
                admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
                stub = payout_pb2_grpc.PayoutServiceStub(channel)

                async def states() -> dict[str, int]:
                    listed = await admin.ListChannels(apb.ListChannelsRequest())
                    return {c.account: c.state for c in listed.channels}

                # 1. Keys generated on the running signer's token, channels created on chain.
                out = await run_signerctl(signer.env, "channel-keys", "generate", *TOKEN,
                                          "--count", str(NEW_CHANNELS), "-o", "json")
                keys_file = tmp_path / "channel-keys.jsonl"
                keys_file.write_text(out)
                created = [json.loads(line)["public_key"] for line in out.splitlines()]
                await operator(target, "create", "--from-file", str(keys_file),
                               "--starting-balance", "5")

                async def all_active() -> bool:
                    found = await states()
                    return all(found.get(a) == apb.CHANNEL_STATE_ACTIVE for a in created)
                await eventually(all_active, what="the created channels active",
                                 within=60, interval=0.2)
                for account in created:
                    assert (await sandbox.balances(account))["native"] == 5 * XLM

                # 2. Payouts through the new channels, the service never restarted nor seeded.
                for n, dest in enumerate(dests):
                    await stub.CreatePayout(pb.CreatePayoutRequest(
                        payout_id=f"e2e-{n}", destination=dest, amount="1", asset="XLM",
                        idempotency_key=f"e2e-{n}"))
                for n in range(PAYOUTS):
                    await wait_for_state(stub, f"e2e-{n}", pb.PAYOUT_STATE_CONFIRMED, within=60)
                sources = await service.pool.fetch(
                    """SELECT a.source_account FROM payout_attempts a
                       JOIN payouts p ON p.id = a.payout_id
                       WHERE a.status = 'included' AND p.payout_id LIKE 'e2e-%'""")
                assert len(sources) == PAYOUTS
                assert {r["source_account"] for r in sources} <= set(created)
                for dest in dests:
                    assert (await sandbox.balances(dest))["native"] == FRIENDBOT + XLM

                # 3. Top-up: each created channel (5 XLM less the fees it paid) to 7 XLM.
                await operator(target, "top-up", "--below", "6", "--to", "7")

                async def topped_up() -> bool:
                    balances = [(await sandbox.balances(a))["native"] for a in created]
                    return all(b == 7 * XLM for b in balances)
                await eventually(topped_up, what="the channels topped up to 7 XLM",
                                 within=60, interval=0.2)

                # 4. Retire one with merge: its whole balance goes home, its account is gone.
                merged = created[0]
                before = (await sandbox.balances(funding.public_key))["native"]
                await operator(target, "retire", "--merge", merged)

                async def merged_home() -> bool:
                    return (await states()).get(merged) == apb.CHANNEL_STATE_MERGED
                await eventually(merged_home, what="the retired channel merged",
                                 within=60, interval=0.2)
                assert await sandbox.account(merged) is None
                after = (await sandbox.balances(funding.public_key))["native"]
                assert after - before == 7 * XLM - 100, "its balance less the merge's fee"
                kinds = await service.pool.fetch(
                    """SELECT kind, count(*) AS n FROM channel_operations
                       WHERE status = 'included' GROUP BY kind""")
                assert {r["kind"]: r["n"] for r in kinds} == {"create": 1, "top_up": 1,
                                                             "merge": 1}

                # 5. The watchdog explained every outflow of the payer, the funding account
                # and the channels: creates, payouts, top-ups, the merge.
                await verified_through(service.pool, await latest_ledger(sandbox))
                assert await findings(service.pool) == []
                assert await service.pool.fetchval(
                    "SELECT count(*) FROM chain_payments") == PAYOUTS
                # ...and sees the funding account pay someone behind the service's back.
                tx_hash, _ = await pay_directly(sandbox, funding, dests[0], XLM)
                [outflow] = await eventually_found(service.pool, "unexplained_outflow")
                assert (outflow["tx_hash"], outflow["accounts"]) == \
                    (tx_hash, [funding.public_key])
            starts = [line for line in signer.logs if '"signer-service started"' in line]
            assert len(starts) == 1, "the signer was never restarted"
