"""Pipeline decisions against real PostgreSQL, with the ledger and signer ports faked.

The fakes model only what the pipeline relies on (seq == account seq + 1, inclusion at ledger
close, NOT_FOUND with close times). The integration suite runs the same flows against the
sandbox and the real signer.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from stellar_sdk import Keypair
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service import metrics
from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.ledger import SourceAccountMissing
from payout_service.adapters.signer_client import SignedEnvelope, SignerUnavailable, SigningRefused
from payout_service.app.pipeline import Pipeline
from payout_service.core.states import IllegalTransition, PayoutState
from tests.db.fake_pipeline import (
    NET,
    RESOURCE_FEE,
    START_SEQ,
    attempts_by_payout,
    create,
    one_channel,
    past_max_time,
    poll_now,
    run_until_settled,
    states,
)


async def test_signed_payouts_are_confirmed_once_with_consecutive_sequences(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    for n in range(5):
        await create(desk, n)
    await run_until_settled(pipeline, ledger)
    assert set((await states(desk)).values()) == {"CONFIRMED"}
    assert len(ledger.included) == 5, "each payout landed exactly once"
    seqs = await desk.store.pool.fetch("SELECT sequence FROM payout_attempts ORDER BY sequence")
    assert [r["sequence"] for r in seqs] == list(range(START_SEQ + 1, START_SEQ + 6))


async def test_a_dropped_transaction_is_rebuilt_only_after_proof_of_death(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    ledger.drop_next = 1
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    ledger.drop_next = 10**6  # keep dropping the re-sends until max_time has passed
    for _ in range(3):
        ledger.close(seconds=1)
        await desk.store.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
        await pipeline.confirm_once()
    attempts = await desk.store.pool.fetch("SELECT status FROM payout_attempts")
    assert [a["status"] for a in attempts] == ["sent"], "no new attempt before proof"
    ledger.drop_next = 0
    await past_max_time(pipeline, ledger)  # proven dead
    rows = await desk.store.pool.fetch("SELECT status, proof FROM payout_attempts ORDER BY number")
    assert rows[0]["status"] == "dead" and "max_time" in rows[0]["proof"]
    await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
    await run_until_settled(pipeline, ledger, rounds=5)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    assert len(ledger.included) == 1


async def test_a_too_early_rejection_keeps_the_envelope_until_its_predecessor_lands(world):
    """txBAD_SEQ for N+2 while N+1 is pending proves nothing: rebuilding it would leave a
    signed, still-valid envelope behind, a double payment once N+1 lands."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    ledger.one_pending = True
    for n in range(3):
        await create(desk, n)
    await run_until_settled(pipeline, ledger, rounds=10)
    assert set((await states(desk)).values()) == {"CONFIRMED"}
    assert len(ledger.included) == 3
    attempts = await attempts_by_payout(desk)
    assert all([status for status, _ in a] == ["included"] for a in attempts.values()), attempts


async def test_a_sequence_used_by_another_transaction_proves_death_a_ledger_later(world):
    """Refused txBAD_SEQ with the account past its number: dead once a getTransaction that
    covers the ledger the account was read at says NOT_FOUND (the next ledger's poll; the
    answer in the same ledger may not have searched it), long before its max_time."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, 1)
    await pipeline.prepare_once()
    ledger.account_seq += 5  # someone else used the source account meanwhile
    await pipeline.send_once()
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["sent"]
    ledger.close(seconds=1)
    await poll_now(pipeline)
    attempts = (await attempts_by_payout(desk))["p1"]
    assert attempts[0][0] == "dead" and "consumed by another transaction" in attempts[0][1]
    await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
    await run_until_settled(pipeline, ledger, rounds=3)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    seq = await desk.store.pool.fetchval(
        "SELECT sequence FROM payout_attempts WHERE status = 'included'"
    )
    assert seq == START_SEQ + 6, "re-synced past the foreign transaction"


async def test_a_never_valid_rejection_fails_at_once_and_its_number_is_replaced(world):
    """txBAD_AUTH can never become valid: the payout fails now (not at max_time), the envelope
    is ABANDONED and its number goes to the next payout, whose transaction replaces it; once
    that lands the abandoned envelope is dead by construction."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    ledger.reject_code = "txBAD_AUTH"
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    row = await desk.store.pool.fetchrow("SELECT state, failure_code FROM payouts")
    assert (row["state"], row["failure_code"]) == ("FAILED", "txBAD_AUTH")
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["abandoned"]
    with pytest.raises(IllegalTransition, match="may still land"):
        p1 = await desk.store.get_payout("p1")
        await desk.retry(p1, actor="ops", reason="too soon")
    ledger.reject_code = None
    for n in range(2, 7):
        await create(desk, n)
    await run_until_settled(pipeline, ledger, rounds=8)
    assert {k: v for k, v in (await states(desk)).items() if k != "p1"} == \
        {f"p{n}": "CONFIRMED" for n in range(2, 7)}
    assert ledger.sends == 6, "the refused envelope was never re-sent"
    seqs = await desk.store.pool.fetch(
        "SELECT sequence FROM payout_attempts WHERE status = 'included' ORDER BY sequence")
    assert [r["sequence"] for r in seqs] == list(range(START_SEQ + 1, START_SEQ + 6)), \
        "the next payout took the abandoned number"
    p1_attempts = (await attempts_by_payout(desk))["p1"]
    assert p1_attempts[0][0] == "dead" and "consumed by another transaction" in p1_attempts[0][1]
    await desk.retry(p1, actor="ops", reason="now it is dead")
    await run_until_settled(pipeline, ledger, rounds=3)
    assert (await states(desk))["p1"] == "CONFIRMED"


