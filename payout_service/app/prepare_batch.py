"""Prepare in batch mode: plan, reserve ONE sequence number for many payouts,
build their shared transaction, sign it once.

Classic: a Payment (or CreateAccount) per payout; destinations are checked with one
getLedgerEntries call per batch, and a payout that cannot be paid fails before batching.
Contract: the payout contract's batch method with a vector; a simulation failure is split in
halves until the payouts that make it fail are alone (each then fails with the simulation's
error), so one bad payout never holds the others.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from uuid import UUID

from stellar_sdk import MuxedAccount, Preconditions, TimeBounds
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service import metrics
from payout_service.adapters.ledger import SimulationFailed
from payout_service.adapters.signer_client import SigningRefused
from payout_service.app.stage import Stage
from payout_service.core.batches import (
    BatchItem,
    OpKind,
    PlannedOp,
    build_classic_batch,
    build_contract_batch,
    is_classic_destination,
    plan_classic_batch,
)
from payout_service.core.model import Attempt, NewAttempt, Payout
from payout_service.core.payees import payee_memo
from payout_service.core.transactions import BASE_INCLUSION_FEE, TxParams, inclusion_fee_bid
from payout_service.core.validation import paid_account
from payout_service.failpoints import failpoint

log = logging.getLogger(__name__)


class BatchChanged(Exception):
    """Some planned payouts were taken by another worker meanwhile: a simulated contract
    batch no longer matches, so it is not stored (the rest are planned again next pass)."""


def _item(payout: Payout) -> BatchItem:
    return BatchItem(payout.id, payout.destination, payout.asset, payout.net_stroops,
                     payee_memo(payout.memo_type, payout.memo_value))


def stamp_attempt(tx_envelope: TransactionEnvelope, source: str, sequence: int, now: int,
                  window: int, passphrase: str, *,
                  handed_out_at_ledger: int | None = None) -> NewAttempt:
    """Source, sequence number and time bounds, set inside the reserving SQL transaction.
    The window counts from this moment, not from the start of the pass: simulating a pass's
    payouts (slow against a struggling RPC) must not eat into the time the envelope has to
    land, which for a 5 s external signing window can be all of it."""
    tx = tx_envelope.transaction
    tx.source = MuxedAccount(source)
    tx.sequence = sequence
    max_time = max(now, int(time.time())) + window
    # Invariant 2: every transaction carries a max_time, so "proven dead" is reachable.
    tx.preconditions = Preconditions(time_bounds=TimeBounds(0, max_time))
    envelope = TransactionEnvelope(tx, passphrase)
    return NewAttempt(
        source_account=source, sequence=sequence, min_time=datetime.fromtimestamp(0, UTC),
        max_time=datetime.fromtimestamp(max_time, UTC), envelope_xdr=envelope.to_xdr(),
        tx_hash=envelope.hash_hex(), fee_stroops=tx.fee,
        handed_out_at_ledger=handed_out_at_ledger,
    )


class PreparingBatches(Stage):
    async def _prepare_batches(self, needing: list[Payout], now: int, fee_p90: int | None
                               ) -> int:
        """Batches as many of `needing` as free sources allow; returns the payouts handled."""
        if self.config.batch_mode == "classic":
            singles = [p for p in needing if not is_classic_destination(p.destination)]
            # C… destinations keep the single-payout Soroban transfer path.
            moved = [await self._prepare(payout, now, fee_p90, 0) for payout in singles]
            return sum(moved) + await self._classic_batches(
                [p for p in needing if is_classic_destination(p.destination)], now)
        return await self._contract_batches(needing, now, fee_p90)

    async def _classic_batches(self, payouts: list[Payout], now: int) -> int:
        cfg = self.config
        done = 0
        remaining = payouts
        # Classic operations are surge priced in their own lane, per operation.
        lane_p90 = await self.ledger.inclusion_fee_p90(lane="classic") if payouts else None
        size = cfg.max_payouts_per_tx
        while remaining:
            # Twice a batch of candidates: another worker planning the same head locks some.
            head = remaining[: 2 * size]
            # Looked up by the G... account an M... destination credits.
            accounts = [paid_account(p.destination) for p in head]
            existing = await self.ledger.existing_accounts(accounts)
            # Asked after every batch this pass stores: its creates are in flight too.
            being_created = await self.batches.accounts_being_created(
                [a for a in accounts if a not in existing])
            plan = plan_classic_batch([_item(p) for p in head], existing, size, spare=size,
                                      being_created=being_created)
            by_id = {p.id: p for p in head}
            for refusal in plan.refused:
                await self.attempts.fail_before_build(by_id[refusal.item.payout_uuid],
                                                      refusal.code, refusal.message)
                done += 1
            # Waiting payouts leave this pass: their account's creation lands in a later one.
            deferred = {i.payout_uuid for i in plan.deferred}
            remaining = [p for p in head if p.id in deferred] + remaining[len(head):]
            if not plan.operations:
                if len(deferred) == len(head):
                    break  # nothing plannable now; they wait for the next pass
                continue
            created = await self._store_classic(plan.operations, by_id, now, lane_p90)
            if not created:
                break  # no free source now
            done += len(created)
            if len(created) == size:
                # Planned candidates the full batch left out go first next time (one another
                # worker holds is skipped again by create_batch's SKIP LOCKED).
                taken = {p.id for p, _ in created}
                remaining = [by_id[op.item.payout_uuid] for op in plan.operations
                             if op.item.payout_uuid not in taken] + remaining
            # Ends: each turn removes at least the planned operations it did not put back.
        return done

    async def _store_classic(self, operations: list[PlannedOp], by_id: dict[UUID, Payout],
                             now: int, lane_p90: int | None) -> list[tuple[Payout, Attempt]]:
        cfg = self.config
        ops = {op.item.payout_uuid: op for op in operations}

        def build(locked: list[Payout], source: str, sequence: int) -> NewAttempt:
            # The bid of the payouts actually in the batch (not the spare candidates).
            bid = inclusion_fee_bid(max(p.attempt_count for p in locked) + 1, lane_p90,
                                    cfg.max_inclusion_fee_stroops)
            envelope = build_classic_batch(
                TxParams(source, sequence, 0, now + cfg.tx_window_seconds,
                         cfg.network_passphrase),
                [ops[p.id] for p in locked],
                operation_source=cfg.source_account if source != cfg.source_account else None,
                inclusion_fee=bid,
            )
            return stamp_attempt(envelope, source, sequence, now, cfg.tx_window_seconds,
                          cfg.network_passphrase)

        created = await self.batches.create_batch(
            list(ops), build, source_account=cfg.source_account, from_channel=self.channel_mode,
            limit=cfg.max_payouts_per_tx, creates={
                u: op.item.destination for u, op in ops.items()
                if op.kind is OpKind.CREATE_ACCOUNT})
        await self._after_batch_built(created)
        return created

    async def _contract_batches(self, payouts: list[Payout], now: int, fee_p90: int | None
                                ) -> int:
        cfg = self.config
        done = 0
        for start in range(0, len(payouts), cfg.max_payouts_per_tx):
            chunk = payouts[start:start + cfg.max_payouts_per_tx]
            for group, prepared in await self._simulated_groups(chunk, now, fee_p90):
                created = await self._store_contract(group, prepared, now)
                if not created and self.channel_mode:
                    return done  # no free channel now
                done += len(created)
        return done

    def _contract_draft(self, items: list[Payout], now: int, bid: int) -> TransactionEnvelope:
        cfg = self.config
        assert cfg.contract_id is not None  # noqa: S101 - config requires it in contract mode
        return build_contract_batch(
            TxParams(cfg.source_account, 1, 0, now + cfg.tx_window_seconds,
                     cfg.network_passphrase),
            contract_id=cfg.contract_id, method_name=cfg.batch_method_name,
            payer=cfg.source_account, items=[_item(p) for p in items],
            operation_source=cfg.source_account if self.channel_mode else None,
            inclusion_fee=bid,
        )

    async def _simulated_groups(
        self, payouts: list[Payout], now: int, fee_p90: int | None
    ) -> list[tuple[list[Payout], TransactionEnvelope]]:
        """Simulates the batch; on failure splits it in halves until each failing payout is
        alone, and fails those with the simulation's error (log2(N) extra simulations per
        guilty payout). A batch over the max gas is split too."""
        cfg = self.config
        bid = inclusion_fee_bid(max(p.attempt_count for p in payouts) + 1, fee_p90,
                                cfg.max_inclusion_fee_stroops)
        try:
            prepared = await self.ledger.prepare(self._contract_draft(payouts, now, bid))
            problem = None
            if prepared.transaction.fee - bid + BASE_INCLUSION_FEE > cfg.max_gas_stroops:
                problem = ("max_gas", f"prepared fee {prepared.transaction.fee} exceeds max gas "
                           f"{cfg.max_gas_stroops}")
        except SimulationFailed as err:
            problem = ("simulation_failed", str(err))
        if problem is None:
            prepared.transaction.fee = min(prepared.transaction.fee, cfg.max_gas_stroops)
            return [(payouts, prepared)]
        if len(payouts) == 1:
            await self.attempts.fail_before_build(payouts[0], *problem)
            return []
        half = len(payouts) // 2
        return [*await self._simulated_groups(payouts[:half], now, fee_p90),
                *await self._simulated_groups(payouts[half:], now, fee_p90)]

    async def _store_contract(self, group: list[Payout], prepared: TransactionEnvelope,
                              now: int) -> list[tuple[Payout, Attempt]]:
        cfg = self.config
        planned = [p.id for p in group]

        def build(locked: list[Payout], source: str, sequence: int) -> NewAttempt:
            if [p.id for p in locked] != planned:
                raise BatchChanged
            return stamp_attempt(prepared, source, sequence, now, cfg.tx_window_seconds,
                          cfg.network_passphrase)

        try:
            created = await self.batches.create_batch(
                planned, build, source_account=cfg.source_account,
                from_channel=self.channel_mode)
        except BatchChanged:
            return []
        await self._after_batch_built(created)
        return created

    async def _after_batch_built(self, created: list[tuple[Payout, Attempt]]) -> None:
        if not created:
            return
        metrics.ATTEMPTS.labels("batch_built").inc()
        log.info("batch built", extra={"batch_id": str(created[0][1].batch_id),
                                       "payouts": len(created), "tx_hash": created[0][1].tx_hash})
        failpoint("after_reserve")
        await self._sign_batch(created[0][1])

    async def _sign_batch(self, lead: Attempt) -> None:
        """One signature pass for the whole batch (channel key, then the payer's)."""
        assert lead.batch_id is not None  # noqa: S101
        if await self._expired_unsigned(lead):
            return
        try:
            signed = await self._signed(lead, payout_id=f"batch:{lead.batch_id}",
                                        correlation_id=str(lead.batch_id))
        except SigningRefused as err:
            if await self._refusal_handled(lead, err):
                return
            await self.batches.refuse_unsent(lead.batch_id, code="signer_refused",
                                             message=str(err))
            return
        if signed.tx_hash != lead.tx_hash:
            await self.batches.refuse_unsent(lead.batch_id, code="signer_hash_mismatch",
                                             message="signer hashed a different transaction")
            return
        await self.batches.store_signed(lead.batch_id, signed.envelope_xdr, actor="preparer")
        self._nudge("sender")
        failpoint("after_sign")
