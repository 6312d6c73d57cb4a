"""Chaos against the ground truth: three payout-service replicas (real processes) on one
database, channel accounts and a real signer, the sandbox injecting RPC faults. Payouts are
cancelled and retried at random while replicas are SIGKILLed and restarted, and (in one
variant) the database's primary is SIGKILLed mid-run and its synchronous standby promoted.
Afterwards the sandbox's ledger must show each payout paid at most once, every payout that
was not cancelled paid, and none stuck in a non-final state."""

from __future__ import annotations

import asyncio
import contextlib
import random

import grpc
import pytest
from stellar_sdk import Keypair, SorobanServerAsync, TransactionEnvelope
from stellar_sdk.client.aiohttp_client import AiohttpClient

from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.payout_store import create_pool
from payout_service.core.states import IllegalTransition
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.batch_worker import (
    FINAL_STATES,
    batch_worker_env,
    batch_world,
    create_batch_payouts,
    settled_states,
)
from tests.integration.live_stack import live_channel_env
from tests.integration.replicated_db import replicated_database
from tests.integration.test_crash_safety import BatchWorkerProcess, ServiceProcess
from tests.integration.watchdog_world import (
    confirmations_checked,
    findings_besides_lost_history,
    latest_ledger,
    unmatched_confirmed,
    verified_through,
)

PAYOUTS = 16
EXTERNAL_PAYOUTS = 12
REPLICAS = 3
CHAOS_STEPS = 40
# The database fault of the failover variant: the primary dies at one step, the standby is
# promoted a few steps later (callers are answered UNAVAILABLE in between).
KILL_PRIMARY_AT, PROMOTE_STANDBY_AT = 12, 16
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


RPC_FAULTS = {"try_again_later_rate": 0.1, "drop_rate": 0.1, "http_503_rate": 0.03}
# Nodes that disagree as real deployments do (soroban_sandbox/README.md "Faults"): half the
# calls answered by a node two ledgers behind, transaction stores a ledger behind their
# ledger entries, a ledger ingested between the two reads of some getTransaction calls,
# nodes restarting with their history gone, and outsiders re-submitting envelopes they saw.
LYING_NODES = {**RPC_FAULTS, "node_lags": [0, 2], "tx_store_lag_ledgers": 1,
               "ingest_race_rate": 0.2, "node_restart_rate": 0.01, "replay_rate": 0.05}


@pytest.mark.parametrize(("database", "faults"), [
    pytest.param("one server", RPC_FAULTS, id="rpc_faults"),
    pytest.param("one server", LYING_NODES, id="lying_nodes"),
    pytest.param("primary fails over", RPC_FAULTS, id="primary_fails_over"),
])
async def test_random_cancels_and_retries_while_replicas_die_pay_each_payout_once(
    fresh_database, tmp_path, database, faults
):
    rng = random.Random(2024)  # fixed, so a failing run replays the same choices
    async with contextlib.AsyncExitStack() as stack:
        replicated = None
        if database == "primary fails over":
            replicated = await stack.enter_async_context(replicated_database())
        database_url = replicated.url if replicated else fresh_database
        sandbox = await stack.enter_async_context(RunningSandbox(
            ledger_interval=0.25, seed=77, faults=faults))
        world, _, env = await live_channel_env(stack, sandbox, tmp_path, database_url,
                                               payouts=PAYOUTS, PAYOUTS_MAX_ATTEMPTS=20)
        replicas = [ServiceProcess(env, tmp_path / f"replica-{i}.log") for i in range(REPLICAS)]
        try:
            for replica in replicas:
                await replica.start()
            targets = [f"127.0.0.1:{r.port}" for r in replicas]
            ids = [f"chaos-{n}" for n in range(PAYOUTS)]
            cancelled: set[str] = set()
            created: set[str] = set()
            for step in range(CHAOS_STEPS):
                if replicated and step == KILL_PRIMARY_AT:
                    await asyncio.to_thread(replicated.pair.kill_primary)
                if replicated and step == PROMOTE_STANDBY_AT:
                    await asyncio.to_thread(replicated.pair.promote_standby)
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
            # A liveness bound, not a timing claim: a loaded machine settles later.
            deadline = asyncio.get_running_loop().time() + 300
            while asyncio.get_running_loop().time() < deadline:
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
            # The second line of defence agrees: once it has read every ledger, no outflow
            # it cannot explain, no payout paid twice, no confirmation without its transfer
            # (replicas died holding its lease, the RPC dropped and refused).
            pool = await create_pool(database_url)
            stack.push_async_callback(pool.close)
            await verified_through(pool, await latest_ledger(sandbox), within=120)
            await confirmations_checked(pool, within=120)
            assert await findings_besides_lost_history(pool, sandbox) == []
            assert await unmatched_confirmed(pool, sandbox) == []
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


