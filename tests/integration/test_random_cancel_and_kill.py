"""Chaos against the ground truth: three payout-service replicas (real processes) on one
database, channel accounts and a real signer, the sandbox injecting RPC faults. Payouts are
cancelled and retried at random while replicas are SIGKILLed and restarted. Afterwards the
sandbox's ledger must show each payout paid at most once, every payout that was not
cancelled paid, and none stuck in a non-final state."""

from __future__ import annotations

import asyncio
import contextlib
import random

import grpc
from stellar_sdk import Keypair

from signer_service.testing import running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.test_crash_safety import ServiceProcess
from tests.integration.test_live_with_signer import channel_world, signer_env

PAYOUTS = 16
REPLICAS = 3
CHAOS_STEPS = 40
FINAL = {pb.PAYOUT_STATE_CONFIRMED, pb.PAYOUT_STATE_CANCELLED, pb.PAYOUT_STATE_FAILED}


async def call(target: str, method: str, request: object) -> object | None:
    """One RPC to one replica; None when it is down or refuses (the caller moves on)."""
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            return await getattr(stub, method)(request, timeout=3)
    except grpc.aio.AioRpcError as err:
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION,
                              grpc.StatusCode.DEADLINE_EXCEEDED), err
        return None


async def test_random_cancels_and_retries_while_replicas_die_pay_each_payout_once(
    fresh_database, tmp_path
):
    rng = random.Random(2024)  # fixed, so a failing run replays the same choices
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(RunningSandbox(
            ledger_interval=0.25, seed=77,
            faults={"try_again_later_rate": 0.1, "drop_rate": 0.1, "http_503_rate": 0.03},
        ))
        world = await channel_world(sandbox, channels=2, payouts=PAYOUTS)
        signer = await stack.enter_async_context(running_signer(
            tmp_path, network_passphrase=sandbox.passphrase, backend="hot",
            hot_secret=world.source.secret, extra_keys=world.channel_secrets,
            policy=world.policy, key_settings=world.channel_settings))
        env = {
            **signer_env(signer),
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": world.source.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_PLAINTEXT": "true",
            "PAYOUTS_CONFIRM_POLL_MS": "150", "PAYOUTS_TX_WINDOW_SECONDS": "8",
            "PAYOUTS_RPC_TIMEOUT_MS": "1000", "PAYOUTS_MAX_ATTEMPTS": "20",
            "PAYOUTS_CHANNEL_ACCOUNTS": world.setting,
        }
        replicas = [ServiceProcess(env, tmp_path / f"replica-{i}.log") for i in range(REPLICAS)]
        try:
            for replica in replicas:
                await replica.start()
            targets = [f"127.0.0.1:{r.port}" for r in replicas]
            ids = [f"chaos-{n}" for n in range(PAYOUTS)]
            cancelled: set[str] = set()
            created: set[str] = set()
            for step in range(CHAOS_STEPS):
                if step < PAYOUTS:
                    n = step
                    done = await call(rng.choice(targets), "CreatePayout", pb.CreatePayoutRequest(
                        payout_id=ids[n], destination=world.dests[n], amount="1", asset="XLM",
                        idempotency_key=ids[n]))
                    if done is not None:
                        created.add(ids[n])
                action = rng.random()
                victim = rng.choice(sorted(created) or ids[:1])
                if action < 0.25:
                    reply = await call(rng.choice(targets), "CancelPayout",
                                       pb.CancelPayoutRequest(payout_id=victim, reason="chaos"))
                    if reply is not None:
                        cancelled.add(victim)
                elif action < 0.4:
                    await call(rng.choice(targets), "RetryPayout",
                               pb.RetryPayoutRequest(payout_id=victim, reason="chaos"))
                elif action < 0.6:
                    replica = rng.choice(replicas)
                    await replica.stop()  # SIGKILL
                    await replica.start()
                await asyncio.sleep(rng.uniform(0.05, 0.3))
            # Callers retry creations that did not get through, as after UNAVAILABLE.
            for n, payout_id in enumerate(ids):
                if payout_id not in created:
                    assert await call(targets[0], "CreatePayout", pb.CreatePayoutRequest(
                        payout_id=payout_id, destination=world.dests[n], amount="1",
                        asset="XLM", idempotency_key=payout_id)) is not None
            states: dict[str, int] = {}
            for _ in range(600):
                page = await call(targets[0], "ListPayouts", pb.ListPayoutsRequest(page_size=100))
                if page is not None:
                    states = {p.payout_id: p.state for p in page.payouts}  # type: ignore[attr-defined]
                    if all(s in FINAL for s in states.values()) and len(states) == PAYOUTS:
                        failed = [p for p, s in states.items() if s == pb.PAYOUT_STATE_FAILED]
                        for payout_id in failed:  # the operator retries what failed
                            await call(targets[0], "RetryPayout",
                                       pb.RetryPayoutRequest(payout_id=payout_id))
                        if not failed:
                            break
                await asyncio.sleep(0.2)
            logs = "".join(r.log_path.read_text()[-2000:] for r in replicas)
            assert len(states) == PAYOUTS and all(s in FINAL for s in states.values()), \
                (states, logs)
        finally:
            for replica in replicas:
                await replica.stop()
        transfers = await sandbox.transfers()
    paid: dict[str, int] = {}
    for t in transfers:
        paid[t["to"]] = paid.get(t["to"], 0) + 1
    by_payout = {payout_id: paid.get(world.dests[n], 0) for n, payout_id in enumerate(ids)}
    assert all(count <= 1 for count in by_payout.values()), f"paid twice: {by_payout}"
    for payout_id, state in states.items():
        if state == pb.PAYOUT_STATE_CANCELLED:
            assert payout_id in cancelled
            assert by_payout[payout_id] == 0, f"{payout_id} cancelled yet paid"
        else:
            assert state == pb.PAYOUT_STATE_CONFIRMED, (payout_id, state)
            assert by_payout[payout_id] == 1, f"{payout_id} confirmed but not paid"
    assert cancelled and len(cancelled) < PAYOUTS, "the run exercised both outcomes"


