"""The channel pool against real parts: PostgreSQL, the sandbox over HTTP (stellar-sdk's own
client), the signer service over mTLS.

The lifecycle round trips through the sandbox sign with a stand-in signing port holding keys
generated in the test (it fakes the signer port only, and the sandbox checks the signature
like a node would); the real signer is used for key roles and policy refusals here, and end
to end in test_channel_pool_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from stellar_sdk import Keypair, TransactionEnvelope

from payout_service.adapters.channel_store import ChannelConflict, ChannelRegistry
from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.sequences import Sequences, lease_channel
from payout_service.adapters.signer_client import (
    SignedEnvelope,
    SignerClient,
    SignerKey,
    SigningRefused,
)
from payout_service.app.channel_pool import ChannelKey, ChannelPool, KeyRoleMismatch
from payout_service.config import ChannelPoolConfig, SignerClientConfig
from payout_service.core.channels import ChannelState, KeyRole, OperationKind
from payout_service.core.errors import PreconditionFailed, ValidationFailed
from payout_service.main import RunningService
from signer_service.testing import running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.integration.test_live_against_sandbox import wait_for_state
from tests.integration.test_live_with_signer import ChannelWorld, channel_world, signer_env

XLM = 10_000_000
S = ChannelState
FRIENDBOT = 10_000 * XLM  # what the sandbox's friendbot gives a new account


@pytest.fixture
async def sandbox():
    async with RunningSandbox(ledger_interval=0.2, seed=14) as running:
        yield running


def g() -> str:
    return Keypair.random().public_key


async def states(db, accounts) -> list[str]:
    rows = await db.fetch(
        "SELECT account, state FROM channel_accounts WHERE account = ANY($1::text[])", accounts)
    found = {r["account"]: r["state"] for r in rows}
    return [found.get(a) for a in accounts]


# ---- the registry and the lease (PostgreSQL) -------------------------------------------------

async def test_the_lease_takes_only_active_channels_and_the_seed_never_undoes_a_retirement(pool):
    registry, sequences = ChannelRegistry(pool), Sequences(pool)
    a, b = g(), g()
    await registry.seed({a: "channel-a", b: "channel-b"})
    for account in (a, b):
        await sequences.ensure_source(account, 100)
    await registry.retire([a], merge=False, actor="test")
    # A restart seeds again: the table wins, a stays draining.
    await registry.seed({a: "channel-a", b: "channel-b"})
    assert await states(pool, [a, b]) == ["draining", "active"]
    async with pool.acquire() as conn, conn.transaction():
        assert await lease_channel(conn) == b
        # b is locked by this lease: a concurrent lease finds nothing (SKIP LOCKED).
        async with pool.acquire() as other, other.transaction():
            assert await lease_channel(other) is None
    # Nothing in flight on a: the drain check retires it; b stays active.
    assert await registry.retire_drained() == [a]
    assert await states(pool, [a, b]) == ["retired", "active"]
    events = await pool.fetch(
        "SELECT from_state, to_state, actor FROM channel_events WHERE account = $1 ORDER BY id", a)
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "active"), ("active", "draining"), ("draining", "retired")]


async def test_a_channel_not_yet_on_chain_is_never_leased(pool):
    registry = ChannelRegistry(pool)
    pending = g()
    await registry.add_pending([(pending, "channel-p")], 2 * XLM, actor="test")
    async with pool.acquire() as conn, conn.transaction():
        assert await lease_channel(conn) is None


async def test_the_census_counts_leasable_channels_and_names_sources_with_no_sequence_row(pool):
    """One query a build pass decides channel mode (core/sources.py): only active channels
    with a sequence row count; the payer and a seeded channel without a row are named so the
    preparer reads their sequence numbers from the chain first."""
    registry, sequences = ChannelRegistry(pool), Sequences(pool)
    payer, seeded, added, retired, pending = g(), g(), g(), g(), g()
    await registry.seed({seeded: "channel-s"})
    for account in (added, retired):
        await sequences.ensure_source(account, 100)
    await registry.add_active([(added, "channel-a"), (retired, "channel-r")], actor="test")
    await registry.retire([retired], merge=False, actor="test")
    await registry.add_pending([(pending, "channel-p")], 2 * XLM, actor="test")
    census = await sequences.census(payer)
    assert (census.leasable, census.free, census.unsynced) == (1, 1, (payer, seeded))
    for account in (payer, seeded):
        await sequences.ensure_source(account, 100)
    census = await sequences.census(payer)
    assert (census.leasable, census.free, census.unsynced) == (2, 2, ())
    await registry.retire([added, seeded], merge=False, actor="test")
    assert (await sequences.census(payer)).leasable == 0, "a retired pool: from the payer"


async def test_a_key_id_or_account_registered_differently_is_refused(pool):
    registry = ChannelRegistry(pool)
    a = g()
    await registry.add_pending([(a, "channel-1")], 2 * XLM, actor="test")
    assert await registry.add_pending([(a, "channel-1")], 2 * XLM, actor="test") == 0
    with pytest.raises(Exception, match="already belongs to channel"):
        await registry.add_pending([(g(), "channel-1")], 2 * XLM, actor="test")
    with pytest.raises(Exception, match="is registered with key id channel-1"):
        await registry.add_pending([(a, "channel-2")], 2 * XLM, actor="test")


async def test_a_registration_is_all_or_nothing(pool):
    """A clash on the last channel of a call leaves none of the call's channels behind, for
    channels created (pending) and added (active) alike."""
    registry = ChannelRegistry(pool)
    await registry.add_pending([(g(), "taken")], 2 * XLM, actor="test")
    for register in (
        lambda keys: registry.add_pending(keys, 2 * XLM, actor="test"),
        lambda keys: registry.add_active(keys, actor="test"),
    ):
        fresh = [g(), g()]
        with pytest.raises(ChannelConflict) as clash:
            await register([(fresh[0], "k-0"), (fresh[1], "k-1"), (g(), "taken")])
        assert clash.value.field == "key_id"
        assert await states(pool, fresh) == [None, None]
        assert await pool.fetchval(
            "SELECT count(*) FROM channel_events WHERE account = ANY($1::text[])", fresh) == 0
    assert await pool.fetchval("SELECT count(*) FROM channel_accounts") == 1


async def test_the_pool_loop_never_sees_half_a_registration(pool):
    """The loop builds one CreateAccount transaction from the pending channels it sees: a
    registration committed channel by channel let it fund the first ones in one transaction
    and the rest in another (seen in CI). A reader polling while 40 channels are registered
    sees none or all of them."""
    registry = ChannelRegistry(pool)
    keys = [(g(), f"channel-{n}") for n in range(40)]
    seen: set[int] = set()
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.add(await pool.fetchval(
                "SELECT count(*) FROM channel_accounts WHERE state = 'pending'"))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)
    assert await registry.add_pending(keys, 2 * XLM, actor="test") == 40
    done.set()
    await watcher
    seen.add(await pool.fetchval("SELECT count(*) FROM channel_accounts WHERE state = 'pending'"))
    assert seen == {0, 40}


async def test_the_database_refuses_two_live_lifecycle_transactions_on_one_source(pool):
    funding = g()
    await Sequences(pool).ensure_source(funding, 10)
    insert = """INSERT INTO channel_operations (id, kind, source_account, sequence, max_time,
                    envelope_xdr, tx_hash, fee_stroops, total_stroops, status)
                VALUES ($1, 'top_up', $2, $3, now(), 'x', $4, 100, 1, $5)"""
    await pool.execute(insert, uuid.uuid4(), funding, 11, "h1", "sent")
    await pool.execute(insert, uuid.uuid4(), funding, 10, "h0", "included")  # ended: fine
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, uuid.uuid4(), funding, 12, "h2", "built")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(insert, uuid.uuid4(), funding, 12, "h3", "dead")  # dead needs proof
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            """INSERT INTO channel_accounts (account, key_id, state, origin)
               VALUES ($1, 'k', 'funding', 'created')""", g())  # funding names no transaction
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            """INSERT INTO channel_accounts (account, key_id, state, origin)
               VALUES ('not-an-account', 'k2', 'active', 'added')""")


async def test_autosize_drains_down_to_the_minimum_and_brings_spare_channels_back_under_load(
    pool
):
    """The sizing loop within [min, max] on the real registry. The queue length is given
    here (how payouts queue is the pipeline's business): 0, then 3 payouts per ledger."""
    accounts = [g() for _ in range(4)]
    registry = ChannelRegistry(pool)
    await registry.seed({a: f"ch-{n}" for n, a in enumerate(accounts)})
    lifecycle = ChannelPool(
        ChannelPoolConfig(funding_account=g(), funding_key_id="funding", minimum=1, maximum=4,
                          close_time_ms=1000, drain_seconds=1),
        pool, network_passphrase="x", tx_window_seconds=30, ledger=None, signer=None,
    )
    queue = {"payouts": 0}

    async def queued() -> int:
        return queue["payouts"]
    lifecycle.queued_payouts = queued  # type: ignore[method-assign]
    await lifecycle.step()  # idle: drain to the minimum
    await lifecycle.step()  # nothing in flight: the drained ones retire
    counts = await registry.counts()
    assert (counts[S.ACTIVE], counts[S.RETIRED]) == (1, 3)
    queue["payouts"] = 3  # 3 per ledger, 1 per tx, 2 ledgers a cycle: 6 needed, max 4
    await lifecycle.step()
    counts = await registry.counts()
    assert (counts[S.ACTIVE], counts[S.RETIRED]) == (4, 0)
    plan, _, _ = await lifecycle.plan()
    assert (plan.needed, plan.target, plan.limited_by) == (6, 4, "maximum")


# ---- lifecycle transactions: sandbox + signer ---------------------------------------------

class KeySigningPort:
    """Stand-in for the signer port holding test-generated keys (main's signer refuses the
    lifecycle operations; see CHANNELS_SIGNER_NEEDS.md). The sandbox verifies the signature."""

    def __init__(self, passphrase: str, keys: dict[str, Keypair],
                 roles: dict[str, KeyRole] | None = None) -> None:
        self.passphrase, self.keys = passphrase, keys
        self.roles = roles or {}
        self.requests: list[str] = []

    async def sign_transaction(self, envelope_xdr, *, payout_id, attempt, correlation_id,
                               key_id=None) -> SignedEnvelope:
        self.requests.append(key_id)
        if key_id not in self.keys:
            raise SigningRefused(f"NOT_FOUND: no key {key_id}")
        env = TransactionEnvelope.from_xdr(envelope_xdr, self.passphrase)
        env.sign(self.keys[key_id])
        return SignedEnvelope(env.to_xdr(), env.hash_hex())

    def _role(self, key_id: str) -> KeyRole:
        default = KeyRole.FUNDING if key_id == "funding" else KeyRole.CHANNEL
        return self.roles.get(key_id, default)

    async def key(self, key_id: str) -> SignerKey:
        if key_id not in self.keys:
            raise SigningRefused(f"NOT_FOUND: no key {key_id}")
        return SignerKey(key_id, self.keys[key_id].public_key, self._role(key_id))

    async def list_keys(self) -> list[SignerKey]:
        return [await self.key(k) for k in self.keys]


def channel_pool(pool, sandbox, funding: str, signer, *, window: int = 30) -> ChannelPool:
    return ChannelPool(
        ChannelPoolConfig(funding_account=funding, funding_key_id="funding"), pool,
        network_passphrase=sandbox.passphrase, tx_window_seconds=window,
        ledger=LedgerGateway(sandbox.rpc_url), signer=signer,
    )


async def run_until(pool_: ChannelPool, done, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, "the lifecycle did not finish in time"
        await pool_.step()
        await asyncio.sleep(0.1)


async def test_a_top_up_lands_once_on_the_ledger_and_consumes_the_funding_sequence(
    pool, sandbox
):
    funding, channels = Keypair.random(), [Keypair.random() for _ in range(3)]
    await sandbox.fund(funding.public_key)
    for c in channels:
        await sandbox.fund(c.public_key)
    signer = KeySigningPort(sandbox.passphrase, {
        "funding": funding, **{f"ch-{n}": c for n, c in enumerate(channels)}})
    lifecycle = channel_pool(pool, sandbox, funding.public_key, signer)
    added = await lifecycle.add(
        [ChannelKey(f"ch-{n}", c.public_key) for n, c in enumerate(channels)], actor="test")
    assert [c.state for c in added] == [S.ACTIVE] * 3
    before = {c.public_key: (await sandbox.account(c.public_key))["balance_stroops"]
              for c in channels}
    funding_seq = int((await sandbox.account(funding.public_key))["sequence"])
    # Every channel is at the friendbot's balance: ask for a top-up of all three.
    wanted = await lifecycle.top_up(below=10_001 * XLM, to=10_002 * XLM)
    assert set(wanted) == {c.public_key for c in channels}

    async def included() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM channel_operations WHERE status = 'included'") == 1
    await run_until(lifecycle, included)
    after = {c.public_key: (await sandbox.account(c.public_key))["balance_stroops"]
             for c in channels}
    assert {a: after[a] - before[a] for a in after} == wanted, "each paid exactly once"
    assert int((await sandbox.account(funding.public_key))["sequence"]) == funding_seq + 1
    op = await pool.fetchrow("SELECT * FROM channel_operations")
    assert op["kind"] == "top_up" and op["total_stroops"] == sum(wanted.values())
    # The funding account's number is consumed: the next reservation is the one after it.
    assert await pool.fetchval("SELECT next_sequence FROM source_accounts WHERE account = $1",
                               funding.public_key) == funding_seq + 2
    assert signer.requests == ["funding"]
    # Nothing more wanted: further passes build nothing.
    await lifecycle.step()
    assert await pool.fetchval("SELECT count(*) FROM channel_operations") == 1
    await lifecycle.ledger.close()  # type: ignore[union-attr]


async def test_a_dropped_top_up_is_rebuilt_only_after_it_is_proven_dead(pool, sandbox):
    funding, channel = Keypair.random(), Keypair.random()
    for kp in (funding, channel):
        await sandbox.fund(kp.public_key)
    signer = KeySigningPort(sandbox.passphrase, {"funding": funding, "ch": channel})
    lifecycle = channel_pool(pool, sandbox, funding.public_key, signer, window=5)
    await lifecycle.add([ChannelKey("ch", channel.public_key)], actor="test")
    await sandbox.set_faults(drop_rate=1.0)
    await lifecycle.top_up(below=10_001 * XLM, to=10_005 * XLM)

    async def dead() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM channel_operations WHERE status = 'dead'") == 1
    await run_until(lifecycle, dead, within=30)
    op = await pool.fetchrow("SELECT * FROM channel_operations WHERE status = 'dead'")
    assert "NOT_FOUND" in op["proof"] and "max_time" in op["proof"]
    assert await pool.fetchval("SELECT count(*) FROM channel_operations") == 1, \
        "no second transaction while the first might still land"
    # Re-sent while it might still land, but at most once per closed ledger (core/pacing.py).
    sends = sum((await sandbox.submissions())[op["tx_hash"]].values())
    latest = (await sandbox.close_ledger())["sequence"] - 1
    assert 2 <= sends <= latest - op["submitted_ledger"] + 1
    # Its number is free again, and the channel can be topped up anew.
    await sandbox.reset_faults()
    await lifecycle.top_up(below=10_001 * XLM, to=10_005 * XLM)

    async def included() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM channel_operations WHERE status = 'included'") == 1
    await run_until(lifecycle, included)
    second = await pool.fetchrow("SELECT * FROM channel_operations WHERE status = 'included'")
    assert second["sequence"] == op["sequence"], "the dead transaction's number was reused"
    balance = (await sandbox.account(channel.public_key))["balance_stroops"]
    assert balance == 10_005 * XLM, "paid once"
    await lifecycle.ledger.close()  # type: ignore[union-attr]


async def test_a_build_whose_window_ended_before_signing_is_dropped_not_held(pool, sandbox):
    """The signer was away until the envelope's max_time passed: it never left us, so its
    number is given back and the top-up is built anew (no hold, nothing sent)."""
    funding, channel = Keypair.random(), Keypair.random()
    for kp in (funding, channel):
        await sandbox.fund(kp.public_key)
    signer = KeySigningPort(sandbox.passphrase, {"funding": funding, "ch": channel})
    lifecycle = channel_pool(pool, sandbox, funding.public_key, signer)
    await lifecycle.add([ChannelKey("ch", channel.public_key)], actor="test")
    await lifecycle.top_up(below=10_001 * XLM, to=10_002 * XLM)
    first = await lifecycle._build(OperationKind.TOP_UP, 100)
    assert first is not None
    # Time passes while the signer is away (moved back rather than waited for).
    await pool.execute("UPDATE channel_operations SET max_time = now() - interval '1 second'")
    (expired,) = await lifecycle.operations.live()
    await lifecycle._advance(expired)
    row = await pool.fetchrow("SELECT status, result_code FROM channel_operations")
    assert (row["status"], row["result_code"]) == ("rejected", "expired_unsigned")
    assert signer.requests == [], "an expired envelope is never signed"
    assert await pool.fetchval("SELECT held_reason FROM channel_accounts") is None
    assert await pool.fetchval(
        "SELECT next_sequence FROM source_accounts WHERE account = $1",
        funding.public_key) == first.sequence, "its number (the top one) is free again"
    await lifecycle.ledger.close()  # type: ignore[union-attr]


async def test_a_create_lands_once_and_the_new_channel_becomes_active(pool, sandbox):
    """CreateAccount from the funding account (the sandbox applies it as stellar-core does):
    included once, the new account holds exactly its starting balance, the funding account's
    number is consumed and the channel leaves `pending` for the pool."""
    funding, new = Keypair.random(), Keypair.random()
    await sandbox.fund(funding.public_key)
    signer = KeySigningPort(sandbox.passphrase, {"funding": funding, "new": new})
    lifecycle = channel_pool(pool, sandbox, funding.public_key, signer, window=5)
    await lifecycle.create([ChannelKey("new", new.public_key)], 5 * XLM, actor="test")
    assert await states(pool, [new.public_key]) == ["pending"]

    async def included() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM channel_operations WHERE status = 'included'") == 1
    await run_until(lifecycle, included, within=30)
    created = await sandbox.account(new.public_key)
    assert created is not None and created["balance_stroops"] == 5 * XLM
    op = await pool.fetchrow("SELECT * FROM channel_operations")
    assert op["kind"] == "create" and op["total_stroops"] == 5 * XLM
    for _ in range(3):
        await lifecycle.step()
    assert await states(pool, [new.public_key]) != ["pending"]
    assert await pool.fetchval("SELECT count(*) FROM channel_operations") == 1, "created once"
    await lifecycle.ledger.close()  # type: ignore[union-attr]


async def one_dead(pool) -> bool:
    return await pool.fetchval(
        "SELECT count(*) FROM channel_operations WHERE status = 'dead'") == 1


async def test_a_retired_channel_is_merged_once_into_the_funding_account_by_its_own_key(
    pool, sandbox
):
    """Retire with merge: drained, retired, then an AccountMerge with the channel as source,
    signed by the channel's key. The sandbox applies it as stellar-core does (MergeOpFrame):
    the channel account is deleted, its whole balance lands in the funding account, and the
    registry records the channel merged, with one operation only."""
    funding, channel = Keypair.random(), Keypair.random()
    for kp in (funding, channel):
        await sandbox.fund(kp.public_key)
    before = (await sandbox.balances(funding.public_key))["native"]
    signer = KeySigningPort(sandbox.passphrase, {"funding": funding, "ch": channel})
    lifecycle = channel_pool(pool, sandbox, funding.public_key, signer, window=5)
    await lifecycle.add([ChannelKey("ch", channel.public_key)], actor="test")
    await lifecycle.retire([channel.public_key], merge=True, actor="test")
    await lifecycle.step()  # drained (nothing in flight) -> retired -> merge built
    op = await pool.fetchrow("SELECT * FROM channel_operations")
    assert op["kind"] == "merge" and op["source_account"] == channel.public_key
    assert await states(pool, [channel.public_key]) == ["merging"]

    async def merged() -> bool:
        return await states(pool, [channel.public_key]) == ["merged"]
    await run_until(lifecycle, merged, within=30)
    assert signer.requests[0] == "ch", "a merge is signed by the channel's own key"
    op = await pool.fetchrow("SELECT * FROM channel_operations")
    assert op["status"] == "included"
    assert await sandbox.account(channel.public_key) is None, "the channel account is gone"
    # The channel paid the merge's fee (100) out of its balance, the rest moved.
    after = (await sandbox.balances(funding.public_key))["native"]
    assert after - before == 10_000 * XLM - 100
    await lifecycle.step()
    assert await pool.fetchval("SELECT count(*) FROM channel_operations") == 1, "merged once"
    await lifecycle.ledger.close()  # type: ignore[union-attr]


async def test_the_real_signer_vouches_for_key_roles_and_its_policy_refusal_holds_nothing(
    pool, sandbox, tmp_path
):
    """The real signer over mTLS (ListKeys / GetPublicKey report each key's role): a channel
    key must be of role channel and the funding key of role funding, else the pool refuses
    before anything is registered or built. A create the funding key's policy refuses
    (channel_funding: a starting balance over its bound) is refused before anything is sent;
    the channel goes back to pending, held, and the funding account's number is free again."""
    funding, new, plain = Keypair.random(), Keypair.random(), Keypair.random()
    await sandbox.fund(funding.public_key)
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, backend="hot",
        hot_secret=funding.secret, extra_keys={"new": new.secret, "plain": plain.secret},
        key_settings={
            "payout": {"role": "funding", "policy": {
                "payments": {"assets": ["native"]},
                "channel_funding": {"max_starting_balance_stroops": 2 * XLM,
                                    "max_top_up_stroops": XLM}}},
            "new": {"role": "channel", "policy": {"merge_into": funding.public_key}},
        },  # "plain" keeps the default role, payout
    ) as signer:
        client = SignerClient(SignerClientConfig(
            address=signer.address, ca_cert=str(signer.ca_cert),
            client_cert=str(signer.client_cert), client_key=str(signer.client_key),
            key_id=signer.key_id, server_name=None))

        def lifecycle_of(account: str, key_id: str) -> ChannelPool:
            return ChannelPool(
                ChannelPoolConfig(funding_account=account, funding_key_id=key_id),
                pool, network_passphrase=sandbox.passphrase, tx_window_seconds=30,
                ledger=LedgerGateway(sandbox.rpc_url), signer=client,
            )
        lifecycle = lifecycle_of(funding.public_key, signer.key_id)
        # The signer vouches for the key: a wrong address is refused before anything.
        with pytest.raises(ValidationFailed, match="not this account"):
            await lifecycle.create([ChannelKey("new", g())], XLM, actor="test")
        with pytest.raises(ValidationFailed) as refused:
            await lifecycle.create([ChannelKey("plain", plain.public_key)], XLM, actor="test")
        (violation,) = refused.value.violations
        assert violation.field == "channels[0].key_id"
        assert "role 'payout', a channel key needs role 'channel'" in violation.description
        with pytest.raises(PreconditionFailed) as wrong_funding:
            await lifecycle_of(plain.public_key, "plain").create(
                [ChannelKey("new", new.public_key)], XLM, actor="test")
        assert wrong_funding.value.subject == "PAYOUTS_CHANNEL_FUNDING_KEY_ID"
        assert "a funding key needs role 'funding'" in wrong_funding.value.description
        assert await pool.fetchval("SELECT count(*) FROM channel_accounts") == 0

        await lifecycle.create([ChannelKey("new", new.public_key)], 5 * XLM, actor="test")
        await lifecycle.check_key_roles(funding=True)  # one ListKeys: all as they should be
        await lifecycle.step()
        # A channel registered by the seed with a key of the wrong role: refused at start-up.
        await ChannelRegistry(pool).seed({plain.public_key: "plain"})
        with pytest.raises(KeyRoleMismatch, match="plain has role 'payout'"):
            await lifecycle.check_key_roles(funding=False)
        await client.close()
    op = await pool.fetchrow("SELECT * FROM channel_operations")
    assert op["status"] == "rejected" and op["result_code"] == "signer_refused"
    assert "channel_funding" in op["proof"]
    assert await states(pool, [new.public_key]) == ["pending"]
    held = await pool.fetchval(
        "SELECT held_reason FROM channel_accounts WHERE account = $1", new.public_key)
    assert held.startswith("signer refused: PERMISSION_DENIED")
    seq = int((await sandbox.account(funding.public_key))["sequence"])
    assert await pool.fetchval(
        "SELECT next_sequence FROM source_accounts WHERE account = $1",
        funding.public_key) == seq + 1, "the refused number was given back"
    await lifecycle.ledger.close()  # type: ignore[union-attr]


# ---- start-up: key roles -------------------------------------------------------------------

async def test_the_service_refuses_to_start_with_a_channel_key_of_another_role(
    payout_service_factory, sandbox, tmp_path
):
    """PAYOUTS_CHANNEL_ACCOUNTS names a key the signer holds as a paying key (role payout):
    the service stops at start-up with one configuration error naming the key."""
    from payout_service.config import ConfigError
    from tests.integration.test_live_with_signer import channel_world, signer_env

    world = await channel_world(sandbox, channels=1, payouts=0)
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=world.source.secret,
        extra_keys=world.channel_secrets, policy=world.policy,  # no role: payout
    ) as signer:
        with pytest.raises(ConfigError, match="channel-0 has role 'payout', a channel key"):
            await payout_service_factory(
                PAYOUT_SOURCE_ACCOUNT=world.source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
                STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
                **signer_env(signer), PAYOUTS_CHANNEL_ACCOUNTS=world.setting,
            )