async def test_cancelling_a_signed_payout_gives_its_number_to_the_next_one(world):
    """The issue's first finding: B signed and queued, cancelled; C must not wait behind B's
    number."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    ledger.one_pending = True
    await create(desk, 1)
    await run_until_settled(pipeline, ledger, rounds=2)
    await create(desk, 2)
    await pipeline.prepare_once()  # p2 signed and QUEUED at +2
    p2 = await desk.store.get_payout("p2")
    assert p2.state == PayoutState.QUEUED
    await desk.cancel(p2, actor="ops", reason="changed my mind")
    for n in range(3, 8):
        await create(desk, n)
    await run_until_settled(pipeline, ledger, rounds=8)
    current = await states(desk)
    assert current.pop("p2") == "CANCELLED"
    assert set(current.values()) == {"CONFIRMED"}, current
    assert len(ledger.included) == 6
    assert [s for s, _ in (await attempts_by_payout(desk))["p2"]] == ["cancelled"]


async def test_an_unsent_attempt_above_a_freed_number_is_resequenced(world):
    """p1 cancelled after p2 was signed at +2: p2 never left us, so it is rebuilt at +1
    instead of waiting behind a hole."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    for n in (1, 2):
        await create(desk, n)
    await pipeline.prepare_once()  # +1 and +2 signed, not sent
    p1 = await desk.store.get_payout("p1")
    await desk.cancel(p1, actor="ops", reason="no")
    await run_until_settled(pipeline, ledger, rounds=4)
    assert (await states(desk)) == {"p1": "CANCELLED", "p2": "CONFIRMED"}
    p2 = (await attempts_by_payout(desk))["p2"]
    assert [s for s, _ in p2] == ["superseded", "included"], p2
    seq = await desk.store.pool.fetchval(
        "SELECT sequence FROM payout_attempts WHERE status = 'included'")
    assert seq == START_SEQ + 1


