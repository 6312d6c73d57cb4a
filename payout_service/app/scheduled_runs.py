"""Scheduled runs: earnings accrue; a run pays each balance over the threshold.

One run at a time across replicas: a session advisory lock held for the whole run. A real run
creates each destination's payout and marks its earnings paid in one SQL transaction, so an
earning is paid by exactly one payout; balances under the threshold are carried over.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from payout_service.adapters import run_store
from payout_service.adapters.ledger import SimulationFailed, SourceAccountMissing
from payout_service.adapters.run_store import (
    Balance,
    Earning,
    RunError,
    RunRecord,
    RunSummary,
)
from payout_service.app.desk import IdempotencyConflict, MaxGasExceeded, PayoutDesk
from payout_service.core.amounts import AmountError, format_amount, parse_amount
from payout_service.core.errors import (
    FieldViolation,
    PreconditionFailed,
    ScreeningDenied,
    ValidationFailed,
)
from payout_service.core.fees import split_fee
from payout_service.core.model import Payout
from payout_service.core.schedule import Schedule, next_run_after, validate_schedule
from payout_service.core.validation import (
    IDENTIFIER,
    PayoutRequest,
    asset_problem,
    destination_problem,
    normalize_asset,
)

log = logging.getLogger(__name__)

# Shared by every replica: "PAYRUN".
RUN_LOCK_ID = 0x5041595255
RUN_IN_PROGRESS = "a run is already in progress"


# Request field -> Earning attribute, for idempotency conflicts.
EARNING_FIELDS = (("destination", "destination"), ("asset", "asset"),
                  ("amount", "amount_stroops"))


class RunStepFailed(Exception):
    pass


def run_payout_key(run_id: str, destination: str, asset: str) -> str:
    """Idempotency key (and payout_id) of a destination's payout in a run."""
    tag = "XLM" if asset == "XLM" else hashlib.sha256(asset.encode()).hexdigest()[:12]
    return f"{run_id}:{destination}:{tag}"


def new_run_id(now: datetime) -> str:
    return f"run-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def planned_payout(request: PayoutRequest, gross: int, fee: int, net: int) -> dict[str, Any]:
    """A payout a dry run would create, as stored in its run's row."""
    return {
        "payout_id": request.payout_id, "idempotency_key": request.idempotency_key,
        "destination": request.destination, "asset": request.asset,
        "metadata": dict(request.metadata), "gross_stroops": gross, "fee_stroops": fee,
        "net_stroops": net,
    }


@dataclass(frozen=True)
class RunResult:
    record: RunRecord
    payouts: list[Payout] = field(default_factory=list)


