"""A database on a primary with a synchronous standby (payout_service/adapters/embedded_standby.py),
and the failover an operator or Patroni would make: kill the primary, promote the standby."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from payout_service.adapters.embedded_standby import ReplicatedPostgres

DATABASE = "payouts"


@dataclass
class ReplicatedDatabase:
    pair: ReplicatedPostgres

    @property
    def url(self) -> str:
        """What payout-service is given: both hosts, sessions that take writes only."""
        return self.pair.url(DATABASE)

    async def fail_over(self) -> None:
        """SIGKILL every process of the primary, then `pg_ctl promote -w` the standby."""
        await asyncio.to_thread(self.pair.kill_primary)
        await asyncio.to_thread(self.pair.promote_standby)

    async def standby_is_primary(self) -> bool:
        conn = await asyncpg.connect(self.pair.node_url(self.pair.standby, DATABASE))
        try:
            return not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def replicated_database() -> AsyncIterator[ReplicatedDatabase]:
    pair = ReplicatedPostgres()
    try:
        await asyncio.to_thread(pair.start)
        conn = await asyncpg.connect(pair.node_url(pair.primary))
        try:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()
        yield ReplicatedDatabase(pair)
    finally:
        await asyncio.to_thread(pair.stop)