async def test_a_hole_found_on_bad_seq_is_filled_by_the_next_payout(world):
    """A number lost without a trace (e.g. a row restored from backup): txBAD_SEQ too early
    re-syncs from the chain and the next reservation fills the hole."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, 0)
    await run_until_settled(pipeline, ledger, rounds=2)
    await desk.store.pool.execute("UPDATE source_accounts SET next_sequence = next_sequence + 1")
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()  # +3 while the chain is at +1: too early
    free = await desk.store.pool.fetch("SELECT sequence FROM released_sequences")
    assert [r["sequence"] for r in free] == [START_SEQ + 2]
    await create(desk, 2)
    await run_until_settled(pipeline, ledger, rounds=6)
    assert set((await states(desk)).values()) == {"CONFIRMED"}
    assert len(ledger.included) == 3


async def test_an_overdue_confirmation_polls_slower_and_never_rebuilds_without_proof(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer", PAYOUTS_CONFIRM_MAX_POLLS="2",
                                     PAYOUTS_CONFIRM_POLL_MS="1000")
    ledger.drop_next = 10**6
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    gaps = []
    for _ in range(3):
        ledger.close(seconds=1)  # well within max_time
        await desk.store.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
        await pipeline.confirm_once()
        gaps.append(await desk.store.pool.fetchval(
            "SELECT EXTRACT(EPOCH FROM next_poll_at - now()) FROM payout_attempts"))
    assert gaps[0] < 1.5 and gaps[2] > 3.5, f"polls 1..3 spaced {gaps}"
    statuses = await desk.store.pool.fetch("SELECT status FROM payout_attempts")
    assert [r["status"] for r in statuses] == ["sent"], "no new attempt without a proof"


async def test_each_new_attempt_bids_more_and_never_past_max_gas(world):
    """An attempt that died unseen may have been outbid: the next one doubles its inclusion
    fee (from the network's p90), lowered to fit max gas instead of failing the payout."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer", PAYOUTS_MAX_GAS_STROOPS="1000")
    ledger.fee_p90 = 300
    await create(desk, 1)
    fees = []
    for _ in range(4):
        await desk.store.pool.execute(
            "UPDATE payouts SET next_attempt_at = now() WHERE payout_id = 'p1'")
        await pipeline.prepare_once()
        fees.append(await desk.store.pool.fetchval(
            "SELECT fee_stroops FROM payout_attempts ORDER BY number DESC LIMIT 1"))
        ledger.drop_next = 10**6
        await pipeline.send_once()
        await past_max_time(pipeline, ledger)  # proven dead
    assert fees == [300 + RESOURCE_FEE, 600 + RESOURCE_FEE, 1000, 1000], fees
    assert (await states(desk))["p1"] != "FAILED"


async def test_a_signer_refusal_fails_the_payout_and_frees_the_sequence(world):
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    signer.refuse = True
    await create(desk, 1)
    await pipeline.prepare_once()
    row = await desk.store.pool.fetchrow("SELECT state, failure_code FROM payouts")
    assert (row["state"], row["failure_code"]) == ("FAILED", "signer_refused")
    nxt = await desk.store.pool.fetchval("SELECT next_sequence FROM source_accounts")
    assert nxt == START_SEQ + 1


async def test_external_signing_waits_then_queues_a_verified_signature(world):
    make, source = world
    desk, pipeline, ledger, _ = make("external")
    await create(desk, 1)
    await pipeline.prepare_once()
    payout = await desk.store.get_payout("p1")
    assert payout.state == PayoutState.AWAITING_SIGNATURE
    env = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, NET)
    env.sign(Keypair.random())
    with pytest.raises(Exception, match="not signed by the source account"):
        await desk.accept_signed(payout, env.to_xdr(), actor="ops")
    env = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, NET)
    env.sign(source)
    await desk.accept_signed(payout, env.to_xdr(), actor="ops")
    await run_until_settled(pipeline, ledger, rounds=3)
    assert (await states(desk)) == {"p1": "CONFIRMED"}


async def test_external_envelopes_are_handed_out_in_order_and_a_blocked_pass_is_idle(world):
    """One envelope per source awaits a signature at a time. While it does, a pass prepares
    nothing (and says so, so the loop sleeps instead of re-simulating), and once it is
    signed the next payout in creation order gets the next envelope: none overtakes."""
    make, source = world
    desk, pipeline, ledger, _ = make("external")
    for n in range(1, 4):
        await create(desk, n)
    assert await pipeline.prepare_once() == 1
    simulations = ledger.simulations
    assert await pipeline.prepare_once() == 0, "a blocked pass reports no work"
    assert ledger.simulations - simulations <= 1, "a blocked pass stops at the first payout"
    for n in range(1, 4):
        payout = await desk.store.get_payout(f"p{n}")
        assert payout.state == PayoutState.AWAITING_SIGNATURE, (n, await states(desk))
        env = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, NET)
        env.sign(source)
        await desk.accept_signed(payout, env.to_xdr(), actor="ops")
        await run_until_settled(pipeline, ledger, rounds=2)
    assert (await states(desk)) == {f"p{n}": "CONFIRMED" for n in range(1, 4)}


