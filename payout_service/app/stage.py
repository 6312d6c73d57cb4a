"""What the pipeline's steps share: configuration, stores, the ledger and signer ports, and
the one way an attempt is declared dead."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from payout_approvals.statement import Approval
from payout_service import metrics
from payout_service.adapters.approval_store import approvals_of
from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.batch_store import BatchStore
from payout_service.adapters.ledger import Included, LedgerGateway
from payout_service.adapters.sequences import Sequences
from payout_service.adapters.signer_client import SignedEnvelope, SignerClient, SigningRefused
from payout_service.adapters.work_queues import WorkQueues
from payout_service.app.chain_memory import ChainMemory
from payout_service.config import Config
from payout_service.core.model import Attempt, Payout
from payout_service.core.proofs import (
    DeathKind,
    DeathProof,
    Envelope,
    expired_unused,
    proof_of_death,
)
from payout_service.core.refusals import Blame, blame_refusal, held_reason
from payout_service.core.retry import backoff_seconds, verdict_at_death
from payout_service.core.states import AttemptStatus, IllegalTransition

log = logging.getLogger(__name__)


def attempt_ids(attempt: Attempt) -> dict[str, Any]:
    """What on-call searches logs by: the payout's ids, the attempt and its hash."""
    return {"payout_id": attempt.payout_ref, "payout_uuid": str(attempt.payout_id),
            "correlation_id": attempt.correlation_id, "attempt": attempt.number,
            "tx_hash": attempt.tx_hash}


def envelope_of(attempt: Attempt) -> Envelope:
    """What a proof of death needs to know of an attempt: its number, its max_time, and the
    ledger it left us at (first sent, or handed out unsigned; None if it never left us)."""
    return Envelope(attempt.sequence, int(attempt.max_time.timestamp()),
                    attempt.submitted_ledger)


