"""Fixtures that run the payout service for real: gRPC on loopback against PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from stellar_sdk import Keypair

from payout_service.adapters.migrations import apply_migrations
from payout_service.config import load_config
from payout_service.main import RunningService, start_service
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.batch_signing import BatchSigner, running_batch_signer

ServiceFactory = Callable[..., Awaitable[RunningService]]


@pytest.fixture(scope="session")
def source_account() -> str:
    return Keypair.random().public_key


@pytest.fixture
async def payout_service_factory(
    fresh_database: str, source_account: str
) -> AsyncIterator[ServiceFactory]:
    """Starts payout services against one fresh database; stops them all afterwards."""
    started: list[RunningService] = []

    async def start(**env: Any) -> RunningService:
        settings = {
            "DATABASE_URL": fresh_database,
            "PAYOUT_SOURCE_ACCOUNT": source_account,
            "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0",
            "PAYOUTS_LIVE_EXECUTION": "false",
            "PAYOUTS_PLAINTEXT": "true",
        }
        settings.update({k: str(v) for k, v in env.items()})
        service = await start_service(load_config(settings))
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop(grace=0)


@pytest.fixture
async def payout_service(payout_service_factory: ServiceFactory) -> RunningService:
    return await payout_service_factory()


@pytest.fixture
async def payout_stub(
    payout_service: RunningService,
) -> AsyncIterator[payout_pb2_grpc.PayoutServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{payout_service.port}") as channel:
        yield payout_pb2_grpc.PayoutServiceStub(channel)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def batch_signer(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BatchSigner]:
    """The real signer for batches (SoftHSM2 token, mTLS), one per test module."""
    async with running_batch_signer(tmp_path_factory.mktemp("batch-signer")) as running:
        yield running


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on a fresh, migrated database (store-level tests)."""
    db = await asyncpg.create_pool(fresh_database, min_size=1, max_size=4)
    async with db.acquire() as conn:
        await apply_migrations(conn)
    yield db
    await db.close()