async def test_a_cancelled_external_envelope_that_lands_anyway_is_recorded_once(world):
    """The holder of a handed-out envelope submits it after the cancel. It lands: the payout
    is recorded CONFIRMED (paid once), and its number is taken back out of the free ones so
    the next payout is built above it."""
    make, source = world
    desk, pipeline, ledger, _ = make("external")
    await create(desk, 1)
    await pipeline.prepare_once()
    held = await desk.store.get_payout("p1")
    await desk.cancel(held, actor="ops", reason="no")
    env = TransactionEnvelope.from_xdr(held.unsigned_envelope_xdr, NET)
    env.sign(source)
    ledger.pending[env.hash_hex()] = env  # submitted by its holder, not by us
    ledger.close()
    await desk.store.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
    await pipeline.confirm_once()
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["included"]
    await create(desk, 2)
    for _ in range(4):
        await pipeline.prepare_once()
        p2 = await desk.store.get_payout("p2")
        if p2.state == PayoutState.AWAITING_SIGNATURE:
            env = TransactionEnvelope.from_xdr(p2.unsigned_envelope_xdr, NET)
            env.sign(source)
            await desk.accept_signed(p2, env.to_xdr(), actor="ops")
        await run_until_settled(pipeline, ledger, rounds=1)
    assert (await states(desk)) == {"p1": "CONFIRMED", "p2": "CONFIRMED"}
    assert len(ledger.included) == 2


async def test_cancel_before_sending_and_retry_after_failure(world):
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    await create(desk, 1)
    await create(desk, 2)
    p1 = await desk.store.get_payout("p1")
    cancelled_before = metrics.PAYOUTS_TERMINAL.labels("cancelled")._value.get()
    await desk.cancel(p1, actor="ops", reason="duplicate winner")
    assert metrics.PAYOUTS_TERMINAL.labels("cancelled")._value.get() == cancelled_before + 1
    signer.refuse = True
    await pipeline.prepare_once()
    p2 = await desk.store.get_payout("p2")
    assert p2.state == PayoutState.FAILED
    signer.refuse = False
    await desk.retry(p2, actor="ops", reason="policy fixed")
    await run_until_settled(pipeline, ledger, rounds=4)
    assert (await states(desk)) == {"p1": "CANCELLED", "p2": "CONFIRMED"}
    events = await desk.store.pool.fetchval("SELECT count(*) FROM payout_events")
    assert events >= 6, "every transition wrote an audit row"


async def test_concurrent_pipelines_never_double_pay(world):
    make, _ = world
    desk, pipeline_a, ledger, signer = make("signer")
    pipeline_b = Pipeline(pipeline_a.config, desk.attempts, ledger, signer)  # type: ignore[arg-type]
    for n in range(8):
        await create(desk, n)
    for _ in range(20):
        await asyncio.gather(pipeline_a.prepare_once(), pipeline_b.prepare_once())
        await asyncio.gather(pipeline_a.send_once(), pipeline_b.send_once())
        ledger.close()
        await desk.store.pool.execute("UPDATE payout_attempts SET next_poll_at = now()")
        await asyncio.gather(pipeline_a.confirm_once(), pipeline_b.confirm_once())
    assert set((await states(desk)).values()) == {"CONFIRMED"}
    assert len(ledger.included) == 8


async def test_a_signer_outage_backs_off_instead_of_spinning(world):
    """The preparer raises to the loop runner on the first unavailable signature, so one pass
    makes one signing call, and the runner waits longer after each failure."""
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    for n in range(3):
        await create(desk, n)
    signer.unavailable = True
    calls = 0
    real = signer.sign_transaction

    async def counting(envelope_xdr: str, **kw: object) -> SignedEnvelope:
        nonlocal calls
        calls += 1
        return await real(envelope_xdr, **kw)

    signer.sign_transaction = counting  # type: ignore[method-assign]
    with pytest.raises(SignerUnavailable):
        await pipeline.prepare_once()
    assert calls == 1
    built = await desk.store.pool.fetchval("SELECT count(*) FROM payout_attempts")
    assert built == 1, "no numbers reserved for payouts that cannot be signed now"
    signer.unavailable = False
    await run_until_settled(pipeline, ledger, rounds=6)
    assert set((await states(desk)).values()) == {"CONFIRMED"}


async def test_outbox_events_exist_only_for_confirmed_and_failed_payouts(world):
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    assert await desk.store.pool.fetchval("SELECT count(*) FROM outbox_events") == 0, (
        "nothing is announced before on-chain confirmation"
    )
    await run_until_settled(pipeline, ledger, rounds=2)
    signer.refuse = True
    await create(desk, 2)
    await pipeline.prepare_once()
    rows = await desk.store.pool.fetch(
        "SELECT event_type, payload FROM outbox_events ORDER BY id"
    )
    assert [(r["event_type"], r["payload"]["payout_id"]) for r in rows] == [
        ("payout.confirmed", "p1"), ("payout.failed", "p2"),
    ]
    assert rows[0]["payload"]["tx_hash"] and rows[0]["payload"]["ledger"]


