"""Every holder of a sequence number, on any source, counts in every re-sync and release:
payout attempts and channel lifecycle transactions alike (migration 130's sequence_holders).

Real PostgreSQL; the ledger and signer ports faked as in test_pipeline_with_fake_ledger.py.
"""

from __future__ import annotations

import asyncpg
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.sequences import release_sequence
from payout_service.adapters.signer_client import SignerUnavailable
from payout_service.app.channel_pool import ChannelPool
from payout_service.core.channels import HOLDS_SEQUENCE as OPERATION_HOLDS
from payout_service.core.channels import OperationStatus
from payout_service.core.states import HOLDS_SEQUENCE, AttemptStatus
from tests.unit.test_pipeline_with_fake_ledger import (
    NET,
    START_SEQ,
    FakeSigner,
    create,
    run_until_settled,
    states,
)
from tests.unit.test_pipeline_with_fake_ledger import world as fake_world

world = fake_world  # the fixture: real PostgreSQL, fake ledger and signer

XLM = 10_000_000


async def test_a_live_channel_create_keeps_its_payer_number_through_a_payout_resync(world):
    """A CreateAccount holds the payer's S+1 (built, its signer away); a payout at S+2 gets
    txBAD_SEQ and re-syncs the payer. The re-sync must count the create as a holder: freeing
    S+1 would hand it to the next payout, and when the create then dies its release would free
    a number that payout consumed: every later reservation would collide, every prepare pass
    fail."""
    make, source = world
    desk, pipeline, ledger, _ = make("signer")
    pool = desk.store.pool
    funding_signer = FakeSigner(source, unavailable=True)
    assert pipeline.config.channel_pool is not None
    channels = ChannelPool(pipeline.config.channel_pool, pool, network_passphrase=NET,
                           tx_window_seconds=30, ledger=ledger,  # type: ignore[arg-type]
                           signer=funding_signer)  # type: ignore[arg-type]
    await channels.registry.add_pending([(Keypair.random().public_key, "channel-new")],
                                        2 * XLM, actor="test")
    with pytest.raises(SignerUnavailable):
        await channels.step()  # the create is built at the payer's next number, not signed
    create_op = await pool.fetchrow("SELECT source_account, sequence FROM channel_operations")
    assert tuple(create_op) == (source.public_key, START_SEQ + 1)

    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()  # S+2 while the chain is at S: txBAD_SEQ, the payer re-synced
    free = await pool.fetch("SELECT sequence FROM released_sequences")
    assert START_SEQ + 1 not in [r["sequence"] for r in free], \
        "the re-sync freed a number the live create holds"

    await create(desk, 2)
    await run_until_settled(pipeline, ledger, rounds=3)
    funding_signer.unavailable, funding_signer.refuse = False, True
    await channels.step()  # the create dies unsent (signer refusal): its number is released
    assert await pool.fetchval("SELECT status FROM channel_operations") == "rejected"

    for n in (3, 4):
        await create(desk, n)
    await run_until_settled(pipeline, ledger, rounds=8)
    assert set((await states(desk)).values()) == {"CONFIRMED"}
    assert len(ledger.included) == 4, "each payout landed once"
    landed = await pool.fetch(
        "SELECT sequence FROM payout_attempts WHERE status = 'included' ORDER BY sequence")
    assert [r["sequence"] for r in landed] == list(range(START_SEQ + 1, START_SEQ + 5))


async def test_the_database_refuses_a_channel_operation_at_a_number_a_payout_holds(world):
    """Two holders of one (source, sequence) across both tables: the second is refused, and a
    release of a number someone else still holds frees nothing."""
    make, source = world
    desk, pipeline, ledger, _ = make("signer")
    pool = desk.store.pool
    await create(desk, 1)
    await pipeline.prepare_once()  # the payout holds the payer's S+1 (signed)
    insert_operation = """INSERT INTO channel_operations (id, kind, source_account, sequence,
                              max_time, envelope_xdr, tx_hash, fee_stroops, total_stroops, status)
                          VALUES (gen_random_uuid(), 'create', $1, $2, now(), 'x', $3, 100, 1,
                                  'built')"""
    with pytest.raises(asyncpg.UniqueViolationError, match="already held") as refused:
        await pool.execute(insert_operation, source.public_key, START_SEQ + 1, "h1")
    assert refused.value.constraint_name == "sequence_holders_one_per_number"
    # The other way round: an operation holds S+5, a payout attempt there is refused.
    await pool.execute(insert_operation, source.public_key, START_SEQ + 5, "h2")
    with pytest.raises(asyncpg.UniqueViolationError, match="already held"):
        await pool.execute(
            """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                   min_time, max_time, envelope_xdr, tx_hash, fee_stroops, status)
               SELECT payout_id, number + 1, source_account, $1, min_time, max_time,
                      envelope_xdr, 'other', fee_stroops, 'failed_on_chain'
               FROM payout_attempts""",
            START_SEQ + 5)
    await pool.execute("DELETE FROM channel_operations")
    async with pool.acquire() as conn:
        await release_sequence(conn, source.public_key, START_SEQ + 1)
    assert await pool.fetchval("SELECT count(*) FROM released_sequences") == 0
    assert await pool.fetchval("SELECT next_sequence FROM source_accounts WHERE account = $1",
                               source.public_key) == START_SEQ + 2
    await run_until_settled(pipeline, ledger, rounds=3)
    assert (await states(desk)) == {"p1": "CONFIRMED"}


async def test_the_holders_view_counts_exactly_the_statuses_the_core_says_hold(world):
    """sequence_holders (SQL) and HOLDS_SEQUENCE (core) name the same statuses."""
    make, _ = world
    desk, _, _, _ = make("signer")
    async with desk.store.pool.acquire() as conn:
        attempts = {s for s in AttemptStatus
                    if await conn.fetchval("SELECT attempt_holds_sequence($1)", s.value)}
        operations = {s for s in OperationStatus
                      if await conn.fetchval("SELECT operation_holds_sequence($1)", s.value)}
    assert attempts == HOLDS_SEQUENCE
    assert operations == OPERATION_HOLDS
