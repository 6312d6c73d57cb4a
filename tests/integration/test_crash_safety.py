"""Crash safety: SIGKILL the payout service at each step of the pipeline, against the sandbox
with faults on, restart it, and prove with the sandbox's ledger that every payout was paid
exactly once and none was lost (DESIGN.md section 3, invariants 1 and 3)."""

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
from tests.integration.test_live_with_signer import channel_key_settings, signer_env

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
            for _ in range(200):
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                assert self.proc.returncode is None, "service died while starting"
                await asyncio.sleep(0.05)
        raise AssertionError("service did not become healthy")

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
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    return done


async def states(target: str) -> dict[str, int]:
    async with grpc.aio.insecure_channel(target) as channel:
        page = await payout_pb2_grpc.PayoutServiceStub(channel).ListPayouts(
            pb.ListPayoutsRequest(page_size=100), timeout=2
        )
    return {p.payout_id: p.state for p in page.payouts}


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
            crashed = False
            for _ in range(100):
                await sign_pending(target, sandbox.passphrase, external_signer)
                if await service.died_by_sigkill(within=0.1):
                    crashed = True
                    break
            assert crashed, f"the service never reached {crash_at}"
            await service.start()
            # As a real caller does after UNAVAILABLE: the same requests again; the
            # idempotency keys make the ones that got through replays.
            assert await create_all(target, dests) == len(dests)
            for _ in range(600):
                await sign_pending(target, sandbox.passphrase, external_signer)
                current = await states(target)
                if all(s == pb.PAYOUT_STATE_CONFIRMED for s in current.values()):
                    break
                await asyncio.sleep(0.1)
            assert all(s == pb.PAYOUT_STATE_CONFIRMED for s in current.values()), (
                current, service.log_path.read_text()[-6000:])
            assert len(current) == PAYOUTS, "no payout lost"
        finally:
            await service.stop()
        transfers = await sandbox.transfers()
    assert sorted(t["to"] for t in transfers) == sorted(dests), "each paid exactly once"


class BatchWorkerProcess:
    """The pipeline in batch mode as a real process (tests/integration/batch_worker.py)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: asyncio.subprocess.Process | None = None

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


BATCH_PAYOUTS = 9


async def batch_world(sandbox: RunningSandbox, channels: int) -> dict[str, object]:
    """A payer holding USD, BATCH_PAYOUTS - 1 XLM destinations (one of them new) and one USD
    destination without a trustline (guilty: PAYMENT_NO_TRUST)."""
    source, issuer, no_trust = Keypair.random(), Keypair.random(), Keypair.random()
    channel_keys = {f"channel-{i}": Keypair.random() for i in range(channels)}
    for kp in (source, issuer, no_trust, *channel_keys.values()):
        await sandbox.fund(kp.public_key)
    usd = f"USD:{issuer.public_key}"
    await sandbox.open_trustline(source.public_key, usd)
    await sandbox.issue(usd, source.public_key, 100 * 10_000_000)
    dests = [Keypair.random().public_key for _ in range(BATCH_PAYOUTS - 1)]
    for d in dests[1:]:
        await sandbox.fund(d)  # dests[0] does not exist yet: CreateAccount
    return {"source": source, "usd": usd, "no_trust": no_trust.public_key, "dests": dests,
            "channels": channel_keys}


async def create_batch_payouts(env: dict[str, str], world: dict[str, object]) -> None:
    """CreatePayoutBatch's own path (PayoutDesk.create_many), all in one SQL transaction."""
    from payout_service.adapters.payout_store import PayoutStore, create_pool
    from payout_service.app.desk import PayoutDesk
    from payout_service.config import load_config
    from payout_service.core.validation import AmountLimits, validate_payout_request
    from payout_service.migrations import apply_migrations

    pool = await create_pool(env["DATABASE_URL"])
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        config = load_config(env)
        desk = PayoutDesk(config, PayoutStore(pool), None)  # type: ignore[arg-type]
        items = [(f"batch-{n}", d, "2", "XLM") for n, d in enumerate(world["dests"])]  # type: ignore[call-overload]
        items.append(("batch-no-trust", world["no_trust"], "1", world["usd"]))
        requests = [validate_payout_request(
            payout_id=key, destination=dest, amount=amount, asset=asset, idempotency_key=key,
            metadata={}, reference="", limits=AmountLimits()) for key, dest, amount, asset in items]
        await desk.create_many(requests, actor="test", correlation_id="batch-crash")
    finally:
        await pool.close()