@pytest.mark.parametrize(("mode", "faults"), [
    ("classic", RPC_FAULTS), ("contract", RPC_FAULTS), ("classic", LYING_NODES),
], ids=["classic", "contract", "classic-lying_nodes"])
async def test_batch_mode_random_cancels_while_replicas_die_pay_each_payout_once(
    fresh_database, tmp_path, batch_signer, mode, faults
):
    """The same chaos in batch mode: three pipeline processes (tests/integration/batch_worker.py)
    on one database with two channels and the real signer, payouts cancelled and retried at
    random inside built, signed and sent batches while workers are SIGKILLed. The ledger shows
    each payout paid at most once, every one confirmed paid once, every one cancelled unpaid,
    and the guilty ones failed with their reason (or cancelled)."""
    rng = random.Random(4048)
    async with RunningSandbox(ledger_interval=0.25, seed=78, faults=faults) as sandbox:
        world = await batch_world(sandbox, batch_signer, mode=mode, channels=True)
        await world.snapshot(sandbox)
        env = batch_worker_env(fresh_database, sandbox, batch_signer, world,
                               PAYOUTS_TX_WINDOW_SECONDS="8", PAYOUTS_MAX_ATTEMPTS="20",
                               PAYOUTS_MAX_PAYOUTS_PER_TX="3")
        await create_batch_payouts(env, world)
        pool = await create_pool(fresh_database)
        attempts = AttemptStore(pool)
        workers = [BatchWorkerProcess(env, tmp_path / f"worker-{i}.log") for i in range(REPLICAS)]
        ids = [p.payout_id for p in world.payouts]
        # One cancelled while still queued, so the run always has both outcomes; the random
        # cancels below race the workers and win only while a payout's batch is not yet sent
        # (on a fast run, none may win: test_set_transitions.py pins those interleavings).
        early = await attempts.cancel(
            await pool.fetchval("SELECT id FROM payouts WHERE payout_id = $1", ids[-1]),
            actor="chaos", reason="chaos")
        cancelled: set[str] = {early.payout_id}
        try:
            for worker in workers:
                await worker.start()
            for step in range(CHAOS_STEPS):
                # The first steps cancel while the first batches are being built and signed.
                action = 0.0 if step < 2 else rng.random()
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
            current = await settled_states(fresh_database, pause=0.2)
            logs = "".join(w.log_path.read_text()[-1500:] for w in workers)
        finally:
            for worker in workers:
                await worker.stop()
            await pool.close()
        assert {s for s, _ in current.values()} <= FINAL_STATES, (current, logs)
        assert await world.deltas(sandbox) == world.owed(current), "each paid at most once"
    for planned in world.payouts:
        state = current[planned.payout_id]
        if state[0] == "CANCELLED":
            assert planned.payout_id in cancelled, planned.payout_id
        elif planned.expected[0] == "FAILED":
            assert state == planned.expected, (planned.payout_id, state, logs)
        else:  # an innocent payout never fails
            assert state == ("CONFIRMED", None), (planned.payout_id, state, logs)
    assert current[early.payout_id][0] == "CANCELLED"
    assert len(cancelled) < len(world.payouts), "the run paid something too"