class Stage:
    """Base of the prepare, send and confirm steps (composed by Pipeline)."""

    config: Config
    attempts: AttemptStore
    batches: BatchStore
    queues: WorkQueues
    sequences: Sequences
    ledger: LedgerGateway
    # What this process has seen of the chain, for proofs of death (app/chain_memory.py).
    chain: ChainMemory
    signer: SignerClient | None
    external: bool
    # Where this build pass's transactions come from (core/sources.py): a leased channel
    # (True) or the payer. Set once a pass by prepare_once, read by its build steps.
    channel_mode: bool
    _poll: timedelta
    # Loop name -> its wake-up: set when this process just made work for that loop (a
    # signed envelope for the sender, a freed source or channel for the preparer), so the
    # next step does not wait out the idle interval. Other replicas poll as before.
    _nudges: dict[str, asyncio.Event]

    def _nudge(self, loop: str) -> None:
        event = getattr(self, "_nudges", {}).get(loop)
        if event is not None:
            event.set()

    async def _signed(self, attempt: Attempt, *, payout_id: str, correlation_id: str
                      ) -> SignedEnvelope:
        """The attempt's envelope with the signatures it needs, decided by its own source (not
        by the pass that signs it, which may be later, after a crash): a channel transaction
        the channel's (its source; the key id from the registry) and then the payer's (the
        operations' source), a payer transaction the payer's alone. Raises SigningRefused and
        SignerUnavailable."""
        assert self.signer is not None  # noqa: S101
        keys: tuple[str | None, ...] = (None,)  # None: the paying key
        if attempt.source_account != self.config.source_account:
            channel_key = await self.signer.channel_key(attempt.source_account)
            if channel_key is None:
                # Never signed by the payer alone: the network would refuse it anyway.
                raise SigningRefused(
                    f"no signer key registered for channel {attempt.source_account}",
                    code="NO_KEY")
            keys = (channel_key, None)
        envelope_xdr = attempt.envelope_xdr
        approvals = await self._approvals(attempt)
        for key_id in keys:
            signed = await self.signer.sign_transaction(
                envelope_xdr, payout_id=payout_id, attempt=attempt.number,
                correlation_id=correlation_id, key_id=key_id, approvals=approvals,
            )
            envelope_xdr = signed.envelope_xdr
        return signed

    async def _approvals(self, attempt: Attempt) -> list[tuple[int, Approval]]:
        """The stored, unexpired approvals of the attempt's payouts, each with its payout's
        operation index (a single payout's transfer is operation 0): the signer needs them
        for an operation above its approval threshold and ignores them otherwise."""
        if self.config.approval_rules is None:
            return []
        indexes = ({attempt.payout_id: 0} if attempt.batch_id is None
                   else await self.batches.op_indexes(attempt.batch_id))
        stored = await approvals_of(self.queues.pool, list(indexes))
        return [(indexes[payout], a) for payout, approvals in stored.items() for a in approvals]

    async def _expired_unsigned(self, attempt: Attempt) -> bool:
        """Before asking the signer: an attempt built and never signed whose max_time has
        passed (the signer was away longer than the window) can no longer be signed. It never
        left us: superseded and rebuilt, never failed (True). The signer judges max_time by
        its wall clock, so this does too."""
        if attempt.max_time.timestamp() > time.time():
            return False
        await self._rebuild_unsent(attempt, why="max_time passed before signing")
        return True

    async def _rebuild_unsent(self, attempt: Attempt, *, why: str) -> None:
        if attempt.batch_id is not None:
            rebuilt = await self.batches.rebuild_unsent(attempt.batch_id)
        else:
            rebuilt = await self.attempts.rebuild_unsent(attempt.payout_id, attempt.number)
        metrics.ATTEMPTS.labels("expired_unsigned").inc()
        log.warning("unsigned envelope past its max_time: rebuilt", extra={
            **attempt_ids(attempt), "why": why, "rebuilt": rebuilt,
            "max_time": attempt.max_time.isoformat()})
        self._nudge("preparer")

    async def _refusal_handled(self, attempt: Attempt, err: SigningRefused) -> bool:
        """A refusal that is not the payout's (core/refusals.py): the max_time passed (the
        attempt is rebuilt), or the attempt's channel is at fault (the channel is held and
        the payout, or the whole batch, goes back to the queue, not failed): True. False: the
        refusal is the payout's, the caller fails it as before."""
        assert self.signer is not None  # noqa: S101
        account = attempt.source_account
        channel_sourced = account != self.config.source_account
        channel_key = await self.signer.channel_key(account) if channel_sourced else None
        # No key id: the signer could not be asked (no key registered for the channel).
        by_channel_key = err.key_id is None or err.key_id == channel_key
        blame = blame_refusal(channel_sourced=channel_sourced, by_channel_key=by_channel_key,
                              rule=err.rule, code=err.code,
                              expired=attempt.max_time.timestamp() <= time.time() + 1,
                              refused_account=err.account, channel=account)
        if blame is Blame.REBUILD:
            await self._rebuild_unsent(attempt, why=f"signer: {err}"[:200])
            return True
        if blame is not Blame.CHANNEL:
            return False
        reason = held_reason(by_channel_key=by_channel_key, rule=err.rule, message=str(err))
        try:
            if attempt.batch_id is not None:
                held = await self.batches.hold_channel_unsent(attempt.batch_id, reason=reason,
                                                              actor="preparer")
            else:
                held = await self.attempts.hold_channel_unsent(
                    attempt.payout_id, attempt.number, reason=reason, actor="preparer")
        except IllegalTransition:
            # Moved meanwhile (cancelled, or signed by another preparer): nothing to give
            # back here; the channel is judged again if it is refused again.
            log.info("channel hold skipped: the attempt moved meanwhile",
                     extra={**attempt_ids(attempt), "channel": account})
            return True
        metrics.ATTEMPTS.labels("channel_held").inc()
        log.warning("channel held: the signer refused because of it; payout re-queued",
                    extra={**attempt_ids(attempt), "channel": account, "rule": err.rule,
                           "refused_by": "channel_key" if by_channel_key else "payer_key",
                           "newly_held": held})
        self._nudge("preparer")
        return True

    async def _look(self, attempt: Attempt, *, read_account: bool) -> Included | DeathProof | None:
        """Looks at the chain for an envelope that left us, in the safe order: what was seen
        before (the earliest ledger seen closed past max_time, the source account's last
        read, and with `read_account` a fresh read of it), then getTransaction. Included: it
        landed. A proof: it never can (core/proofs.py). None: it may still land."""
        source = attempt.source_account
        envelope = envelope_of(attempt)
        closed = self.chain.closed_past(envelope.max_time)
        accounts = [self.chain.account(source)]
        if read_account:
            fresh = await self.ledger.account_state(source)
            self.chain.saw_account(source, fresh)
            accounts.append(fresh)
        found = await self.ledger.lookup(attempt.tx_hash)
        if isinstance(found, Included):
            return found
        self.chain.saw_ledger(found.latest_ledger, found.latest_ledger_close_time)
        for account in accounts:
            proof = proof_of_death(envelope, found, closed=closed, account=account)
            if proof is not None:
                return proof
        # Expired unused needs no order between its observations: the NOT_FOUND's own
        # ledger may be the first one seen past max_time.
        return expired_unused(envelope, closed=self.chain.closed_past(envelope.max_time),
                              account=self.chain.account(source))

    async def _dead(self, attempt: Attempt, proof: DeathProof, *, last_rejection: str | None,
                    actor: str) -> None:
        """The one way an attempt whose envelope left us is given up for a new one: the chain
        proved it can never land (core/proofs.py). Its number is free again; its payout (every
        payout of its batch) gets a new attempt or fails, as its last rejection decides."""
        verdict = verdict_at_death(last_rejection)
        await self._give_up(attempt, status=AttemptStatus.DEAD, code=verdict.code,
                            proof=f"{proof.kind}: {proof.text}", ledger=None,
                            retry=verdict.retry, actor=actor)
        account = self.chain.account(attempt.source_account)
        if proof.kind is DeathKind.SEQUENCE_CONSUMED and account and account.sequence is not None:
            # Its number was used by another transaction, not freed: numbering restarts from
            # the chain (sequences.renumber_from_chain), so no stale number is handed out.
            await self.attempts.resync_source(attempt.source_account, account.sequence)

    async def _give_up(self, attempt: Attempt, *, status: AttemptStatus, code: str, proof: str,
                       ledger: int | None, retry: bool, actor: str) -> None:
        """Proven dead or failed on chain: nothing of it can land any more."""
        delay = timedelta(seconds=backoff_seconds(attempt.number))
        if attempt.batch_id is not None:
            # The proof is about the transaction, so it holds for every payout in it.
            await self.batches.dead(attempt.batch_id, code=code, proof=proof, retry=retry,
                                    max_attempts=self.config.max_attempts, delay=delay,
                                    actor=actor)
            self._nudge("preparer")
            metrics.ATTEMPTS.labels(status).inc()
            log.warning("batch dead", extra={**attempt_ids(attempt), "code": code,
                                             "batch_id": str(attempt.batch_id)})
            return
        state = await self.attempts.attempt_dead(
            attempt, status=status, code=code, proof=proof, ledger=ledger, retry=retry,
            max_attempts=self.config.max_attempts, delay=delay, actor=actor)
        self._nudge("preparer")
        metrics.ATTEMPTS.labels(status).inc()
        log.warning("attempt dead", extra={**attempt_ids(attempt), "status": status,
                                           "code": code, "payout_state": state.value})

    async def _included(self, attempt: Attempt, found: Included) -> None:
        raise NotImplementedError  # Confirming

    async def _rejected(self, attempt: Attempt, code: str) -> None:
        raise NotImplementedError  # Sending

    async def _prepare(self, payout: Payout, now: int, fee_p90: int | None, ledger: int
                       ) -> bool:
        raise NotImplementedError  # Preparing