async def test_a_seeded_channel_missing_on_chain_is_never_leased_and_payouts_go_on(world):
    """A PAYOUTS_CHANNEL_ACCOUNTS typo (an account not on chain) gets no sequence row, so it
    is never leased and does not switch channel mode on: the payer pays, nothing stalls."""
    make, source = world
    ghost = Keypair.random().public_key
    desk, pipeline, ledger, _ = make("signer", PAYOUTS_CHANNEL_ACCOUNTS=f"channel-ghost={ghost}")
    # As start-up does with the seed.
    await ChannelRegistry(desk.store.pool).seed({ghost: "channel-ghost"})
    chain_sequence = ledger.account_sequence

    async def account_sequence(account_id: str) -> int:
        if account_id == ghost:
            raise SourceAccountMissing(account_id)
        return await chain_sequence(account_id)

    ledger.account_sequence = account_sequence  # type: ignore[method-assign]
    for n in range(2):
        await create(desk, n)
    await run_until_settled(pipeline, ledger, rounds=4)
    assert set((await states(desk)).values()) == {"CONFIRMED"}
    sources = await desk.store.pool.fetch("SELECT DISTINCT source_account FROM payout_attempts")
    assert [r["source_account"] for r in sources] == [source.public_key]


async def test_external_signing_builds_from_the_payer_even_with_a_pool(world):
    """An outside signer signs with the paying key only: active channels are not leased."""
    make, source = world
    desk, pipeline, _, _ = make("external")
    channel = Keypair.random().public_key
    await pipeline.sequences.ensure_source(channel, START_SEQ)
    await ChannelRegistry(desk.store.pool).add_active([(channel, "channel-0")], actor="test")
    await create(desk, 1)
    await pipeline.prepare_once()
    row = await desk.store.pool.fetchrow(
        "SELECT p.state, a.source_account FROM payouts p JOIN payout_attempts a "
        "ON a.payout_id = p.id")
    assert (row["state"], row["source_account"]) == ("AWAITING_SIGNATURE", source.public_key)


async def test_a_channel_held_attempt_does_not_count_toward_max_attempts(world):
    """The payer's key refuses the channel as source (core/refusals.py): the channel is held
    and the payout rebuilt from the payer. That refused attempt was not the payout's fault,
    so with PAYOUTS_MAX_ATTEMPTS=2 a payer attempt proven dead still gets a second try."""
    make, source = world
    desk, pipeline, ledger, signer = make("signer", PAYOUTS_MAX_ATTEMPTS="2")
    channel = (await one_channel(desk, pipeline, signer)).public_key
    signs = signer.sign_transaction

    async def sign_transaction(envelope_xdr: str, **kwargs: object) -> SignedEnvelope:
        env = TransactionEnvelope.from_xdr(envelope_xdr, NET)
        if kwargs.get("key_id") is None and env.transaction.source.account_id == channel:
            raise SigningRefused("PERMISSION_DENIED: policy rule source_accounts refused",
                                 rule="source_accounts", key_id="payout")
        return await signs(envelope_xdr, **kwargs)

    signer.sign_transaction = sign_transaction  # type: ignore[method-assign]
    await create(desk, 1)
    await pipeline.prepare_once()  # from the channel: refused, the channel held
    held = await desk.store.pool.fetchrow(
        "SELECT state, held_reason FROM channel_accounts WHERE account = $1", channel)
    assert held["state"] == "draining" and "rule source_accounts" in held["held_reason"]
    ledger.drop_next = 10**6  # the payer's attempt never lands
    await pipeline.prepare_once()
    await pipeline.send_once()
    await past_max_time(pipeline, ledger)  # proven dead
    assert (await states(desk)) == {"p1": "QUEUED"}, "one counted attempt of two"
    ledger.drop_next = 0
    await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
    await run_until_settled(pipeline, ledger, rounds=5)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    rows = await desk.store.pool.fetch(
        "SELECT source_account, status, result_code FROM payout_attempts ORDER BY number")
    assert [(r["source_account"], r["status"]) for r in rows] == [
        (channel, "rejected"), (source.public_key, "dead"), (source.public_key, "included")]
    assert rows[0]["result_code"] == "channel_held"
    assert await desk.store.pool.fetchval(
        "SELECT next_sequence FROM source_accounts WHERE account = $1", channel
    ) == START_SEQ + 1, "the channel's number was given back"


