"""payout-service entry point: config, migrations, gRPC server with health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from payout_service import failpoints, metrics
from payout_service.adapters.channel_store import ChannelConflict, ChannelRegistry
from payout_service.adapters.database import (
    create_pool_waiting,
    database_unavailable,
    retry_while_unavailable,
)
from payout_service.adapters.ledger import LedgerGateway, LedgerUnavailable
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore
from payout_service.adapters.sending_pause import pause_state
from payout_service.adapters.signer_client import SignerClient
from payout_service.api.interceptors import ServiceInterceptor
from payout_service.api.payout import PayoutServicer
from payout_service.api.reflection import enable_reflection
from payout_service.app.channel_pool import ChannelPool, KeyRoleMismatch, channel_sample_for
from payout_service.app.desk import PayoutDesk, mode_for
from payout_service.app.loops import run_loop
from payout_service.app.pipeline import Pipeline
from payout_service.app.watchdog import Watchdog, watchdog_for
from payout_service.config import Config, ConfigError, ServerTls, load_config, warn_renamed
from payout_service.logs import configure_logging
from payout_service.tracing import configure_tracing, server_interceptors
from payout_service.wiring import Programs, start_programs
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
    programs: Programs | None = None
    watchdog: Watchdog | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    halt: asyncio.Event = field(default_factory=asyncio.Event)
    metrics_endpoint: metrics.MetricsEndpoint | None = None
    stopped: bool = False
    shutdown_delay: float = 0.0
    # What sends (live execution): the pipeline and the channel pool's loop, stopped while a
    # sending hold is set (migration 140, payout_service/app/restore.py).
    make_pipeline: Callable[[], Pipeline] | None = None
    channel_loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None
    channel_halt: asyncio.Event = field(default_factory=asyncio.Event)
    channel_task: asyncio.Task[None] | None = None
    sending_held: bool = False

    def start_sending(self) -> None:
        if self.make_pipeline is not None:
            self.pipeline = self.make_pipeline()
            self.pipeline.start()
        if self.channel_loop is not None:
            self.channel_halt = asyncio.Event()
            self.channel_task = asyncio.create_task(self.channel_loop(self.channel_halt))

    async def stop_sending(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.stop()
            self.pipeline = None
        if self.channel_task is not None:
            self.channel_halt.set()
            await asyncio.gather(self.channel_task, return_exceptions=True)
            self.channel_task = None

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful: NOT_SERVING first, keep serving for the shutdown delay while load
        balancers notice, drain the calls in flight, then stop the loops."""
        if self.stopped:
            return
        self.stopped = True
        await self.health.enter_graceful_shutdown()
        if self.shutdown_delay and grace:
            await asyncio.sleep(self.shutdown_delay)
        await self.server.stop(grace)
        self.halt.set()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.watchdog is not None:
            await self.watchdog.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        await self.stop_sending()
        if self.programs is not None:
            await self.programs.stop()
        if self.signer is not None:
            await self.signer.close()
        if self.ledger is not None:
            await self.ledger.close()
        await self.pool.close()


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    chain = Path(tls.cert).read_bytes()
    key = Path(tls.key).read_bytes()
    client_ca = Path(tls.client_ca).read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start_service(config: Config) -> RunningService:
    failpoints.arm(config.failpoint)
    pool = await create_pool_waiting(config.database_url)
    await retry_while_unavailable(lambda: migrate(pool), config.database_url)
    registry = ChannelRegistry(pool)
    if config.signer is not None and config.signer.channel_keys:
        try:
            await registry.seed(config.signer.channel_keys)
        except ChannelConflict as err:
            await pool.close()
            raise ConfigError(f"PAYOUTS_CHANNEL_ACCOUNTS: {err}") from None
    ledger = (
        LedgerGateway(config.rpc_url, timeout_seconds=config.rpc_timeout_seconds)
        if config.rpc_url else None
    )
    desk = PayoutDesk(config, PayoutStore(pool), ledger)
    tracing = server_interceptors()
    server = grpc.aio.server(
        interceptors=[
            *tracing,
            ServiceInterceptor(admin_identities=config.admin_identities,
                               plaintext=config.tls is None, continue_trace=not tracing),
        ],
    )
    payout_pb2_grpc.add_PayoutServiceServicer_to_server(PayoutServicer(desk), server)
    try:
        programs = await start_programs(server, desk, ledger, config.programs)
    except ConfigError:
        await pool.close()
        raise
    names = (*SERVICE_NAMES, *programs.service_names)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (*names, health.SERVICE_NAME))
    if config.tls is None:
        log.warning("serving PLAINTEXT (PAYOUTS_PLAINTEXT=true): local use only; admin RPCs open")
        port = server.add_insecure_port(config.listen_addr)
    else:
        port = server.add_secure_port(config.listen_addr, server_credentials(config.tls))
    if port == 0:
        await programs.stop()
        await pool.close()
        raise ConfigError(f"PAYOUTS_LISTEN_ADDR {config.listen_addr} cannot be bound")
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    signer = None
    live_ledger = ledger if config.live_execution else None
    if live_ledger is not None:
        signer = SignerClient(config.signer, channel_registry=registry.key_of) \
            if config.signer else None
    service = RunningService(server, port, pool, ledger, health_servicer, None, signer,
                             programs, shutdown_delay=config.shutdown_delay_seconds)
    if live_ledger is not None:
        service.make_pipeline = lambda: Pipeline(config, desk.attempts, live_ledger, signer)
    if config.channel_pool is not None and programs.admin is not None:
        channels = ChannelPool(
            config.channel_pool, pool, network_passphrase=config.network_passphrase,
            tx_window_seconds=config.tx_window_seconds, ledger=live_ledger, signer=signer,
            sample=channel_sample_for(config),
        )
        programs.admin.channels = channels
        pool_config = config.channel_pool
        try:
            # The pool funds channels by itself only with a minimum size or automatic top-ups;
            # otherwise the funding key is checked when an operator creates or tops up.
            await channels.check_key_roles(
                funding=pool_config.minimum > 0 or pool_config.top_up_below_stroops > 0)
        except KeyRoleMismatch as err:
            await service.stop(grace=0)
            raise ConfigError(f"signer key roles: {err}") from None
        if live_ledger is not None:
            await channels.hold_refused_channels()
        interval = config.channel_pool.interval_seconds
        service.channel_loop = lambda halt: run_loop(
            "channel_pool", channels.step, interval=interval, halt=halt, pool=pool)
    if programs.admin is not None:
        programs.admin.watchdog_settings = config.watchdog
    if live_ledger is not None and config.watchdog.enabled:
        start_watchdog(service, config, programs)
    await start_sending_unless_held(service, config.database_url)
    if config.metrics_port:
        service.metrics_endpoint = metrics.MetricsEndpoint(config.metrics_port)
    service.background += [
        asyncio.create_task(metrics.gauge_loop(pool, service.halt)),
        asyncio.create_task(
            watch_dependencies(service, names, config.health_check_seconds)
        ),
        asyncio.create_task(watch_sending_hold(service, config.health_check_seconds)),
    ]
    log.info("payout-service listening", extra={
        "port": port, "mode": mode_for(config),
        "metrics_port": service.metrics_endpoint.port if service.metrics_endpoint else None,
    })
    return service


