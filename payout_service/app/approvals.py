"""ApprovePayout and RejectPayout: four-eyes approvals of payouts above a threshold.

The caller's certificate identity must be a configured approver approving with its own key,
and never the payout's creator; the signature is checked here over the statement of the
payout as it will be paid (core/approvals.py), so a bad one is refused at once instead of by
the signer later. The signer checks every approval again: these checks protect the payout
service's own queue, the signer protects the money."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import asyncpg

from payout_approvals.statement import MAX_APPROVAL_SECONDS, Approval, is_valid
from payout_service.adapters import approval_store as store
from payout_service.adapters.payout_store import get_payout_in
from payout_service.config import Config
from payout_service.core.approvals import Route, route_payment
from payout_service.core.batches import BatchMode
from payout_service.core.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from payout_service.core.model import Payout
from payout_service.core.states import IllegalTransition, PayoutState

log = logging.getLogger(__name__)
MAX_REASON = 512


def approval_route(cfg: Config) -> Route:
    """How this configuration pays, for approvals (core/approvals.py)."""
    return Route(BatchMode(cfg.batch_mode), cfg.contract_id, cfg.network_passphrase,
                 cfg.source_account)


@dataclass(frozen=True)
class Approved:
    payout: Payout
    approvals: int  # distinct unexpired approvals now stored
    required: int


class Approvals:
    def __init__(self, pool: asyncpg.Pool, config: Config) -> None:
        self.pool = pool
        self.config = config

    async def _waiting(self, payout_id: str) -> Payout:
        payout = await get_payout_in(self.pool, payout_id)
        if payout is None:
            raise NotFoundError(f"payout {payout_id} not found")
        return payout

    def _approver_key(self, identity: str) -> str:
        rules = self.config.approval_rules
        if rules is None:
            raise PreconditionFailed("approvals", "approvals are off (no PAYOUTS_APPROVERS)",
                                     kind="APPROVAL")
        key = rules.approvers.get(identity)
        if key is None:
            raise PermissionDenied(f"{identity} is not an approver (PAYOUTS_APPROVERS)")
        return key

    async def approve(self, payout_id: str, *, identity: str, public_key: str,
                      signature: bytes, expires_at: int, correlation_id: str) -> Approved:
        key = self._approver_key(identity)
        rules = self.config.approval_rules
        assert rules is not None  # noqa: S101 - _approver_key refused otherwise
        if public_key != key:
            raise PermissionDenied(f"{identity} approves with {key}, not {public_key}")
        violations = []
        now = int(time.time())
        if expires_at <= now:
            violations.append(FieldViolation("expires_at", "must be in the future"))
        elif expires_at > now + MAX_APPROVAL_SECONDS:
            violations.append(FieldViolation(
                "expires_at", f"at most {MAX_APPROVAL_SECONDS} s from now (7 days)"))
        if len(signature) != 64:
            violations.append(FieldViolation("signature", "must be a 64-byte Ed25519 signature"))
        if violations:
            raise ValidationFailed(violations)
        payout = await self._waiting(payout_id)
        if payout.state != PayoutState.AWAITING_APPROVAL:
            raise IllegalTransition(payout.state, PayoutState.ACCEPTED)
        if await store.creator(self.pool, payout.id) == identity:
            raise PermissionDenied("the creator of a payout cannot approve it")
        payment = route_payment(payout, approval_route(self.config))
        approval = Approval(public_key, signature, payout.payout_id, expires_at)
        if payment is None or not is_valid(payment, approval, int(time.time())):
            raise ValidationFailed([FieldViolation(
                "signature", "does not verify over this payout's approval statement "
                "(payoutctl approve builds it; docs/api.md#approvals)")])
        released, count = await store.add_approval(
            self.pool, payout.id, approval, identity=identity,
            approvers=set(rules.approvers.values()), required=rules.required,
            correlation_id=correlation_id)
        log.info("payout approved", extra={
            "payout_id": payout.payout_id, "actor": identity, "approver": public_key,
            "approvals": count, "required": rules.required, "released": released is not None,
            "correlation_id": correlation_id})
        current = released or await self._waiting(payout_id)
        return Approved(current, count, rules.required)

    async def reject(self, payout_id: str, *, identity: str, reason: str) -> Payout:
        self._approver_key(identity)
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON:
            raise ValidationFailed([FieldViolation("reason", f"must be 1-{MAX_REASON} "
                                                             "characters")])
        payout = await self._waiting(payout_id)
        rejected = await store.reject(self.pool, payout.id, identity=identity, reason=reason)
        log.info("payout rejected", extra={"payout_id": payout.payout_id, "actor": identity})
        return rejected
