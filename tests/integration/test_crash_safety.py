"""Crash safety: SIGKILL the payout service at each step of the pipeline, against the sandbox
with faults on, restart it, and prove with the sandbox's ledger that every payout was paid
exactly once and none was lost (docs/design.md, invariants 1 and 3)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stellar_sdk import Keypair, TransactionEnvelope

from payout_service.embedded_postgres import free_port
from signer_service.testing import running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.batch_worker import (
    batch_worker_env,
    batch_world,
    create_batch_payouts,
    settled_states,
)
from tests.integration.test_live_with_signer import channel_key_settings, signer_env
from tests.waiting import NotYet, eventually

PAYOUTS = 4
CRASH_POINTS = ["after_reserve", "after_sign", "after_send", "before_confirm"]


class ServiceProcess:
    """payout-service as a real process, so SIGKILL is a real crash."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, failpoint: str | None = None) -> None:
        env = {**os.environ, **self.env, "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{self.port}"}
        env.pop("PAYOUTS_FAILPOINT", None)
        if failpoint:
            env["PAYOUTS_FAILPOINT"] = failpoint
        with self.log_path.open("ab") as log:  # kept for the failure report
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "payout_service", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:

            async def serving() -> bool:
                assert self.proc is not None and self.proc.returncode is None, \
                    "service died while starting"
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2)
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, what="payout-service SERVING", within=90,
                             ignoring=(grpc.aio.AioRpcError,))

    async def died_by_sigkill(self, within: float) -> bool:
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            return False
        return code == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def sign_pending(target: str, passphrase: str, source: Keypair | None) -> None:
    """One pass of the external signer (none in signer mode); tolerant of the service dying
    under it."""
    if source is None:
        return
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            page = await stub.ListPayouts(pb.ListPayoutsRequest(
                states=[pb.PAYOUT_STATE_AWAITING_SIGNATURE], page_size=100), timeout=2)
            for payout in page.payouts:
                envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, passphrase)
                envelope.sign(source)
                await stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
                    payout_id=payout.payout_id, signed_envelope_xdr=envelope.to_xdr()), timeout=2)
    except grpc.aio.AioRpcError:
        pass


async def create_all(target: str, dests: list[str]) -> int:
    """CreatePayout for every destination; returns how many calls succeeded."""
    done = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        for n, d in enumerate(dests):
            try:
                await stub.CreatePayout(pb.CreatePayoutRequest(
                    payout_id=f"crash-{n}", destination=d, amount="2", asset="XLM",
                    idempotency_key=f"crash-{n}"), timeout=5)
                done += 1
            except grpc.aio.AioRpcError as err:
                # The service is down, or a loaded machine answers after the caller's deadline:
                # either way the caller retries later with the same idempotency key.
                assert err.code() in (grpc.StatusCode.UNAVAILABLE,
                                      grpc.StatusCode.DEADLINE_EXCEEDED), err
    return done


async def _created_all(target: str, dests: list[str]) -> bool:
    return await create_all(target, dests) == len(dests)


async def states(target: str) -> dict[str, int]:
    async with grpc.aio.insecure_channel(target) as channel:
        page = await payout_pb2_grpc.PayoutServiceStub(channel).ListPayouts(
            pb.ListPayoutsRequest(page_size=100), timeout=10
        )
    return {p.payout_id: p.state for p in page.payouts}


async def all_confirmed(
    target: str, passphrase: str, external_signer: Keypair | None
) -> dict[str, int] | None:
    """One pass of the external signer, then every payout's state if all are CONFIRMED."""
    await sign_pending(target, passphrase, external_signer)
    current = await states(target)
    return current if all(s == pb.PAYOUT_STATE_CONFIRMED for s in current.values()) else None


