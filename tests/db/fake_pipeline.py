"""The pipeline's ports faked for tests against real PostgreSQL: a ledger that models only
what the pipeline relies on (seq == account seq + 1, inclusion at ledger close, NOT_FOUND with
close times) and a signer that signs with the payer's key. The integration suite runs the same
flows against the sandbox and the real signer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from stellar_sdk import Keypair
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.ledger import (
    Accepted,
    Included,
    LedgerInfo,
    LedgerUnavailable,
    NotFound,
    Rejected,
)
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore, create_pool
from payout_service.adapters.signer_client import SignedEnvelope, SignerUnavailable, SigningRefused
from payout_service.app.desk import PayoutDesk
from payout_service.app.pipeline import Pipeline
from payout_service.config import load_config
from payout_service.core.proofs import AccountState
from payout_service.core.validation import AmountLimits, validate_payout_request

NET = "Test SDF Network ; September 2015"
# Real sequence numbers start at ledger << 32: far beyond int32, as in production.
START_SEQ = 123 << 32
RESOURCE_FEE = 150


@dataclass
class FakeLedger:
    account_seq: int = START_SEQ
    ledger: int = 10
    close_time: int = field(default_factory=lambda: int(time.time()))
    pending: dict[str, TransactionEnvelope] = field(default_factory=dict)
    included: dict[str, int] = field(default_factory=dict)
    # What getTransaction would show of an included one: its envelope and its ledger's close.
    landed: dict[str, tuple[str, int]] = field(default_factory=dict)
    drop_next: int = 0
    sends: int = 0
    # Like a real node's queue: one pending transaction per source, no chains.
    one_pending: bool = False
    reject_code: str | None = None

    # What the payer can send per asset (payer_funds); None: not limited. The fake never
    # debits it: a test sets it.
    funds: dict[str, int | None] | None = None
    funds_unavailable: bool = False
    funds_reads: int = 0

    async def payer_funds(self, account_id: str, assets: list[str]) -> dict[str, int | None]:
        self.funds_reads += 1
        if self.funds_unavailable:
            raise LedgerUnavailable("ClientConnectorError")
        return dict(self.funds or {})

    async def account_sequence(self, account_id: str) -> int:
        return self.account_seq

    async def account_state(self, account_id: str) -> AccountState:
        return AccountState(self.account_seq, self.ledger)

    async def latest_ledger(self) -> LedgerInfo:
        return LedgerInfo(self.ledger, self.close_time)

    fee_p90: int | None = None

    async def inclusion_fee_p90(self, lane: str = "soroban") -> int | None:
        return self.fee_p90

    simulations: int = 0

    async def prepare(self, envelope: TransactionEnvelope) -> TransactionEnvelope:
        self.simulations += 1
        envelope.transaction.fee += RESOURCE_FEE  # the builder's inclusion bid + resources
        return envelope

    async def send(self, envelope_xdr: str) -> Accepted | Rejected:
        self.sends += 1
        env = TransactionEnvelope.from_xdr(envelope_xdr, NET)
        tx_hash = env.hash_hex()
        if self.reject_code:
            return Rejected(self.reject_code)
        if tx_hash in self.included:
            return Rejected("txBAD_SEQ")
        if self.one_pending and self.pending:
            return Rejected("txBAD_SEQ")
        if env.transaction.sequence != self.account_seq + 1 + len(self.pending):
            return Rejected("txBAD_SEQ")
        if self.drop_next:
            self.drop_next -= 1
            return Accepted(self.ledger)
        self.pending[tx_hash] = env
        return Accepted(self.ledger)

    def close(self, seconds: int = 5) -> None:
        self.ledger += 1
        self.close_time += seconds
        for tx_hash, env in sorted(self.pending.items(), key=lambda kv: kv[1].transaction.sequence):
            if env.transaction.preconditions.time_bounds.max_time < self.close_time:
                continue
            self.account_seq = env.transaction.sequence
            self.included[tx_hash] = self.ledger
            self.landed[tx_hash] = (env.to_xdr(), self.close_time)
        self.pending.clear()

    async def lookup(self, tx_hash: str) -> Included | NotFound:
        if tx_hash in self.included:
            envelope_xdr, closed_at = self.landed.get(tx_hash, ("", 0))
            return Included(True, self.included[tx_hash], "txSUCCESS", 250,
                            envelope_xdr=envelope_xdr, close_time=closed_at,
                            application_order=1)
        return NotFound(self.ledger, self.close_time, 1)


@dataclass
class FakeSigner:
    key: Keypair
    refuse: bool = False
    refuse_next: int = 0
    unavailable: bool = False

    async def sign_transaction(self, envelope_xdr: str, **_: object) -> SignedEnvelope:
        if self.unavailable:
            raise SignerUnavailable("UNAVAILABLE: connection refused")
        if self.refuse_next:
            self.refuse_next -= 1
            raise SigningRefused("PERMISSION_DENIED: policy rule max_amount refused")
        if self.refuse:
            raise SigningRefused("PERMISSION_DENIED: policy rule max_amount refused")
        env = TransactionEnvelope.from_xdr(envelope_xdr, NET)
        env.sign(self.key)
        return SignedEnvelope(env.to_xdr(), env.hash_hex())

    async def channel_key(self, source_account: str) -> str | None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def world(fresh_database):
    source = Keypair.random()
    pool = await create_pool(fresh_database)
    async with pool.acquire() as conn:
        await apply_migrations(conn)

    def make(mode: str, **extra: str) -> tuple[PayoutDesk, Pipeline, FakeLedger, FakeSigner]:
        env = {
            "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
            "PAYOUTS_LIVE_EXECUTION": "true", "SOROBAN_RPC_URL": "http://fake",
            "PAYOUTS_SIGNING_MODE": mode, "PAYOUTS_SIGNER_ADDR": "x", "PAYOUTS_SIGNER_CA_CERT": "x",
            "PAYOUTS_SIGNER_CLIENT_CERT": "x", "PAYOUTS_SIGNER_CLIENT_KEY": "x",
            "PAYOUTS_TX_WINDOW_SECONDS": "30", "PAYOUTS_PLAINTEXT": "true", **extra,
        }
        config = load_config(env)
        ledger, signer = FakeLedger(), FakeSigner(source)
        desk = PayoutDesk(config, PayoutStore(pool), ledger)  # type: ignore[arg-type]
        pipeline = Pipeline(config, desk.attempts, ledger,  # type: ignore[arg-type]
                            signer if mode == "signer" else None)  # type: ignore[arg-type]
        return desk, pipeline, ledger, signer

    yield make, source
    await pool.close()


async def create(desk: PayoutDesk, n: int) -> None:
    req = validate_payout_request(
        payout_id=f"p{n}", destination=Keypair.random().public_key, amount="1", asset="XLM",
        idempotency_key=f"k{n}", metadata={}, reference="", limits=AmountLimits(),
    )
    await desk.create(req, actor="test", correlation_id=f"c{n}")


async def one_channel(desk: PayoutDesk, pipeline: Pipeline, signer: FakeSigner) -> Keypair:
    """A channel account registered active with key id channel-0, which the fake signer's
    channel_key names for it."""
    channel = Keypair.random()
    await pipeline.sequences.ensure_source(channel.public_key, START_SEQ)
    await ChannelRegistry(desk.store.pool).add_active([(channel.public_key, "channel-0")],
                                                      actor="test")

    async def channel_key(account: str) -> str | None:
        return "channel-0" if account == channel.public_key else None

    signer.channel_key = channel_key  # type: ignore[method-assign]
    return channel


async def run_until_settled(pipeline: Pipeline, ledger: FakeLedger, rounds: int = 40) -> None:
    for _ in range(rounds):
        await pipeline.prepare_once()
        await pipeline.send_once()
        ledger.close()
        await pipeline.attempts.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
        await pipeline.confirm_once()


async def states(desk: PayoutDesk) -> dict[str, str]:
    rows = await desk.store.pool.fetch("SELECT payout_id, state FROM payouts")
    return {r["payout_id"]: r["state"] for r in rows}


async def attempts_by_payout(desk: PayoutDesk) -> dict[str, list[tuple[str, str | None]]]:
    rows = await desk.store.pool.fetch(
        """SELECT p.payout_id, a.status, a.proof FROM payout_attempts a
           JOIN payouts p ON p.id = a.payout_id ORDER BY p.payout_id, a.number"""
    )
    out: dict[str, list[tuple[str, str | None]]] = {}
    for r in rows:
        out.setdefault(r["payout_id"], []).append((r["status"], r["proof"]))
    return out


async def poll_now(pipeline: Pipeline) -> None:
    await pipeline.attempts.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
    await pipeline.confirm_once()




async def past_max_time(pipeline: Pipeline, ledger: FakeLedger) -> None:
    """A ledger closes after the max_time of what is in flight, then one more with a poll
    after each: the first answer shows a ledger closed past max_time, the next covers it (a
    getTransaction answer may report a latest ledger it did not search: core/proofs.py)."""
    for seconds in (60, 5):
        ledger.close(seconds=seconds)
        await poll_now(pipeline)
