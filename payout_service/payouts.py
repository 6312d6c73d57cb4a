"""Payout use cases: what CreatePayout and friends do, between the API and the store."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from payout_service.attempt_store import AttemptStore
from payout_service.config import Config
from payout_service.core.envelopes import signed_envelope_problem
from payout_service.core.fees import split_fee
from payout_service.core.idempotency import canonical_parameters, differing_fields, fingerprint
from payout_service.core.model import Payout
from payout_service.core.states import IllegalTransition, PayoutState
from payout_service.core.transactions import TxParams, build_payout_transaction, payout_call
from payout_service.core.validation import (
    AmountLimits,
    FieldViolation,
    PayoutRequest,
    ValidationFailed,
    validate_payout_request,
)
from payout_service.failpoints import failpoint
from payout_service.ledger import LedgerGateway
from payout_service.store import NewPayout, PayoutIdTaken, PayoutStore
from payout_service.tracing import current_traceparent


class IdempotencyConflict(Exception):
    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("idempotency key already used with different parameters")
        self.violations = violations


class MaxGasExceeded(Exception):
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


def mode_for(config: Config) -> str:
    if not config.live_execution:
        return "BUILD_ONLY"
    return "SIGNER_SERVICE" if config.signing_mode == "signer" else "EXTERNAL"


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
        )

    async def create(
        self, request: PayoutRequest, *, actor: str, correlation_id: str,
        round_id: str | None = None, batch_id: str | None = None,
    ) -> CreateResult:
        params = canonical_parameters(request)
        digest = fingerprint(params)
        existing = await self.store.find_by_idempotency_key(request.idempotency_key)
        if existing is not None:
            return self._replay(existing, params, digest)
        new = await self.new_payout(
            request, correlation_id=correlation_id, round_id=round_id, batch_id=batch_id
        )
        try:
            payout, created = await self.store.insert_payout(new, actor=actor)
        except PayoutIdTaken:
            taken = FieldViolation(
                "payout_id", "already used by a payout with another idempotency key"
            )
            raise IdempotencyConflict([taken]) from None
        if not created:
            return self._replay(payout, params, digest)
        return CreateResult(payout, True)

    async def new_payout(
        self, request: PayoutRequest, *, correlation_id: str, round_id: str | None = None,
        batch_id: str | None = None,
    ) -> NewPayout:
        """The row to insert: fee split and, in build-only mode, the built XDR. Writes nothing,
        so callers can insert many in one SQL transaction (rounds) or one at a time."""
        params = canonical_parameters(request)
        split = split_fee(request.amount_stroops, self.config.fee_bps)
        if split.net <= 0:
            raise ValidationFailed([FieldViolation("amount", "is too small to cover the fee")])
        mode = mode_for(self.config)
        unsigned_xdr = None
        state = PayoutState.ACCEPTED
        if mode == "BUILD_ONLY":
            # Built before the row is written, so a refused build leaves no row behind.
            unsigned_xdr = await self._build_unsigned(request.destination, split.net, request.asset)
            state = PayoutState.BUILT
        return NewPayout(
            payout_id=request.payout_id, idempotency_key=request.idempotency_key,
            fingerprint=fingerprint(params), parameters=params, destination=request.destination,
            asset=request.asset, gross_stroops=split.gross, fee_stroops=split.fee,
            net_stroops=split.net, state=state, mode=mode, unsigned_envelope_xdr=unsigned_xdr,
            metadata=dict(request.metadata), reference=request.reference,
            correlation_id=correlation_id, round_id=round_id, batch_id=batch_id,
            trace_context=current_traceparent(),
        )

    @staticmethod
    def _replay(existing: Payout, params: dict[str, object], digest: str) -> CreateResult:
        if existing.fingerprint != digest:
            raise IdempotencyConflict(differing_fields(existing.parameters, params))
        return CreateResult(existing, False)

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
