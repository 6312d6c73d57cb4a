"""What on-call relies on: /metrics, TLS/mTLS with admin-only methods, health that tells."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stellar_sdk import Keypair

from payout_service.embedded_postgres import free_port
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.tls_certs import DevCA
from tests.waiting import eventually


def create_request(n: int, amount: str = "1") -> pb.CreatePayoutRequest:
    return pb.CreatePayoutRequest(
        payout_id=f"m-{n}", destination=Keypair.random().public_key, amount=amount,
        asset="XLM", idempotency_key=f"m-{n}",
    )


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{port}/metrics"
    ) as response:
        assert response.status == 200
        return await response.text()


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{want}}}")


async def test_metrics_count_rpcs_by_method_and_code_and_payouts_by_state(payout_service_factory):
    metrics_port = free_port()
    service = await payout_service_factory(PAYOUTS_METRICS_PORT=metrics_port)
    before = await scrape(metrics_port)
    try:
        ok_before = sample(before, "grpc_server_handled_total", grpc_method="CreatePayout",
                           grpc_code="OK")
    except AssertionError:
        ok_before = 0.0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        await stub.CreatePayout(create_request(1))
        await stub.CreatePayout(create_request(2))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CreatePayout(create_request(3, amount="-5"))
    from payout_service.metrics import refresh_gauges

    await refresh_gauges(service.pool)
    text = await scrape(metrics_port)
    assert sample(text, "grpc_server_handled_total", grpc_method="CreatePayout",
                  grpc_code="OK") - ok_before == 2
    assert sample(text, "grpc_server_handled_total", grpc_method="CreatePayout",
                  grpc_code="INVALID_ARGUMENT") >= 1
    assert sample(text, "grpc_server_handling_seconds_count", grpc_method="CreatePayout") >= 3
    assert sample(text, "payouts_by_state", state="built") == 2
    assert sample(text, "payouts_queue_depth") == 0
    # No `_created` series (`payouts_created` read as a count), every family under payouts_.
    assert "_created" not in text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert not {f for f in families if f.startswith("payout_")}, families


@pytest.fixture
def pki(tmp_path):
    ca = DevCA(tmp_path)
    return {
        "ca": ca,
        "server": ca.issue("payouts.internal", server=True),
        "caller": ca.issue("game-service"),
        "admin": ca.issue("ops-admin"),
        "expired": ca.issue("old-service", expired=True),
    }


def channel(port: int, ca, who=None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        ca.read_bytes(),
        who.key.read_bytes() if who else None,
        who.cert.read_bytes() if who else None,
    )
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )


async def test_mtls_serves_known_callers_and_keeps_admin_methods_for_admins(
    payout_service_factory, pki
):
    service = await payout_service_factory(
        PAYOUTS_PLAINTEXT="", PAYOUTS_TLS_CERT=pki["server"].cert,
        PAYOUTS_TLS_KEY=pki["server"].key,
        PAYOUTS_TLS_CLIENT_CA=pki["ca"].path, PAYOUTS_ADMIN_IDENTITIES="ops-admin",
    )
    async with channel(service.port, pki["ca"].path, pki["caller"]) as ch:
        stub = payout_pb2_grpc.PayoutServiceStub(ch)
        created = await stub.CreatePayout(create_request(1))
        assert created.payout.state == pb.PAYOUT_STATE_BUILT
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.RetryPayout(pb.RetryPayoutRequest(payout_id="m-1"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with channel(service.port, pki["ca"].path, pki["admin"]) as ch:
        stub = payout_pb2_grpc.PayoutServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RetryPayout(pb.RetryPayoutRequest(payout_id="m-1"))
        # Past authorization: a BUILT payout cannot be retried.
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for who in (None, pki["expired"]):
        async with channel(service.port, pki["ca"].path, who) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as handshake:
                await payout_pb2_grpc.PayoutServiceStub(ch).GetPayout(
                    pb.GetPayoutRequest(payout_id="m-1"), timeout=5
                )
            assert handshake.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_needs_an_explicit_setting(payout_service_factory):
    from payout_service.config import ConfigError

    with pytest.raises(ConfigError, match="PAYOUTS_TLS_CERT"):
        await payout_service_factory(PAYOUTS_PLAINTEXT="")


async def test_health_turns_not_serving_when_the_rpc_is_unreachable(payout_service_factory):
    dead_port = free_port()
    service = await payout_service_factory(
        SOROBAN_RPC_URL=f"http://127.0.0.1:{dead_port}", PAYOUTS_HEALTH_CHECK_MS=100
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)

        async def not_serving() -> bool:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            return bool(reply.status == health_pb2.HealthCheckResponse.NOT_SERVING)

        await eventually(not_serving, what="health NOT_SERVING", within=30, interval=0.1)


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


async def wait_for_health(port: int, want: int, within: float = 15) -> int:
    async def reached() -> bool:
        return await health_status(port, "payout.v1.PayoutService") == want

    await eventually(reached, what=f"health status {want}", within=within, interval=0.1)
    return want


async def test_health_follows_postgresql_going_away_and_coming_back(
    payout_service_factory, fresh_database, postgres_url
):
    import asyncpg

    service = await payout_service_factory(PAYOUTS_HEALTH_CHECK_MS=100)
    name = fresh_database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        assert await wait_for_health(service.port, health_pb2.HealthCheckResponse.NOT_SERVING) \
            == health_pb2.HealthCheckResponse.NOT_SERVING
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert await wait_for_health(service.port, health_pb2.HealthCheckResponse.SERVING) \
            == health_pb2.HealthCheckResponse.SERVING
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_health_turns_not_serving_when_the_signer_goes_away(
    payout_service_factory, tmp_path
):
    from signer_service.testing import running_signer
    from soroban_sandbox.testing import RunningSandbox
    from tests.integration.test_live_with_signer import signer_env

    async with RunningSandbox(ledger_interval=0.5, seed=3) as sandbox:
        source = Keypair.random()
        await sandbox.fund(source.public_key)
        async with running_signer(tmp_path, network_passphrase=sandbox.passphrase,
                                  backend="hot", hot_secret=source.secret) as signer:
            service = await payout_service_factory(
                PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
                STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
                PAYOUTS_HEALTH_CHECK_MS=100, **signer_env(signer),
            )
            assert await health_status(service.port) == health_pb2.HealthCheckResponse.SERVING
        # The signer process is gone now.
        assert await wait_for_health(service.port, health_pb2.HealthCheckResponse.NOT_SERVING) \
            == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_every_log_line_is_json_even_when_grpc_core_refuses_a_handshake(
    fresh_database, pki, tmp_path
):
    import json
    import os
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    port = free_port()
    env.update({
        "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
        "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{port}", "PAYOUTS_TLS_CERT": str(pki["server"].cert),
        "PAYOUTS_TLS_KEY": str(pki["server"].key), "PAYOUTS_TLS_CLIENT_CA": str(pki["ca"].path),
    })
    log_path = tmp_path / "payout-service.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "payout_service", env=env, stderr=log)
    try:
        await eventually(lambda: "payout-service listening" in log_path.read_text(),
                         what="payout-service listening", within=30, interval=0.1)
        # A plaintext caller, then a TLS caller without a client certificate: both refused
        # in the handshake, which gRPC core would log as plain text unless told not to.
        payoutctl = str(Path(sys.executable).parent / "payoutctl")
        for extra in ([], ["--ca-cert", str(pki["ca"].path)]):
            client = await asyncio.create_subprocess_exec(
                payoutctl, "--target", f"127.0.0.1:{port}", *extra, "get", "x",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            assert await asyncio.wait_for(client.wait(), 30) == 1
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    lines = log_path.read_text().splitlines()
    assert any("payout-service listening" in line for line in lines)
    for line in filter(str.strip, lines):
        json.loads(line)
