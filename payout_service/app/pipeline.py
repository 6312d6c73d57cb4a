"""The live pipeline: prepare (build + sign), send, confirm: separate loops (seed 004).

Sending never waits for confirmation. Each loop claims its work from PostgreSQL with
SKIP LOCKED, so any number of replicas can run them against one database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stellar_sdk import MuxedAccount, Preconditions, TimeBounds
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service import metrics
from payout_service.adapters.attempt_store import AttemptBuilder, AttemptStore, NewAttempt
from payout_service.adapters.ledger import (
    Accepted,
    Duplicate,
    Included,
    LedgerGateway,
    NotFound,
    Rejected,
    RetryLater,
    SendOutcome,
    SimulationFailed,
)
from payout_service.adapters.sequences import Sequences
from payout_service.adapters.signer_client import SignerClient, SignerUnavailable, SigningRefused
from payout_service.adapters.work_queues import WorkQueues
from payout_service.config import Config
from payout_service.core.model import Attempt, Payout
from payout_service.core.retry import (
    PERMANENT_REJECTIONS,
    backoff_seconds,
    judge_on_chain_failure,
    proof_of_death,
    sequence_consumed,
    verdict_at_death,
)
from payout_service.core.states import AttemptStatus
from payout_service.core.transactions import (
    BASE_INCLUSION_FEE,
    TxParams,
    build_payout_transaction,
    inclusion_fee_bid,
    payout_call,
)
from payout_service.failpoints import failpoint
from payout_service.loops import run_loop
from payout_service.tracing import payout_span

log = logging.getLogger(__name__)


def attempt_ids(attempt: Attempt) -> dict[str, Any]:
    """What on-call searches logs by: the payout's ids, the attempt and its hash."""
    return {"payout_id": attempt.payout_ref, "payout_uuid": str(attempt.payout_id),
            "correlation_id": attempt.correlation_id, "attempt": attempt.number,
            "tx_hash": attempt.tx_hash}


@dataclass
class _PreparedBuilder(AttemptBuilder):
    template: TransactionEnvelope
    source_account: str
    passphrase: str
    window_seconds: int
    now: int
    channels: tuple[str, ...] = ()
    handed_out_at_ledger: int | None = None

    def __call__(self, source: str, sequence: int) -> NewAttempt:
        now = self.now
        tx = self.template.transaction
        tx.source = MuxedAccount(source)
        tx.sequence = sequence
        # Invariant 2: every transaction carries a max_time, so "proven dead" is reachable.
        tx.preconditions = Preconditions(time_bounds=TimeBounds(0, now + self.window_seconds))
        envelope = TransactionEnvelope(tx, self.passphrase)
        return NewAttempt(
            source_account=source, sequence=sequence,
            min_time=datetime.fromtimestamp(0, UTC),
            max_time=datetime.fromtimestamp(now + self.window_seconds, UTC),
            envelope_xdr=envelope.to_xdr(), tx_hash=envelope.hash_hex(), fee_stroops=tx.fee,
            handed_out_at_ledger=self.handed_out_at_ledger,
        )


