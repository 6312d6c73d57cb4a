"""Confirm: poll getTransaction for sent and abandoned attempts; record inclusion, or a proof
of death."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from payout_service import metrics
from payout_service.adapters.ledger import (
    Accepted,
    Duplicate,
    Included,
    NotFound,
    Rejected,
    RetryLater,
)
from payout_service.app.stage import Stage, attempt_ids
from payout_service.core.model import Attempt
from payout_service.core.pacing import resend_due
from payout_service.core.retry import (
    PERMANENT_REJECTIONS,
    backoff_seconds,
    judge_on_chain_failure,
    proof_of_death,
    sequence_consumed,
    verdict_at_death,
)
from payout_service.core.states import AttemptStatus
from payout_service.failpoints import failpoint
from payout_service.tracing import payout_span

log = logging.getLogger(__name__)


class Confirming(Stage):
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
            self._nudge("preparer")  # its source (or channel) is free for the next one
            self._nudge("sender")  # and its room in the network's queue for a held one
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
        # is harmless if the node already has it and recovers one it dropped. A node drops a
        # queued transaction only when a ledger closes, so once per closed ledger is enough
        # (not on every poll); the guarded record makes it once across replicas too.
        if not resend_due(attempt.last_sent_ledger, found.latest_ledger):
            return
        if not await self.attempts.record_resend(attempt, found.latest_ledger):
            return
        outcome = await self.ledger.send(attempt.envelope_xdr)
        if isinstance(outcome, Rejected):
            await self._rejected(attempt, outcome.code)
        elif not isinstance(outcome, Accepted | Duplicate | RetryLater):
            log.warning("unexpected send outcome",
                        extra={**attempt_ids(attempt), "outcome": repr(outcome)})

    async def _included(self, attempt: Attempt, found: Included) -> None:
        failpoint("before_confirm")
        if attempt.batch_id is not None:
            await self._batch_included(attempt, found)
            return
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

    async def _batch_included(self, lead: Attempt, found: Included) -> None:
        """A batch landed: every payout confirmed, or (failed) each judged by its own
        operation's result; the innocent are re-batched (core/batches.judge_failed_batch)."""
        assert lead.batch_id is not None  # noqa: S101
        if found.successful:
            confirmed = await self.batches.confirm(lead.batch_id, ledger=found.ledger,
                                                   fee_charged=found.fee_charged)
            metrics.ATTEMPTS.labels("included").inc(len(confirmed))
            metrics.FEES.inc(found.fee_charged)
            now = datetime.now(UTC)
            for payout in confirmed:
                metrics.AMOUNT.labels("confirmed").inc(payout.net_stroops)
                metrics.CONFIRMATION_SECONDS.observe((now - payout.created_at).total_seconds())
            log.info("batch confirmed", extra={**attempt_ids(lead), "ledger": found.ledger,
                                               "payouts": len(confirmed)})
            return
        outcome = await self.batches.failed_on_chain(
            lead.batch_id, ledger=found.ledger, tx_code=found.result_code,
            op_codes=found.op_codes, max_attempts=self.config.max_attempts,
            delay=timedelta(seconds=backoff_seconds(lead.number)),
        )
        metrics.ATTEMPTS.labels(AttemptStatus.FAILED_ON_CHAIN).inc(len(outcome))
        log.warning("batch failed on chain", extra={
            **attempt_ids(lead), "ledger": found.ledger, "op_codes": list(found.op_codes),
            "failed": sum(1 for s in outcome.values() if s == "FAILED")})