async def test_external_signing_chaos_with_holders_that_submit_themselves(fresh_database,
                                                                          tmp_path):
    """External signing against nodes that disagree: three replicas SIGKILLed at random,
    payouts cancelled and retried, and an outside signer that, for each envelope it is
    handed, signs it back through SubmitSignedTransaction, or signs it and submits it to the
    network itself without telling the service, or never signs it. The ledger shows each
    payout paid at most once; a payout is CONFIRMED exactly when it was paid (a cancelled
    one whose holder had already submitted its envelope is recorded CONFIRMED, not hidden);
    nothing is stuck."""
    rng = random.Random(1917)
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(RunningSandbox(
            ledger_interval=0.25, seed=79, faults=LYING_NODES))
        source = Keypair.random()
        dests = [Keypair.random().public_key for _ in range(EXTERNAL_PAYOUTS)]
        for address in (source.public_key, *dests):
            await sandbox.fund(address)
        env = {
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_PLAINTEXT": "true",
            "PAYOUTS_SIGNING_MODE": "external", "PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS": "5",
            "PAYOUTS_CONFIRM_POLL_MS": "150", "PAYOUTS_RPC_TIMEOUT_MS": "1000",
            "PAYOUTS_MAX_ATTEMPTS": "30",
        }
        replicas = [ServiceProcess(env, tmp_path / f"replica-{i}.log") for i in range(REPLICAS)]
        rpc = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        stack.push_async_callback(rpc.close)
        decided: dict[str, str] = {}  # envelope hash -> what its holder does with it
        stop = asyncio.Event()

        async def holder() -> None:
            while not stop.is_set():
                page = await call(targets[0], "ListPayouts", pb.ListPayoutsRequest(
                    states=[pb.PAYOUT_STATE_AWAITING_SIGNATURE], page_size=100))
                for payout in getattr(page, "payouts", []):
                    envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr,
                                                            sandbox.passphrase)
                    if envelope.hash_hex() in decided:
                        continue
                    choice = rng.choices(["api", "itself", "never"], [6, 3, 1])[0]
                    decided[envelope.hash_hex()] = choice
                    envelope.sign(source)
                    if choice == "api":
                        await call(rng.choice(targets), "SubmitSignedTransaction",
                                   pb.SubmitSignedTransactionRequest(
                                       payout_id=payout.payout_id,
                                       signed_envelope_xdr=envelope.to_xdr()))
                    elif choice == "itself":
                        with contextlib.suppress(Exception):  # a faulty node: it tried
                            await rpc.send_transaction(envelope)
                await asyncio.sleep(0.1)

        try:
            for replica in replicas:
                await replica.start()
            targets = [f"127.0.0.1:{r.port}" for r in replicas]
            signing = asyncio.create_task(holder())
            ids = [f"ext-{n}" for n in range(EXTERNAL_PAYOUTS)]
            cancelled: set[str] = set()
            for n, payout_id in enumerate(ids):
                request = pb.CreatePayoutRequest(payout_id=payout_id, destination=dests[n],
                                                 amount="1", asset="XLM",
                                                 idempotency_key=payout_id)
                for _ in range(50):  # a caller retries with the same idempotency key
                    if await call(rng.choice(targets), "CreatePayout", request) is not None:
                        break
                    await asyncio.sleep(0.1)
            for _ in range(CHAOS_STEPS):
                action = rng.random()
                victim = rng.choice(ids)
                if action < 0.15:
                    if await call(rng.choice(targets), "CancelPayout", pb.CancelPayoutRequest(
                            payout_id=victim, reason="chaos")) is not None:
                        cancelled.add(victim)
                elif action < 0.25:
                    await call(rng.choice(targets), "RetryPayout",
                               pb.RetryPayoutRequest(payout_id=victim, reason="chaos"))
                elif action < 0.45:
                    replica = rng.choice(replicas)
                    await replica.stop()  # SIGKILL
                    await replica.start()
                await asyncio.sleep(rng.uniform(0.05, 0.3))
            states: dict[str, int] = {}
            deadline = asyncio.get_running_loop().time() + 400
            while asyncio.get_running_loop().time() < deadline:
                page = await call(targets[0], "ListPayouts", pb.ListPayoutsRequest(page_size=100))
                if page is not None:
                    states = {p.payout_id: p.state for p in page.payouts}  # type: ignore[attr-defined]
                    if all(s in FINAL for s in states.values()):
                        failed = [p for p, s in states.items() if s == pb.PAYOUT_STATE_FAILED]
                        for payout_id in failed:
                            await call(targets[0], "RetryPayout",
                                       pb.RetryPayoutRequest(payout_id=payout_id))
                        if not failed:
                            break
                await asyncio.sleep(0.2)
            stop.set()
            await signing
            logs = "".join(r.log_path.read_text()[-2000:] for r in replicas)
            assert all(s in FINAL for s in states.values()), (states, logs)
            # The watchdog agrees: every outflow explained (the holders' own submissions are
            # envelopes the service built), nothing paid twice, every confirmation seen.
            pool = await create_pool(fresh_database)
            stack.push_async_callback(pool.close)
            await verified_through(pool, await latest_ledger(sandbox), within=120)
            await confirmations_checked(pool, within=120)
            assert await findings_besides_lost_history(pool, sandbox) == []
            assert await unmatched_confirmed(pool, sandbox) == []
        finally:
            stop.set()
            for replica in replicas:
                await replica.stop()
        transfers = await sandbox.transfers()
    paid: dict[str, int] = {}
    for t in transfers:
        paid[t["to"]] = paid.get(t["to"], 0) + 1
    by_payout = {payout_id: paid.get(dests[n], 0) for n, payout_id in enumerate(ids)}
    assert all(count <= 1 for count in by_payout.values()), f"paid twice: {by_payout}"
    for payout_id, state in states.items():
        assert (state == pb.PAYOUT_STATE_CONFIRMED) == (by_payout[payout_id] == 1), \
            (payout_id, pb.PayoutState.Name(state), by_payout[payout_id])
        if state == pb.PAYOUT_STATE_CANCELLED:
            assert payout_id in cancelled
    assert "itself" in decided.values(), "some holder submitted an envelope itself"
