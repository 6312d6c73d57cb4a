"""Prepare: simulate, reserve a sequence number and build the attempt, then sign it (or hand
it out for an external signature)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from uuid import UUID

from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service import metrics
from payout_service.adapters.attempt_store import AttemptBuilder
from payout_service.adapters.ledger import (
    LedgerUnavailable,
    SimulationFailed,
    SourceAccountMissing,
)
from payout_service.adapters.screening_store import entries_for
from payout_service.adapters.signer_client import SignerUnavailable, SigningRefused
from payout_service.adapters.transitions import move_for_funds
from payout_service.app.prepare_batch import PreparingBatches, stamp_attempt
from payout_service.app.stage import attempt_ids
from payout_service.core.batches import BatchMode, payee_route_problem
from payout_service.core.funds import Claim, decide_funds
from payout_service.core.model import Attempt, NewAttempt, Payout
from payout_service.core.screening import ScreeningEntry, screen, screened_addresses
from payout_service.core.sources import SourcePlan, plan_sources
from payout_service.core.states import PayoutState as S
from payout_service.core.transactions import (
    BASE_INCLUSION_FEE,
    TxParams,
    build_payout_transaction,
    inclusion_fee_bid,
    payout_call,
)
from payout_service.failpoints import failpoint
from payout_service.tracing import payout_span

log = logging.getLogger(__name__)

# Held payouts read a pass, oldest first.
HELD_READ = 1000


@dataclass
class _PreparedBuilder(AttemptBuilder):
    template: TransactionEnvelope
    source_account: str
    passphrase: str
    window_seconds: int
    now: int
    from_channel: bool = False
    handed_out_at_ledger: int | None = None

    def __call__(self, source: str, sequence: int) -> NewAttempt:
        return stamp_attempt(self.template, source, sequence, self.now, self.window_seconds,
                             self.passphrase, handed_out_at_ledger=self.handed_out_at_ledger)


class Preparing(PreparingBatches):
    async def prepare_once(self) -> int:
        cfg = self.config
        sources = await self._plan_sources()
        work = 0
        # Built for our signer and not signed yet (a crash, or the signer was away): signed
        # now with the stored envelope. Without a signer (the service now runs in external
        # mode) they can never be signed here; they never left us, so they are rebuilt.
        batches_seen: set[UUID] = set()
        for payout, attempt in await self.queues.unsigned_attempts(cfg.claim_size):
            if attempt.batch_id is not None:
                if attempt.batch_id in batches_seen:
                    continue
                batches_seen.add(attempt.batch_id)
            if self.signer is None:
                await self._rebuild_unsent(attempt, why="no signer in this signing mode")
            elif await self._screened_out(payout, attempt):
                pass  # failed, or its batch rebuilt: nothing to sign
            elif attempt.batch_id is None:
                await self._sign(payout, attempt)
            else:
                await self._sign_batch(attempt)  # the whole batch, once
            work += 1
        # The whole pass builds from one kind of source: its drafts are simulated for it.
        self.channel_mode = sources.channels
        room = sources.room  # with channels: simulate only what can be leased now
        batching = cfg.batch_mode != "off"
        if batching:
            room *= cfg.max_payouts_per_tx
        needing = await self.queues.payouts_needing_attempt(room) if room else []
        needing = await self._payable(needing)
        needing = await self._funded(needing)
        if needing and batching:
            latest = await self.ledger.latest_ledger()
            now = max(int(time.time()), latest.close_time)
            p90 = await self.ledger.inclusion_fee_p90()
            work += await self._prepare_batches(needing, now, p90)
        elif needing:
            # Time bounds follow the later of our clock and the ledger's, so a rebuilt attempt
            # is never born expired nor identical to the one that died.
            latest = await self.ledger.latest_ledger()
            now = max(int(time.time()), latest.close_time)
            p90 = await self.ledger.inclusion_fee_p90()
            for payout in needing:
                with payout_span("payout.prepare", payout.trace_context,
                                 payout_id=payout.payout_id):
                    progressed = await self._prepare(payout, now, p90, latest.sequence)
                if not progressed:
                    # No source can take a transaction now (every channel in flight, or an
                    # envelope already awaits an outside signature): stop here, so a later
                    # payout never overtakes this one, and report no work, so the loop
                    # sleeps instead of re-simulating the same payouts in a tight loop.
                    break
                work += 1
        return work

    async def _payable(self, payouts: list[Payout]) -> list[Payout]:
        """The payouts that may be paid as asked, now. Checked at creation too, but things may
        have changed since, and such a payout fails before anything is built, never reaching
        the signer: the configuration (a memo payout accepted in classic mode, the service
        restarted with batching off: `payee_route`, core/batches.payee_route_problem), or the
        screening lists (a destination denied after the payout was accepted:
        `screening_denied`, core/screening.py). One lookup of the lists for the whole pass."""
        if not payouts:
            return payouts
        entries = await entries_for(self.queues.pool, [
            a for p in payouts for a in screened_addresses(p.destination)])
        payable = []
        for payout in payouts:
            refusal = self._refusal(payout, entries)
            if refusal is None:
                payable.append(payout)
                continue
            code, field, message = refusal
            log.error("payout cannot be paid as asked now: failed unbuilt",
                      extra={"payout_id": payout.payout_id, "field": field, "code": code})
            await self._refuse_before_build(payout, code, f"{field}: {message}")
        return payable

    def _refusal(self, payout: Payout, entries: list[ScreeningEntry]
                 ) -> tuple[str, str, str] | None:
        """(failure code, field, why) for a payout that must not be built, else None."""
        problem = payee_route_problem(
            BatchMode(self.config.batch_mode), destination=payout.destination,
            has_memo=payout.memo_type is not None, payout_contract=bool(self.config.contract_id))
        if problem is not None:
            return "payee_route", problem[0], problem[1]
        decision = screen(payout.destination, entries,
                          allowlist_only=self.config.screening_allowlist_only)
        if not decision.allowed:
            return "screening_denied", "destination", decision.reason
        return None

    async def _screened_out(self, payout: Payout, attempt: Attempt) -> bool:
        """A built, unsigned attempt paying a destination denied since it was built (the
        signer was away, or we crashed before signing) is never signed: a single payout
        fails with `screening_denied`; a batch is rebuilt, so the next pass fails its denied
        payouts unbuilt (_payable) and batches the others again. True when so."""
        destinations = ([payout.destination] if attempt.batch_id is None
                        else await self.batches.destinations(attempt.batch_id))
        entries = await entries_for(self.queues.pool, [
            a for d in destinations for a in screened_addresses(d)])
        decisions = [screen(d, entries, allowlist_only=self.config.screening_allowlist_only)
                     for d in destinations]
        denied = next((d for d in decisions if not d.allowed), None)
        if denied is None:
            return False
        log.error("built attempt pays a destination denied since: not signed",
                  extra={**attempt_ids(attempt), "code": "screening_denied"})
        if attempt.batch_id is None:
            await self.attempts.refuse_unsent(
                payout.id, attempt.number, code="screening_denied",
                message=f"destination: {denied.reason}", actor="preparer")
        else:
            await self.batches.rebuild_unsent(attempt.batch_id,
                                              reason="a destination was denied by screening")
            self._nudge("preparer")
        return True

    async def _funded(self, payouts: list[Payout]) -> list[Payout]:
        """The payouts the paying account can cover now, after what is in flight and what
        held payouts need first; the others wait in AWAITING_FUNDS, nothing built
        (core/funds.py). One balance read a pass. A failed read holds nothing: the chain's
        own check stands, and it is logged and counted. Off (PAYOUTS_FUNDS_CHECK=false), or
        with a payout contract that pays from its own balance, held payouts are released."""
        cfg = self.config
        held = await self.queues.awaiting_funds(HELD_READ)
        if not payouts and not held:
            return payouts
        # In creation order, held or not: a payout created later never takes the funds of
        # one created earlier.
        queue = sorted(held + payouts, key=lambda p: (p.created_at, p.id))
        go = [p.id for p in queue]
        short: dict[str, tuple[int, int]] = {}
        if cfg.funds_check and not cfg.contract_id:
            try:
                spendable = await self.ledger.payer_funds(
                    cfg.source_account, [p.asset for p in queue])
            except LedgerUnavailable as err:
                metrics.FUNDS_READ_FAILURES.inc()
                log.warning("balance read failed: payouts are not held for funds",
                            extra={"error": str(err)})
            else:
                go, short = await self._decide_funds(queue, spendable)
                if len(held) == HELD_READ:
                    # Held payouts beyond this read come first: no new payout may go past
                    # them (a retry is never held: it goes as decided).
                    fresh = {p.id for p in payouts if p.state == S.ACCEPTED}
                    go = [i for i in go if i not in fresh]
        going = set(go)
        hold = [p.id for p in payouts if p.id not in going and p.state == S.ACCEPTED]
        release = [p.id for p in held if p.id in going]
        why = "; ".join(f"{asset}: needs {need}, {have} left" for asset, (need, have)
                        in short.items())
        moved_in, moved_out = await move_for_funds(self.queues.pool, hold, release,
                                                   reason=f"awaiting_funds ({why})"[:500])
        if moved_in or moved_out:
            log.info("payouts held for funds or released", extra={
                "held": moved_in, "released": moved_out, "short": why})
        # Released payouts are built from the next pass on, first (they are the oldest due):
        # until then no payout of their asset is built, so none overtakes them.
        released_assets = {p.asset for p in held if p.id in going}
        return [p for p in payouts if p.id in going and p.asset not in released_assets]

    async def _decide_funds(self, queue: list[Payout], spendable: dict[str, int | None]
                            ) -> tuple[list[UUID], dict[str, tuple[int, int]]]:
        cfg = self.config
        amounts, fees = await self.queues.in_flight(cfg.source_account)
        per_tx = cfg.max_payouts_per_tx if cfg.batch_mode != "off" else 1
        # The payer pays each transaction's fee unless a channel does: at most max gas,
        # shared by the payouts of a batch.
        fee_each = 0 if self.channel_mode else -(-cfg.max_gas_stroops // per_tx)
        decision = decide_funds(spendable, [
            Claim(p.id, p.asset, p.net_stroops,
                  holdable=p.state in (S.ACCEPTED, S.AWAITING_FUNDS)) for p in queue],
            in_flight=amounts, in_flight_fees=fees, fee_each=fee_each)
        return decision.go, decision.short

    async def _plan_sources(self) -> SourcePlan:
        """Gives a sequence row to each source without one (the payer on a new database,
        channels seeded at start-up), then decides where this pass's transactions come from:
        one census query a pass, none per payout."""
        cfg = self.config
        census = await self.sequences.census(cfg.source_account)
        if census.unsynced:
            for source in census.unsynced:
                try:
                    chain_seq = await self.ledger.account_sequence(source)
                except SourceAccountMissing:
                    if source == cfg.source_account:
                        raise
                    # A seeded channel that is not on chain is never leased; the others are.
                    log.warning("channel account not on chain: not leased",
                                extra={"account": source})
                    continue
                await self.sequences.ensure_source(source, chain_seq)
            census = await self.sequences.census(cfg.source_account)
        return plan_sources(leasable=census.leasable, free=census.free, wanted=cfg.claim_size,
                            signs=self.signer is not None and not self.external)

    async def _prepare(
        self, payout: Payout, now: int, fee_p90: int | None, ledger: int
    ) -> bool:
        """True when the payout moved on (an attempt was built, or it was refused)."""
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
            operation_source=cfg.source_account if self.channel_mode else None,
            inclusion_fee=bid,
        )
        try:
            prepared = await self.ledger.prepare(draft)
        except SimulationFailed as err:
            await self._refuse_before_build(payout, "simulation_failed", str(err))
            return True
        # Only the resource fee can make a payout too expensive: a bid that would push the
        # total over max gas is lowered to fit, down to the protocol minimum.
        if prepared.transaction.fee - bid + BASE_INCLUSION_FEE > cfg.max_gas_stroops:
            await self._refuse_before_build(
                payout, "max_gas",
                f"prepared fee {prepared.transaction.fee} exceeds max gas {cfg.max_gas_stroops}",
            )
            return True
        prepared.transaction.fee = min(prepared.transaction.fee, cfg.max_gas_stroops)
        # External signers take longer; the window bounds how long a sequence number is held.
        window = cfg.external_window_seconds if self.external else cfg.tx_window_seconds
        builder = _PreparedBuilder(
            prepared, cfg.source_account, cfg.network_passphrase, window, now, self.channel_mode,
            # Handed out unsigned: its holder could submit it from this ledger on.
            handed_out_at_ledger=ledger if self.external else None,
        )
        created = await self.attempts.create_attempt(payout.id, builder, external=self.external)
        failpoint("after_reserve")
        if created is None:
            return False
        if not self.external:
            built_payout, attempt = created
            await self._sign(built_payout, attempt)
        return True

    async def _refuse_before_build(self, payout: Payout, code: str, message: str) -> None:
        await self.attempts.fail_before_build(payout, code, message)

    async def _sign(self, payout: Payout, attempt: Attempt) -> None:
        with payout_span("payout.sign", payout.trace_context, payout_id=payout.payout_id,
                         attempt=attempt.number, tx_hash=attempt.tx_hash):
            await self._sign_in_span(payout, attempt)

    async def _sign_in_span(self, payout: Payout, attempt: Attempt) -> None:
        if await self._expired_unsigned(attempt):
            return
        try:
            signed = await self._signed(attempt, payout_id=payout.payout_id,
                                        correlation_id=payout.correlation_id)
        except SignerUnavailable:
            # The built attempt stays; a later pass signs the same envelope. Raised to the
            # loop runner, which backs off instead of retrying every payout at once.
            raise
        except SigningRefused as err:
            if await self._refusal_handled(attempt, err):
                return
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
        self._nudge("sender")
        failpoint("after_sign")
