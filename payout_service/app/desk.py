"""Payout use cases: what CreatePayout and friends do, between the API and the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.eligibility import lock_references, reference_problems
from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.payout_store import (
    NewPayout,
    PayoutStore,
    insert_payouts_in,
    payouts_by_keys,
)
from payout_service.adapters.screening_store import entries_for
from payout_service.app.approvals import approval_route
from payout_service.config import Config
from payout_service.core.approvals import waits_for_approval
from payout_service.core.batches import BatchMode, payee_route_problem
from payout_service.core.envelopes import signed_envelope_problem
from payout_service.core.errors import (
    Conflict,
    FailedPrecondition,
    FieldViolation,
    PreconditionFailed,
    ScreeningDenied,
    ValidationFailed,
)
from payout_service.core.fees import split_fee
from payout_service.core.idempotency import canonical_parameters, differing_fields, fingerprint
from payout_service.core.model import Payout
from payout_service.core.screening import ScreeningEntry, screen, screened_addresses
from payout_service.core.states import IllegalTransition, PayoutMode, PayoutState
from payout_service.core.transactions import TxParams, build_payout_transaction, payout_call
from payout_service.core.validation import AmountLimits, PayoutRequest, validate_payout_request
from payout_service.failpoints import failpoint
from payout_service.tracing import current_traceparent


@dataclass(frozen=True)
class _Paid:
    asset: str
    net_stroops: int

class IdempotencyConflict(Conflict):
    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("idempotency key already used with different parameters")
        self.violations = violations


class MaxGasExceeded(FailedPrecondition):
    kind, subject = "MAX_GAS", "PAYOUTS_MAX_GAS_STROOPS"

    def __init__(self, fee: int, limit: int) -> None:
        super().__init__(
            f"prepared transaction fee {fee} stroops exceeds max gas "
            f"PAYOUTS_MAX_GAS_STROOPS={limit}"
        )
        self.fee = fee
        self.limit = limit


@dataclass(frozen=True)
class CreateResult:
    payout: Payout
    created: bool


def replay(existing: Payout | None, request: PayoutRequest) -> CreateResult:
    """The same idempotency key again: the stored payout if the parameters match, else a
    conflict naming the fields that differ (invariant 5). None: the key is free but the
    payout_id belongs to another key."""
    if existing is None:
        raise IdempotencyConflict([FieldViolation(
            "payout_id", "already used by a payout with another idempotency key")])
    params = canonical_parameters(request)
    if existing.fingerprint != fingerprint(params):
        raise IdempotencyConflict(differing_fields(existing.parameters, params))
    return CreateResult(existing, False)


def _item_fields(
    item_field: str, index: int, violations: Sequence[FieldViolation]
) -> list[FieldViolation]:
    if not item_field:
        return list(violations)
    return [FieldViolation(f"{item_field}[{index}].{v.field}", v.description)
            for v in violations]


def mode_for(config: Config) -> PayoutMode:
    if not config.live_execution:
        return PayoutMode.BUILD_ONLY
    return PayoutMode.SIGNER_SERVICE if config.signing_mode == "signer" else PayoutMode.EXTERNAL


class PayoutDesk:
    """Creates and reads payouts. Build-only mode builds here; live modes hand to workers."""

    def __init__(
        self, config: Config, store: PayoutStore, ledger: LedgerGateway | None
    ) -> None:
        self.config = config
        self.store = store
        self.attempts = AttemptStore(store.pool)
        self.ledger = ledger
        self.limits = AmountLimits(config.min_amount_stroops, config.max_amount_stroops)
        self.group = GroupCommit(self)

    def validate(self, fields: Mapping[str, object]) -> PayoutRequest:
        return validate_payout_request(
            payout_id=str(fields.get("payout_id", "")),
            destination=str(fields.get("destination", "")),
            amount=str(fields.get("amount", "")),
            asset=str(fields.get("asset", "")),
            idempotency_key=str(fields.get("idempotency_key", "")),
            metadata=dict(fields.get("metadata", {}) or {}),  # type: ignore[call-overload]
            reference=str(fields.get("reference", "")),
            limits=self.limits,
            source_account=self.config.source_account,
            memo=fields.get("memo"),  # type: ignore[arg-type]
        )

    async def create(
        self, request: PayoutRequest, *, actor: str, correlation_id: str,
        round_id: str | None = None, batch_id: str | None = None,
    ) -> CreateResult:
        """The one way a payout is created (CreatePayout). In live modes, concurrent calls
        are committed together (GroupCommit: one statement for many calls, each with its own
        result); build-only mode builds the envelope through RPC first, see create_many."""
        if mode_for(self.config) is not PayoutMode.BUILD_ONLY:
            try:
                new = await self.new_payout(request, correlation_id=correlation_id,
                                            round_id=round_id, batch_id=batch_id)
            except (ValidationFailed, ScreeningDenied):
                # Maybe a replay of a payout stored under other settings or lists: answered
                # with the stored payout (create_many), which the preparer screens again.
                new = None
            if new is not None:
                return await self.group.create(request, new, actor)
        (result,) = await self.create_many(
            [request], actor=actor, correlation_id=correlation_id, round_id=round_id,
            batch_id=batch_id,
        )
        return result

    async def create_alone(self, request: PayoutRequest, new: NewPayout, actor: str,
                           ) -> CreateResult:
        """One call in its own SQL transaction, exactly as insert_many decides."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            (result,) = await self.insert_many(conn, [request], [new], actor=actor)
        return result

    async def create_many(
        self, requests: Sequence[PayoutRequest], *, actor: str, correlation_id: str,
        round_id: str | None = None, batch_id: str | None = None, item_field: str = "",
    ) -> list[CreateResult]:
        """Creates (or replays) every request in ONE SQL transaction: all or nothing.
        Violations name the item as `{item_field}[i].field` when item_field is given."""
        known = await payouts_by_keys(self.store.pool, [r.idempotency_key for r in requests])
        # One read of the screening lists for the whole request, not one per item.
        entries = await entries_for(self.store.pool, [
            a for r in requests if r.idempotency_key not in known
            for a in screened_addresses(r.destination)])
        news: list[NewPayout | None] = []
        violations: list[FieldViolation] = []
        for index, request in enumerate(requests):
            if request.idempotency_key in known:
                news.append(None)  # a replay: nothing to build
                continue
            try:
                news.append(await self.new_payout(
                    request, correlation_id=correlation_id, round_id=round_id,
                    batch_id=batch_id, screening=entries))
            except ValidationFailed as err:
                violations += _item_fields(item_field, index, err.violations)
            except ScreeningDenied as err:
                if not item_field:
                    raise
                raise err.at(f"{item_field}[{index}].destination") from None
        if violations:
            raise ValidationFailed(violations)
        async with self.store.pool.acquire() as conn, conn.transaction():
            return await self.insert_many(conn, requests, news, actor=actor,
                                          item_field=item_field)

    async def insert_many(
        self, conn: asyncpg.Connection, requests: Sequence[PayoutRequest],
        news: Sequence[NewPayout | None], *, actor: str | Sequence[str], item_field: str = "",
    ) -> list[CreateResult]:
        """Inside the caller's SQL transaction (batches, rounds, scheduled runs): eligibility
        under reference locks, one bulk insert, idempotent replays. Raises (so the caller's
        transaction rolls back) if any item is not eligible or conflicts with a stored
        payout."""
        await lock_references(conn, [r.reference for r in requests])
        problems = await reference_problems(
            conn, [(r.reference, r.idempotency_key, r.payout_id) for r in requests])
        if problems:
            raise ValidationFailed([v for i, p in sorted(problems.items())
                                    for v in _item_fields(item_field, i, [p])])
        actors = [actor] * len(news) if isinstance(actor, str) else list(actor)
        inserted = await insert_payouts_in(
            conn, [n for n in news if n is not None],
            actor=[a for a, n in zip(actors, news, strict=True) if n is not None])
        created = iter(inserted)
        rows = [next(created) if n is not None else None for n in news]
        replays = [r.idempotency_key for r, row in zip(requests, rows, strict=True) if row is None]
        existing = await payouts_by_keys(conn, replays) if replays else {}
        results, conflicts = [], []
        for index, (request, row) in enumerate(zip(requests, rows, strict=True)):
            if row is not None:
                results.append(CreateResult(row, True))
                continue
            try:
                results.append(replay(existing.get(request.idempotency_key), request))
            except IdempotencyConflict as err:
                conflicts += _item_fields(item_field, index, err.violations)
        if conflicts:
            raise IdempotencyConflict(conflicts)
        return results

    async def new_payout(
        self, request: PayoutRequest, *, correlation_id: str, round_id: str | None = None,
        batch_id: str | None = None, screening: Sequence[ScreeningEntry] | None = None,
    ) -> NewPayout:
        """The row to insert: fee split and, in build-only mode, the built XDR. Writes nothing,
        so callers can insert many in one SQL transaction (rounds) or one at a time.
        `screening`: the list entries already read for this destination (else read here)."""
        params = canonical_parameters(request)
        cfg = self.config
        mode = mode_for(cfg)
        # Build-only mode hands out the single-payout Soroban transaction, whatever the batch
        # mode: it pays as batching off does.
        paid_as = BatchMode.OFF if mode is PayoutMode.BUILD_ONLY else BatchMode(cfg.batch_mode)
        if route := payee_route_problem(
                paid_as, destination=request.destination, has_memo=request.memo is not None,
                payout_contract=bool(cfg.contract_id)):
            raise PreconditionFailed(route[0], route[1], kind="PAYEE")
        await self.screen(request.destination, screening)
        split = split_fee(request.amount_stroops, self.config.fee_bps)
        if split.net <= 0:
            raise ValidationFailed([FieldViolation("amount", "is too small to cover the fee")])
        unsigned_xdr = None
        state = PayoutState.ACCEPTED
        if mode is PayoutMode.BUILD_ONLY:
            # Built before the row is written, so a refused build leaves no row behind.
            unsigned_xdr = await self._build_unsigned(request.destination, split.net, request.asset)
            state = PayoutState.BUILT
        elif waits_for_approval(_Paid(request.asset, split.net), request.destination,
                                cfg.approval_rules, approval_route(cfg)):
            state = PayoutState.AWAITING_APPROVAL
        return NewPayout(
            payout_id=request.payout_id, idempotency_key=request.idempotency_key,
            fingerprint=fingerprint(params), parameters=params, destination=request.destination,
            asset=request.asset, gross_stroops=split.gross, fee_stroops=split.fee,
            net_stroops=split.net, state=state, mode=mode, unsigned_envelope_xdr=unsigned_xdr,
            metadata=dict(request.metadata), reference=request.reference,
            correlation_id=correlation_id, round_id=round_id, batch_id=batch_id,
            trace_context=current_traceparent(),
            memo_type=request.memo.kind.value if request.memo else None,
            memo_value=request.memo.value if request.memo else None, muxed_id=request.muxed_id,
        )

    async def screen(self, destination: str,
                     entries: Sequence[ScreeningEntry] | None = None) -> None:
        """Raises ScreeningDenied for a destination the allow and deny lists refuse."""
        if entries is None:
            entries = await entries_for(self.store.pool, screened_addresses(destination))
        decision = screen(destination, entries,
                          allowlist_only=self.config.screening_allowlist_only)
        if not decision.allowed:
            raise ScreeningDenied(decision.reason)

    async def _build_unsigned(self, destination: str, amount: int, asset: str) -> str:
        cfg = self.config
        sequence = 1
        if self.ledger is not None:
            sequence = await self.ledger.account_sequence(cfg.source_account) + 1
        now = int(time.time())
        params = TxParams(
            source_account=cfg.source_account, sequence=sequence, min_time=0,
            max_time=now + cfg.tx_window_seconds, network_passphrase=cfg.network_passphrase,
        )
        call = payout_call(asset, cfg.network_passphrase, cfg.contract_id, cfg.method_name)
        envelope = build_payout_transaction(
            params, call, payer=cfg.source_account, destination=destination,
            amount_stroops=amount,
        )
        if self.ledger is None:
            # No RPC configured: unsimulated (no footprint, no resource fee). Say so in docs.
            return envelope.to_xdr()
        prepared = await self.ledger.prepare(envelope)
        fee = prepared.transaction.fee
        if fee > cfg.max_gas_stroops:
            raise MaxGasExceeded(fee, cfg.max_gas_stroops)
        return prepared.to_xdr()

    async def accept_signed(self, payout: Payout, signed_xdr: str, *, actor: str) -> None:
        """External signing: the envelope must be exactly the one we built, for our network,
        with exactly the signatures it needs (core/envelopes.py). Then it is queued like a
        signer-service signature."""
        if payout.state != PayoutState.AWAITING_SIGNATURE or payout.current_attempt is None:
            raise IllegalTransition(payout.state, PayoutState.QUEUED)
        attempt = payout.current_attempt
        problem = signed_envelope_problem(
            signed_xdr, expected_hash=attempt.tx_hash,
            network_passphrase=self.config.network_passphrase,
        )
        if problem:
            raise ValidationFailed([FieldViolation("signed_envelope_xdr", problem)])
        if not await self.attempts.store_signed(payout.id, attempt.number, signed_xdr, actor=actor):
            raise IllegalTransition(payout.state, PayoutState.QUEUED)
        failpoint("after_sign")

    async def cancel(self, payout: Payout, *, actor: str, reason: str) -> Payout:
        """CancelPayout: allowed while no attempt can be on the network; the current
        attempt's sequence number is given back (AttemptStore.cancel)."""
        return await self.attempts.cancel(payout.id, actor=actor, reason=reason)

    async def retry(self, payout: Payout, *, actor: str, reason: str) -> Payout:
        """RetryPayout: FAILED back to QUEUED for a new attempt, once no earlier attempt of
        the payout may still land. A payout an approver rejected is never retried: that would
        pay it past the rejection."""
        if payout.failure_code == "rejected":
            raise PreconditionFailed("payout", "an approver rejected this payout; create a new "
                                     "one to ask again", kind="APPROVAL")
        return await self.attempts.retry_failed(payout.id, actor=actor, reason=reason)


