"""Many payouts in one transaction, judged by the sandbox's ledger.

Real PostgreSQL, the real pipeline and ledger gateway, the sandbox over HTTP through
stellar-sdk, and the real signer-service over mTLS with the payer's key on a SoftHSM2 token
(tests/integration/batch_signing.py: its policy allows these batches and nothing else).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.embedded_postgres import free_port
from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore, create_pool
from payout_service.adapters.signer_client import SignerClient, SignerUnavailable
from payout_service.app.channel_pool import ChannelKey, ChannelPool
from payout_service.app.desk import PayoutDesk
from payout_service.app.pipeline import Pipeline
from payout_service.config import load_config
from payout_service.core.validation import AmountLimits, validate_payout_request
from signer_service.audit import read_records
from soroban_sandbox.server import SandboxConfig
from soroban_sandbox.testing import InProcessSandbox
from tests.integration.batch_signing import BatchSigner
from tests.integration.chain_proofs import assert_proofs_match_the_ledger
from tests.integration.test_live_with_signer import signer_env

XLM = 10_000_000


@pytest.fixture
async def sandbox() -> AsyncIterator[InProcessSandbox]:
    async with InProcessSandbox(SandboxConfig(ledger_interval=0.3)) as running:
        yield running


async def make_pipeline(
    database: str, sandbox: InProcessSandbox, keys: BatchSigner, **extra: str
) -> tuple[PayoutDesk, Pipeline]:
    await sandbox.fund(keys.payer)
    env = {
        **signer_env(keys.signer),
        "DATABASE_URL": database, "PAYOUT_SOURCE_ACCOUNT": keys.payer,
        "PAYOUTS_LIVE_EXECUTION": "true", "SOROBAN_RPC_URL": sandbox.rpc_url,
        "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase, "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_CONFIRM_POLL_MS": "50", "PAYOUTS_BATCH_MODE": "classic",
        # The chain's own PAYMENT_UNDERFUNDED blame is what these tests check, the path a
        # failed balance read falls back to: no payout is held for funds first.
        "PAYOUTS_FUNDS_CHECK": "false", **extra,
    }
    config = load_config(env)
    assert config.signer is not None
    pool = await create_pool(database)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    ledger = LedgerGateway(sandbox.rpc_url)
    desk = PayoutDesk(config, PayoutStore(pool), ledger)
    # As the service wires it: channel keys from the seed, else from the registry.
    signer = SignerClient(config.signer, channel_registry=ChannelRegistry(pool).key_of)
    return desk, Pipeline(config, desk.attempts, ledger, signer)


async def shut(desk: PayoutDesk, pipeline: Pipeline) -> None:
    assert pipeline.signer is not None
    await pipeline.signer.close()
    await pipeline.ledger.close()
    await desk.store.pool.close()


async def signatures(keys: BatchSigner, desk: PayoutDesk) -> list[dict[str, Any]]:
    """The signer's audit records of this test's transactions (one signer serves the module)."""
    hashes = {r["tx_hash"] for r in await desk.store.pool.fetch(
        "SELECT DISTINCT tx_hash FROM payout_attempts")}
    return [r for _, r, _ in read_records(keys.signer.audit_log)
            if r and r.get("tx_hash") in hashes]


async def create(desk: PayoutDesk, key: str, destination: str, amount: str, asset: str) -> None:
    request = validate_payout_request(
        payout_id=key, destination=destination, amount=amount, asset=asset,
        idempotency_key=key, metadata={}, reference="", limits=AmountLimits(),
    )
    await desk.create(request, actor="test", correlation_id=key)


async def settle(desk: PayoutDesk, pipeline: Pipeline, rounds: int = 60) -> dict[str, Any]:
    """Runs the three loops until no payout is in flight; returns {payout_id: row}."""
    for _ in range(rounds):
        await pipeline.prepare_once()
        await pipeline.send_once()
        await asyncio.sleep(0.35)  # a ledger closes
        await desk.store.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
        await desk.store.pool.execute(
            "UPDATE payouts SET next_attempt_at = now() WHERE needs_attempt")
        await pipeline.confirm_once()
        rows = await desk.store.pool.fetch(
            "SELECT payout_id, state, failure_code, attempt_count FROM payouts")
        if all(r["state"] in ("CONFIRMED", "FAILED", "CANCELLED") for r in rows):
            return {r["payout_id"]: r for r in rows}
    raise AssertionError(f"payouts not settled: {[dict(r) for r in rows]}")


async def test_a_batch_pays_the_innocent_once_and_fails_the_guilty_with_their_reason(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    usd_holder, no_trust, existing = (Keypair.random() for _ in range(3))
    for address in (batch_signer.issuer.public_key, usd_holder.public_key,
                    no_trust.public_key, existing.public_key):
        await sandbox.fund(address)
    usd = batch_signer.usd
    await sandbox.open_trustline(batch_signer.payer, usd)
    await sandbox.issue(usd, batch_signer.payer, 100 * XLM)
    await sandbox.open_trustline(usd_holder.public_key, usd)
    new_account, too_small, missing_usd = (Keypair.random().public_key for _ in range(3))
    await create(desk, "xlm-existing", existing.public_key, "3", "XLM")
    await create(desk, "xlm-new-account", new_account, "5", "XLM")
    await create(desk, "xlm-below-reserve", too_small, "0.5", "XLM")
    await create(desk, "usd-missing-destination", missing_usd, "1", usd)
    await create(desk, "usd-no-trustline", no_trust.public_key, "1", usd)
    await create(desk, "usd-payer-underfunded", usd_holder.public_key, "150", usd)
    await create(desk, "usd-ok", usd_holder.public_key, "10", usd)
    before = await sandbox.balances(existing.public_key)

    rows = await settle(desk, pipeline)

    assert {k: (r["state"], r["failure_code"]) for k, r in rows.items()} == {
        "xlm-existing": ("CONFIRMED", None),
        "xlm-new-account": ("CONFIRMED", None),
        "xlm-below-reserve": ("FAILED", "DESTINATION_BELOW_RESERVE"),
        "usd-missing-destination": ("FAILED", "DESTINATION_MISSING"),
        "usd-no-trustline": ("FAILED", "PAYMENT_NO_TRUST"),
        "usd-payer-underfunded": ("FAILED", "PAYMENT_UNDERFUNDED"),
        "usd-ok": ("CONFIRMED", None),
    }
    # The ledger: each innocent payout paid exactly once, nothing to the guilty.
    assert (await sandbox.balances(existing.public_key))["native"] == before["native"] + 3 * XLM
    assert (await sandbox.balances(new_account))["native"] == 5 * XLM
    assert (await sandbox.balances(usd_holder.public_key))[usd] == 10 * XLM
    assert (await sandbox.balances(no_trust.public_key)).get(usd) is None
    assert await sandbox.balances(too_small) == {} and await sandbox.balances(missing_usd) == {}
    # Two transactions: the first batch failed on chain (atomic), the innocent were
    # re-batched together without spending an attempt of their own.
    batches = await desk.store.pool.fetch(
        """SELECT batch_id, count(*) AS payouts, min(status) AS status, min(result_code) AS code
           FROM payout_attempts GROUP BY batch_id ORDER BY min(created_at)""")
    assert [(b["payouts"], b["status"]) for b in batches] == [
        (5, "failed_on_chain"), (3, "included")]
    signed = await signatures(batch_signer, desk)
    assert [(r["decision"], r["key_id"]) for r in signed] == [("allow", "payout")] * 2
    confirmed_tx = await desk.store.pool.fetch(
        "SELECT DISTINCT tx_hash FROM payout_attempts WHERE status = 'included'")
    assert len(confirmed_tx) == 1
    landed = await sandbox.transaction(confirmed_tx[0]["tx_hash"])
    assert landed is not None
    # Each confirmed payout's proof is what the ledger says of its operation.
    proofs = await assert_proofs_match_the_ledger(
        desk.store.pool, sandbox.rpc_url, ["usd-ok", "xlm-existing", "xlm-new-account"])
    assert sorted(p["op_index"] for p in proofs) == [0, 1, 2]
    assert {p["treasury"] for p in proofs} == {batch_signer.payer}
    assert all(p["event_id"] for p in proofs if p["payout_id"] != "xlm-new-account")
    await shut(desk, pipeline)


async def test_the_database_refuses_a_payout_in_two_live_batches(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    destination = Keypair.random()
    await sandbox.fund(destination.public_key)
    await create(desk, "one", destination.public_key, "1", "XLM")
    await pipeline.prepare_once()
    row = await desk.store.pool.fetchrow(
        "SELECT * FROM payout_attempts WHERE status = 'signed'")
    assert row is not None and row["batch_id"] is not None
    with pytest.raises(asyncpg.UniqueViolationError, match="one_live_per_payout"):
        await desk.store.pool.execute(
            """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                   min_time, max_time, envelope_xdr, tx_hash, fee_stroops, status, batch_id,
                   op_index)
               SELECT payout_id, number + 1, source_account, sequence + 1, min_time, max_time,
                      envelope_xdr, 'other', fee_stroops, 'built', gen_random_uuid(), 0
               FROM payout_attempts WHERE payout_id = $1""",
            row["payout_id"],
        )
    await shut(desk, pipeline)


async def test_cancelling_a_payout_of_a_built_batch_rebuilds_the_batch_without_it(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    dests = [Keypair.random().public_key for _ in range(3)]
    for n, dest in enumerate(dests):
        await create(desk, f"p{n}", dest, "2", "XLM")
    await pipeline.prepare_once()  # one batch of three, signed, not sent
    cancelled = await desk.store.pool.fetchval("SELECT id FROM payouts WHERE payout_id = 'p1'")
    await desk.attempts.cancel(cancelled, actor="test", reason="changed my mind")
    rows = await settle(desk, pipeline)
    assert {k: r["state"] for k, r in rows.items()} == {
        "p0": "CONFIRMED", "p1": "CANCELLED", "p2": "CONFIRMED"}
    assert [await sandbox.balances(d) for d in dests] == [
        {"native": 2 * XLM}, {}, {"native": 2 * XLM}]
    statuses = await desk.store.pool.fetch(
        "SELECT status, count(*) AS n FROM payout_attempts GROUP BY status ORDER BY status")
    assert {r["status"]: r["n"] for r in statuses} == {
        "cancelled": 1, "included": 2, "superseded": 2}
    await shut(desk, pipeline)


async def test_contract_batches_pay_through_one_call_and_isolate_a_failing_payout(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    contract = (await sandbox.config())["payout_contract_id"]
    # A written-entry limit of 4 per transaction: the payer + 3 destinations per batch.
    desk, pipeline = await make_pipeline(
        fresh_database, sandbox, batch_signer, PAYOUTS_BATCH_MODE="contract",
        PAYOUT_CONTRACT_ID=contract, PAYOUTS_TX_MAX_WRITE_ENTRIES="4")
    assert pipeline.config.max_payouts_per_tx == 3
    dests = [Keypair.random() for _ in range(4)]
    for dest in dests:
        await sandbox.fund(dest.public_key)
    before = [(await sandbox.balances(d.public_key))["native"] for d in dests]
    for n, dest in enumerate(dests):
        await create(desk, f"ok{n}", dest.public_key, str(n + 1), "XLM")
    missing = Keypair.random().public_key
    await create(desk, "missing", missing, "1", "XLM")

    rows = await settle(desk, pipeline)

    assert {k: (r["state"], r["failure_code"]) for k, r in rows.items()} == {
        **{f"ok{n}": ("CONFIRMED", None) for n in range(4)},
        "missing": ("FAILED", "simulation_failed")}
    after = [(await sandbox.balances(d.public_key))["native"] for d in dests]
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        (n + 1) * XLM for n in range(4)]
    assert await sandbox.balances(missing) == {}
    sizes = await desk.store.pool.fetch(
        """SELECT count(*) AS n FROM payout_attempts WHERE status = 'included'
           GROUP BY tx_hash ORDER BY n DESC""")
    assert [s["n"] for s in sizes] == [3, 1]
    proofs = await assert_proofs_match_the_ledger(
        desk.store.pool, sandbox.rpc_url, [f"ok{n}" for n in range(4)], contract_batch=True)
    assert all(p["event_id"] and p["op_index"] == 0 for p in proofs)
    await shut(desk, pipeline)


async def test_a_batch_broken_up_before_signing_is_rebuilt_never_signed_as_built(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    """Re-sync after txBAD_SEQ may supersede only some members of a built batch (it skips
    payouts another worker holds). The rest must never be signed and sent as built: that
    envelope would pay the superseded payout too, which is re-batched elsewhere."""
    from payout_service.adapters.work_queues import supersede_member

    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    dests = [Keypair.random().public_key for _ in range(3)]
    for n, dest in enumerate(dests):
        await create(desk, f"p{n}", dest, "2", "XLM")
    signer, config = pipeline.signer, pipeline.config.signer
    assert signer is not None and config is not None
    # The signer is down (nothing listens at its address) while the batch is built.
    pipeline.signer = SignerClient(dataclasses.replace(config,
                                                       address=f"127.0.0.1:{free_port()}"))
    with pytest.raises(SignerUnavailable):
        await pipeline.prepare_once()  # one batch of three, built, not signed
    await pipeline.signer.close()
    pipeline.signer = signer
    async with desk.store.pool.acquire() as conn, conn.transaction():
        member = await conn.fetchrow(
            "SELECT payout_id, number FROM payout_attempts WHERE op_index = 1")
        await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", member["payout_id"])
        await supersede_member(conn, member["payout_id"], member["number"])
    rows = await settle(desk, pipeline)
    assert {k: r["state"] for k, r in rows.items()} == {f"p{n}": "CONFIRMED" for n in range(3)}
    assert [await sandbox.balances(d) for d in dests] == [{"native": 2 * XLM}] * 3
    first = await desk.store.pool.fetch(
        "SELECT status FROM payout_attempts WHERE number = 1 ORDER BY op_index")
    assert [r["status"] for r in first] == ["superseded"] * 3, "the broken batch never left"
    await shut(desk, pipeline)


async def test_channel_batches_carry_the_channel_key_and_the_payer_signatures(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    """A channel account is the batch's transaction source and the payer every operation's:
    the signer's policy lets the channel key sign it (deny by default otherwise), and the
    sandbox includes it only with both signatures."""
    desk, pipeline = await make_pipeline(
        fresh_database, sandbox, batch_signer, PAYOUTS_MAX_PAYOUTS_PER_TX="2",
        PAYOUTS_CHANNEL_ACCOUNTS=batch_signer.channel_setting())
    assert pipeline.config.signer is not None
    await ChannelRegistry(desk.store.pool).seed(dict(pipeline.config.signer.channel_keys))
    for address in batch_signer.channels.values():
        await sandbox.fund(address)
    dests = [Keypair.random().public_key for _ in range(4)]
    for n, dest in enumerate(dests):
        await sandbox.fund(dest)
        await create(desk, f"ch{n}", dest, "3", "XLM")
    before = [(await sandbox.balances(d))["native"] for d in dests]

    rows = await settle(desk, pipeline)

    assert {k: r["state"] for k, r in rows.items()} == {f"ch{n}": "CONFIRMED" for n in range(4)}
    after = [(await sandbox.balances(d))["native"] for d in dests]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3 * XLM] * 4
    included = await desk.store.pool.fetch(
        "SELECT DISTINCT tx_hash, source_account FROM payout_attempts WHERE status = 'included'")
    assert {r["source_account"] for r in included} <= set(batch_signer.channels.values())
    by_tx: dict[str, list[str]] = {}
    for record in await signatures(batch_signer, desk):
        assert record["decision"] == "allow", record
        by_tx.setdefault(record["tx_hash"], []).append(record["key_id"])
    key_of = {address: key_id for key_id, address in batch_signer.channels.items()}
    for row in included:  # the channel's key, then the payer's
        assert by_tx[row["tx_hash"]] == [key_of[row["source_account"]], "payout"]
    await shut(desk, pipeline)


@pytest.mark.parametrize("mode", ["classic", "contract"])
async def test_a_pool_switched_on_and_off_while_batches_are_in_flight_pays_each_once(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner, mode: str
) -> None:
    """No PAYOUTS_CHANNEL_ACCOUNTS. Batches go from the payer; channels added to the registry
    (ChannelPool.add, as AddChannels does) while the payer's batch is still unconfirmed carry
    the next ones (signed by the channel's key from the registry, then the payer's); the
    pool retired while those are in flight hands the next batch back to the payer. Each payout
    is paid once, and the payer's sequence number moved by its own transactions only."""
    extra = {"PAYOUTS_MAX_PAYOUTS_PER_TX": "2"}
    if mode == "contract":
        extra |= {"PAYOUTS_BATCH_MODE": "contract",
                  "PAYOUT_CONTRACT_ID": (await sandbox.config())["payout_contract_id"]}
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer, **extra)
    for address in batch_signer.channels.values():
        await sandbox.fund(address)
    phases = {"before": range(0, 2), "pool": range(2, 6), "retired": range(6, 8)}
    dests = [Keypair.random().public_key for _ in range(8)]
    for dest in dests:
        await sandbox.fund(dest)
    before = [(await sandbox.balances(d))["native"] for d in dests]

    async def payer_sequence() -> int:
        account = await sandbox.account(batch_signer.payer)
        assert account is not None
        return int(account["sequence"])

    async def build_and_send(phase: str) -> set[str]:
        """One prepare and one send pass, no confirmation: the sources the phase's batches
        were built from."""
        for n in phases[phase]:
            await create(desk, f"rt{n}", dests[n], "2", "XLM")
        await pipeline.prepare_once()
        await pipeline.send_once()
        rows = await desk.store.pool.fetch(
            """SELECT p.state, a.source_account FROM payouts p JOIN payout_attempts a
                 ON a.payout_id = p.id AND a.number = p.attempt_count
               WHERE p.payout_id = ANY($1::text[])""", [f"rt{n}" for n in phases[phase]])
        assert {r["state"] for r in rows} == {"SUBMITTED"}, "all built and sent in one pass"
        return {r["source_account"] for r in rows}

    payer_at = await payer_sequence()
    assert await build_and_send("before") == {batch_signer.payer}
    channels = ChannelPool(
        pipeline.config.channel_pool, desk.store.pool,
        network_passphrase=pipeline.config.network_passphrase,
        tx_window_seconds=pipeline.config.tx_window_seconds, ledger=pipeline.ledger,
        signer=pipeline.signer)
    await channels.add([ChannelKey(key_id, address)
                        for key_id, address in batch_signer.channels.items()], actor="test")
    assert await build_and_send("pool") == set(batch_signer.channels.values()), \
        "one batch on each added channel"
    await channels.registry.retire(list(batch_signer.channels.values()), merge=False,
                                   actor="test")
    assert await build_and_send("retired") == {batch_signer.payer}
    rows = await settle(desk, pipeline)

    assert {k: r["state"] for k, r in rows.items()} == {f"rt{n}": "CONFIRMED" for n in range(8)}
    after = [(await sandbox.balances(d))["native"] for d in dests]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2 * XLM] * 8, \
        "each paid once"
    included = await desk.store.pool.fetch(
        "SELECT DISTINCT tx_hash, source_account FROM payout_attempts WHERE status = 'included'")
    from_payer = [r for r in included if r["source_account"] == batch_signer.payer]
    assert await payer_sequence() == payer_at + len(from_payer), \
        "the payer's sequence number moved by its own transactions only"
    by_tx: dict[str, list[str]] = {}
    for record in await signatures(batch_signer, desk):
        assert record["decision"] == "allow", record
        by_tx.setdefault(record["tx_hash"], []).append(record["key_id"])
    key_of = {address: key_id for key_id, address in batch_signer.channels.items()}
    for row in included:
        source = row["source_account"]
        assert by_tx[row["tx_hash"]] == ([key_of[source], "payout"] if source in key_of
                                         else ["payout"])
    await shut(desk, pipeline)