class Pipeline:
    def __init__(
        self, config: Config, attempts: AttemptStore, ledger: LedgerGateway,
        signer: SignerClient | None,
    ) -> None:
        self.config = config
        self.attempts = attempts
        self.queues = WorkQueues(attempts.pool)
        self.sequences = Sequences(attempts.pool)
        self.ledger = ledger
        self.signer = signer
        self.external = config.signing_mode == "external"
        self.channels = tuple(config.signer.channel_keys) if config.signer else ()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._poll = timedelta(milliseconds=config.confirm_poll_ms)

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        interval = min(1.0, self.config.confirm_poll_ms / 1000)
        for name, step in (("preparer", self.prepare_once), ("sender", self.send_once),
                           ("confirmer", self.confirm_once)):
            self._tasks.append(asyncio.create_task(run_loop(
                name, step, interval=interval, halt=self._stop, pool=self.attempts.pool)))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- prepare: build, reserve the sequence, sign ---------------------------------------

    async def prepare_once(self) -> int:
        cfg = self.config
        for source in (cfg.source_account, *self.channels):
            if not await self.sequences.has_source(source):
                chain_seq = await self.ledger.account_sequence(source)
                await self.sequences.ensure_source(source, chain_seq)
        work = 0
        if self.signer is not None:
            for payout, attempt in await self.queues.unsigned_attempts(cfg.batch_size):
                await self._sign(payout, attempt)
                work += 1
        if self.external:
            latest = await self.ledger.latest_ledger()
            for expired in await self.queues.expired_awaiting_signature(latest.close_time):
                await self._dead(
                    expired, status=AttemptStatus.DEAD, code="signature_window_expired",
                    proof=f"unsigned; ledger {latest.sequence} closed {latest.close_time} "
                    f"> max_time {int(expired.max_time.timestamp())}",
                    ledger=None, retry=True, max_attempts=cfg.max_attempts,
                    delay=timedelta(0), actor="preparer",
                )
                work += 1
        room = cfg.batch_size
        if self.channels:
            # One transaction in flight per channel: simulate only what can be leased now.
            room = min(room, await self.sequences.free_channels(self.channels))
        needing = await self.queues.payouts_needing_attempt(room) if room else []
        if needing:
            # Time bounds follow the later of our clock and the ledger's, so a rebuilt attempt
            # is never born expired nor identical to the one that died.
            latest = await self.ledger.latest_ledger()
            now = max(int(time.time()), latest.close_time)
            p90 = await self.ledger.inclusion_fee_p90()
            for payout in needing:
                with payout_span("payout.prepare", payout.trace_context,
                                 payout_id=payout.payout_id):
                    await self._prepare(payout, now, p90, latest.sequence)
                work += 1
        return work

    async def _prepare(
        self, payout: Payout, now: int, fee_p90: int | None, ledger: int
    ) -> None:
        cfg = self.config
        bid = inclusion_fee_bid(payout.attempt_count + 1, fee_p90, cfg.max_inclusion_fee_stroops)
        call = payout_call(payout.asset, cfg.network_passphrase, cfg.contract_id, cfg.method_name)
        # Simulate before taking any lock; the sequence number and time bounds are set
        # afterwards inside the reserving SQL transaction (they do not change the simulation).
        draft = build_payout_transaction(
            TxParams(cfg.source_account, 1, 0, now + cfg.tx_window_seconds,
                     cfg.network_passphrase),
            call, payer=cfg.source_account, destination=payout.destination,
            amount_stroops=payout.net_stroops,
            operation_source=cfg.source_account if self.channels else None,
            inclusion_fee=bid,
        )
        try:
            prepared = await self.ledger.prepare(draft)
        except SimulationFailed as err:
            await self._refuse_before_build(payout, "simulation_failed", str(err))
            return
        # Only the resource fee can make a payout too expensive: a bid that would push the
        # total over max gas is lowered to fit, down to the protocol minimum.
        if prepared.transaction.fee - bid + BASE_INCLUSION_FEE > cfg.max_gas_stroops:
            await self._refuse_before_build(
                payout, "max_gas",
                f"prepared fee {prepared.transaction.fee} exceeds max gas {cfg.max_gas_stroops}",
            )
            return
        prepared.transaction.fee = min(prepared.transaction.fee, cfg.max_gas_stroops)
        # External signers take longer; the window bounds how long a sequence number is held.
        window = cfg.external_window_seconds if self.external else cfg.tx_window_seconds
        builder = _PreparedBuilder(
            prepared, cfg.source_account, cfg.network_passphrase, window, now, self.channels,
            # Handed out unsigned: its holder could submit it from this ledger on.
            handed_out_at_ledger=ledger if self.external else None,
        )
        created = await self.attempts.create_attempt(payout.id, builder, external=self.external)
        failpoint("after_reserve")
        if created is None or self.external:
            return
        built_payout, attempt = created
        await self._sign(built_payout, attempt)

    async def _dead(self, attempt: Attempt, **kwargs: Any) -> None:
        state = await self.attempts.attempt_dead(attempt, **kwargs)
        metrics.ATTEMPTS.labels(kwargs["status"]).inc()
        log.warning("attempt dead", extra={**attempt_ids(attempt), "status": kwargs["status"],
                                           "code": kwargs["code"], "payout_state": state.value})

    async def _refuse_before_build(self, payout: Payout, code: str, message: str) -> None:
        await self.attempts.fail_before_build(payout, code, message)

    async def _sign(self, payout: Payout, attempt: Attempt) -> None:
        with payout_span("payout.sign", payout.trace_context, payout_id=payout.payout_id,
                         attempt=attempt.number, tx_hash=attempt.tx_hash):
            await self._sign_in_span(payout, attempt)

    async def _sign_in_span(self, payout: Payout, attempt: Attempt) -> None:
        assert self.signer is not None  # noqa: S101
        # A channel transaction needs the channel's signature (transaction source) and the
        # paying account's (operation source); otherwise the paying account's alone.
        channel_key = self.signer.channel_key(attempt.source_account)
        try:
            envelope_xdr = attempt.envelope_xdr
            for key_id in (channel_key, None) if channel_key else (None,):
                signed = await self.signer.sign_transaction(
                    envelope_xdr, payout_id=payout.payout_id, attempt=attempt.number,
                    correlation_id=payout.correlation_id, key_id=key_id,
                )
                envelope_xdr = signed.envelope_xdr
        except SignerUnavailable:
            # The built attempt stays; a later pass signs the same envelope. Raised to the
            # loop runner, which backs off instead of retrying every payout at once.
            raise
        except SigningRefused as err:
            await self.attempts.refuse_unsent(
                payout.id, attempt.number, code="signer_refused", message=str(err),
                actor="preparer",
            )
            return
        if signed.tx_hash != attempt.tx_hash:
            await self.attempts.refuse_unsent(
                payout.id, attempt.number, code="signer_hash_mismatch",
                message="signer hashed a different transaction", actor="preparer",
            )
            return
        await self.attempts.store_signed(payout.id, attempt.number, signed.envelope_xdr,
                                         actor="preparer")
        failpoint("after_sign")

    # ---- send ---------------------------------------------------------------------------

    async def send_once(self) -> int:
        latest = await self.ledger.latest_ledger()
        claimed = await self.queues.claim_for_sending(self.config.batch_size, latest.sequence)
        # In sequence order within a source account (a node takes N+1 before N+2), sources
        # side by side.
        by_source: dict[str, list[Attempt]] = {}
        for attempt in claimed:
            by_source.setdefault(attempt.source_account, []).append(attempt)
        await asyncio.gather(*(self._send_in_order(group) for group in by_source.values()))
        return len(claimed)

    async def _send_in_order(self, attempts: list[Attempt]) -> None:
        for attempt in sorted(attempts, key=lambda a: a.sequence):
            await self._send(attempt)

    async def _send(self, attempt: Attempt) -> None:
        with payout_span("payout.send", attempt.trace_context, attempt=attempt.number,
                         tx_hash=attempt.tx_hash) as span:
            outcome = await self.ledger.send(attempt.envelope_xdr)
            failpoint("after_send")
            span.set_attribute("outcome", type(outcome).__name__)
            await self._after_send(attempt, outcome)

    async def _after_send(self, attempt: Attempt, outcome: SendOutcome) -> None:
        log.info("sent", extra={**attempt_ids(attempt), "outcome": type(outcome).__name__})
        if isinstance(outcome, RetryLater):
            metrics.RPC_ERRORS.labels(outcome.reason).inc()
        if isinstance(outcome, Rejected):
            await self._rejected(attempt, outcome.code)

    async def _rejected(self, attempt: Attempt, code: str) -> None:
        # A re-sent transaction that already landed is also "rejected" (txBAD_SEQ): look the
        # hash up before anything else.
        found = await self.ledger.lookup(attempt.tx_hash)
        if isinstance(found, Included):
            await self._included(attempt, found)
            return
        assert isinstance(found, NotFound)  # noqa: S101
        chain_seq = await self.ledger.account_sequence(attempt.source_account)
        submitted = attempt.submitted_ledger or found.latest_ledger
        proof = sequence_consumed(
            sequence=attempt.sequence, chain_sequence=chain_seq,
            history_covers_submission=found.oldest_ledger <= submitted,
        )
        if proof is not None:
            await self._dead(
                attempt, status=AttemptStatus.DEAD, code=code, proof=proof.text, ledger=None,
                retry=True, max_attempts=self.config.max_attempts,
                delay=timedelta(seconds=backoff_seconds(attempt.number)), actor="sender",
            )
            await self.attempts.resync_source(attempt.source_account, chain_seq)
            return
        if code in PERMANENT_REJECTIONS:
            # Can never become valid: fail the payout now and give the number to the next
            # reservation, whose transaction replaces this one (abandon_sent says why).
            await self.attempts.abandon_sent(attempt, code=code, actor="sender")
            metrics.ATTEMPTS.labels(AttemptStatus.ABANDONED).inc()
            log.warning("attempt abandoned", extra={**attempt_ids(attempt), "code": code})
            return
        # Not proven dead: a predecessor may still be pending (txBAD_SEQ "too early") or the
        # node may take it later. Keep the envelope; the confirmer re-sends it and, once a
        # ledger closes past max_time, proves it dead (then the code decides).
        await self.attempts.note_rejection(attempt, code)
        if code == "txBAD_SEQ":
            # Too early: some number between the chain's and ours is not on its way. Re-sync
            # so that a hole nobody holds is free for the next reservation (see
            # sequences.renumber_from_chain for why this never rebuilds a live envelope).
            await self.attempts.resync_source(attempt.source_account, chain_seq)

    # ---- confirm ------------------------------------------------------------------------

    async def confirm_once(self) -> int:
        claimed = await self.queues.claim_for_confirming(
            self.config.batch_size, self._poll, self.config.confirm_max_polls
        )
        await asyncio.gather(*(self._confirm(a) for a in claimed))
        abandoned = await self.queues.claim_abandoned(self.config.batch_size, self._poll)
        for attempt in abandoned:
            await self._watch_abandoned(attempt)
        return 0  # polling is paced by next_poll_at, not by a busy loop

    async def _watch_abandoned(self, attempt: Attempt) -> None:
        """An ABANDONED envelope is watched until it lands (then its payout was paid after
        all) or is proven dead: its number consumed by another transaction (usually its
        replacement) or a ledger closed past its max_time."""
        found = await self.ledger.lookup(attempt.tx_hash)
        if isinstance(found, Included):
            payout = await self.attempts.abandoned_landed(
                attempt, successful=found.successful, ledger=found.ledger,
                code=found.result_code, fee_charged=found.fee_charged,
            )
            log.error("abandoned attempt landed", extra={
                **attempt_ids(attempt), "ledger": found.ledger,
                "payout_state": payout.state.value if payout else None})
            return
        assert isinstance(found, NotFound)  # noqa: S101
        covered = attempt.submitted_ledger is not None and \
            found.oldest_ledger <= attempt.submitted_ledger
        chain_seq = await self.ledger.account_sequence(attempt.source_account)
        proof = sequence_consumed(
            sequence=attempt.sequence, chain_sequence=chain_seq, history_covers_submission=covered,
        ) or proof_of_death(
            max_time=int(attempt.max_time.timestamp()), submitted_ledger=attempt.submitted_ledger,
            latest_ledger=found.latest_ledger, latest_close_time=found.latest_ledger_close_time,
            oldest_ledger=found.oldest_ledger,
        )
        if proof is not None:
            await self.attempts.abandoned_dead(attempt, proof.text)
            log.info("abandoned attempt dead", extra={**attempt_ids(attempt),
                                                      "proof": proof.text})

    async def _confirm(self, attempt: Attempt) -> None:
        with payout_span("payout.confirm", attempt.trace_context, attempt=attempt.number,
                         tx_hash=attempt.tx_hash):
            await self._confirm_in_span(attempt)

    async def _confirm_in_span(self, attempt: Attempt) -> None:
        found = await self.ledger.lookup(attempt.tx_hash)
        if isinstance(found, Included):
            await self._included(attempt, found)
            return
        assert isinstance(found, NotFound)  # noqa: S101
        proof = proof_of_death(
            max_time=int(attempt.max_time.timestamp()), submitted_ledger=attempt.submitted_ledger,
            latest_ledger=found.latest_ledger, latest_close_time=found.latest_ledger_close_time,
            oldest_ledger=found.oldest_ledger,
        )
        if proof is not None:
            verdict = verdict_at_death(attempt.result_code)
            await self._dead(
                attempt, status=AttemptStatus.DEAD, code=verdict.code, proof=proof.text,
                ledger=None, retry=verdict.retry, max_attempts=self.config.max_attempts,
                delay=timedelta(seconds=backoff_seconds(attempt.number)), actor="confirmer",
            )
            return
        if attempt.poll_count == self.config.confirm_max_polls:
            # Overdue, but a new attempt now could pay twice: keep polling (slower) and wait
            # for the proof (a ledger closed past max_time, or the sequence consumed).
            log.warning("confirmation overdue", extra={
                **attempt_ids(attempt), "polls": attempt.poll_count,
                "max_time": attempt.max_time.isoformat(),
            })
        if attempt.result_code in PERMANENT_REJECTIONS:
            return  # re-sending an envelope the node refuses for good only adds load
        # Not found and not provably dead: re-send the very same envelope (same hash), which
        # is harmless if the node already has it and recovers one it dropped.
        outcome = await self.ledger.send(attempt.envelope_xdr)
        await self.attempts.record_resend(attempt)
        if isinstance(outcome, Rejected):
            await self._rejected(attempt, outcome.code)
        elif not isinstance(outcome, Accepted | Duplicate | RetryLater):
            log.warning("unexpected send outcome",
                        extra={**attempt_ids(attempt), "outcome": repr(outcome)})

    async def _included(self, attempt: Attempt, found: Included) -> None:
        failpoint("before_confirm")
        if found.successful:
            payout = await self.attempts.confirm(
                attempt, ledger=found.ledger, fee_charged=found.fee_charged
            )
            if payout is not None:
                metrics.ATTEMPTS.labels("included").inc()
                metrics.AMOUNT.labels("confirmed").inc(payout.net_stroops)
                metrics.FEES.inc(found.fee_charged)
                metrics.CONFIRMATION_SECONDS.observe(
                    (datetime.now(UTC) - payout.created_at).total_seconds()
                )
                log.info("confirmed", extra={"payout_id": payout.payout_id,
                                             "attempt": attempt.number, "tx_hash": attempt.tx_hash,
                                             "ledger": found.ledger,
                                             "correlation_id": payout.correlation_id})
            return
        verdict = judge_on_chain_failure(found.result_code)
        await self._dead(
            attempt, status=AttemptStatus.FAILED_ON_CHAIN, code=found.result_code,
            proof=f"failed on chain in ledger {found.ledger}", ledger=found.ledger,
            retry=verdict.retry, max_attempts=self.config.max_attempts,
            delay=timedelta(seconds=backoff_seconds(attempt.number)), actor="confirmer",
        )


