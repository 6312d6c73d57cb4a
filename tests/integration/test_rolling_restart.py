"""A deploy under load: two live replicas behind the client's round-robin are restarted one at
a time (SIGTERM, the configured shutdown delay, drain, exit 0, start again) while callers
create payouts with idempotency keys and retry what gRPC says may be retried. No caller sees
an error it would not retry, and the sandbox's ledger shows every acknowledged payout paid
exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import grpc
import pytest

from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.live_stack import live_channel_env
from tests.integration.retrying_callers import (
    CallerLog,
    create_acknowledged,
    paid_per_destination,
    settled,
)
from tests.integration.test_crash_safety import ServiceProcess

CALLERS = 4
MAX_PAYOUTS = 400  # destinations funded; callers stop earlier once the deploy is over (under
# load a replica can take well over 10 s to restart, and 160 could run out before the end)
SHUTDOWN_DELAY_MS = 1000


def round_robin(ports: list[int], *, health_checks: bool) -> grpc.aio.Channel:
    """The client's load balancing over every replica's address; with health checks, a
    replica that says NOT_SERVING (its shutdown delay) gets no new calls."""
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if health_checks:
        config["healthCheckConfig"] = {"serviceName": ""}
    return grpc.aio.insecure_channel(
        "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports),
        options=[("grpc.service_config", json.dumps(config))])


async def restart(replica: ServiceProcess) -> None:
    """SIGTERM, wait for the drained process to exit 0, start it again on its port."""
    assert replica.proc is not None
    replica.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(replica.proc.wait(), 60)
    assert code == 0, replica.log_path.read_text()[-3000:]
    await replica.start()


@pytest.mark.parametrize("health_checks", [True, False],
                         ids=["client health checks", "round robin alone"])
async def test_restarting_replicas_one_at_a_time_under_load_fails_no_call(
    fresh_database, tmp_path, health_checks
):
    log = CallerLog()
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(RunningSandbox(ledger_interval=0.25, seed=41))
        world, _, env = await live_channel_env(
            stack, sandbox, tmp_path, fresh_database, payouts=MAX_PAYOUTS, channels=4,
            PAYOUTS_SHUTDOWN_DELAY_MS=SHUTDOWN_DELAY_MS)
        replicas = [ServiceProcess(env, tmp_path / f"replica-{i}.log") for i in range(2)]
        try:
            for replica in replicas:
                await replica.start()
            channel = await stack.enter_async_context(
                round_robin([r.port for r in replicas], health_checks=health_checks))
            stubs = [payout_pb2_grpc.PayoutServiceStub(channel)]

            deployed = asyncio.Event()

            async def caller(c: int) -> None:
                """Load for the whole deploy: a payout every 0.4 s until it is over."""
                for n in range(c, MAX_PAYOUTS, CALLERS):
                    if deployed.is_set():
                        return
                    await create_acknowledged(stubs, f"deploy-{n}", world.dests[n], log)
                    await asyncio.sleep(0.4)

            calling = asyncio.gather(*(caller(c) for c in range(CALLERS)))
            for replica in replicas:
                await restart(replica)
                before = len(log.acknowledged)
                while len(log.acknowledged) < before + 2 * CALLERS:
                    assert not calling.done(), "callers ran out of payouts before the deploy"
                    await asyncio.sleep(0.05)  # both replicas carry calls again
            deployed.set()
            await calling
            states = await settled(stubs, len(log.acknowledged), log)
            logs = "".join(r.log_path.read_text() for r in replicas)
        finally:
            for replica in replicas:
                await replica.stop()
        transfers = await sandbox.transfers()
    assert set(states) == set(log.acknowledged)
    assert set(states.values()) == {pb.PAYOUT_STATE_CONFIRMED}, states
    paid = paid_per_destination(transfers)
    by_payout = {f"deploy-{n}": paid.get(dest, 0) for n, dest in enumerate(world.dests)}
    assert all(by_payout[p] == 1 for p in states), by_payout
    assert sum(by_payout.values()) == len(states), "nothing paid that no caller asked for"
    assert logs.count("draining in-flight RPCs") == 2, "each replica drained once"
    assert "unhandled error" not in logs
    print(f"{len(states)} payouts; caller retries "
          f"({'health checks' if health_checks else 'round robin'}):", log.retried)
