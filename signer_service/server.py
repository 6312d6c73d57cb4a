"""signer.v1.SignerService over grpc.aio, mutual TLS only, plus health and reflection."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from stellar_sdk import scval
from stellar_sdk import xdr as sx
from stellar_sdk.auth import (
    authorization_payload_hash,
    authorize_entry,
    build_authorization_preimage,
)

from payout_approvals.statement import Approval
from signer_service.approvals import approvals_refusal
from signer_service.audit import AuditLog
from signer_service.backends import ChannelKeySource, SigningBackend
from signer_service.config import SignerConfig, TlsConfig
from signer_service.decide import Decider, SigningRequest
from signer_service.envelope import EnvelopeProblem, ParsedEnvelope, parse_envelope
from signer_service.idempotency import SignedRequests
from signer_service.keys import KeyHandle, KeyRegistry
from signer_service.ledger_claims import LedgerAnchor, LedgerClaim, ledger_ceiling
from signer_service.logs import log_event
from signer_service.peer import Peer, caller
from signer_service.policy import (
    NATIVE,
    Allow,
    Decision,
    Refuse,
    check_authorization,
    check_transaction,
)
from signer_service.rpc import SERVICE_NAME, RpcFailure, bad_request, echo, rpc
from signer_service.spending import SpentLedger
from signer_service.tracing import server_interceptor
from signer_service.wire import add_service
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc

_BACKEND_ENUM = {"pkcs11": signer_pb2.KEY_BACKEND_PKCS11, "hot": signer_pb2.KEY_BACKEND_HOT}
_ROLE_ENUM = {"payout": signer_pb2.KEY_ROLE_PAYOUT, "funding": signer_pb2.KEY_ROLE_FUNDING,
              "channel": signer_pb2.KEY_ROLE_CHANNEL}
MAX_BATCH = 100  # SignTransactions requests per call


# More approvals than 100 operations x a generous approver group is not a real request.
MAX_APPROVALS = 1000


def request_approvals(
    request: signer_pb2.SignTransactionRequest | signer_pb2.CheckTransactionRequest,
) -> tuple[tuple[int, Approval], ...]:
    """The request's approvals, (operation index, approval); judged by the approvals rule."""
    if len(request.approvals) > MAX_APPROVALS:
        raise bad_request("approvals", f"at most {MAX_APPROVALS} approvals")
    return tuple((a.operation_index, Approval(a.approver_public_key, a.signature, a.payout_id,
                                              a.expires_at)) for a in request.approvals)


def _identified(context: Any) -> Peer:
    """The caller of an RPC that decides nothing (ListKeys, GetPublicKey): one identity."""
    peer = caller(context)
    if peer.problem:
        raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, peer.problem)
    return peer


