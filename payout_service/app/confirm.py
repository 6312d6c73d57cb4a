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
    Rejected,
    RetryLater,
)
from payout_service.app.stage import Stage, attempt_ids, envelope_of
from payout_service.core.model import Attempt, Payout
from payout_service.core.pacing import resend_due
from payout_service.core.payees import landed_payee_problem, payee_memo
from payout_service.core.payment_proofs import PaymentProof, fee_shares, read_proof
from payout_service.core.proofs import (
    DeathProof,
    Envelope,
    expired_unused,
    history_misses,
    proof_of_death,
    replaced_by,
)
from payout_service.core.retry import (
    backoff_seconds,
    judge_on_chain_failure,
    worth_resending,
)
from payout_service.core.states import AttemptStatus
from payout_service.failpoints import failpoint
from payout_service.tracing import payout_span

log = logging.getLogger(__name__)


def proof_of_payment(attempt: Attempt, found: Included, *, position: int,
                     fee_share: int) -> PaymentProof | None:
    """The proof read from the chain's record of the transaction. The money has moved: a
    record that cannot be read (no envelope from the RPC) confirms the payout without a
    proof, loudly, rather than leaving it unconfirmed."""
    try:
        return read_proof(
            found.envelope_xdr, found.meta_xdr, tx_hash=attempt.tx_hash, ledger=found.ledger,
            ledger_close_time=found.close_time, application_order=found.application_order,
            position=position, fee_charged=found.fee_charged, fee_share=fee_share)
    except Exception as err:  # noqa: BLE001 - any unreadable record: confirm without
        metrics.PROOFS_MISSING.inc()
        log.error("no proof of payment could be read", extra={
            **attempt_ids(attempt), "position": position, "ledger": found.ledger,
            "error": str(err)[:200]})
        return None