@pytest.mark.parametrize("mode", ["signer", "channels", "external"])
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_sigkill_at_each_step_pays_exactly_once(fresh_database, tmp_path, crash_at, mode):
    seed = 100 + CRASH_POINTS.index(crash_at)  # fixed, so a failing run replays
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(RunningSandbox(
            ledger_interval=0.25, seed=seed,
            faults={"try_again_later_rate": 0.2, "drop_rate": 0.15, "http_503_rate": 0.05},
        ))
        source = Keypair.random()
        await sandbox.fund(source.public_key)
        dests = [Keypair.random().public_key for _ in range(PAYOUTS)]
        for d in dests:
            await sandbox.fund(d)
        env = {
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true",
            "PAYOUTS_SIGNING_MODE": "external" if mode == "external" else "signer",
            "PAYOUTS_PLAINTEXT": "true", "PAYOUTS_CONFIRM_POLL_MS": "150",
            "PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS": "5", "PAYOUTS_TX_WINDOW_SECONDS": "5",
            "PAYOUTS_RPC_TIMEOUT_MS": "1000", "PAYOUTS_MAX_ATTEMPTS": "10",
            "PAYOUTS_LOG_LEVEL": "INFO",
        }
        if mode in ("signer", "channels"):
            # "channels": two channel accounts as transaction sources, the payer as the
            # operation source (two signatures per transaction).
            channels = {f"channel-{i}": Keypair.random() for i in range(2 if mode == "channels"
                                                                        else 0)}
            for kp in channels.values():
                await sandbox.fund(kp.public_key)
            signer = await stack.enter_async_context(running_signer(
                tmp_path, network_passphrase=sandbox.passphrase, hot_secret=source.secret,
                extra_keys={key_id: kp.secret for key_id, kp in channels.items()},
                key_settings=channel_key_settings(channels, source.public_key)))
            env.update(signer_env(signer))
            if channels:
                env["PAYOUTS_CHANNEL_ACCOUNTS"] = ",".join(
                    f"{key_id}={kp.public_key}" for key_id, kp in channels.items())
        external_signer = source if mode == "external" else None
        service = ServiceProcess(env, tmp_path / "payout-service.log")
        target = f"127.0.0.1:{service.port}"
        try:
            await service.start(failpoint=crash_at)
            await create_all(target, dests)  # the crash may cut this short

            async def signed_then_killed() -> bool:
                await sign_pending(target, sandbox.passphrase, external_signer)
                return await service.died_by_sigkill(within=0.1)

            await eventually(signed_then_killed, what=f"the service reaching {crash_at}",
                             within=120)
            await service.start()
            # As a real caller does after UNAVAILABLE: the same requests again; the
            # idempotency keys make the ones that got through replays.
            await eventually(lambda: _created_all(target, dests),
                             what="every CreatePayout answered", within=60)
            try:
                current = await eventually(
                    lambda: all_confirmed(target, sandbox.passphrase, external_signer),
                    what="every payout CONFIRMED", within=180, interval=0.1,
                    ignoring=(grpc.aio.AioRpcError,))
            except NotYet as err:
                raise AssertionError(service.log_path.read_text()[-6000:]) from err
            assert len(current) == PAYOUTS, "no payout lost"
        finally:
            await service.stop()
        transfers = await sandbox.transfers()
    assert sorted(t["to"] for t in transfers) == sorted(dests), "each paid exactly once"


class BatchWorkerProcess(ServiceProcess):
    """The pipeline in batch mode as a real process (tests/integration/batch_worker.py); it
    serves no RPC, so it is started without waiting for health."""

    async def start(self, failpoint: str | None = None) -> None:
        env = {**os.environ, **self.env}
        env.pop("PAYOUTS_FAILPOINT", None)
        if failpoint:
            env["PAYOUTS_FAILPOINT"] = failpoint
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.batch_worker", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )


BATCH_MODES = ["classic-single-source", "classic-channels", "contract-channels"]


@pytest.mark.parametrize("mode", BATCH_MODES)
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_sigkill_at_each_step_in_batch_mode_pays_each_payout_once(
    fresh_database, tmp_path, batch_signer, crash_at, mode
):
    """Batches signed by the real signer (SoftHSM2, mTLS), the guilty payouts among them, the
    pipeline SIGKILLed at `crash_at` and restarted: the ledger shows every innocent payout
    paid exactly once and each guilty one failed with its reason, nothing paid to it."""
    seed = 200 + CRASH_POINTS.index(crash_at) + 10 * BATCH_MODES.index(mode)
    batch_mode, sources = mode.split("-", 1)
    async with RunningSandbox(
        ledger_interval=0.25, seed=seed,
        faults={"try_again_later_rate": 0.2, "drop_rate": 0.15, "http_503_rate": 0.05},
    ) as sandbox:
        world = await batch_world(sandbox, batch_signer, mode=batch_mode,
                                  channels=sources == "channels")
        await world.snapshot(sandbox)
        # Two batches per round at least, so channels carry batches side by side.
        env = batch_worker_env(fresh_database, sandbox, batch_signer, world,
                               PAYOUTS_MAX_PAYOUTS_PER_TX="5")
        await create_batch_payouts(env, world)
        worker = BatchWorkerProcess(env, tmp_path / "batch-worker.log")
        try:
            await worker.start(failpoint=crash_at)
            assert await worker.died_by_sigkill(within=60), f"never reached {crash_at}"
            await worker.start()
            current = await settled_states(fresh_database)
            log = worker.log_path.read_text()[-4000:]
        finally:
            await worker.stop()
        assert current == {p.payout_id: p.expected for p in world.payouts}, log
        assert await world.deltas(sandbox) == world.owed(current), "each paid exactly once"
