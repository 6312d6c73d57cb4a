"""Round use cases: create, close, resolve (all winners' payouts or none), settle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from payout_service import metrics
from payout_service.adapters import round_store
from payout_service.adapters.payout_store import NewPayout
from payout_service.adapters.round_store import Round
from payout_service.app.desk import IdempotencyConflict, PayoutDesk
from payout_service.core.errors import (
    FieldViolation,
    NotFoundError,
    PreconditionFailed,
    ScreeningDenied,
    ValidationFailed,
)
from payout_service.core.idempotency import canonical_parameters, fingerprint
from payout_service.core.model import Payout
from payout_service.core.rounds import (
    IllegalRoundTransition,
    RoundState,
    WinnerInput,
    check_round_transition,
    round_id_problem,
    validate_winners,
)
from payout_service.core.validation import PayoutRequest, asset_problem, normalize_asset, quote


class _ResolvedMeanwhile(Exception):
    """Another resolution committed while this one waited for the round's row lock."""


def _precondition(err: IllegalRoundTransition) -> PreconditionFailed:
    return PreconditionFailed(f"rounds/{err.round_id}", str(err), "STATE")


@dataclass(frozen=True)
class Resolution:
    round: Round
    payouts: list[Payout]


class RoundDesk:
    def __init__(self, desk: PayoutDesk) -> None:
        self.desk = desk
        self.pool = desk.store.pool

    async def create(self, round_id: str, asset: str) -> Round:
        violations = []
        if problem := round_id_problem(round_id):
            violations.append(FieldViolation("round_id", problem))
        asset = asset or "XLM"
        if problem := asset_problem(asset):
            violations.append(FieldViolation("asset", problem))
        if violations:
            raise ValidationFailed(violations)
        asset = normalize_asset(asset)
        created = await round_store.insert_round(self.pool, round_id, asset)
        if created is not None:
            metrics.ROUNDS.labels("open").inc()
            return created
        existing = await self.get(round_id)
        if existing.asset != asset:
            raise IdempotencyConflict([FieldViolation("asset", "differs from the existing round")])
        return existing

    async def get(self, round_id: str) -> Round:
        if not round_id:
            raise ValidationFailed([FieldViolation("round_id", "is required")])
        # Settling on read too, so a caller never sees RESOLVED once every payout is confirmed.
        await self._settle(round_id)
        found = await round_store.get_round(self.pool, round_id)
        if found is None:
            raise NotFoundError(f"round {quote(round_id)} not found")
        return found

    async def payouts(self, round_id: str) -> list[Payout]:
        return await round_store.round_payouts(self.pool, round_id)

    async def close(self, round_id: str) -> Round:
        current = await self.get(round_id)
        closed = await round_store.close_round(self.pool, round_id)
        if closed is not None:
            metrics.ROUNDS.labels("closed").inc()
            return closed
        fresh = await self.get(round_id)
        try:
            check_round_transition(round_id, fresh.state, RoundState.CLOSED)
        except IllegalRoundTransition as err:
            raise _precondition(err) from None
        raise PreconditionFailed(f"rounds/{round_id}", f"round changed from {current.state}")

    async def resolve(
        self, round_id: str, winners: Sequence[WinnerInput], *, actor: str, correlation_id: str
    ) -> Resolution:
        current = await self.get(round_id)
        requests = validate_winners(round_id, current.asset, winners, self.desk.validate)
        if current.state in (RoundState.RESOLVED, RoundState.SETTLED):
            return await self._replay(current, requests)
        try:
            check_round_transition(round_id, current.state, RoundState.RESOLVED)
        except IllegalRoundTransition as err:
            raise _precondition(err) from None
        news = [await self._new_payout(i, r, round_id, correlation_id)
                for i, r in enumerate(requests)]
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                locked = await round_store.get_round(conn, round_id, for_update=True)
                assert locked is not None
                if locked.state != RoundState.CLOSED:
                    raise _ResolvedMeanwhile
                created = await self.desk.insert_many(conn, requests, news, actor=actor,
                                                      item_field="winners")
                payouts = [self._own(i, r.payout, round_id) for i, r in enumerate(created)]
                resolved = await round_store.mark_resolved(
                    conn, round_id, winner_count=len(payouts),
                    total_stroops=sum(p.gross_stroops for p in payouts), actor=actor,
                )
        except _ResolvedMeanwhile:
            return await self._replay(await self.get(round_id), requests)
        metrics.ROUNDS.labels("resolved").inc()
        return Resolution(resolved, payouts)

    async def _new_payout(
        self, index: int, request: PayoutRequest, round_id: str, correlation_id: str
    ) -> NewPayout:
        try:
            return await self.desk.new_payout(
                request, correlation_id=correlation_id, round_id=round_id
            )
        except ValidationFailed as err:
            raise ValidationFailed([
                FieldViolation(f"winners[{index}].{v.field}", v.description)
                for v in err.violations
            ]) from None
        except ScreeningDenied as err:
            raise err.at(f"winners[{index}].destination") from None

    @staticmethod
    def _own(index: int, payout: Payout, round_id: str) -> Payout:
        """A payout under the derived key may exist already (e.g. made through CreatePayout,
        with the same parameters): acceptable only if it is this round's."""
        if payout.round_id != round_id:
            raise IdempotencyConflict([FieldViolation(
                f"winners[{index}]",
                f"payout_id {quote(payout.payout_id)} or idempotency key "
                f"{quote(payout.idempotency_key)} belongs to another payout",
            )])
        return payout

    async def _replay(self, current: Round, requests: list[PayoutRequest]) -> Resolution:
        """A repeated ResolveRound with the same winners returns the same payouts."""
        payouts = {p.idempotency_key: p for p in await self.payouts(current.round_id)}
        same = len(payouts) == len(requests) and all(
            r.idempotency_key in payouts
            and payouts[r.idempotency_key].fingerprint == fingerprint(canonical_parameters(r))
            for r in requests
        )
        if not same:
            raise PreconditionFailed(
                f"rounds/{current.round_id}",
                f"round {quote(current.round_id)} is {current.state} with other winners",
            )
        ordered = [payouts[r.idempotency_key] for r in requests]
        return Resolution(current, ordered)

    async def settle(self) -> list[str]:
        return await self._settle(None)

    async def _settle(self, round_id: str | None) -> list[str]:
        settled = await round_store.settle_resolved_rounds(self.pool, round_id)
        if settled:
            metrics.ROUNDS.labels("settled").inc(len(settled))
        return settled