# ---- the running service: add and retire without a restart ---------------------------------

@contextlib.asynccontextmanager
async def service_with_channel_keys(
    factory, sandbox, tmp_path, world: ChannelWorld, **env: str
) -> AsyncIterator[tuple[RunningService, Any, Any]]:
    """The live service against the real signer (mTLS, the world's paying and channel keys,
    role channel), and its payout and admin stubs over gRPC."""
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=world.source.secret,
        extra_keys=world.channel_secrets, policy=world.policy,
        key_settings=world.channel_settings,
    ) as signer:
        service = await factory(
            PAYOUT_SOURCE_ACCOUNT=world.source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", PAYOUTS_CHANNEL_POOL_INTERVAL_MS="100",
            **signer_env(signer), **env,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            yield (service, payout_pb2_grpc.PayoutServiceStub(channel),
                   admin_pb2_grpc.PayoutAdminServiceStub(channel))


async def test_a_channel_added_while_the_service_runs_is_used_and_a_retired_one_drains(
    payout_service_factory, sandbox, tmp_path
):
    world = await channel_world(sandbox, channels=2, payouts=6)
    (first_id, first), (second_id, second) = world.channels.items()
    async with service_with_channel_keys(
        payout_service_factory, sandbox, tmp_path, world,
        PAYOUTS_CHANNEL_ACCOUNTS=f"{first_id}={first.public_key}",
    ) as (service, stub, admin):
        async def pay(n: int) -> None:
            await stub.CreatePayout(pb.CreatePayoutRequest(
                payout_id=f"ch-{n}", destination=world.dests[n], amount="1", asset="XLM",
                idempotency_key=f"ch-{n}"))
            await wait_for_state(stub, f"ch-{n}", pb.PAYOUT_STATE_CONFIRMED)

        await pay(0)
        added = await admin.AddChannels(apb.AddChannelsRequest(channels=[
            apb.ChannelKey(key_id=second_id, public_key=second.public_key)]))
        assert added.channels[0].state == apb.CHANNEL_STATE_ACTIVE
        retired = await admin.RetireChannels(
            apb.RetireChannelsRequest(accounts=[first.public_key]))
        assert retired.channels[0].state in (apb.CHANNEL_STATE_DRAINING,
                                             apb.CHANNEL_STATE_RETIRED)
        for n in range(1, 4):
            await pay(n)
        listed = await admin.ListChannels(apb.ListChannelsRequest())
        by_account = {c.account: c for c in listed.channels}
        assert by_account[first.public_key].state == apb.CHANNEL_STATE_RETIRED
        assert by_account[second.public_key].state == apb.CHANNEL_STATE_ACTIVE
        # Unknown signer key: refused with the field named, nothing registered.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.AddChannels(apb.AddChannelsRequest(channels=[
                apb.ChannelKey(key_id="nope", public_key=g())]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "channels[0].key_id" in err.value.details()
    rows = await service.pool.fetch(
        """SELECT p.payout_id, a.source_account FROM payout_attempts a
           JOIN payouts p ON p.id = a.payout_id WHERE a.status = 'included'""")
    sources = {r["payout_id"]: r["source_account"] for r in rows}
    assert sources["ch-0"] == first.public_key
    assert {sources[f"ch-{n}"] for n in range(1, 4)} == {second.public_key}, \
        "the added channel carries the later payouts; the retired one takes none"
    assert await service.pool.fetchval("SELECT count(*) FROM channel_accounts") == 2