class SignerServicer(signer_pb2_grpc.SignerServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        config: SignerConfig,
        backends: Mapping[str, SigningBackend],
        audit: AuditLog,
        spent: SpentLedger,
        clock: Callable[[], float] = time.time,
        ledger_anchor: LedgerAnchor | None = None,
        channel_source: ChannelKeySource | None = None,
        signed: SignedRequests | None = None,
    ) -> None:
        self._passphrase = config.network_passphrase
        self._audit = audit
        self._clock = clock
        self._min_close = config.min_ledger_close_seconds
        # The first current_ledger claim this log accepted (see policy.ledger_ceiling).
        self._ledger_anchor = ledger_anchor
        self.keys = KeyRegistry(config.keys, backends, config.channel_keys, channel_source)
        self._decider = Decider(audit, spent, signed or SignedRequests(), clock)

    # ---------------------------------------------------------------- transactions

    def _transaction_request(
        self, request: signer_pb2.SignTransactionRequest | signer_pb2.CheckTransactionRequest,
        peer: Peer, kind: str,
    ) -> tuple[SigningRequest, ParsedEnvelope]:
        handle = self.keys.get(request.key_id)
        if not request.request_id:
            raise bad_request("request_id", "is required")
        if not request.envelope_xdr:
            raise bad_request("envelope_xdr", "is required")
        try:
            envelope = parse_envelope(request.envelope_xdr)
        except EnvelopeProblem as problem:
            raise bad_request("envelope_xdr", str(problem)) from None
        payers = self.keys.channel_payers(handle)
        channels = self.keys.channel_accounts

        approvals = request_approvals(request)

        def decide(spent: Callable[[str], int], now: float) -> Decision:
            decision = check_transaction(
                envelope.tx, handle.config.policy, network_passphrase=self._passphrase,
                spent_last_24h=spent(NATIVE), now=int(now), signer_account=handle.address,
                spent_of_asset=spent, channel_accounts=channels, channel_payers=payers,
            )
            if isinstance(decision, Refuse):
                return decision
            return approvals_refusal(envelope.tx, handle.config.policy, self._passphrase,
                                     approvals, int(now)) or decision

        extra: dict[str, Any] = {}
        if approvals:
            # What the caller presented, for whoever reads the log: who approved which
            # operation (the decision says whether they counted).
            extra["approvals"] = [
                {"operation_index": i, "approver": a.approver, "payout_id": a.payout_id,
                 "expires_at": a.expires_at} for i, a in approvals]
        return SigningRequest(kind, handle, peer, request.request_id, request.context,
                              envelope.hash(self._passphrase), "envelope_xdr", decide,
                              extra), envelope

    async def _sign_transaction(
        self, request: signer_pb2.SignTransactionRequest, peer: Peer
    ) -> signer_pb2.SignTransactionResponse:
        req, envelope = self._transaction_request(request, peer, "transaction")
        await self._decider.admit(req)
        signature = await self._decider.sign(req)
        handle = req.handle
        decorated = sx.DecoratedSignature(sx.SignatureHint(handle.hint), sx.Signature(signature))
        return signer_pb2.SignTransactionResponse(
            signed_envelope_xdr=base64.b64encode(envelope.with_signature(decorated)).decode(),
            decorated_signature_xdr=decorated.to_xdr(),
            tx_hash=req.tx_hash,
            public_key=handle.address,
        )

    @rpc("SignTransaction")
    async def SignTransaction(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.SignTransactionRequest, context: Any
    ) -> signer_pb2.SignTransactionResponse:
        return await self._sign_transaction(request, caller(context))

    @rpc("SignTransactions")
    async def SignTransactions(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.SignTransactionsRequest, context: Any
    ) -> signer_pb2.SignTransactionsResponse:
        if not request.requests:
            raise bad_request("requests", "is required (1 to 100 requests)")
        if len(request.requests) > MAX_BATCH:
            raise bad_request("requests", f"{len(request.requests)} requests, at most {MAX_BATCH}")
        peer = caller(context)

        async def one(item: signer_pb2.SignTransactionRequest) -> signer_pb2.SignTransactionResult:
            try:
                return signer_pb2.SignTransactionResult(
                    signed=await self._sign_transaction(item, peer))
            except RpcFailure as failure:
                return signer_pb2.SignTransactionResult(error=signer_pb2.SigningError(
                    code=failure.code.value[0], message=failure.message,
                    field=failure.field or "", rule=failure.rule or "",
                    account=failure.account))

        # Concurrently: the batch shares the PKCS#11 process's frames and the audit's fsync.
        results = await asyncio.gather(*(one(item) for item in request.requests))
        return signer_pb2.SignTransactionsResponse(results=results)

    @rpc("CheckTransaction")
    async def CheckTransaction(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.CheckTransactionRequest, context: Any
    ) -> signer_pb2.CheckTransactionResponse:
        req, _ = self._transaction_request(request, caller(context), "check")
        answer = signer_pb2.CheckTransactionResponse(key_id=req.handle.key_id,
                                                     tx_hash=req.tx_hash)
        not_allowed = await self._decider.admit(req)
        if not_allowed is not None:
            answer.rule, answer.message = "allowed_clients", not_allowed
            return answer
        decision = await self._decider.check(req)
        if isinstance(decision, Allow):
            answer.would_sign = True
            answer.message = f"would sign: amount {decision.amount_stroops} stroops" + "".join(
                f", {n} stroops of {a}" for a, n in decision.asset_amounts)
        else:
            answer.rule, answer.account, answer.message = \
                decision.rule, decision.account, decision.message
        return answer

    # ---------------------------------------------------------------- authorization entries

    @rpc("SignAuthorizationEntry")
    async def SignAuthorizationEntry(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.SignAuthorizationEntryRequest, context: Any
    ) -> signer_pb2.SignAuthorizationEntryResponse:
        handle = self.keys.get(request.key_id)
        if not request.request_id:
            raise bad_request("request_id", "is required")
        if request.signature_expiration_ledger == 0:
            raise bad_request("signature_expiration_ledger", "is required")
        if request.current_ledger == 0:
            raise bad_request("current_ledger", "is required (the network's latest ledger)")
        try:
            entry = sx.SorobanAuthorizationEntry.from_xdr(request.entry_xdr)
        except Exception:  # noqa: BLE001 - any decoding failure is the caller's bad input
            raise bad_request("entry_xdr", "is not a base64 SorobanAuthorizationEntry XDR") \
                from None
        if entry.credentials.type != sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS:
            raise bad_request("entry_xdr", "only address credentials can be signed")
        expiration, current = request.signature_expiration_ledger, request.current_ledger
        try:
            digest: bytes | None = authorization_payload_hash(
                build_authorization_preimage(entry, expiration, self._passphrase))
        except ValueError:
            digest = None  # not a G.../C... address: the policy refuses it (credentials)
        req = SigningRequest(
            "authorization", handle, caller(context), request.request_id, request.context,
            digest, "entry_xdr", self._authorization_decision(entry, handle, current,
                                                              expiration),
            extra={"current_ledger": current, "expiration_ledger": expiration})
        anchor_before = self._ledger_anchor

        def forget_anchor() -> None:
            if anchor_before is None:
                self._ledger_anchor = None

        req.undo = forget_anchor
        await self._decider.admit(req)
        signature = await self._decider.sign(req)
        # The default Stellar account's signature shape: Vec<Map{public_key, signature}>.
        signature_val = scval.to_vec([scval.to_map({
            scval.to_symbol("public_key"): scval.to_bytes(handle.keypair.raw_public_key()),
            scval.to_symbol("signature"): scval.to_bytes(signature),
        })])

        def signed_payload(seen: sx.HashIDPreimage) -> sx.SCVal:
            if authorization_payload_hash(seen) != digest:
                raise ValueError("authorization preimage changed while signing")
            return signature_val

        signed = authorize_entry(entry, signed_payload, expiration, self._passphrase)
        return signer_pb2.SignAuthorizationEntryResponse(
            signed_entry_xdr=signed.to_xdr(), public_key=handle.address
        )

    def _authorization_decision(
        self, entry: sx.SorobanAuthorizationEntry, handle: KeyHandle, current: int,
        expiration: int,
    ) -> Callable[[Callable[[str], int], float], Decision]:
        def decide(spent: Callable[[str], int], now: float) -> Decision:
            claim = LedgerClaim(current, expiration,
                                ledger_ceiling(now, self._ledger_anchor, self._min_close))
            decision = check_authorization(
                entry, handle.config.policy, network_passphrase=self._passphrase,
                signer_account=handle.address, spent_last_24h=spent(NATIVE), ledgers=claim,
                channel=handle.config.role == "channel",
            )
            if isinstance(decision, Allow) and self._ledger_anchor is None:
                self._ledger_anchor = LedgerAnchor(current, now)
            return decision

        return decide

    # ---------------------------------------------------------------- keys and audit

    @rpc("ListKeys")
    async def ListKeys(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.ListKeysRequest, context: Any
    ) -> signer_pb2.ListKeysResponse:
        peer = _identified(context)
        await self.keys.refresh()
        return signer_pb2.ListKeysResponse(keys=[
            self._key_message(h) for h in self.keys.handles()
            if peer.identity in h.config.allowed_clients
        ])

    @rpc("GetPublicKey")
    async def GetPublicKey(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.GetPublicKeyRequest, context: Any
    ) -> signer_pb2.GetPublicKeyResponse:
        peer = _identified(context)
        if not self.keys.known(request.key_id):
            await self.keys.refresh(wait=True)  # a channel key generated since the last one
        handle = self.keys.get(request.key_id)
        if peer.identity not in handle.config.allowed_clients:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED,
                             f"client {echo(peer.identity)} may not use key {handle.key_id}")
        return signer_pb2.GetPublicKeyResponse(key=self._key_message(handle))

    @rpc("GetAuditCheckpoint")
    async def GetAuditCheckpoint(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.GetAuditCheckpointRequest, context: Any
    ) -> signer_pb2.GetAuditCheckpointResponse:
        # Any client with a certificate from our CA may read it: counts and a MAC, no secret.
        cp = self._audit.checkpoint
        return signer_pb2.GetAuditCheckpointResponse(
            records=cp.records, head_hash=cp.head, checkpoint_mac=cp.mac(self._audit.key),
            audit_key_id=self._audit.key.key_id,
        )

    @staticmethod
    def _key_message(handle: KeyHandle) -> signer_pb2.Key:
        return signer_pb2.Key(
            key_id=handle.key_id, public_key=handle.address,
            backend=_BACKEND_ENUM[handle.config.backend], role=_ROLE_ENUM[handle.config.role],
        )


