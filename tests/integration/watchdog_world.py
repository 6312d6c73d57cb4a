"""A world for the watchdog tests: the sandbox as a process of its own (over HTTP), a real
signer-service with a hot key (so the test holds the paying key, as an outsider who has it
would), funded accounts, and helpers that wait on the watchdog's persisted state and judge by
the sandbox's ledger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from stellar_sdk import Keypair
from stellar_sdk.exceptions import BadResponseError, BaseRequestError, SorobanRpcErrorResponse
from stellar_sdk.soroban_server_async import SorobanServerAsync

from signer_service.testing import SignerFixture, running_signer
from soroban_sandbox.testing import RunningSandbox
from tests.integration.batch_signing import batch_policy
from tests.integration.test_live_with_signer import (
    channel_key_settings,
    signer_env,
    strict_policy,
)
from tests.waiting import eventually as poll

XLM = 10_000_000


@dataclass
class World:
    sandbox: RunningSandbox
    payer: Keypair
    signer: SignerFixture
    channels: dict[str, Keypair] = field(default_factory=dict)

    def env(self, **extra: Any) -> dict[str, str]:
        """The service's settings: live, signed by the signer, the watchdog reading every
        100 ms (the sandbox closes a ledger every 0.25 s)."""
        settings = {
            "PAYOUT_SOURCE_ACCOUNT": self.payer.public_key,
            "SOROBAN_RPC_URL": self.sandbox.rpc_url,
            "STELLAR_NETWORK_PASSPHRASE": self.sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_CONFIRM_POLL_MS": "100",
            "PAYOUTS_WATCHDOG_INTERVAL_MS": "100", **signer_env(self.signer),
        }
        if self.channels:
            settings["PAYOUTS_CHANNEL_ACCOUNTS"] = ",".join(
                f"{key_id}={kp.public_key}" for key_id, kp in self.channels.items())
        settings.update({k: str(v) for k, v in extra.items()})
        return settings

    async def latest_ledger(self) -> int:
        return await latest_ledger(self.sandbox)

    async def pay_directly(self, source: Keypair, destination: str, stroops: int
                           ) -> tuple[str, int]:
        return await pay_directly(self.sandbox, source, destination, stroops)

    async def chain_transactions(self, first: int, last: int) -> int:
        """How many transactions the chain holds in ledgers first..last (getTransactions;
        behind a balancer, an answer from a node that has not reached `last` is asked again,
        as is one from a node whose history does not reach `first`)."""
        count, cursor = 0, str(first << 32)
        async with SorobanServerAsync(self.sandbox.rpc_url) as server:
            for _ in range(1000):
                try:
                    page = await server.get_transactions(cursor=cursor, limit=200)
                except SorobanRpcErrorResponse:
                    continue  # a restarted node without that history
                if len(page.transactions) < 200 and page.latest_ledger < last:
                    continue
                count += sum(1 for t in page.transactions if t.ledger <= last)
                if len(page.transactions) < 200 or page.transactions[-1].ledger > last:
                    return count
                cursor = page.cursor
        raise AssertionError("no node answered up to the last ledger")


async def latest_ledger(sandbox: RunningSandbox) -> int:
    """The chain's latest ledger, asked until an answer comes: the sandbox may be injecting
    faults (a 503, a dropped connection) that a test's own reads must ride out too."""
    async with SorobanServerAsync(sandbox.rpc_url) as server:
        async def ask() -> int:
            return int((await server.get_latest_ledger()).sequence)
        ledger: int = await poll(ask, what="the latest ledger", within=60,
                                 ignoring=(BaseRequestError, BadResponseError,
                                           ConnectionError, SorobanRpcErrorResponse))
        return ledger


async def pay_directly(sandbox: RunningSandbox, source: Keypair, destination: str,
                       stroops: int) -> tuple[str, int]:
    """A native Payment made outside the service (the sandbox's `pay_outside`: signed with a
    key the test holds, sent as a third party would); returns (hash, ledger) once landed."""
    tx_hash = await sandbox.pay_outside(source, destination, stroops)
    landed = await sandbox.transaction(tx_hash)
    assert landed is not None and landed["successful"], landed
    return tx_hash, int(landed["ledger"])


