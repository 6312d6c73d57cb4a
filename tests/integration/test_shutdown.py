"""SIGTERM: health goes NOT_SERVING, calls the server has started are finished and answered,
calls not yet started are refused (the caller retries them elsewhere; idempotency keys make
that safe), nothing is half-written, and the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal

import asyncpg
import grpc
from stellar_sdk import Keypair

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.test_crash_safety import ServiceProcess


async def started_build_only(database_url: str, tmp_path, **env: str) -> ServiceProcess:
    """payout-service as a real process (build-only, plaintext), healthy."""
    service = ServiceProcess({
        "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
        "PAYOUTS_PLAINTEXT": "true", "PAYOUTS_LOG_LEVEL": "INFO", **env,
    }, tmp_path / "payout-service.log")
    await service.start()
    return service


async def test_sigterm_drains_in_flight_calls_and_exits_cleanly(fresh_database, tmp_path):
    service = await started_build_only(fresh_database, tmp_path)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)

        async def create(n: int) -> pb.CreatePayoutResponse:
            return await stub.CreatePayout(pb.CreatePayoutRequest(
                payout_id=f"drain-{n}", destination=Keypair.random().public_key, amount="1",
                asset="XLM", idempotency_key=f"drain-{n}"), timeout=15)

        calls = [asyncio.create_task(create(n)) for n in range(80)]
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        service.proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*calls, return_exceptions=True)
    code = await asyncio.wait_for(service.proc.wait(), 20)
    log = service.log_path.read_text()
    assert code == 0, log[-2000:]
    assert "draining in-flight RPCs" in log

    answered = {r.payout.payout_id for r in results if not isinstance(r, BaseException)}
    refused = [r for r in results if isinstance(r, BaseException)]
    assert answered, "calls in flight when SIGTERM came were answered"
    # Calls the server had not started when SIGTERM came are refused; none is half-done.
    assert all(isinstance(e, grpc.aio.AioRpcError)
               and e.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
               for e in refused), refused[:1]
    conn = await asyncpg.connect(fresh_database)
    try:
        rows = await conn.fetch(
            """SELECT p.payout_id, count(e.id) AS events FROM payouts p
               LEFT JOIN payout_events e ON e.payout_id = p.id GROUP BY p.payout_id""")
    finally:
        await conn.close()
    stored = {r["payout_id"]: r["events"] for r in rows}
    assert set(stored) == answered, "every started call finished and was answered; no other row"
    assert all(n >= 1 for n in stored.values()), "no payout without its audit row"
    started = {json.loads(line).get("payout_id") for line in log.splitlines()
               if '"payout created"' in line}
    assert started == answered, "no call the server had started was cut off"


async def test_shutdown_delay_reports_not_serving_while_still_answering(fresh_database, tmp_path):
    """PAYOUTS_SHUTDOWN_DELAY_MS: load balancers see NOT_SERVING before calls are refused."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    service = await started_build_only(fresh_database, tmp_path,
                                       PAYOUTS_SHUTDOWN_DELAY_MS="3000")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        service.proc.send_signal(signal.SIGTERM)
        for _ in range(50):
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.02)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        late = await stub.CreatePayout(pb.CreatePayoutRequest(
            payout_id="late", destination=Keypair.random().public_key, amount="1",
            asset="XLM", idempotency_key="late"), timeout=2)
        assert late.created, "still answering during the delay"
    assert await asyncio.wait_for(service.proc.wait(), 20) == 0