async def start_sending_unless_held(service: RunningService, database_url: str) -> None:
    paused = await retry_while_unavailable(lambda: pause_state(service.pool), database_url)
    service.sending_held = paused.paused
    if not paused.paused:
        service.start_sending()
    elif service.make_pipeline is not None or service.channel_loop is not None:
        log.warning("sending paused: nothing is built, signed or sent until it is resumed",
                    extra={"reason": paused.reason, "changed_by": paused.changed_by})


async def watch_sending_hold(service: RunningService, interval: float) -> None:
    """Sending paused or resumed while the service runs (PauseSending, the watchdog, a
    restore hold: adapters/sending_pause.py) stops or starts every loop that builds, signs or
    sends within one interval (the sender itself stops within a second)."""
    if service.make_pipeline is None and service.channel_loop is None:
        return
    while not service.halt.is_set():
        try:
            paused = await pause_state(service.pool)
        except Exception as err:
            if not database_unavailable(err):
                raise
        else:
            if paused.paused and not service.sending_held:
                log.warning("sending paused: stopping what sends",
                            extra={"reason": paused.reason, "changed_by": paused.changed_by})
                service.sending_held = True
                await service.stop_sending()
            elif not paused.paused and service.sending_held:
                log.warning("sending resumed")
                service.sending_held = False
                service.start_sending()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.halt.wait(), interval)


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Pending migrations under their advisory lock. A failover during start-up breaks the
    session (and with it the lock, which lived on the old primary only); the caller tries
    again on the new primary, where each migration either committed or did not."""
    async with pool.acquire() as conn:
        return await apply_migrations(conn)


def start_watchdog(service: RunningService, config: Config, programs: Programs) -> None:
    """The second line of defence (app/watchdog.py); one replica at a time runs it."""
    service.watchdog = watchdog_for(config, service.pool, programs.monitor.seed)
    service.background.append(asyncio.create_task(run_loop(
        "watchdog", service.watchdog.step, interval=config.watchdog.interval_seconds,
        halt=service.halt, pool=service.pool)))


async def dependencies_reachable(service: RunningService) -> dict[str, bool]:
    checks: dict[str, bool] = {}
    try:
        await asyncio.wait_for(service.pool.fetchval("SELECT 1"), 3)
        checks["postgresql"] = True
    except (asyncpg.PostgresError, OSError, TimeoutError):
        checks["postgresql"] = False
    if service.ledger is not None:
        try:
            await service.ledger.latest_ledger()
            checks["stellar_rpc"] = True
        except LedgerUnavailable:
            checks["stellar_rpc"] = False
    if service.signer is not None:
        checks["signer"] = await service.signer.check()
    return checks


async def watch_dependencies(
    service: RunningService, names: tuple[str, ...], interval: float = 5.0
) -> None:
    """grpc.health.v1 says NOT_SERVING while PostgreSQL, the RPC or the signer is unreachable."""
    serving = True
    while not service.halt.is_set():
        checks = await dependencies_reachable(service)
        healthy = all(checks.values())
        if healthy != serving and not service.halt.is_set():
            status = (health_pb2.HealthCheckResponse.SERVING if healthy
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", *names):
                await service.health.set(name, status)
            log.warning("health changed", extra={"serving": healthy, **checks})
            serving = healthy
        try:
            await asyncio.wait_for(service.halt.wait(), interval)
        except TimeoutError:
            pass


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
    try:
        config = load_config()
    except ConfigError as err:
        print(f"payout-service: configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    configure_logging("payout-service", config.log_level)
    warn_renamed(config, log)
    configure_tracing("payout-service", config.otlp_endpoint)
    try:
        asyncio.run(_serve(config))
    except ConfigError as err:
        print(f"payout-service: configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    except (OSError, asyncpg.PostgresError) as err:
        print(f"payout-service: cannot start: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
