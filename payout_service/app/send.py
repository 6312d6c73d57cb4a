"""Send: claimed signed attempts go to the network in sequence order per source, without
waiting for confirmation; a rejection is judged here."""

from __future__ import annotations

import asyncio
import logging

from payout_service import metrics
from payout_service.adapters.ledger import (
    Included,
    Rejected,
    RetryLater,
    SendOutcome,
)
from payout_service.adapters.sending_pause import SendingPause
from payout_service.app.stage import Stage, attempt_ids
from payout_service.core.model import Attempt
from payout_service.core.pacing import classic_queue_capacity
from payout_service.core.refusals import (
    CHANNEL_HELD,
    Blame,
    blame_rejection,
    network_held_reason,
)
from payout_service.core.retry import PERMANENT_REJECTIONS
from payout_service.core.states import AttemptStatus
from payout_service.failpoints import failpoint
from payout_service.tracing import payout_span

log = logging.getLogger(__name__)


class Sending(Stage):
    # Paused by an operator or the watchdog (invariant 9): nothing new leaves until resumed.
    sending_pause: SendingPause | None = None

    async def send_once(self) -> int:
        if self.sending_pause is not None and await self.sending_pause.paused():
            return 0
        latest = await self.ledger.latest_ledger()
        self.chain.saw_ledger(latest.sequence, latest.close_time)
        claimed = await self.queues.claim_for_sending(
            self.config.claim_size * self.config.max_payouts_per_tx, latest.sequence,
            close_time=latest.close_time or None,
            classic_capacity=classic_queue_capacity(
                latest.max_tx_set_size, self.config.network_classic_ops_per_ledger))
        # In sequence order within a source account (a node takes N+1 before N+2), sources
        # side by side; a batch's transaction is sent once, through its lead member.
        by_source: dict[str, list[Attempt]] = {}
        for attempt in claimed:
            if attempt.op_index:
                continue
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
        """A rejection alone proves nothing: a re-sent transaction that already landed is
        also rejected (txBAD_SEQ), and a node may keep one it refused. Look at the chain in
        the safe order (the account, then the transaction: core/proofs.py) and let the proof
        function decide."""
        seen = await self._look(attempt, read_account=True)
        if isinstance(seen, Included):
            await self._included(attempt, seen)
            return
        channel_sourced = attempt.source_account != self.config.source_account
        blame = blame_rejection(code, channel_sourced=channel_sourced)
        if blame is Blame.CHANNEL:
            # The channel's fault: hold it and keep its payouts out of FAILED; they are
            # rebuilt elsewhere, uncounted, once this envelope is proven dead.
            await self._hold_channel_for(attempt, code)
        account = self.chain.account(attempt.source_account)
        chain_sequence = account.sequence if account is not None else None
        if seen is not None:
            await self._dead(attempt, seen,
                             last_rejection=CHANNEL_HELD if blame is Blame.CHANNEL else code,
                             actor="sender")
            return
        if blame is Blame.CHANNEL:
            return
        if code in PERMANENT_REJECTIONS:
            # Can never become valid: fail the payout now and give the number to the next
            # reservation, whose transaction replaces this one (abandon_sent says why).
            if attempt.batch_id is not None:
                await self.batches.abandon_sent(attempt.batch_id, code=code)
            else:
                await self.attempts.abandon_sent(attempt, code=code, actor="sender")
            metrics.ATTEMPTS.labels(AttemptStatus.ABANDONED).inc()
            log.warning("attempt abandoned", extra={**attempt_ids(attempt), "code": code})
            return
        # Not proven dead: a predecessor may still be pending (txBAD_SEQ "too early") or the
        # node may take it later. Keep the envelope; the confirmer re-sends it and, once a
        # ledger closes past max_time, proves it dead (then the code decides).
        await self.attempts.note_rejection(attempt, code)
        if code == "txBAD_SEQ" and chain_sequence is not None:
            # Too early: some number between the chain's and ours is not on its way. Re-sync
            # so that a hole nobody holds is free for the next reservation (see
            # sequences.renumber_from_chain for why this never rebuilds a live envelope).
            await self.attempts.resync_source(attempt.source_account, chain_sequence)

    async def _hold_channel_for(self, attempt: Attempt, code: str) -> None:
        held = await self.attempts.hold_channel_sent(attempt, reason=network_held_reason(code),
                                                     actor="sender")
        metrics.ATTEMPTS.labels("channel_held").inc()
        log.warning("channel held: the network refused its transaction; its payouts wait for "
                    "the proof of death and are rebuilt uncounted", extra={
                        **attempt_ids(attempt), "channel": attempt.source_account,
                        "code": code, "newly_held": held})
