"""The pipeline in batch mode as a process of its own, so SIGKILL is a real crash, and what the
crash-safety and replica tests share to run it: its environment, the accounts a batch pays,
the payouts and the ledger's verdict on them (the process itself:
test_crash_safety.BatchWorkerProcess).

The process is configured like payout-service (load_config from the environment) and signs
through the real signer-service over mTLS (tests/integration/batch_signing.py), channel keys
read from the registry that start-up seeds. Run: `python -m tests.integration.batch_worker`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
from stellar_sdk import Keypair

from payout_service import failpoints
from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.payout_store import create_pool
from payout_service.adapters.signer_client import SignerClient
from payout_service.app.pipeline import Pipeline
from payout_service.config import load_config
from soroban_sandbox.contracts import default_payout_contract_id
from soroban_sandbox.testing import SandboxClient
from tests.integration.batch_signing import XLM, BatchSigner
from tests.integration.test_live_with_signer import signer_env

FINAL_STATES = frozenset({"CONFIRMED", "FAILED", "CANCELLED"})


# ---- the accounts and payouts of one run --------------------------------------------------


@dataclass(frozen=True)
class Planned:
    payout_id: str
    destination: str
    amount: str  # units, as a caller sends it
    asset: str  # "XLM" or CODE:ISSUER, as payout-service names it
    expected: tuple[str, str | None]  # (state, failure code) when nobody cancels it

    @property
    def balance_key(self) -> str:
        """How the sandbox names the asset in an account's balances."""
        return "native" if self.asset == "XLM" else self.asset

    @property
    def stroops(self) -> int:
        return int(Decimal(self.amount) * XLM)


@dataclass
class BatchWorld:
    mode: str  # "classic" or "contract"
    channels: bool
    payouts: list[Planned]
    before: dict[tuple[str, str], int] = field(default_factory=dict)

    async def snapshot(self, sandbox: SandboxClient) -> None:
        self.before = await _balances(sandbox, self.payouts)

    async def deltas(self, sandbox: SandboxClient) -> dict[tuple[str, str], int]:
        """What each (destination, asset) received since the snapshot."""
        after = await _balances(sandbox, self.payouts)
        return {k: after[k] - self.before[k] for k in after}

    def owed(self, states: dict[str, tuple[str, str | None]]) -> dict[tuple[str, str], int]:
        """What each (destination, asset) must have received: every CONFIRMED payout once."""
        owed = {(p.destination, p.balance_key): 0 for p in self.payouts}
        for p in self.payouts:
            if states[p.payout_id][0] == "CONFIRMED":
                owed[(p.destination, p.balance_key)] += p.stroops
        return owed


async def _balances(sandbox: SandboxClient, payouts: list[Planned]
                    ) -> dict[tuple[str, str], int]:
    return {(p.destination, p.balance_key):
            (await sandbox.balances(p.destination)).get(p.balance_key, 0) for p in payouts}


async def batch_world(sandbox: SandboxClient, keys: BatchSigner, *, mode: str,
                      channels: bool, innocent: int = 8) -> BatchWorld:
    """Funds the signer's payer (and channels) in this sandbox and plans `innocent` XLM
    payouts plus the guilty ones of the mode. Classic: the first XLM destination does not
    exist yet (CreateAccount); 10 USD to a holder is paid; guilty are USD to a missing account
    (DESTINATION_MISSING, before batching), to an account without a trustline
    (PAYMENT_NO_TRUST) and 150 USD the payer does not have (PAYMENT_UNDERFUNDED), both on
    chain. Contract: guilty is XLM to a missing account (the simulation fails)."""
    accounts = [keys.payer, *(keys.channels.values() if channels else ())]
    for address in accounts:
        await sandbox.fund(address)
    dests = [Keypair.random().public_key for _ in range(innocent)]
    for d in dests[1 if mode == "classic" else 0:]:
        await sandbox.fund(d)
    payouts = [Planned(f"batch-{n}", d, "2", "XLM", ("CONFIRMED", None))
               for n, d in enumerate(dests)]
    missing = Keypair.random().public_key
    if mode == "contract":
        payouts.append(Planned("batch-missing", missing, "1", "XLM",
                               ("FAILED", "simulation_failed")))
        return BatchWorld(mode, channels, payouts)
    usd = keys.usd
    await sandbox.fund(keys.issuer.public_key)
    holder, no_trust = Keypair.random().public_key, Keypair.random().public_key
    for address in (holder, no_trust):
        await sandbox.fund(address)
    for address in (keys.payer, holder):
        await sandbox.open_trustline(address, usd)
    await sandbox.issue(usd, keys.payer, 100 * XLM)
    payouts += [
        Planned("batch-usd", holder, "10", usd, ("CONFIRMED", None)),
        Planned("batch-missing", missing, "1", usd, ("FAILED", "DESTINATION_MISSING")),
        Planned("batch-no-trust", no_trust, "1", usd, ("FAILED", "PAYMENT_NO_TRUST")),
        Planned("batch-underfunded", holder, "150", usd, ("FAILED", "PAYMENT_UNDERFUNDED")),
    ]
    return BatchWorld(mode, channels, payouts)