class Confirming(Stage):
    async def confirm_once(self) -> int:
        claimed = await self.queues.claim_for_confirming(
            self.config.claim_size, self._poll, self.config.confirm_max_polls
        )
        await asyncio.gather(*(self._confirm(a) for a in claimed))
        outside = await self.queues.claim_outside_envelopes(self.config.claim_size, self._poll)
        for attempt in outside:
            await self._watch_outside(attempt)
        return 0  # polling is paced by next_poll_at, not by a busy loop

    async def _share_of(self, attempt: Attempt, fee_charged: int) -> tuple[int, int]:
        """(its place in the transaction, its share of the fee) for one payout's attempt: a
        batch member's op index and share (core/payment_proofs.fee_shares, as when a batch
        is confirmed whole), or (0, the whole fee) for a transaction of its own."""
        if attempt.batch_id is None or attempt.op_index is None:
            return 0, fee_charged
        members = await self.batches.op_indexes(attempt.batch_id)
        shares = fee_shares(fee_charged, max(1, len(members)))
        rank = sorted(members.values()).index(attempt.op_index) \
            if attempt.op_index in members.values() else 0
        return attempt.op_index, shares[rank]

    async def _watch_outside(self, attempt: Attempt) -> None:
        """An envelope that left us and that we do not send: handed out unsigned to an
        external signer (its holder may submit it without telling us), or ABANDONED (a node
        or a holder may still have it). Watched until it lands (then its payout was paid by
        it) or the chain proves it dead (core/proofs.py), whatever the signing mode is now."""
        seen = await self._look(attempt, read_account=True)
        abandoned = attempt.status == AttemptStatus.ABANDONED
        if isinstance(seen, Included):
            await self._replaced(attempt, seen)
            if abandoned:
                position, share = await self._share_of(attempt, seen.fee_charged)
                payout = await self.attempts.abandoned_landed(
                    attempt, successful=seen.successful, ledger=seen.ledger,
                    code=seen.result_code, fee_charged=share,
                    proof=proof_of_payment(attempt, seen, position=position, fee_share=share))
                log.error("abandoned attempt landed", extra={
                    **attempt_ids(attempt), "ledger": seen.ledger,
                    "payout_state": payout.state.value if payout else None})
            else:
                await self._included(attempt, seen)
                log.warning("an envelope handed out unsigned was submitted by its holder",
                            extra={**attempt_ids(attempt), "ledger": seen.ledger,
                                   "successful": seen.successful})
            return
        if seen is None:
            return
        if abandoned:
            await self.attempts.abandoned_dead(attempt, f"{seen.kind}: {seen.text}")
            log.info("abandoned attempt dead", extra={**attempt_ids(attempt),
                                                      "proof": seen.text})
            return
        # Handed out and never signed back in time: a new envelope is built only now.
        await self._dead(attempt, seen, last_rejection=None, actor="confirmer")

    async def _expired_unused(self, attempt: Attempt, envelope: Envelope) -> DeathProof | None:
        """No node's history reaches back to when it left us (a node restarted without its
        history, or the retention window is shorter than the wait): no NOT_FOUND can prove it
        dead, but a read of its source past max_time can (core/proofs.py, expired unused)."""
        closed = self.chain.closed_past(envelope.max_time)
        if closed is None or closed.close_time <= envelope.max_time:
            return None  # not expired yet: nothing to read
        account = await self.ledger.account_state(attempt.source_account)
        self.chain.saw_account(attempt.source_account, account)
        return expired_unused(envelope, closed=closed, account=account)

    async def _replaced(self, landed: Attempt, found: Included) -> None:
        """An envelope that left us and that we no longer send landed: the live transaction
        that took its number since (its replacement) can never land, and is proven dead
        first (the database holds one live transaction per number)."""
        for other in await self.queues.live_at_number(landed.source_account, landed.sequence,
                                                      besides=landed.payout_id):
            proof = replaced_by(envelope_of(other), landed.tx_hash, found.ledger)
            await self._dead(other, proof, last_rejection=None, actor="confirmer")

    async def _confirm(self, attempt: Attempt) -> None:
        with payout_span("payout.confirm", attempt.trace_context, attempt=attempt.number,
                         tx_hash=attempt.tx_hash):
            await self._confirm_in_span(attempt)

    async def _confirm_in_span(self, attempt: Attempt) -> None:
        envelope = envelope_of(attempt)
        closed = self.chain.closed_past(envelope.max_time)
        found = await self.ledger.lookup(attempt.tx_hash)
        if isinstance(found, Included):
            await self._included(attempt, found)
            self._nudge("preparer")  # its source (or channel) is free for the next one
            self._nudge("sender")  # and its room in the network's queue for a held one
            return
        self.chain.saw_ledger(found.latest_ledger, found.latest_ledger_close_time)
        # Expiry needs no account read; a consumed number is proven when a re-send is
        # rejected (the sender reads the account for it) or from the account's last read.
        proof = proof_of_death(envelope, found, closed=closed,
                               account=self.chain.account(attempt.source_account))
        if proof is None and history_misses(envelope, found.oldest_ledger):
            proof = await self._expired_unused(attempt, envelope)
        if proof is not None:
            await self._dead(attempt, proof, last_rejection=attempt.result_code,
                             actor="confirmer")
            return
        if attempt.poll_count == self.config.confirm_max_polls:
            # Overdue, but a new attempt now could pay twice: keep polling (slower) and wait
            # for the proof (a ledger closed past max_time, or the sequence consumed).
            log.warning("confirmation overdue", extra={
                **attempt_ids(attempt), "polls": attempt.poll_count,
                "max_time": attempt.max_time.isoformat(),
            })
        if not worth_resending(attempt.result_code):
            return
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
                attempt, ledger=found.ledger, fee_charged=found.fee_charged,
                proof=proof_of_payment(attempt, found, position=0,
                                       fee_share=found.fee_charged),
            )
            if payout is not None:
                self._check_payee(payout, found, op_index=0)
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
        await self._give_up(
            attempt, status=AttemptStatus.FAILED_ON_CHAIN, code=found.result_code,
            proof=f"failed on chain in ledger {found.ledger}", ledger=found.ledger,
            retry=verdict.retry, actor="confirmer")

    def _check_payee(self, payout: Payout, found: Included, *, op_index: int) -> None:
        """The memo and muxed id an exchange credits by, read back from the chain's record.
        The money has moved by now: a mismatch cannot be undone here, so it is reported
        loudly for an operator (the payee's support needs the transaction)."""
        memo = payee_memo(payout.memo_type, payout.memo_value)
        if (memo is None and payout.muxed_id is None) or not found.envelope_xdr:
            return
        problem = landed_payee_problem(found.envelope_xdr, found.meta_xdr, op_index=op_index,
                                       memo=memo, muxed_id=payout.muxed_id)
        if problem is None:
            log.info("payee identification landed", extra={
                "payout_id": payout.payout_id, "ledger": found.ledger})
            return
        metrics.PAYEE_MISMATCHES.inc()
        log.error("payee identification did not land as asked", extra={
            "payout_id": payout.payout_id, "problem": problem, "ledger": found.ledger,
            "correlation_id": payout.correlation_id})

    async def _batch_included(self, lead: Attempt, found: Included) -> None:
        """A batch landed: every payout confirmed, or (failed) each judged by its own
        operation's result; the innocent are re-batched (core/batches.judge_failed_batch)."""
        assert lead.batch_id is not None  # noqa: S101
        if found.successful:
            confirmed = await self.batches.confirm(
                lead.batch_id, ledger=found.ledger, fee_charged=found.fee_charged,
                proof_of=lambda position, share: proof_of_payment(
                    lead, found, position=position, fee_share=share))
            metrics.ATTEMPTS.labels("included").inc(len(confirmed))
            metrics.FEES.inc(found.fee_charged)
            now = datetime.now(UTC)
            op_indexes = await self.batches.op_indexes(lead.batch_id)
            for payout in confirmed:
                self._check_payee(payout, found, op_index=op_indexes.get(payout.id, 0))
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