async def test_a_pool_added_at_run_time_without_a_seed_carries_payouts_and_a_retired_one_gives_them_back_to_the_payer(  # noqa: E501
    payout_service_factory, sandbox, tmp_path
):
    """No PAYOUTS_CHANNEL_ACCOUNTS: the registry alone switches channel mode. Before any
    channel, payouts go from the payer; once channels are added (AddChannels, no restart)
    they carry every payout and the payer's sequence number stays put; once all are retired,
    payouts settle from the payer again. Each destination is paid once (the sandbox's ledger)."""
    world = await channel_world(sandbox, channels=2, payouts=8)
    payer = world.source.public_key
    phases = {"before": range(0, 2), "pool": range(2, 6), "retired": range(6, 8)}
    async with service_with_channel_keys(payout_service_factory, sandbox, tmp_path, world
                                         ) as (service, stub, admin):
        async def pay(phase: str) -> None:
            for n in phases[phase]:
                await stub.CreatePayout(pb.CreatePayoutRequest(
                    payout_id=f"rt-{n}", destination=world.dests[n], amount="1",
                    asset="XLM", idempotency_key=f"rt-{n}"))
            for n in phases[phase]:
                await wait_for_state(stub, f"rt-{n}", pb.PAYOUT_STATE_CONFIRMED)

        async def payer_sequence() -> int:
            return int((await sandbox.account(payer))["sequence"])

        await pay("before")
        await admin.AddChannels(apb.AddChannelsRequest(channels=[
            apb.ChannelKey(key_id=key_id, public_key=kp.public_key)
            for key_id, kp in world.channels.items()]))
        before_pool = await payer_sequence()
        await pay("pool")
        assert await payer_sequence() == before_pool, \
            "with a pool, the payer is never a transaction's source"
        await admin.RetireChannels(apb.RetireChannelsRequest(
            accounts=[kp.public_key for kp in world.channels.values()]))
        await pay("retired")
    rows = await service.pool.fetch(
        """SELECT p.payout_id, a.source_account FROM payout_attempts a
           JOIN payouts p ON p.id = a.payout_id WHERE a.status = 'included'""")
    sources = {r["payout_id"]: r["source_account"] for r in rows}
    channels = {kp.public_key for kp in world.channels.values()}
    assert {sources[f"rt-{n}"] for n in phases["before"]} == {payer}
    assert {sources[f"rt-{n}"] for n in phases["pool"]} <= channels
    assert {sources[f"rt-{n}"] for n in phases["retired"]} == {payer}
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, XLM) for d in world.dests), "each destination paid exactly once"
    for dest in world.dests:
        assert (await sandbox.balances(dest))["native"] == FRIENDBOT + XLM