async def test_batch_mode_random_cancels_while_replicas_die_pay_each_payout_once(
    fresh_database, tmp_path
):
    """The same chaos in batch mode (PAYOUTS_BATCH_MODE=classic): three pipeline processes
    (tests/integration/batch_worker.py) on one database with two channels, payouts cancelled
    and retried at random inside built, signed and sent batches while workers are SIGKILLed."""
    from payout_service.adapters.attempt_store import AttemptStore
    from payout_service.adapters.payout_store import create_pool
    from payout_service.core.states import IllegalTransition
    from tests.integration.test_crash_safety import (
        BatchWorkerProcess,
        batch_states,
        batch_world,
        create_batch_payouts,
    )

    rng = random.Random(4048)
    async with RunningSandbox(
        ledger_interval=0.25, seed=78,
        faults={"try_again_later_rate": 0.1, "drop_rate": 0.1, "http_503_rate": 0.03},
    ) as sandbox:
        world = await batch_world(sandbox, channels=2)
        source, channels, dests = world["source"], world["channels"], world["dests"]
        assert isinstance(source, Keypair) and isinstance(channels, dict)
        assert isinstance(dests, list)
        before = {d: (await sandbox.balances(d)).get("native", 0) for d in dests}
        env = {
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "signer",
            "PAYOUTS_PLAINTEXT": "true", "PAYOUTS_CONFIRM_POLL_MS": "150",
            "PAYOUTS_TX_WINDOW_SECONDS": "8", "PAYOUTS_RPC_TIMEOUT_MS": "1000",
            "PAYOUTS_MAX_ATTEMPTS": "20", "PAYOUTS_BATCH_MODE": "classic",
            "PAYOUTS_MAX_PAYOUTS_PER_TX": "3",
            "PAYOUTS_SIGNER_ADDR": "unused", "PAYOUTS_SIGNER_CA_CERT": "unused",
            "PAYOUTS_SIGNER_CLIENT_CERT": "unused", "PAYOUTS_SIGNER_CLIENT_KEY": "unused",
            "PAYOUTS_CHANNEL_ACCOUNTS": ",".join(
                f"{key_id}={kp.public_key}" for key_id, kp in channels.items()),
            "BATCH_WORKER_KEYS": ",".join(
                [f"payer={source.secret}"]
                + [f"{key_id}={kp.secret}" for key_id, kp in channels.items()]),
        }
        await create_batch_payouts(env, world)
        pool = await create_pool(fresh_database)
        attempts = AttemptStore(pool)
        workers = [BatchWorkerProcess(env, tmp_path / f"worker-{i}.log") for i in range(REPLICAS)]
        cancelled: set[str] = set()
        try:
            for worker in workers:
                await worker.start()
            ids = [f"batch-{n}" for n in range(len(dests))]
            for _ in range(CHAOS_STEPS):
                action = rng.random()
                victim = await pool.fetchval("SELECT id FROM payouts WHERE payout_id = $1",
                                             rng.choice(ids))
                try:
                    if action < 0.2:
                        payout = await attempts.cancel(victim, actor="chaos", reason="chaos")
                        cancelled.add(payout.payout_id)
                    elif action < 0.3:
                        await attempts.retry_failed(victim, actor="chaos", reason="chaos")
                except IllegalTransition:
                    pass
                if 0.3 <= action < 0.55:
                    worker = rng.choice(workers)
                    await worker.stop()  # SIGKILL
                    await worker.start()
                await asyncio.sleep(rng.uniform(0.05, 0.3))
            for _ in range(600):
                current = await batch_states(fresh_database)
                if {s for s, _ in current.values()} <= {"CONFIRMED", "FAILED", "CANCELLED"}:
                    break
                await asyncio.sleep(0.2)
            logs = "".join(w.log_path.read_text()[-1500:] for w in workers)
        finally:
            for worker in workers:
                await worker.stop()
            await pool.close()
        paid = {d: (await sandbox.balances(d)).get("native", 0) - before[d] for d in dests}
    assert {s for s, _ in current.values()} <= {"CONFIRMED", "FAILED", "CANCELLED"}, (
        current, logs)
    assert current.pop("batch-no-trust") in (("FAILED", "PAYMENT_NO_TRUST"), ("CANCELLED", None))
    for n, dest in enumerate(dests):
        state, code = current[f"batch-{n}"]
        assert paid[dest] in (0, 2 * 10_000_000), f"batch-{n} paid twice: {paid[dest]}"
        if state == "CANCELLED":
            assert f"batch-{n}" in cancelled and paid[dest] == 0, f"batch-{n} cancelled yet paid"
        else:
            assert (state, code) == ("CONFIRMED", None), (n, state, code, logs)
            assert paid[dest] == 2 * 10_000_000, f"batch-{n} confirmed but not paid"
    assert cancelled, "the run cancelled something"
