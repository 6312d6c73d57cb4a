"""Send pacing (core/pacing.py) against the sandbox over HTTP: a dropped transaction is re-sent
once per closed ledger, not on every confirm poll, and still lands; more signed classic batches
than the network's queue holds are held, signed, and sent as room frees up, never refused nor
banned, each payout paid once; one held past its max_time is rebuilt, never sent.

Real PostgreSQL, the real pipeline and ledger gateway, the real signer-service over mTLS with
the keys on a SoftHSM2 token. The sandbox counts every sendTransaction answer per hash
(/admin/submissions): that is what the re-sends are judged by.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from stellar_sdk import Keypair

from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.app.desk import PayoutDesk
from payout_service.app.pipeline import Pipeline
from soroban_sandbox.server import SandboxConfig
from soroban_sandbox.testing import InProcessSandbox
from tests.integration.batch_signing import BatchSigner, running_batch_signer
from tests.integration.test_batch_payouts import XLM, create, make_pipeline, settle, shut

CHANNELS = 6
PER_TX = 10
OPS_PER_LEDGER = 10  # the sandbox's classic limit: its queue holds 20 operations, 2 batches


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wide_signer(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BatchSigner]:
    """The batch signer with six channel keys on its token: enough transaction sources to
    offer the network more than its queue holds."""
    async with running_batch_signer(tmp_path_factory.mktemp("wide-signer"),
                                    channels_on_token=CHANNELS) as running:
        yield running


async def poll_now(desk: PayoutDesk, pipeline: Pipeline) -> None:
    await desk.store.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
    await pipeline.confirm_once()


async def sends(sandbox: InProcessSandbox, tx_hash: str) -> int:
    return sum((await sandbox.submissions()).get(tx_hash, {}).values())


async def test_a_dropped_batch_is_re_sent_once_per_closed_ledger_and_still_lands(
    fresh_database: str, wide_signer: BatchSigner
) -> None:
    # Ledgers close only when the test says so: "per ledger" and "per poll" are told apart
    # without any timing.
    async with InProcessSandbox(SandboxConfig(ledger_interval=0.3), stall_ledgers=True) as sandbox:
        desk, pipeline = await make_pipeline(fresh_database, sandbox, wide_signer)
        dest = Keypair.random().public_key
        await sandbox.fund(dest)
        before = (await sandbox.balances(dest))["native"]
        await create(desk, "drop1", dest, "2", "XLM")
        await sandbox.set_faults(drop_rate=1.0)
        await pipeline.prepare_once()
        await pipeline.send_once()
        tx_hash = await desk.store.pool.fetchval("SELECT tx_hash FROM payout_attempts")
        assert await sends(sandbox, tx_hash) == 1
        for _ in range(6):
            await poll_now(desk, pipeline)
        assert await sends(sandbox, tx_hash) == 1, "re-sent on a poll, no ledger closed"
        for closed in range(1, 4):
            await sandbox.close_ledger()
            for _ in range(4):
                await poll_now(desk, pipeline)
            assert await sends(sandbox, tx_hash) == 1 + closed, "one re-send per closed ledger"
        polls = await desk.store.pool.fetchval("SELECT poll_count FROM payout_attempts")
        assert polls == 18

        await sandbox.set_faults(drop_rate=0.0)
        await sandbox.close_ledger()
        await poll_now(desk, pipeline)  # this re-send is kept
        await sandbox.close_ledger()  # and included
        await poll_now(desk, pipeline)
        row = await desk.store.pool.fetchrow("SELECT state FROM payouts")
        assert row["state"] == "CONFIRMED"
        assert (await sandbox.submissions())[tx_hash] == {"PENDING": 5}
        assert (await sandbox.balances(dest))["native"] - before == 2 * XLM, "paid once"
        await shut(desk, pipeline)


async def channel_pipeline(database: str, sandbox: InProcessSandbox, keys: BatchSigner,
                           **extra: str) -> tuple[PayoutDesk, Pipeline]:
    desk, pipeline = await make_pipeline(
        database, sandbox, keys, PAYOUTS_MAX_PAYOUTS_PER_TX=str(PER_TX),
        PAYOUTS_CHANNEL_ACCOUNTS=keys.channel_setting(), **extra)
    assert pipeline.config.signer is not None
    await ChannelRegistry(desk.store.pool).seed(dict(pipeline.config.signer.channel_keys))
    for address in keys.channels.values():
        await sandbox.fund(address)
    return desk, pipeline


async def fund_and_create(desk: PayoutDesk, sandbox: InProcessSandbox, count: int
                          ) -> dict[str, int]:
    """`count` payouts of 1 XLM to funded accounts; returns their balances before."""
    before = {}
    for n in range(count):
        dest = Keypair.random().public_key
        await sandbox.fund(dest)
        before[dest] = (await sandbox.balances(dest))["native"]
        await create(desk, f"q{n}", dest, "1", "XLM")
    return before


async def paid_once(sandbox: InProcessSandbox, before: dict[str, int]) -> None:
    after = {d: (await sandbox.balances(d))["native"] for d in before}
    assert {d: after[d] - before[d] for d in before} == {d: XLM for d in before}


async def queue_refusals(sandbox: InProcessSandbox) -> dict[str, dict[str, int]]:
    """Transactions the sandbox's queue limit refused (txINSUFFICIENT_FEE: the lane is full
    and the newcomer does not outbid; it is banned) or told to come back later (banned).
    Other refusals are not about the queue: a re-send racing the ledger that includes it is
    told txBAD_SEQ (the pipeline then finds it included), one that waited out its max_time
    txTOO_LATE."""
    return {h: c for h, c in (await sandbox.submissions()).items()
            if c.get("ERROR txINSUFFICIENT_FEE") or c.get("TRY_AGAIN_LATER")}


async def test_more_signed_classic_batches_than_the_queue_holds_wait_and_pay_once(
    fresh_database: str, wide_signer: BatchSigner
) -> None:
    config = SandboxConfig(ledger_interval=0.3, classic_ops_per_ledger=OPS_PER_LEDGER)
    async with InProcessSandbox(config) as sandbox:
        desk, pipeline = await channel_pipeline(fresh_database, sandbox, wide_signer)
        before = await fund_and_create(desk, sandbox, CHANNELS * PER_TX)
        await pipeline.prepare_once()
        signed = await desk.store.pool.fetchval(
            "SELECT count(DISTINCT batch_id) FROM payout_attempts WHERE status = 'signed'")
        assert signed == CHANNELS, "six batches signed at once, three times the queue"
        await pipeline.send_once()
        # The capacity came from the ledger header (maxTxSetSize), not from configuration.
        assert await pipeline.queues.classic_ops_in_flight() == 2 * OPS_PER_LEDGER
        held = await desk.store.pool.fetchval(
            "SELECT count(DISTINCT batch_id) FROM payout_attempts WHERE status = 'signed'")
        assert held == CHANNELS - 2, "the rest are held, signed"

        # Settle, checking the send stage never has more in flight than the queue holds.
        for _ in range(60):
            await pipeline.prepare_once()
            await pipeline.send_once()
            assert await pipeline.queues.classic_ops_in_flight() <= 2 * OPS_PER_LEDGER
            await asyncio.sleep(0.35)  # a ledger closes
            await desk.store.pool.execute(
                "UPDATE payouts SET next_attempt_at = now() WHERE needs_attempt")
            await poll_now(desk, pipeline)
            if await _settled(desk):
                break
        assert await _settled(desk), "payouts left unsettled"
        assert await queue_refusals(sandbox) == {}, "refused or banned by the queue limit"
        assert await sandbox.evictions() == []
        await paid_once(sandbox, before)
        await shut(desk, pipeline)


async def _settled(desk: PayoutDesk) -> bool:
    states = {r["state"] for r in await desk.store.pool.fetch("SELECT state FROM payouts")}
    return states == {"CONFIRMED"}


async def test_a_batch_held_past_its_max_time_is_rebuilt_never_sent_and_pays_once(
    fresh_database: str, wide_signer: BatchSigner
) -> None:
    config = SandboxConfig(ledger_interval=0.3, classic_ops_per_ledger=OPS_PER_LEDGER)
    async with InProcessSandbox(config, stall_ledgers=True) as sandbox:
        desk, pipeline = await channel_pipeline(fresh_database, sandbox, wide_signer,
                                                PAYOUTS_TX_WINDOW_SECONDS="5")
        before = await fund_and_create(desk, sandbox, CHANNELS * PER_TX)
        await pipeline.prepare_once()
        await pipeline.send_once()
        held = {r["tx_hash"] for r in await desk.store.pool.fetch(
            "SELECT DISTINCT tx_hash FROM payout_attempts WHERE status = 'signed'")}
        assert len(held) == CHANNELS - 2
        # Ledgers close (one batch fits each) until one closes at the held ones' max_time.
        max_time = await desk.store.pool.fetchval(
            "SELECT max(extract(epoch FROM max_time))::bigint FROM payout_attempts")
        while (await sandbox.close_ledger())["close_time"] < max_time:
            pass
        await pipeline.send_once()
        rows = await desk.store.pool.fetch(
            "SELECT status, count(*) AS n FROM payout_attempts WHERE tx_hash = ANY($1::text[])"
            " GROUP BY status", list(held))
        assert {r["status"]: r["n"] for r in rows} == {"superseded": len(held) * PER_TX}
        await sandbox.set_faults(stall_ledgers=False)
        await settle(desk, pipeline)
        assert await _settled(desk)
        submitted = await sandbox.submissions()
        assert not held & set(submitted), "an envelope held past its max_time was sent"
        assert await queue_refusals(sandbox) == {}, "refused or banned by the queue limit"
        await paid_once(sandbox, before)
        # The numbers the held ones gave back were reused, or are the next a channel's next
        # transaction takes (released, or next_sequence lowered to them): none is stranded.
        given_back = {(r["source_account"], r["sequence"]) for r in await desk.store.pool.fetch(
            "SELECT DISTINCT source_account, sequence FROM payout_attempts"
            " WHERE status = 'superseded' AND tx_hash = ANY($1::text[])", list(held))}
        reused = {(r["source_account"], r["sequence"]) for r in await desk.store.pool.fetch(
            "SELECT DISTINCT source_account, sequence FROM payout_attempts"
            " WHERE status = 'included'")}
        free = {(r["account"], r["sequence"]) for r in await desk.store.pool.fetch(
            """SELECT account, sequence FROM released_sequences
               UNION SELECT account, next_sequence FROM source_accounts""")}
        assert len(given_back) == len(held) and given_back <= reused | free
        await shut(desk, pipeline)