class ScheduledRuns:
    def __init__(self, desk: PayoutDesk) -> None:
        self.desk = desk
        self.pool = desk.store.pool

    async def record_earning(
        self, *, destination: str, amount: str, asset: str, earning_id: str
    ) -> int:
        """Records the earning once per earning_id; returns the unpaid balance after it.

        A balance is paid as one payout, so it may not pass the largest payout amount
        (PAYOUTS_MAX_AMOUNT, at most int64 stroops): past it the earning is refused, unstored.
        """
        earning = validate_earning(destination, amount, asset, earning_id)
        cap = self.desk.limits.max_stroops
        try:
            recorded = await run_store.insert_earning(self.pool, earning, cap)
        except run_store.BalanceOverCap as err:
            raise ValidationFailed([FieldViolation("amount", (
                f"would bring the unpaid balance to more than {format_amount(cap)}, the "
                f"largest payout (unpaid now: {format_amount(err.balance_stroops)})"
            ))]) from None
        stored = recorded.earning
        if stored != earning:
            # Named as the request names them (amount, not the stored amount_stroops).
            raise IdempotencyConflict([
                FieldViolation(name, "differs from the earning already recorded with this id")
                for name, attr in EARNING_FIELDS
                if getattr(stored, attr) != getattr(earning, attr)
            ])
        return recorded.balance_stroops

    async def history(self, limit: int) -> tuple[list[RunRecord], dict[str, list[Payout]]]:
        """The latest runs, and the payouts each real run created."""
        runs = await run_store.list_runs(self.pool, limit)
        real = [r.run_id for r in runs if not r.dry_run]
        payouts = await run_store.run_payouts(self.pool, real)
        return runs, {r.run_id: payouts.get(r.run_id, []) for r in runs}

    async def schedule(self) -> Schedule:
        return await run_store.get_schedule(self.pool)

    async def update_schedule(self, wanted: Schedule, now: datetime | None = None) -> Schedule:
        s = validate_schedule(wanted)
        now = now or datetime.now(UTC)
        s = replace(s, next_run_at=next_run_after(s, now) if s.enabled else None)
        return await run_store.save_schedule(self.pool, s)

    async def trigger(self, *, dry_run: bool, trigger: str, correlation_id: str) -> RunResult:
        result = await self._locked(dry_run=dry_run, trigger=trigger, corr=correlation_id,
                                    due_only=False)
        assert result is not None
        return result

    async def run_if_due(self, now: datetime | None = None) -> RunResult | None:
        """The scheduler's step: runs when the schedule is due (checked under the lock)."""
        s = await self.schedule()
        now = now or datetime.now(UTC)
        if not s.enabled or s.next_run_at is None or s.next_run_at > now:
            return None
        try:
            return await self._locked(dry_run=False, trigger="schedule",
                                      corr=uuid.uuid4().hex, due_only=True)
        except PreconditionFailed:
            return None  # another replica is running it

    async def _locked(
        self, *, dry_run: bool, trigger: str, corr: str, due_only: bool
    ) -> RunResult | None:
        async with self.pool.acquire() as lock_conn:
            if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK_ID):
                raise PreconditionFailed("scheduled_run", RUN_IN_PROGRESS, "RUN_IN_PROGRESS")
            try:
                if closed := await run_store.close_abandoned_runs(self.pool):
                    log.warning("closed abandoned scheduled runs", extra={"runs": closed})
                now = datetime.now(UTC)
                s = await self.schedule()
                if due_only and (not s.enabled or s.next_run_at is None or s.next_run_at > now):
                    return None
                return await self._run(s, now, dry_run=dry_run, trigger=trigger, corr=corr)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", RUN_LOCK_ID)

    async def _run(
        self, s: Schedule, now: datetime, *, dry_run: bool, trigger: str, corr: str
    ) -> RunResult:
        """One run. Its row is finished whatever happens: a dry run writes its whole row at
        the end (nothing before), a real run inserts it first (its payouts point at it) and
        finishes it even when a step breaks, recording why before the error goes on."""
        run = RunSummary(new_run_id(now), dry_run, trigger, corr)
        if not dry_run:
            await run_store.insert_run(self.pool, run.run_id, dry_run=False, trigger=trigger,
                                       corr=corr)
        payouts: list[Payout] = []
        try:
            run = await self._pay_balances(run, s, payouts)
        except Exception as err:
            if not dry_run:
                stopped = RunError("", f"run stopped: {type(err).__name__}")
                await self._finish(replace(run, payout_count=len(payouts),
                                           errors=[*run.errors, stopped]), s, now)
            raise
        record = await self._finish(run, s, now)
        log.info("scheduled run finished", extra={
            "run_id": run.run_id, "dry_run": dry_run, "payouts": record.payout_count,
            "skipped": run.skipped, "errors": len(run.errors), "correlation_id": corr,
        })
        return RunResult(record, payouts)

    async def _pay_balances(
        self, run: RunSummary, s: Schedule, payouts: list[Payout]
    ) -> RunSummary:
        skipped, total = 0, 0
        errors: list[RunError] = []
        planned: list[dict[str, Any]] = []
        for balance in await run_store.unpaid_balances(self.pool):
            if balance.amount_stroops < s.minimum_threshold_stroops:
                skipped += 1  # carried over to the next run
                continue
            try:
                request = self._request(run.run_id, balance)
                if run.dry_run:
                    split = split_fee(request.amount_stroops, self.desk.config.fee_bps)
                    planned.append(planned_payout(request, split.gross, split.fee, split.net))
                else:
                    payouts.append(
                        await self._pay(run.run_id, balance, request, run.correlation_id)
                    )
                total += balance.amount_stroops
            except (ValidationFailed, IdempotencyConflict) as err:
                errors.append(RunError(balance.destination, str(err)))
            except (RunStepFailed, MaxGasExceeded, SimulationFailed, SourceAccountMissing,
                    ScreeningDenied) as err:
                errors.append(RunError(balance.destination, str(err) or type(err).__name__))
        return replace(run, payout_count=len(payouts) + len(planned), skipped=skipped,
                       total_stroops=total, errors=errors, planned=planned)

    async def _finish(self, run: RunSummary, s: Schedule, now: datetime) -> RunRecord:
        if run.trigger == "schedule":
            await run_store.set_next_run(self.pool, next_run_after(s, now) if s.enabled else None)
        return await run_store.finish_run(
            self.pool, run, next_run_at=(await self.schedule()).next_run_at
        )

    def _request(self, run_id: str, balance: Balance) -> PayoutRequest:
        key = run_payout_key(run_id, balance.destination, balance.asset)
        return self.desk.validate({
            "payout_id": key, "idempotency_key": key, "destination": balance.destination,
            "amount": format_amount(balance.amount_stroops), "asset": balance.asset,
            "metadata": {"run_id": run_id}, "reference": "",
        })

    async def _pay(
        self, run_id: str, balance: Balance, request: PayoutRequest, corr: str
    ) -> Payout:
        new = await self.desk.new_payout(request, correlation_id=corr, batch_id=run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            (result,) = await self.desk.insert_many(conn, [request], [new], actor="scheduler")
            if not result.created:
                raise RunStepFailed(f"payout {new.payout_id} already exists")
            payout = result.payout
            marked = await run_store.mark_earnings_paid(
                conn, balance.earning_ids, run_id, payout.payout_id
            )
            if marked != len(balance.earning_ids):
                raise RunStepFailed("earnings were paid by another run meanwhile")
        return payout


def validate_earning(destination: str, amount: str, asset: str, earning_id: str) -> Earning:
    violations: list[FieldViolation] = []
    if not IDENTIFIER.fullmatch(earning_id):
        violations.append(FieldViolation(
            "earning_id", "is required: 1-128 characters from A-Z a-z 0-9 : _ . -"
        ))
    if problem := destination_problem(destination):
        violations.append(FieldViolation("destination", problem))
    asset = asset or "XLM"
    if problem := asset_problem(asset):
        violations.append(FieldViolation("asset", problem))
    stroops = 0
    try:
        stroops = parse_amount(amount)
        if stroops <= 0:
            violations.append(FieldViolation("amount", "must be positive (greater than 0)"))
    except AmountError as err:
        violations.append(FieldViolation("amount", str(err)))
    if violations:
        raise ValidationFailed(violations)
    return Earning(earning_id, destination, normalize_asset(asset), stroops)
