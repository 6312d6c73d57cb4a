"""A replica started before PostgreSQL is reachable waits (with backoff, one clear log line a
try naming DATABASE_URL without its password) and serves once the database comes up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import free_port

PASSWORD = "never-log-me-7f3a"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def forward_to(host: str, port: int, listen_port: int) -> asyncio.Server:
    """A TCP relay to the real PostgreSQL: "the database comes up" when it starts."""
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return await asyncio.start_server(relay, "127.0.0.1", listen_port)


async def test_a_replica_waits_for_postgresql_and_never_logs_its_password(fresh_database):
    real = urlsplit(fresh_database)
    relay_port = free_port()
    user = real.username or "postgres"
    waiting_url = urlunsplit(real._replace(netloc=f"{user}:{PASSWORD}@127.0.0.1:{relay_port}"))
    grpc_port = free_port()
    env = {**os.environ, "DATABASE_URL": waiting_url, "PAYOUTS_PLAINTEXT": "true",
           "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
           "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{grpc_port}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payout_service", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[str] = []
    relay = None
    try:
        while len([line for line in lines if "PostgreSQL unreachable" in line]) < 2:
            lines.append((await asyncio.wait_for(proc.stderr.readline(), 30)).decode())
        assert proc.returncode is None, "the replica waits instead of exiting"
        relay = await forward_to(real.hostname or "127.0.0.1", real.port or 5432, relay_port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            status = None
            for _ in range(300):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    status = (await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1)).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                await asyncio.sleep(0.1)
            assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.kill()
        rest = await proc.stderr.read()
        await proc.wait()
        if relay is not None:
            relay.close()
    log = "".join(lines) + rest.decode(errors="replace")
    waiting = [line for line in lines if "PostgreSQL unreachable" in line]
    assert all(f"{user}:***@127.0.0.1:{relay_port}" in line for line in waiting), waiting[0]
    assert PASSWORD not in log