@contextlib.asynccontextmanager
async def world(tmp_path: Path, *, channels: int = 0, batch: bool = False,
                sandbox_args: Sequence[str] = (), seed: int = 19,
                faults: dict[str, Any] | None = None) -> AsyncIterator[World]:
    async with RunningSandbox(ledger_interval=0.25, seed=seed, faults=faults,
                              extra_args=list(sandbox_args)) as sandbox:
        payer = Keypair.random()
        keys = {f"channel-{i}": Keypair.random() for i in range(channels)}
        for kp in (payer, *keys.values()):
            await sandbox.fund(kp.public_key)
        if batch:
            policy = batch_policy(payer.public_key, f"USD:{Keypair.random().public_key}",
                                  sandbox.passphrase)
        else:
            policy = strict_policy(payer, sandbox.passphrase)
            policy["source_accounts"] = [payer.public_key,
                                         *(k.public_key for k in keys.values())]
        async with running_signer(
            tmp_path, network_passphrase=sandbox.passphrase, backend="hot",
            hot_secret=payer.secret, extra_keys={k: kp.secret for k, kp in keys.items()},
            key_settings=channel_key_settings(keys, payer.public_key), policy=policy,
        ) as signer:
            yield World(sandbox, payer, signer, keys)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 60,
                     every: float = 0.1) -> Any:
    """Polls `check` until it returns something truthy; returns that."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(every)


async def watchdog_state(pool: asyncpg.Pool) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM watchdog_state WHERE id = 1")


async def verified_through(pool: asyncpg.Pool, ledger: int, within: float = 60) -> None:
    """Waits until the watchdog has read every ledger up to `ledger`."""
    async def read() -> bool:
        found = await watchdog_state(pool)
        return found is not None and found["verified_ledger"] >= ledger
    await eventually(read, f"the watchdog verified ledger {ledger}", within)


async def confirmations_checked(pool: asyncpg.Pool, within: float = 60) -> None:
    """Waits until the watchdog has judged every CONFIRMED payout."""
    async def checked() -> bool:
        return bool(await pool.fetchval(
            """SELECT COALESCE((SELECT max(confirmed_at) FROM payouts
                                WHERE state = 'CONFIRMED'), '-infinity')
                      <= (SELECT confirmed_checked_until FROM watchdog_state)"""))
    await eventually(checked, "every confirmation checked", within)


async def findings(pool: asyncpg.Pool, kind: str | None = None) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM watchdog_findings WHERE $1::text IS NULL OR kind = $1 ORDER BY id",
        kind)


async def explained_gaps(pool: asyncpg.Pool, sandbox: Any) -> list[tuple[int, int]]:
    """Gaps the sandbox's nodes explain: each node restarted (lost its history) after the
    gap's first ledger, so no node could serve it any more. Such a gap is a true report
    (those outflows were not verified), not a fault of the watchdog."""
    nodes = await sandbox.nodes()
    return [(f["ledger"], f["ledger_to"]) for f in await findings(pool, "watchdog_gap")
            if all(any(r > f["ledger"] for r in node["restarts"]) for node in nodes)]


async def findings_besides_lost_history(pool: asyncpg.Pool, sandbox: Any
                                        ) -> list[tuple[str, str]]:
    """Every finding, except a gap the sandbox's nodes explain (explained_gaps)."""
    explained = await explained_gaps(pool, sandbox)
    return [(f["kind"], f["detail"]) for f in await findings(pool)
            if not (f["kind"] == "watchdog_gap" and (f["ledger"], f["ledger_to"]) in explained)]


async def eventually_found(pool: asyncpg.Pool, kind: str, every: float = 0.1
                           ) -> list[asyncpg.Record]:
    """Waits for findings of `kind`; returns them."""
    found: list[asyncpg.Record] = await eventually(
        lambda: findings(pool, kind), f"a {kind} finding", every=every)
    return found


async def unmatched_confirmed(pool: asyncpg.Pool, sandbox: Any = None) -> list[str]:
    """CONFIRMED payouts without the chain payment of their included attempt's hash. With a
    lying sandbox, a payout included in a gap its nodes explain is left out: the watchdog
    never read that ledger, so it cannot have matched it (and says so with the gap)."""
    rows = await pool.fetch(
        """SELECT p.payout_id, a.ledger FROM payouts p
           JOIN payout_attempts a ON a.payout_id = p.id AND a.status = 'included'
           LEFT JOIN chain_payments c ON c.payout_id = p.id AND c.tx_hash = a.tx_hash
           WHERE p.state = 'CONFIRMED' AND c.payout_id IS NULL""")
    gaps = await explained_gaps(pool, sandbox) if sandbox is not None else []
    return [f"{r['payout_id']} (ledger {r['ledger']}, explained gaps {gaps})" for r in rows
            if not any(a <= (r["ledger"] or 0) <= b for a, b in gaps)]