# ---- the worker process -------------------------------------------------------------------


def batch_worker_env(database: str, sandbox: SandboxClient, keys: BatchSigner,
                     world: BatchWorld, **overrides: str) -> dict[str, str]:
    """payout-service's settings for a batch run through the real signer; `overrides` last."""
    env = {
        **signer_env(keys.signer),
        "DATABASE_URL": database, "PAYOUT_SOURCE_ACCOUNT": keys.payer,
        "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
        "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_CONFIRM_POLL_MS": "150", "PAYOUTS_TX_WINDOW_SECONDS": "5",
        "PAYOUTS_RPC_TIMEOUT_MS": "1000", "PAYOUTS_MAX_ATTEMPTS": "10",
        "PAYOUTS_BATCH_MODE": world.mode,
        # The guilty payouts include one the chain refuses as PAYMENT_UNDERFUNDED: not held.
        "PAYOUTS_FUNDS_CHECK": "false",
    }
    if world.mode == "contract":
        env["PAYOUT_CONTRACT_ID"] = default_payout_contract_id(sandbox.passphrase)
    if world.channels:
        env["PAYOUTS_CHANNEL_ACCOUNTS"] = keys.channel_setting()
    return {**env, **overrides}


async def create_batch_payouts(env: dict[str, str], world: BatchWorld) -> None:
    """CreatePayoutBatch's own path (PayoutDesk.create_many), all in one SQL transaction."""
    from payout_service.adapters.migrations import apply_migrations
    from payout_service.adapters.payout_store import PayoutStore
    from payout_service.app.desk import PayoutDesk
    from payout_service.core.validation import AmountLimits, validate_payout_request

    pool = await create_pool(env["DATABASE_URL"])
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        desk = PayoutDesk(load_config(env), PayoutStore(pool), None)  # type: ignore[arg-type]
        requests = [validate_payout_request(
            payout_id=p.payout_id, destination=p.destination, amount=p.amount, asset=p.asset,
            idempotency_key=p.payout_id, metadata={}, reference="", limits=AmountLimits())
            for p in world.payouts]
        await desk.create_many(requests, actor="test", correlation_id="batch-run")
    finally:
        await pool.close()


async def batch_states(database: str) -> dict[str, tuple[str, str | None]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT payout_id, state, failure_code FROM payouts")
    finally:
        await conn.close()
    return {r["payout_id"]: (r["state"], r["failure_code"]) for r in rows}


async def settled_states(database: str, within: float = 300, pause: float = 0.1
                         ) -> dict[str, tuple[str, str | None]]:
    """The payouts' states once every one is final (or as they are after `within` seconds: a
    liveness bound, so the caller's assertion names what never settled)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        current = await batch_states(database)
        if {s for s, _ in current.values()} <= FINAL_STATES:
            return current
        if asyncio.get_running_loop().time() >= deadline:
            return current
        await asyncio.sleep(pause)


# ---- the process ----------------------------------------------------------------------------


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    config = load_config(os.environ)
    assert config.signer is not None, "batch mode signs through the signer service"
    failpoints.arm(config.failpoint)  # as payout-service's start_service does
    pool = await create_pool(config.database_url)
    registry = ChannelRegistry(pool)
    # As payout-service's start-up does: the lease reads the channel registry, which
    # PAYOUTS_CHANNEL_ACCOUNTS seeds (a worker racing another to the same row lets it win).
    try:
        await registry.seed(dict(config.signer.channel_keys))
    except asyncpg.UniqueViolationError:
        pass
    ledger = LedgerGateway(config.rpc_url or "", timeout_seconds=config.rpc_timeout_seconds)
    signer = SignerClient(config.signer, channel_registry=registry.key_of)
    pipeline = Pipeline(config, AttemptStore(pool), ledger, signer)
    pipeline.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