# ---- payoutctl channels ----------------------------------------------------------------------

async def test_payoutctl_channels_help_plan_and_clear_errors(payout_service):
    from tests.integration.test_operator_tools import payoutctl

    for action in ("list", "add", "create", "top-up", "retire", "plan"):
        code, out, err = await payoutctl("channels", action, "--help")
        assert code == 0, err
        for needed in ("--target", "PAYOUTCTL_TARGET", "--output", "operator.env"):
            assert needed in out, (action, needed)
    target = {"PAYOUTCTL_TARGET": f"127.0.0.1:{payout_service.port}"}
    code, out, err = await payoutctl("channels", "plan", "-o", "table",
                                     "--queued-per-ledger", "50", "--close-time-ms", "5000",
                                     env=target)
    assert code == 0, err
    assert "needed:       100" in out and "600 payouts/min" in out
    assert "create 100" in out, "an empty pool must create them all"
    code, out, err = await payoutctl("channels", "plan", "--payouts-per-tx", "101", env=target)
    assert code == 1 and "INVALID_ARGUMENT" in err and "payouts_per_transaction" in err
    code, out, err = await payoutctl("channels", "list", "-o", "json", env=target)
    assert code == 0 and '"channels"' not in out  # an empty pool: no channels listed
    # Build-only mode: the lifecycle needs a ledger and the signer; said in one line.
    code, out, err = await payoutctl("channels", "add", f"k1={g()}", env=target)
    assert code == 1 and "FAILED_PRECONDITION" in err and "live execution" in err
    assert "Traceback" not in err
    code, out, err = await payoutctl("channels", "create", "--starting-balance", "2", env=target)
    assert code == 2 and "name at least one channel key" in err
    code, out, err = await payoutctl("channels", "retire", "GNOPE", env=target)
    assert code == 1 and "INVALID_ARGUMENT" in err and "not a channel" in err


async def test_overlapping_registrations_in_opposite_orders_wait_instead_of_deadlocking(pool):
    """Two calls naming the same new channels in opposite orders: rows are inserted in
    account order, so one waits for the other and sees its channels (no DeadlockDetected)."""
    registry = ChannelRegistry(pool)
    keys = [(g(), f"overlap-{n}") for n in range(20)]
    first, second = await asyncio.gather(
        registry.add_pending(keys, 2 * XLM, actor="test"),
        registry.add_pending(list(reversed(keys)), 2 * XLM, actor="test"),
    )
    assert sorted((first, second)) == [0, 20]


async def test_a_key_id_taken_concurrently_is_named_as_the_key_ids_clash(pool):
    """The unique index on key_id refuses a second channel for one key even when the two
    registrations race past the pre-check: the clash names key_id, never account."""
    registry = ChannelRegistry(pool)
    results = await asyncio.gather(
        *(registry.add_pending([(g(), "contested")], 2 * XLM, actor="test") for _ in range(6)),
        return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert [r for r in results if r == 1] == [1]
    assert refused and all(isinstance(r, ChannelConflict) and r.field == "key_id"
                           for r in refused), refused