async def batch_states(database: str) -> dict[str, tuple[str, str | None]]:
    import asyncpg

    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT payout_id, state, failure_code FROM payouts")
    finally:
        await conn.close()
    return {r["payout_id"]: (r["state"], r["failure_code"]) for r in rows}


@pytest.mark.parametrize("mode", ["single-source", "channels"])
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_sigkill_at_each_step_in_batch_mode_pays_each_payout_once(
    fresh_database, tmp_path, crash_at, mode
):
    """Classic batches (PAYOUTS_BATCH_MODE=classic), one guilty payout among them, the
    pipeline SIGKILLed at `crash_at` and restarted: the ledger shows every innocent payout paid
    exactly once and the guilty one failed with its operation's reason."""
    seed = 200 + CRASH_POINTS.index(crash_at)
    async with RunningSandbox(
        ledger_interval=0.25, seed=seed,
        faults={"try_again_later_rate": 0.2, "drop_rate": 0.15, "http_503_rate": 0.05},
    ) as sandbox:
        world = await batch_world(sandbox, channels=2 if mode == "channels" else 0)
        source, channels = world["source"], world["channels"]
        assert isinstance(source, Keypair) and isinstance(channels, dict)
        dests = world["dests"]
        assert isinstance(dests, list)
        before = {d: (await sandbox.balances(d)).get("native", 0) for d in dests}
        env = {
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "signer",
            "PAYOUTS_PLAINTEXT": "true", "PAYOUTS_CONFIRM_POLL_MS": "150",
            "PAYOUTS_TX_WINDOW_SECONDS": "5", "PAYOUTS_RPC_TIMEOUT_MS": "1000",
            "PAYOUTS_MAX_ATTEMPTS": "10", "PAYOUTS_BATCH_MODE": "classic",
            # Two batches per round at least, so channels carry batches side by side.
            "PAYOUTS_MAX_PAYOUTS_PER_TX": "5",
            "PAYOUTS_SIGNER_ADDR": "unused", "PAYOUTS_SIGNER_CA_CERT": "unused",
            "PAYOUTS_SIGNER_CLIENT_CERT": "unused", "PAYOUTS_SIGNER_CLIENT_KEY": "unused",
            "BATCH_WORKER_KEYS": ",".join(
                [f"payer={source.secret}"]
                + [f"{key_id}={kp.secret}" for key_id, kp in channels.items()]),
        }
        if channels:
            env["PAYOUTS_CHANNEL_ACCOUNTS"] = ",".join(
                f"{key_id}={kp.public_key}" for key_id, kp in channels.items())
        await create_batch_payouts(env, world)
        worker = BatchWorkerProcess(env, tmp_path / "batch-worker.log")
        try:
            await worker.start(failpoint=crash_at)
            assert await worker.died_by_sigkill(within=60), f"never reached {crash_at}"
            await worker.start()
            final = {"CONFIRMED", "FAILED"}
            for _ in range(600):
                current = await batch_states(fresh_database)
                if {s for s, _ in current.values()} <= final:
                    break
                await asyncio.sleep(0.1)
            log = worker.log_path.read_text()[-4000:]
        finally:
            await worker.stop()
        assert current == {
            **{f"batch-{n}": ("CONFIRMED", None) for n in range(len(dests))},
            "batch-no-trust": ("FAILED", "PAYMENT_NO_TRUST"),
        }, log
        after = {d: (await sandbox.balances(d)).get("native", 0) for d in dests}
        assert {d: after[d] - before[d] for d in dests} == {d: 2 * 10_000_000 for d in dests}, (
            "each paid exactly once")
        assert (await sandbox.balances(str(world["no_trust"]))).get(str(world["usd"])) is None
