"""payout-service entry point: config, migrations, gRPC server with health and reflection."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from payout_service.api import PayoutServicer
from payout_service.config import Config, ConfigError, load_config
from payout_service.ledger import LedgerGateway
from payout_service.logs import configure_logging
from payout_service.migrations import apply_migrations
from payout_service.payouts import PayoutDesk, mode_for
from payout_service.pipeline import Pipeline
from payout_service.signer_client import SignerClient
from payout_service.store import PayoutStore, create_pool
from stellar_payouts_pb.payout.v1 import payout_pb2, payout_pb2_grpc

log = logging.getLogger("payout_service")

SERVICE_NAMES = (
    payout_pb2.DESCRIPTOR.services_by_name["PayoutService"].full_name,
)


@dataclass
class RunningService:
    server: grpc.aio.Server
    port: int
    pool: asyncpg.Pool
    ledger: LedgerGateway | None
    health: health.aio.HealthServicer
    pipeline: Pipeline | None = None
    signer: SignerClient | None = None
    stopped: bool = False

    async def stop(self, grace: float = 5.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.pipeline is not None:
            await self.pipeline.stop()
        if self.signer is not None:
            await self.signer.close()
        if self.ledger is not None:
            await self.ledger.close()
        await self.pool.close()


async def start_service(config: Config) -> RunningService:
    pool = await create_pool(config.database_url)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    ledger = LedgerGateway(config.rpc_url) if config.rpc_url else None
    desk = PayoutDesk(config, PayoutStore(pool), ledger)
    server = grpc.aio.server()
    payout_pb2_grpc.add_PayoutServiceServicer_to_server(PayoutServicer(desk), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(config.listen_addr)
    if port == 0:
        await pool.close()
        raise ConfigError(f"PAYOUTS_LISTEN_ADDR {config.listen_addr} cannot be bound")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    pipeline, signer = None, None
    if config.live_execution and ledger is not None:
        signer = SignerClient(config.signer) if config.signer else None
        pipeline = Pipeline(config, desk.attempts, ledger, signer)
        pipeline.start()
    log.info("payout-service listening", extra={"port": port, "mode": mode_for(config)})
    return RunningService(server, port, pool, ledger, health_servicer, pipeline, signer)


async def _serve(config: Config) -> None:
    service = await start_service(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight RPCs")
    await service.stop()


def main() -> None:
    configure_logging("payout-service", os.environ.get("PAYOUTS_LOG_LEVEL", "INFO"))
    try:
        config = load_config()
        asyncio.run(_serve(config))
    except ConfigError as err:
        print(f"payout-service: configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    except (OSError, asyncpg.PostgresError) as err:
        print(f"payout-service: cannot start: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
