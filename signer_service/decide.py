"""One signing request from admission to answer: who asks, the policy's decision, the daily
reservation, the request id, the signature and the audit record, in that order.

Every request that names a key and a decodable object is audited, whatever happens next:
a refused identity, a key the client may not use, a policy refusal, something the policy
cannot judge, a replayed or reused request id, a check, a signature. A decision takes
effect only once its record is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from signer_service import metrics
from signer_service.audit import AuditLog
from signer_service.backends import BackendError
from signer_service.idempotency import SignedRequest, SignedRequests, fingerprint
from signer_service.keys import KeyHandle
from signer_service.logs import log_event
from signer_service.peer import Peer
from signer_service.policy import Allow, Decision, Refuse
from signer_service.rpc import TRACE_ID, RpcFailure, echo
from signer_service.spending import SpentLedger, spending_bucket, spent_amounts
from stellar_payouts_pb.signer.v1 import signer_pb2

# decide(spent_of_asset, now): the policy's decision with what the key spent in 24 h.
Decide = Callable[[Callable[[str], int], float], Decision]
# The rule of a request the policy could not judge (it raised): INVALID_ARGUMENT on `field`.
UNJUDGEABLE = "undecodable"


@dataclass
class SigningRequest:
    kind: str  # "transaction" | "authorization" | "check"
    handle: KeyHandle
    peer: Peer
    request_id: str
    context: signer_pb2.SigningContext
    digest: bytes | None  # None: the object has no signable hash (the policy refuses it)
    object_field: str  # the request field holding the object, for INVALID_ARGUMENT
    decide: Decide
    extra: dict[str, Any] = field(default_factory=dict)
    # Called when an allowed decision fails to take effect (no signature, no record).
    undo: Callable[[], None] = lambda: None

    @property
    def tx_hash(self) -> str:
        return self.digest.hex() if self.digest is not None else ""


class Decider:
    def __init__(self, audit: AuditLog, spent: SpentLedger, signed: SignedRequests,
                 clock: Callable[[], float] = time.time) -> None:
        self._audit, self._spent, self._signed, self._clock = audit, spent, signed, clock

    async def record(self, req: SigningRequest, decision: str, rule: str, detail: str = "",
                     amount: int = 0, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The decision's audit record, durable; UNAVAILABLE when it cannot be written."""
        return await self.written(self.submit(req, decision, rule, detail, amount, extra))

    @staticmethod
    async def written(record: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        # Shielded: a caller that goes away does not stop (or hide) the write.
        try:
            return await asyncio.shield(record)
        except OSError:
            # Without its audit record a decision must not take effect.
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "audit log unavailable") from None

    def submit(self, req: SigningRequest, decision: str, rule: str, detail: str = "",
               amount: int = 0, extra: dict[str, Any] | None = None
               ) -> asyncio.Future[dict[str, Any]]:
        """Queue the decision's audit record; counted and logged once written."""
        fields: dict[str, Any] = {
            "kind": req.kind,
            "client": req.peer.identity,
            "key_id": req.handle.key_id,
            "public_key": req.handle.address,
            "tx_hash": req.tx_hash,
            "decision": decision,
            "rule": rule,
            "detail": detail,
            "amount_stroops": amount,
            "request_id": req.request_id,
            "payout_id": req.context.payout_id,
            "attempt": req.context.attempt,
            "correlation_id": req.context.correlation_id,
            "trace_id": TRACE_ID.get(),
            **req.extra,
            **(extra or {}),
        }
        record = self._audit.submit(fields)

        def logged(done: asyncio.Future[dict[str, Any]]) -> None:
            if done.cancelled() or done.exception() is not None:
                log_event("audit write failed", logging.ERROR, request_id=req.request_id)
                return
            metrics.DECISIONS.labels(decision if decision != "allow" else "sign", rule).inc()
            log_event(
                "signing decision",
                logging.INFO if decision in ("allow", "replay", "would_sign") else
                logging.WARNING,
                kind=req.kind, request_id=req.request_id, payout_id=req.context.payout_id,
                attempt=req.context.attempt, correlation_id=req.context.correlation_id,
                trace_id=fields["trace_id"], key_id=req.handle.key_id,
                client=req.peer.identity, tx_hash=req.tx_hash, decision=decision, rule=rule,
                detail=detail, amount_stroops=amount,
            )

        record.add_done_callback(logged)
        return record

    async def admit(self, req: SigningRequest) -> str | None:
        """Refuse (audited) a caller without one identity, or one the key does not list.
        For a check, a listed-clients refusal is an answer: its detail is returned."""
        key_id = req.handle.key_id
        if req.peer.problem:
            await self.record(req, "refuse", "client_identity", req.peer.problem)
            raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, req.peer.problem,
                             rule="client_identity", key_id=key_id)
        if req.peer.identity in req.handle.config.allowed_clients:
            return None
        detail = f"client {echo(req.peer.identity)} may not use key {key_id}"
        await self.record(req, "refuse" if req.kind != "check" else "would_refuse",
                          "allowed_clients", detail)
        if req.kind == "check":
            return detail
        raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, detail, rule="allowed_clients",
                         key_id=key_id)

    def _judge(self, req: SigningRequest, now: float) -> Decision:
        key_id = req.handle.key_id
        try:
            decision = req.decide(lambda asset: self._spent.spent(
                spending_bucket(key_id, asset), now), now)
        except Exception as err:  # noqa: BLE001 - deny by default: what cannot be judged is refused
            return Refuse(UNJUDGEABLE, f"cannot be judged ({type(err).__name__})")
        if isinstance(decision, Allow) and req.digest is None:
            return Refuse(UNJUDGEABLE, "has no hash to sign")
        return decision

    async def _refuse(self, req: SigningRequest, decision: Refuse) -> RpcFailure:
        await self.record(req, "refuse", decision.rule, decision.detail)
        if decision.rule == UNJUDGEABLE:
            return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{req.object_field}: "
                              f"{decision.detail}", req.object_field)
        return RpcFailure(grpc.StatusCode.PERMISSION_DENIED, decision.message,
                          rule=decision.rule, key_id=req.handle.key_id, account=decision.account)

    async def check(self, req: SigningRequest) -> Decision:
        """The decision SignTransaction would make now: never reserved, never signed."""
        async with req.handle.lock:
            decision = self._judge(req, self._clock())
        if isinstance(decision, Refuse):
            await self.record(req, "would_refuse", decision.rule, decision.detail)
        else:
            await self.record(req, "would_sign", "none", amount=decision.amount_stroops)
        return decision

    async def sign(self, req: SigningRequest) -> bytes:
        """Policy check, daily reservation and request id under the key's lock (no await in
        between: one decision at a time per event loop), then sign, then audit."""
        handle, key_id = req.handle, req.handle.key_id
        print_ = fingerprint(req.kind, key_id, req.tx_hash)
        async with handle.lock:
            now = self._clock()
            prior = self._signed.get(req.peer.identity, req.request_id, now)
            if prior is None:
                decision = self._judge(req, now)
                if isinstance(decision, Allow):
                    spends = spent_amounts(key_id, decision.amount_stroops,
                                           decision.asset_amounts)
                    for bucket, amount in spends:
                        self._spent.add(bucket, now, amount)
                    entry = self._signed.begin(req.peer.identity, req.request_id, print_, now)
        if prior is not None:
            return await self._replay(req, prior, print_)
        if isinstance(decision, Refuse):
            raise await self._refuse(req, decision)
        return await self._sign_allowed(req, decision, spends, entry, now)

    async def _sign_allowed(self, req: SigningRequest, decision: Allow,
                            spends: list[tuple[str, int]], entry: SignedRequest,
                            now: float) -> bytes:
        """Sign, then write the allow record. A caller that goes away (a deadline, a cancel)
        leaves nothing half done: before the signature everything is undone; once its record
        is queued, the record's outcome settles the reservation and the request id, so a
        retry under the same id waiting on `entry` gets the signature or decides anew."""
        handle, key_id = req.handle, req.handle.key_id

        def undo() -> None:
            for bucket, amount in spends:
                self._spent.remove(bucket, now, amount)
            self._signed.abandon(req.peer.identity, req.request_id, entry)
            req.undo()

        assert req.digest is not None
        try:
            start = time.perf_counter()
            # The backend verifies the token's signature before returning it (a token that
            # returns a wrong signature must not hand it out), off the event loop.
            signature = await handle.backend.sign(key_id, req.digest)
            metrics.BACKEND_SIGN_SECONDS.observe(time.perf_counter() - start)
        except BackendError as err:
            undo()
            await self.record(req, "error", "backend", type(err).__name__)
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "signing backend failed") from None
        except asyncio.CancelledError:
            undo()
            raise
        extra: dict[str, Any] = {"signature": signature.hex()}
        if decision.asset_amounts:
            extra["asset_amounts"] = dict(decision.asset_amounts)
        record = self.submit(req, "allow", "none", amount=decision.amount_stroops, extra=extra)

        def settle(done: asyncio.Future[dict[str, Any]]) -> None:
            if done.cancelled() or done.exception() is not None:
                undo()  # not recorded, so not handed out: the amount was never spent
                return
            entry.seq = int(done.result()["seq"])
            entry.signature.set_result(signature)

        record.add_done_callback(settle)
        await self.written(record)
        return signature

    async def _replay(self, req: SigningRequest, prior: SignedRequest, print_: str) -> bytes:
        """The same request id again: the same request gets the same signature (not decided
        or counted again); another request under that id is refused."""
        key_id = req.handle.key_id
        if prior.fingerprint != print_:
            detail = f"request_id {echo(req.request_id)} was already used for another request"
            await self.record(req, "refuse", "request_id", detail)
            raise RpcFailure(grpc.StatusCode.ALREADY_EXISTS, detail, "request_id",
                             rule="request_id", key_id=key_id)
        signature = await asyncio.shield(prior.signature)
        if not signature:  # that request was not signed after all: decide this one anew
            return await self.sign(req)
        await self.record(req, "replay", "request_id",
                          f"same request as audit record {prior.seq}: same signature, not "
                          "counted again")
        return signature