@dataclass
class _Waiting:
    request: PayoutRequest
    new: NewPayout
    actor: str
    done: asyncio.Future[CreateResult]


class GroupCommit:
    """Gathers concurrent CreatePayout calls and commits them together: while one group is
    being written, the calls that arrive queue up and form the next group (no timer: a call
    that finds nothing in flight goes after one turn of the event loop, which lets the calls
    already read join it).

    Each call keeps exactly the outcome it would have had alone, in arrival order:
    - without references, the group is ONE statement (insert ... ON CONFLICT DO NOTHING with
      the creation events, adapters/payout_store.py): a call whose key or payout_id is
      already taken inserted nothing and is answered as a replay or a conflict on its own;
      the other calls are unaffected, as they would be one after the other;
    - with references, eligibility needs the reference locks, so the group runs in one SQL
      transaction (insert_many); if any call in it is refused, the transaction rolls back and
      each call runs alone (create_alone), so no call is refused or accepted because of
      another call's fate;
    - if the database fails, each call runs alone and gets its own error.
    """

    MAX_GROUP = 500

    def __init__(self, desk: PayoutDesk) -> None:
        self.desk = desk
        self.queue: list[_Waiting] = []
        self.writer: asyncio.Task[None] | None = None
        self.largest_group = 0  # seen so far: shows (in tests) that calls were grouped

    async def create(self, request: PayoutRequest, new: NewPayout, actor: str) -> CreateResult:
        waiting = _Waiting(request, new, actor, asyncio.get_running_loop().create_future())
        self.queue.append(waiting)
        if self.writer is None:
            self.writer = asyncio.create_task(self._write())
        return await asyncio.shield(waiting.done)

    async def _write(self) -> None:
        """Drains the queue group by group on ONE pooled connection, held for the whole
        burst: a group then costs its statement's round trip only (no pool acquire, and no
        reset query on release, per group). A connection that fails is given back and the
        next group takes a fresh one."""
        try:
            while self.queue:
                try:
                    async with self.desk.store.pool.acquire() as conn:
                        await self._drain(conn)
                except Exception:  # noqa: BLE001 - no connection: each call learns alone
                    group, self.queue = self.queue[:self.MAX_GROUP], self.queue[self.MAX_GROUP:]
                    await asyncio.gather(*(self._alone(w) for w in group))
        finally:
            self.writer = None

    async def _drain(self, conn: asyncpg.Connection) -> None:
        """Commits groups on `conn` until the queue is empty; returns early (so the
        connection is replaced) after a group whose statement failed."""
        while self.queue:
            # One pass of the event loop first: the calls whose requests are already read
            # join this group instead of each paying for a statement and a commit of its own.
            await asyncio.sleep(0)
            group, self.queue = self.queue[:self.MAX_GROUP], self.queue[self.MAX_GROUP:]
            self.largest_group = max(self.largest_group, len(group))
            if not await self._commit(conn, group):
                return

    async def _commit(self, conn: asyncpg.Connection, group: list[_Waiting]) -> bool:
        """Answers every call of the group; False if the group's statement failed (each call
        then ran alone, on other connections)."""
        try:
            if any(w.request.reference for w in group):
                outcomes = await self._in_transaction(conn, group)
            else:
                outcomes = await self._one_statement(conn, group)
            failed = False
        except Exception:  # noqa: BLE001 - each call then learns its own outcome alone
            outcomes, failed = None, True
        if outcomes is None:
            await asyncio.gather(*(self._alone(w) for w in group))
            return not failed
        for waiting, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                waiting.done.set_exception(outcome)
            else:
                waiting.done.set_result(outcome)
        return True

    async def _alone(self, waiting: _Waiting) -> None:
        try:
            waiting.done.set_result(
                await self.desk.create_alone(waiting.request, waiting.new, waiting.actor))
        except Exception as err:  # noqa: BLE001 - handed to the caller, mapped at the API
            waiting.done.set_exception(err)

    async def _one_statement(self, conn: asyncpg.Connection, group: list[_Waiting],
                             ) -> list[CreateResult | Exception]:
        rows = await insert_payouts_in(conn, [w.new for w in group],
                                       actor=[w.actor for w in group])
        replays = [w.request.idempotency_key for w, row in zip(group, rows, strict=True)
                   if row is None]
        stored: dict[str, Payout] | Exception
        try:
            stored = await payouts_by_keys(conn, replays) if replays else {}
        except (asyncpg.PostgresError, OSError) as err:
            stored = err  # the inserted calls are done; only the replays learn of it
        outcomes: list[CreateResult | Exception] = []
        for waiting, row in zip(group, rows, strict=True):
            if row is not None:
                outcomes.append(CreateResult(row, True))
                continue
            if isinstance(stored, Exception):
                outcomes.append(stored)
                continue
            try:
                outcomes.append(replay(stored.get(waiting.request.idempotency_key),
                                       waiting.request))
            except IdempotencyConflict as err:
                outcomes.append(err)
        return outcomes

    async def _in_transaction(self, conn: asyncpg.Connection, group: list[_Waiting],
                              ) -> list[CreateResult | Exception] | None:
        """None (after a rollback) if any call of the group is refused."""
        try:
            async with conn.transaction():
                results = await self.desk.insert_many(
                    conn, [w.request for w in group], [w.new for w in group],
                    actor=[w.actor for w in group])
        except (ValidationFailed, IdempotencyConflict):
            return None
        return list(results)