async def test_a_dropped_transaction_is_re_sent_once_per_closed_ledger_not_per_poll(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    ledger.drop_next = 10**6
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    assert ledger.sends == 1
    for _ in range(5):
        await poll_now(pipeline)
    assert ledger.sends == 1, "re-sent on a poll before any ledger closed"
    for closed in range(1, 4):
        ledger.close(seconds=1)
        for _ in range(4):
            await poll_now(pipeline)
        assert ledger.sends == 1 + closed, "one re-send per closed ledger"
    ledger.drop_next = 0
    ledger.close(seconds=1)
    await poll_now(pipeline)  # the re-send the node keeps
    ledger.close(seconds=1)
    await poll_now(pipeline)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    assert len(ledger.included) == 1
    row = await desk.store.pool.fetchrow("SELECT send_count, last_sent_ledger FROM payout_attempts")
    assert row["send_count"] == 5 and row["last_sent_ledger"] == ledger.ledger - 1


async def test_a_signed_envelope_whose_max_time_passed_unsent_is_rebuilt_at_its_number(world):
    """Held back (or the sender was away) until a ledger closed at its max_time: it never left
    us, so it is not sent only to be refused; its number goes back and the payout is rebuilt
    at once, without counting as an attempt."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, 1)
    await pipeline.prepare_once()
    ledger.close(seconds=60)  # past the 30 s window, nothing sent
    await pipeline.send_once()
    assert ledger.sends == 0, "an envelope that can no longer land was sent"
    rows = await desk.store.pool.fetch(
        "SELECT number, status, sequence FROM payout_attempts ORDER BY number")
    assert [(r["number"], r["status"]) for r in rows] == [(1, "superseded")]
    await pipeline.prepare_once()
    await pipeline.send_once()
    ledger.close(seconds=1)
    await poll_now(pipeline)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    rows = await desk.store.pool.fetch(
        "SELECT number, status, sequence FROM payout_attempts ORDER BY number")
    assert [(r["number"], r["status"]) for r in rows] == [(1, "superseded"), (2, "included")]
    assert rows[1]["sequence"] == rows[0]["sequence"] == START_SEQ + 1, "its number reused"


async def test_a_signer_away_past_the_window_gets_the_attempt_rebuilt_not_failed(world):
    """Built, then the signer was away longer than PAYOUTS_TX_WINDOW_SECONDS: the envelope's
    max_time has passed, so the signer would refuse it (time_bounds), which must not fail the payout
    signer_refused. It never left us: superseded, its number given back, rebuilt with
    fresh time bounds and paid; the superseded attempt does not count."""
    make, source = world
    desk, pipeline, ledger, signer = make("signer", PAYOUTS_MAX_ATTEMPTS="1")
    await create(desk, 1)
    signer.unavailable = True
    with pytest.raises(SignerUnavailable):
        await pipeline.prepare_once()
    # The outage outlasts the window (as if 30 s passed): the stored max_time is behind us.
    await desk.store.pool.execute(
        "UPDATE payout_attempts SET max_time = now() - interval '1 second'")
    signer.unavailable = False
    signs = signer.sign_transaction
    asked: list[str] = []

    async def recording(envelope_xdr: str, **kwargs: object) -> SignedEnvelope:
        asked.append(envelope_xdr)
        return await signs(envelope_xdr, **kwargs)

    signer.sign_transaction = recording  # type: ignore[method-assign]
    await pipeline.prepare_once()
    rows = await desk.store.pool.fetch(
        "SELECT number, status, sequence FROM payout_attempts ORDER BY number")
    assert rows[0]["status"] == "superseded", "the expired envelope was never signed"
    await run_until_settled(pipeline, ledger, rounds=4)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    rows = await desk.store.pool.fetch(
        "SELECT number, status, sequence FROM payout_attempts ORDER BY number")
    assert [(r["number"], r["status"]) for r in rows] == [(1, "superseded"), (2, "included")]
    assert rows[1]["sequence"] == rows[0]["sequence"], "its number given back and reused"
    assert len(ledger.included) == 1


async def test_a_channel_key_refusing_what_the_payout_pays_fails_the_payout_not_the_channel(
    world,
):
    """Channel keys share one policy template: a channel key refusing a payout's amount would
    refuse it on every channel, so the payout fails (as without channels) and the channel
    stays active for the next payouts."""
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    channel_keypair = await one_channel(desk, pipeline, signer)
    channel = channel_keypair.public_key
    signs = signer.sign_transaction

    async def sign_transaction(envelope_xdr: str, **kwargs: object) -> SignedEnvelope:
        if kwargs.get("key_id") == "channel-0" and refuse:
            raise SigningRefused("PERMISSION_DENIED: policy rule max_amount_stroops_per_tx "
                                 "refused", rule="max_amount_stroops_per_tx",
                                 key_id="channel-0", code="PERMISSION_DENIED")
        if kwargs.get("key_id") == "channel-0":
            env = TransactionEnvelope.from_xdr(envelope_xdr, NET)
            env.sign(channel_keypair)
            return SignedEnvelope(env.to_xdr(), env.hash_hex())
        return await signs(envelope_xdr, **kwargs)

    signer.sign_transaction = sign_transaction  # type: ignore[method-assign]
    refuse = True
    await create(desk, 1)
    await pipeline.prepare_once()
    assert (await states(desk)) == {"p1": "FAILED"}
    assert await desk.store.pool.fetchval(
        "SELECT state FROM channel_accounts WHERE account = $1", channel) == "active"
    refuse = False
    await create(desk, 2)
    await run_until_settled(pipeline, ledger, rounds=4)
    assert (await states(desk))["p2"] == "CONFIRMED"
    assert await desk.store.pool.fetchval(
        """SELECT a.source_account FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id
           WHERE p.payout_id = 'p2' AND a.status = 'included'""") == channel


async def test_a_sent_transaction_past_its_max_time_takes_no_room_in_the_network_queue(world):
    """stellar-core drops a queued transaction once a ledger closes past its max_time, so it
    no longer counts against the classic queue, even while its death is not yet proven (or
    never can be: the RPC's history no longer covering its submission). Counted for ever, a
    few such transactions would hold every later classic send."""
    from payout_service.adapters.work_queues import _classic_in_flight

    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    pool = desk.store.pool
    await pool.execute("UPDATE payout_attempts SET classic_ops = 100")  # as a classic batch
    max_time = int((await pool.fetchval("SELECT max_time FROM payout_attempts")).timestamp())
    assert await _classic_in_flight(pool, max_time - 1) == 100, "still includable"
    assert await _classic_in_flight(pool, max_time) == 0, "a ledger closed at its max_time"
    assert await _classic_in_flight(pool) == 100, "no close time known: counted"


async def test_a_confirmed_payout_carries_its_proof_and_the_table_refuses_a_bad_one(world):
    make, source = world
    desk, pipeline, ledger, _ = make("signer")
    for n in range(2):
        await create(desk, n)
    await run_until_settled(pipeline, ledger)
    rows = await desk.store.pool.fetch(
        """SELECT pr.*, a.tx_hash AS attempt_hash, a.ledger AS attempt_ledger
           FROM payout_proofs pr JOIN payouts p ON p.id = pr.payout_id
           JOIN payout_attempts a ON a.payout_id = p.id AND a.number = p.attempt_count""")
    assert len(rows) == 2, "a proof for every confirmed payout"
    for row in rows:
        assert (row["tx_hash"], row["ledger"]) == (row["attempt_hash"], row["attempt_ledger"])
        assert (row["op_index"], row["fee_charged"], row["fee_share"]) == (0, 250, 250)
        assert row["treasury"] == source.public_key
        assert int(row["ledger_closed_at"].timestamp()) == ledger.landed[row["tx_hash"]][1]
    payout = await desk.store.get_payout(str(rows[0]["payout_id"]))
    assert payout is not None and payout.proof is not None
    assert payout.proof.tx_hash == rows[0]["tx_hash"]
    webhook = await desk.store.pool.fetchval(
        "SELECT payload->'proof'->>'tx_hash' FROM outbox_events WHERE payout_id = $1",
        rows[0]["payout_id"])
    assert webhook == rows[0]["tx_hash"]
    for column, value in (("fee_share", -1), ("op_index", -1), ("fee_share", 251)):
        with pytest.raises(asyncpg.CheckViolationError):
            await desk.store.pool.execute(
                f"UPDATE payout_proofs SET {column} = $1 WHERE payout_id = $2",  # noqa: S608
                value, rows[0]["payout_id"])