async def lock_waiters(pool: Any, at_least: int) -> None:
    """Returns once `at_least` sessions of this database wait for a row lock."""
    while True:
        waiting = await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'""")
        if waiting >= at_least:
            return
        await asyncio.sleep(0.01)


async def test_two_cancels_inside_one_batch_both_cancel_and_the_third_is_paid(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    """Two callers cancel two members of one signed, unsent batch at once. The interleaving
    is forced (a third session holds the middle member until both cancels wait), so the
    outcome does not depend on timing."""
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    dests = [Keypair.random().public_key for _ in range(3)]
    for n, dest in enumerate(dests):
        await create(desk, f"p{n}", dest, "2", "XLM")
    await pipeline.prepare_once()  # one batch of three, signed, not sent
    pool = desk.store.pool
    rows = await pool.fetch("SELECT id, payout_id FROM payouts ORDER BY id")
    low, middle, high = (r["payout_id"] for r in rows)
    low_id, middle_id, high_id = (r["id"] for r in rows)
    dest_of = {f"p{n}": dest for n, dest in enumerate(dests)}
    try:
        async with pool.acquire() as holder:
            held = holder.transaction()
            await held.start()
            await holder.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", middle_id)
            first = asyncio.create_task(desk.attempts.cancel(low_id, actor="a", reason="a"))
            await lock_waiters(pool, 1)  # holds `low`, waits for `middle`
            second = asyncio.create_task(desk.attempts.cancel(high_id, actor="b", reason="b"))
            await lock_waiters(pool, 2)  # holds `high`, waits for `low`
            await held.rollback()
        await asyncio.gather(first, second)
        settled = await settle(desk, pipeline)
    finally:
        await shut(desk, pipeline)
    assert {k: r["state"] for k, r in settled.items()} == {
        low: "CANCELLED", middle: "CONFIRMED", high: "CANCELLED"}
    assert [await sandbox.balances(dest_of[k]) for k in (low, middle, high)] == [
        {}, {"native": 2 * XLM}, {}]
