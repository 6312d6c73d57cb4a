"""Two signer instances of one deployment behind payout-service, end to end: one is killed
(SIGKILL) while payouts are in flight; the pipeline signs through the other and every payout
is paid exactly once, judged against the sandbox's ledger (real subprocesses, real mTLS, one
SoftHSM2 token directory)."""

from __future__ import annotations

import asyncio

import grpc
from stellar_sdk import Keypair

from signer_service.testing import running_signers
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.test_live_against_sandbox import wait_for_state
from tests.integration.test_live_with_signer import sandbox, signer_env, strict_policy  # noqa: F401

PAYOUTS = 12


async def test_a_signer_instance_killed_mid_run_every_payout_paid_once(
    payout_service_factory, sandbox, tmp_path  # noqa: F811
):
    source = Keypair.random()
    await sandbox.fund(source.public_key)
    dests = [Keypair.random().public_key for _ in range(PAYOUTS)]
    for d in dests:
        await sandbox.fund(d)
    async with running_signers(
        tmp_path, 2, network_passphrase=sandbox.passphrase, backend="pkcs11",
        hot_secret=source.secret, policy=strict_policy(source, sandbox.passphrase),
    ) as (a, b):
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100",
            **{**signer_env(a), "PAYOUTS_SIGNER_ADDR": f"{a.address},{b.address}"},
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            for n, d in enumerate(dests):
                await stub.CreatePayout(pb.CreatePayoutRequest(
                    payout_id=f"two-{n}", destination=d, amount="1.5", asset="XLM",
                    idempotency_key=f"two-{n}"))
                if n == PAYOUTS // 3:
                    await wait_for_state(stub, "two-0", pb.PAYOUT_STATE_CONFIRMED, within=90)
                    assert a.process is not None
                    a.process.kill()  # the instance payout-service prefers, mid-run
            for n in range(PAYOUTS):
                await wait_for_state(stub, f"two-{n}", pb.PAYOUT_STATE_CONFIRMED, within=90)
        await service.stop()
        assert a.process is not None and await asyncio.wait_for(a.process.wait(), 30) == -9
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, 15_000_000) for d in dests), "each destination paid exactly once"
    signed_by_b = [line for line in b.audit_log.read_text().splitlines()
                   if '"decision":"allow"' in line]
    assert signed_by_b, "the surviving instance signed after the other was killed"
