"""Invariants 1 and 8 in the pipeline: no envelope that left us is given up without a proof of
death from one consistent view of the chain.

Real PostgreSQL and the real pipeline; the ledger port is the fake of
test_pipeline_with_fake_ledger.py taught to lie as real RPC nodes do (a transaction store
behind the ledger entries), to know accounts that do not exist, and to refuse a channel's
transactions. The integration suite does the same against the sandbox over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service import metrics
from payout_service.adapters.alert_store import health_metrics
from payout_service.adapters.ledger import (
    Accepted,
    Included,
    NotFound,
    Rejected,
    SourceAccountMissing,
)
from payout_service.adapters.signer_client import SignedEnvelope, SignerUnavailable
from payout_service.app.desk import PayoutDesk
from payout_service.app.pipeline import Pipeline
from payout_service.core.health import AlertKind, AlertThresholds, Level, conditions
from payout_service.core.proofs import AccountState
from payout_service.core.states import PayoutState
from tests.db.fake_pipeline import (
    NET,
    START_SEQ,
    FakeLedger,
    FakeSigner,
    attempts_by_payout,
    create,
    one_channel,
    poll_now,
    run_until_settled,
    states,
)

LEDGER_SECONDS = 5


@dataclass
class LyingLedger(FakeLedger):
    """getTransaction answers from a store `tx_store_lag` ledgers behind the ledger entries
    (stellar-rpc reads transactions from its own database, ledger entries from captive core);
    `missing` accounts do not exist; `refused` sources get that rejection at submission."""

    tx_store_lag: int = 0
    oldest: int = 1
    queued_for: int = 0  # ledgers a sent transaction waits in the queue before it is applied
    missing: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)

    async def account_sequence(self, account_id: str) -> int:
        if account_id in self.missing:
            raise SourceAccountMissing(account_id)
        return self.account_seq

    async def account_state(self, account_id: str) -> AccountState:
        if account_id in self.missing:
            return AccountState(None, self.ledger)
        return AccountState(self.account_seq, self.ledger)

    async def lookup(self, tx_hash: str) -> Included | NotFound:
        seen_to = self.ledger - self.tx_store_lag
        if self.included.get(tx_hash, seen_to + 1) <= seen_to:
            return Included(True, self.included[tx_hash], "txSUCCESS", 250)
        return NotFound(seen_to, self.close_time - LEDGER_SECONDS * self.tx_store_lag,
                        self.oldest)

    def close(self, seconds: int = LEDGER_SECONDS) -> None:
        if self.queued_for:
            self.queued_for -= 1
            self.ledger += 1
            self.close_time += seconds
            return
        super().close(seconds)

    async def send(self, envelope_xdr: str) -> Accepted | Rejected:
        source = TransactionEnvelope.from_xdr(envelope_xdr, NET).transaction.source.account_id
        if source in self.missing:
            return Rejected("txNO_ACCOUNT")
        if source in self.refused:
            return Rejected(self.refused[source])
        return await super().send(envelope_xdr)


def lying(pipeline: Pipeline, ledger: FakeLedger, **lies: object) -> LyingLedger:
    # The fake's accounts are numbered from ledger 123 (START_SEQ): the chain is past it.
    liar = LyingLedger(account_seq=ledger.account_seq, ledger=(START_SEQ >> 32) + 100,
                       close_time=ledger.close_time, **lies)  # type: ignore[arg-type]
    pipeline.ledger = liar  # type: ignore[assignment]
    return liar


async def signing_channel(desk: PayoutDesk, pipeline: Pipeline, signer: FakeSigner) -> str:
    """One active channel whose key the fake signer signs with (channel-0)."""
    channel = await one_channel(desk, pipeline, signer)
    sign_as_payer = signer.sign_transaction

    async def sign_transaction(envelope_xdr: str, **kwargs: object) -> SignedEnvelope:
        if kwargs.get("key_id") != "channel-0":
            return await sign_as_payer(envelope_xdr, **kwargs)
        envelope = TransactionEnvelope.from_xdr(envelope_xdr, NET)
        envelope.sign(channel)
        return SignedEnvelope(envelope.to_xdr(), envelope.hash_hex())

    signer.sign_transaction = sign_transaction  # type: ignore[method-assign]
    return channel.public_key


async def paid(desk: PayoutDesk, ledger: FakeLedger) -> dict[str, int]:
    """How many included transactions paid each payout (the fake ledger is the judge)."""
    rows = await desk.store.pool.fetch(
        """SELECT p.payout_id, a.tx_hash FROM payout_attempts a
           JOIN payouts p ON p.id = a.payout_id""")
    out: dict[str, int] = {}
    for r in rows:
        if r["tx_hash"] in ledger.included:
            out[r["payout_id"]] = out.get(r["payout_id"], 0) + 1
    return out


async def test_a_re_send_rejected_after_landing_is_not_proven_dead_by_a_lagging_store(world):
    """The transaction waits in the queue for three ledgers, then lands; the confirmer's
    lookups come from a store two ledgers behind the ledger entries, so a ledger after it
    landed the confirmer re-sends it, and the re-send is refused txBAD_SEQ (its number is
    consumed: by itself). "NOT_FOUND + sequence consumed" would rebuild it and pay twice.
    The NOT_FOUND does not reach the ledger the account was read at: no proof, and it is
    confirmed once the store catches up."""
    make, _ = world
    desk, pipeline, fake, _ = make("signer")
    ledger = lying(pipeline, fake, tx_store_lag=2, queued_for=3)
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    for _ in range(5):
        ledger.close()
        await poll_now(pipeline)  # NOT_FOUND from the lagging store: re-sent once a ledger
    assert ledger.sends >= 2, "the landed transaction was re-sent and refused"
    await run_until_settled(pipeline, ledger, rounds=4)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    assert await paid(desk, ledger) == {"p1": 1}
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["included"]


async def test_an_envelope_handed_out_and_submitted_by_its_holder_is_confirmed_not_rebuilt(
        world):
    """External signing: the holder signs the handed-out envelope and submits it itself,
    never calling SubmitSignedTransaction. Its signing window passes; the payout is found
    paid by that envelope, and no second envelope is ever built."""
    make, source = world
    desk, pipeline, fake, _ = make("external", PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS="15")
    ledger = lying(pipeline, fake)
    await create(desk, 1)
    await pipeline.prepare_once()
    handed = await desk.store.get_payout("p1")
    assert handed.state == PayoutState.AWAITING_SIGNATURE
    envelope = TransactionEnvelope.from_xdr(handed.unsigned_envelope_xdr, NET)
    envelope.sign(source)
    assert isinstance(await ledger.send(envelope.to_xdr()), Accepted)  # not through us
    for _ in range(6):  # well past the 15 s window
        ledger.close()
        await pipeline.prepare_once()
        await poll_now(pipeline)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["included"]
    assert await paid(desk, ledger) == {"p1": 1}


@pytest.mark.parametrize("number_used", [True, False], ids=["number_used", "number_unused"])
async def test_a_handed_out_envelope_is_rebuilt_only_after_the_chain_proves_it_dead(
        world, number_used):
    """Its window passes unsigned while the node's history does not reach back to the ledger
    it was handed out at, so no NOT_FOUND can cover it. If the source account reached its
    number (its holder may have submitted it: no answer can say it was not ours) it is never
    rebuilt. If the account, read past max_time, is still below its number, it was never
    applied and never can be (expired unused): the payout gets a new envelope."""
    make, _ = world
    desk, pipeline, fake, _ = make("external", PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS="15")
    ledger = lying(pipeline, fake, oldest=10**6)  # a node that lost its history
    await create(desk, 1)
    await pipeline.prepare_once()
    if number_used:
        ledger.account_seq = await desk.store.pool.fetchval(
            "SELECT sequence FROM payout_attempts")
    for _ in range(6):  # 30 s of ledgers: well past the 15 s window
        ledger.close()
        await pipeline.prepare_once()
        await poll_now(pipeline)
    rows = (await attempts_by_payout(desk))["p1"]
    if number_used:
        assert [s for s, _ in rows] == ["built"]
        return
    assert rows[0][0] == "dead" and rows[0][1].startswith("expired_unused:"), rows
    await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
    await pipeline.prepare_once()
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["dead", "built"]
    assert (await states(desk)) == {"p1": "AWAITING_SIGNATURE"}


@pytest.mark.parametrize("code", ["txINSUFFICIENT_BALANCE", "txBAD_AUTH", "txNO_ACCOUNT"])
async def test_a_channel_the_network_refuses_is_held_and_its_payouts_are_paid_uncounted(
        world, code):
    """A channel that cannot pay its fee, whose signers changed, or that was merged outside
    the service: its transaction is refused for a reason that is the channel's. The channel
    is held (no more leases), the payout is never FAILED, and once its envelope is proven
    dead it is rebuilt from the payer without counting the attempt (PAYOUTS_MAX_ATTEMPTS=1)."""
    make, source = world
    desk, pipeline, fake, signer = make("signer", PAYOUTS_MAX_ATTEMPTS="1")
    channel = await signing_channel(desk, pipeline, signer)
    ledger = lying(pipeline, fake)
    if code == "txNO_ACCOUNT":
        ledger.missing.add(channel)
    else:
        ledger.refused[channel] = code
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    held = await desk.store.pool.fetchrow(
        "SELECT state, held_reason FROM channel_accounts WHERE account = $1", channel)
    assert held["state"] in ("draining", "retired") and code in held["held_reason"]
    # Operators hear of it: GetSystemHealth's metrics and a warning, and the gauge.
    health = await health_metrics(desk.store.pool)
    assert health.channels_held == 1 and code in health.held_reason
    assert [(c.kind, c.severity) for c in conditions(health, AlertThresholds())] == [
        (AlertKind.CHANNELS_HELD, Level.WARNING)]
    await metrics.refresh_gauges(desk.store.pool)
    assert metrics.CHANNELS_HELD._value.get() == 1
    for _ in range(12):  # past the 30 s window: the envelope is proven dead
        ledger.close()
        await poll_now(pipeline)
        await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
        await pipeline.prepare_once()
        await pipeline.send_once()
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    rows = await desk.store.pool.fetch(
        "SELECT source_account, status, result_code FROM payout_attempts ORDER BY number")
    assert [(r["source_account"], r["status"]) for r in rows] == [
        (channel, "dead"), (source.public_key, "included")]
    assert rows[0]["result_code"] == "channel_held"
    assert not await desk.store.pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE event_type = 'payout.failed'")


async def test_an_abandoned_envelope_on_a_merged_channel_is_proven_dead_and_retry_works(
        world):
    """A never-valid rejection abandons the envelope and fails the payout; its channel is then
    merged outside the service. A missing source is a proof of death (with a consistent
    NOT_FOUND): the watch ends instead of failing on the missing account for ever, and
    RetryPayout is accepted."""
    make, _ = world
    desk, pipeline, fake, signer = make("signer")
    channel = await signing_channel(desk, pipeline, signer)
    ledger = lying(pipeline, fake, refused={channel: "txMALFORMED"})
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["abandoned"]
    ledger.missing.add(channel)
    for _ in range(2):  # the account read missing, then a NOT_FOUND covering that read
        ledger.close()
        await poll_now(pipeline)
    rows = (await attempts_by_payout(desk))["p1"]
    assert rows[0][0] == "dead" and rows[0][1].startswith("source_missing:"), rows
    payout = await desk.store.get_payout("p1")
    retried = await desk.retry(payout, actor="ops", reason="channel replaced")
    assert retried.state == PayoutState.QUEUED


async def test_switching_to_external_signing_rebuilds_what_our_signer_never_signed(world):
    """Built for the signer, which was away; the service restarts in external mode. The
    envelope never left us, so it is rebuilt and handed out, not left holding the number."""
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    signer.unavailable = True
    await create(desk, 1)
    with pytest.raises(SignerUnavailable):
        await pipeline.prepare_once()
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["built"]
    _, external, _, _ = make("external")
    external.ledger = ledger  # type: ignore[assignment]
    await external.prepare_once()
    await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
    await external.prepare_once()
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["superseded", "built"]
    assert (await states(desk)) == {"p1": "AWAITING_SIGNATURE"}
    number = await desk.store.pool.fetchval(
        "SELECT sequence FROM payout_attempts WHERE status = 'built'")
    assert number == ledger.account_seq + 1, "the rebuilt envelope takes the freed number"


async def test_switching_to_signer_mode_still_proves_a_handed_out_envelope_dead(world):
    """Handed out unsigned; the service restarts in signer mode. The envelope is still
    watched: once proven dead the payout is rebuilt and signed by the signer service."""
    make, _ = world
    desk, external, ledger, _ = make("external", PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS="15")
    await create(desk, 1)
    await external.prepare_once()
    _, pipeline, _, _ = make("signer")
    pipeline.ledger = ledger  # type: ignore[assignment]
    for _ in range(5):
        ledger.close()
        await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
        await run_until_settled(pipeline, ledger, rounds=1)
    assert (await states(desk)) == {"p1": "CONFIRMED"}
    assert [s for s, _ in (await attempts_by_payout(desk))["p1"]] == ["dead", "included"]
    assert len(ledger.included) == 1


async def test_an_abandoned_envelope_landing_ends_its_replacement_and_is_recorded(world):
    """p1's envelope is refused for good and abandoned; its number goes to p2's transaction.
    Then a node that kept p1's envelope includes it. p2's transaction can never land at that
    number any more: it is proven dead (replaced) so p1 can be recorded CONFIRMED (the
    database holds one live transaction per number), and p2 is paid by a new attempt."""
    make, _ = world
    desk, pipeline, fake, _ = make("signer")
    ledger = lying(pipeline, fake)
    ledger.reject_code = "txMALFORMED"
    await create(desk, 1)
    await pipeline.prepare_once()
    await pipeline.send_once()
    ledger.reject_code = None
    p1_envelope = await desk.store.pool.fetchval(
        "SELECT envelope_xdr FROM payout_attempts WHERE status = 'abandoned'")
    await create(desk, 2)
    await pipeline.prepare_once()  # p2 built and signed at p1's number, not sent yet
    assert [s for s, _ in (await attempts_by_payout(desk))["p2"]] == ["signed"]
    env = TransactionEnvelope.from_xdr(p1_envelope, NET)
    ledger.pending[env.hash_hex()] = env  # a node kept it
    ledger.close()
    await poll_now(pipeline)
    assert (await states(desk))["p1"] == "CONFIRMED"
    p2 = (await attempts_by_payout(desk))["p2"]
    assert p2[0][0] == "dead" and p2[0][1].startswith("replaced:"), p2
    await desk.store.pool.execute("UPDATE payouts SET next_attempt_at = now()")
    await run_until_settled(pipeline, ledger, rounds=3)
    assert (await states(desk)) == {"p1": "CONFIRMED", "p2": "CONFIRMED"}
    assert await paid(desk, ledger) == {"p1": 1, "p2": 1}