class ReloadingTls:
    """Certificate fetcher for grpc.dynamic_ssl_server_credentials: grpc calls it on every
    handshake, so rotated cert/key/CA files take effect without a restart."""

    def __init__(self, tls: TlsConfig) -> None:
        self._tls = tls
        self._stamp = self._mtimes()

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(os.stat(p).st_mtime_ns for p in (self._tls.cert, self._tls.key,
                                                      self._tls.client_ca))

    def configuration(self) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(Path(self._tls.key).read_bytes(), Path(self._tls.cert).read_bytes())],
            root_certificates=Path(self._tls.client_ca).read_bytes(),
        )

    def __call__(self) -> Any:
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return None
            config = self.configuration()
        except OSError:
            # Mid-rotation (a file briefly missing): keep serving with the current material.
            return None
        self._stamp = stamp
        log_event("tls material reloaded")
        return config


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    fetcher = ReloadingTls(tls)
    return grpc.dynamic_ssl_server_credentials(
        fetcher.configuration(), fetcher, require_client_authentication=True
    )


async def build_server(
    servicer: SignerServicer, listen_addr: str, tls: TlsConfig, *, trace_export: bool = False
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    server = grpc.aio.server(interceptors=[server_interceptor()] if trace_export else [])
    # Like the generated add_SignerServiceServicer_to_server, with deserializers that turn
    # bytes protobuf refuses into INVALID_ARGUMENT (wire.py) instead of grpc's UNKNOWN.
    add_service(server, servicer, signer_pb2.DESCRIPTOR.services_by_name["SignerService"],
                signer_pb2)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_secure_port(listen_addr, server_credentials(tls))
    if port == 0:
        raise OSError(f"cannot listen on {listen_addr}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
