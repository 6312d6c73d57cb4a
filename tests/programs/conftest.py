"""A payout service with the programs on loopback gRPC, on a fresh PostgreSQL database.

Build-only mode (PAYOUTS_LIVE_EXECUTION=false): payouts end BUILT. Tests that need a payout
CONFIRMED or FAILED move it there in SQL the way the pipeline does (state, attempt, audit
event and outbox row in one SQL transaction): see `confirm` and `fail` below.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore, create_pool
from payout_service.api.payout import PayoutServicer
from payout_service.app.desk import PayoutDesk
from payout_service.config import load_config
from payout_service.wiring import Programs, start_programs
from stellar_payouts_pb.payout.v1 import (
    admin_pb2_grpc,
    payout_pb2_grpc,
    rounds_pb2_grpc,
)

SOURCE = Keypair.random().public_key

# Loops the tests drive themselves run rarely; settle and outbox run fast.
FAST_LOOPS = {
    "PAYOUTS_SETTLE_INTERVAL_SECONDS": "0.05",
    "PAYOUTS_OUTBOX_INTERVAL_SECONDS": "0.05",
    "PAYOUTS_SCHEDULER_INTERVAL_SECONDS": "3600",
    "PAYOUTS_ALERT_INTERVAL_SECONDS": "3600",
}


@dataclass
class Stack:
    pool: asyncpg.Pool
    desk: PayoutDesk
    programs: Programs
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    payouts: payout_pb2_grpc.PayoutServiceStub
    rounds: rounds_pb2_grpc.RoundServiceStub
    admin: admin_pb2_grpc.PayoutAdminServiceStub


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def stack_factory(fresh_database: str) -> AsyncIterator[StackFactory]:
    started: list[Stack] = []

    async def start(ledger: Any = None, **env: Any) -> Stack:
        settings = {
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": SOURCE,
            "PAYOUTS_LIVE_EXECUTION": "false", "PAYOUTS_PLAINTEXT": "true",
            **FAST_LOOPS,
        }
        settings.update({k: str(v) for k, v in env.items()})
        config = load_config(settings)
        pool = await create_pool(fresh_database)
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        desk = PayoutDesk(config, PayoutStore(pool), None)
        server = grpc.aio.server()
        payout_pb2_grpc.add_PayoutServiceServicer_to_server(PayoutServicer(desk), server)
        programs = await start_programs(server, desk, ledger, config.programs)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stack = Stack(
            pool, desk, programs, server, channel, payout_pb2_grpc.PayoutServiceStub(channel),
            rounds_pb2_grpc.RoundServiceStub(channel),
            admin_pb2_grpc.PayoutAdminServiceStub(channel),
        )
        started.append(stack)
        return stack

    yield start
    for stack in started:
        await stack.channel.close()
        await stack.server.stop(0)
        await stack.programs.stop()
        await stack.pool.close()


@pytest.fixture
async def stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory()


async def _settle(
    pool: asyncpg.Pool, payout_id: str, state: str, *, ledger: int, failure_code: str | None
) -> str:
    tx_hash = secrets.token_hex(32)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM payouts WHERE payout_id = $1 FOR UPDATE", payout_id
        )
        assert row is not None, payout_id
        await conn.execute(
            """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                   min_time, max_time, envelope_xdr, signed, tx_hash, fee_stroops, status,
                   ledger, submitted_at)
               VALUES ($1, 1, $2, $3, now(), now() + interval '1 minute', 'AAAA', true, $4,
                       100, $5, $6, now())""",
            row["id"], SOURCE, secrets.randbelow(2**40) + 1, tx_hash,
            "included" if state == "CONFIRMED" else "failed_on_chain", ledger,
        )
        await conn.execute(
            """UPDATE payouts SET state = $2, attempt_count = 1, failure_code = $3,
                   confirmed_at = CASE WHEN $2 = 'CONFIRMED' THEN now() END,
                   updated_at = now() WHERE id = $1""",
            row["id"], state, failure_code,
        )
        await conn.execute(
            """INSERT INTO payout_events (payout_id, from_state, to_state, reason)
               VALUES ($1, $2, $3, 'test: as the pipeline would')""",
            row["id"], row["state"], state,
        )
        event = "payout.confirmed" if state == "CONFIRMED" else "payout.failed"
        await conn.execute(
            "INSERT INTO outbox_events (payout_id, event_type, payload) VALUES ($1, $2, $3)",
            row["id"], event,
            {"type": event, "payout_id": payout_id, "tx_hash": tx_hash, "ledger": ledger,
             "net_stroops": row["net_stroops"]},
        )
    return tx_hash


async def confirm(pool: asyncpg.Pool, payout_id: str, *, ledger: int = 1000) -> str:
    """CONFIRMED with an included attempt and a payout.confirmed outbox row; returns tx hash."""
    return await _settle(pool, payout_id, "CONFIRMED", ledger=ledger, failure_code=None)


async def fail(pool: asyncpg.Pool, payout_id: str, *, code: str = "tx_failed") -> str:
    return await _settle(pool, payout_id, "FAILED", ledger=1000, failure_code=code)
