"""signer.v1.SignerService over grpc.aio, mutual TLS only, plus health and reflection."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from stellar_sdk import Keypair, scval
from stellar_sdk import xdr as sx
from stellar_sdk.auth import (
    authorization_payload_hash,
    authorize_entry,
    build_authorization_preimage,
)

from signer_service import metrics
from signer_service.audit import AuditLog
from signer_service.backends import BackendError, ChannelKeySource, SigningBackend
from signer_service.config import KeyConfig, SignerConfig, TlsConfig
from signer_service.envelope import EnvelopeProblem, parse_envelope
from signer_service.logs import log_event
from signer_service.policy import (
    NATIVE,
    Allow,
    Decision,
    LedgerClaim,
    Refuse,
    check_authorization,
    check_transaction,
    ledger_ceiling,
)
from signer_service.spending import SpentLedger, spending_bucket, spent_amounts
from signer_service.tracing import request_trace_id, server_interceptor
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc

SERVICE_NAME = "signer.v1.SignerService"
_BACKEND_ENUM = {"pkcs11": signer_pb2.KEY_BACKEND_PKCS11, "hot": signer_pb2.KEY_BACKEND_HOT}
_ROLE_ENUM = {"payout": signer_pb2.KEY_ROLE_PAYOUT, "funding": signer_pb2.KEY_ROLE_FUNDING,
              "channel": signer_pb2.KEY_ROLE_CHANNEL}


# google.rpc.ErrorInfo.domain of a refusal: clients read `reason` (the policy rule) from it.
REFUSAL_DOMAIN = "signer.payouts"


class RpcFailure(Exception):
    """Ends an RPC with a status; `field` adds a google.rpc.BadRequest field violation, `rule`
    (a refusal) a google.rpc.ErrorInfo whose reason is the rule that refused and whose
    metadata names the key, so a client can tell which rule and key without parsing text."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str | None = None, *,
                 rule: str | None = None, key_id: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.rule, self.key_id = rule, key_id


def bad_request(field: str, message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}", field)


# Longest accepted value of each request field, in UTF-8 bytes; any other string field gets
# DEFAULT_FIELD_MAX_BYTES. Ids match payout-service's (1-128 characters). A Soroban
# transaction is at most 132,096 bytes on mainnet (tx_max_size_bytes), ~176 KiB in base64.
FIELD_MAX_BYTES = {
    "key_id": 64, "request_id": 128, "payout_id": 128, "correlation_id": 128,
    "envelope_xdr": 256 * 1024, "entry_xdr": 64 * 1024,
}
DEFAULT_FIELD_MAX_BYTES = 256
ECHO_CHARS = 32  # no error message repeats more of an input than this
MAX_BATCH = 100  # SignTransactions requests per call


def echo(value: str) -> str:
    """A short, printable prefix of caller input, for error messages."""
    short = value[:ECHO_CHARS] + ("..." if len(value) > ECHO_CHARS else "")
    return repr(short)


def oversized_field(message: Any, prefix: str = "") -> tuple[str, int] | None:
    """The first string field (at any depth) longer than its limit, as (path, limit)."""
    for field, value in message.ListFields():
        path = prefix + field.name
        values = value if field.is_repeated else [value]
        for item in values:
            if isinstance(item, str | bytes):
                size = len(item.encode()) if isinstance(item, str) else len(item)
                limit = FIELD_MAX_BYTES.get(field.name, DEFAULT_FIELD_MAX_BYTES)
                if size > limit:
                    return path, limit
            elif field.message_type is not None:
                found = oversized_field(item, path + ".")
                if found:
                    return found
    return None


def client_identities(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    """Certificate CN first, then SAN entries; grpc has verified the chain against our CA."""
    auth = context.auth_context()
    names = list(auth.get("x509_common_name", [])) + list(
        auth.get("x509_subject_alternative_name", [])
    )
    seen: list[str] = []
    for raw in names:
        name = raw.decode("utf-8", "replace")
        if name not in seen:
            seen.append(name)
    return seen


# The caller's trace id, for the audit record and the decision log of this call.
TRACE_ID: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")
R = TypeVar("R")
Handler = Callable[[Any, Any, Any], Awaitable[R]]


def rpc(method: str) -> Callable[[Handler[R]], Handler[R]]:
    """Counts the call by status code and turns RpcFailure (or a bug) into a clean status."""

    def wrap(fn: Handler[R]) -> Handler[R]:
        @functools.wraps(fn)
        async def run(self: Any, request: Any, context: Any) -> R:
            start, code = time.perf_counter(), grpc.StatusCode.OK
            try:
                TRACE_ID.set(request_trace_id(context))
                too_long = oversized_field(request)
                if too_long is not None:
                    raise bad_request(too_long[0], f"is longer than {too_long[1]} bytes")
                return await fn(self, request, context)
            except RpcFailure as failure:
                code = failure.code
                await _abort(context, failure)
                raise AssertionError("unreachable") from None
            except Exception as err:
                code = grpc.StatusCode.INTERNAL
                log_event("unexpected error", logging.ERROR, method=method,
                          error=type(err).__name__)
                # No stack trace or exception text crosses the wire.
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                raise AssertionError("unreachable") from None
            finally:
                metrics.GRPC_HANDLED.labels(SERVICE_NAME, method, code.name).inc()
                metrics.GRPC_SECONDS.labels(SERVICE_NAME, method).observe(
                    time.perf_counter() - start
                )

        return run

    return wrap


async def _abort(context: Any, failure: RpcFailure) -> None:
    if failure.field is None and failure.rule is None:
        await context.abort(failure.code, failure.message)
        return
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message)
    if failure.field is not None:
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=failure.field, description=failure.message
            )
        ]))
    if failure.rule is not None:
        status.details.add().Pack(error_details_pb2.ErrorInfo(
            reason=failure.rule, domain=REFUSAL_DOMAIN,
            metadata={"key_id": failure.key_id} if failure.key_id else {},
        ))
    await context.abort_with_status(rpc_status.to_status(status))


# One token listing per second at most, whatever asks for a refresh of the channel keys.
MIN_REFRESH_SECONDS = 1.0


@dataclass
class KeyHandle:
    config: KeyConfig
    backend: SigningBackend
    keypair: Keypair  # public half only
    lock: asyncio.Lock
    address: str = ""  # G..., computed once (StrKey encoding is not free)
    hint: bytes = b""

    def __post_init__(self) -> None:
        self.address = self.keypair.public_key
        self.hint = self.keypair.signature_hint()


class SignerServicer(signer_pb2_grpc.SignerServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        config: SignerConfig,
        backends: Mapping[str, SigningBackend],
        audit: AuditLog,
        spent: SpentLedger,
        clock: Callable[[], float] = time.time,
        ledger_watermark: tuple[int, float] | None = None,
        channel_source: ChannelKeySource | None = None,
    ) -> None:
        self._passphrase = config.network_passphrase
        self._audit = audit
        self._spent = spent
        self._clock = clock
        # Highest current_ledger claim accepted so far and when (see policy.ledger_ceiling).
        self._ledger_watermark = ledger_watermark
        self._keys: dict[str, KeyHandle] = {}
        for key in config.keys:
            backend = backends[key.key_id]
            public = Keypair.from_raw_ed25519_public_key(backend.public_key(key.key_id))
            self._keys[key.key_id] = KeyHandle(key, backend, public, asyncio.Lock())
        # A funding key's only destinations: the accounts of this signer's channel keys.
        self._channel_accounts = frozenset(
            h.address for h in self._keys.values() if h.config.role == "channel")
        # [channel_keys]: the token's channel keys, re-listed by refresh_keys().
        self._channel_config = config.channel_keys
        self._channel_source = channel_source
        self._found: frozenset[str] = frozenset()  # key ids refresh_keys() manages
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = float("-inf")

    async def refresh_keys(self, *, wait: bool = False) -> None:
        """The key registry follows the token: a channel key generated on it (`signerctl
        channel-keys generate`) signs from the next refresh on, one destroyed on it stops
        signing (its handle leaves the registry; the backend has dropped it). Called by the
        periodic refresh, ListKeys and a GetPublicKey of an unknown key id; one token listing
        per second at most, whoever asks (`wait`: list once that second has passed, for a
        caller that must see a key generated just now). Configured [[keys]] are never
        touched."""
        config, source = self._channel_config, self._channel_source
        if config is None or source is None:
            return
        async with self._refresh_lock:
            early = MIN_REFRESH_SECONDS - (time.monotonic() - self._refreshed_at)
            if early > 0 and not wait:
                return
            if early > 0:
                await asyncio.sleep(early)
            try:
                found = await source.scan_channel_keys(config.label_prefix)
            except BackendError as err:
                # The registry stays as it was; the next refresh tries again.
                log_event("channel key refresh failed", logging.WARNING, error=str(err))
                return
            finally:
                self._refreshed_at = time.monotonic()
            keys = {k: h for k, h in self._keys.items() if k not in self._found}
            for key_id, raw in sorted(found.items()):
                handle = self._keys.get(key_id)
                if handle is None or key_id not in self._found or \
                        handle.keypair.raw_public_key() != raw:
                    public = Keypair.from_raw_ed25519_public_key(raw)
                    handle = KeyHandle(config.key(key_id), source, public, asyncio.Lock())
                keys[key_id] = handle
            added, removed = set(found) - self._found, self._found - set(found)
            # Swapped whole: a call already holding a handle finishes with it.
            self._keys, self._found = keys, frozenset(found)
            self._channel_accounts = frozenset(
                h.address for h in keys.values() if h.config.role == "channel")
        if added or removed:
            log_event("channel keys refreshed", added=sorted(added)[:50],
                      removed=sorted(removed)[:50], channel_keys=len(found))

    async def keep_keys_fresh(self) -> None:
        """The periodic refresh: catches keys destroyed on the token (no call names them)."""
        if self._channel_config is None:
            return
        while True:
            await asyncio.sleep(self._channel_config.refresh_seconds)
            await self.refresh_keys()

    def public_keys(self) -> dict[str, str]:
        return {k: h.address for k, h in self._keys.items()}

    # ---------------------------------------------------------------- helpers

    def _key_for(self, key_id: str) -> KeyHandle:
        if not key_id:
            raise bad_request("key_id", "is required")
        handle = self._keys.get(key_id)
        if handle is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"key {echo(key_id)} is not configured")
        return handle

    @staticmethod
    def _may_use(handle: KeyHandle, clients: list[str]) -> bool:
        return any(c in handle.config.allowed_clients for c in clients)

    async def _record(
        self, *, kind: str, handle: KeyHandle, clients: list[str], request_id: str,
        ctx: signer_pb2.SigningContext, tx_hash: str, decision: str, rule: str,
        detail: str = "", amount: int = 0, extra: dict[str, Any] | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "kind": kind,
            "client": clients[0] if clients else "",
            "key_id": handle.config.key_id,
            "public_key": handle.address,
            "tx_hash": tx_hash,
            "decision": decision,
            "rule": rule,
            "detail": detail,
            "amount_stroops": amount,
            "request_id": request_id,
            "payout_id": ctx.payout_id,
            "attempt": ctx.attempt,
            "correlation_id": ctx.correlation_id,
            "trace_id": TRACE_ID.get(),
            **(extra or {}),
        }
        try:
            await self._audit.append(fields)
        except OSError as err:
            log_event("audit write failed", logging.ERROR, error=type(err).__name__)
            # Without its audit record a decision must not take effect.
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "audit log unavailable") from None
        metrics.DECISIONS.labels(decision if decision != "allow" else "sign", rule).inc()
        log_event(
            "signing decision",
            logging.INFO if decision == "allow" else logging.WARNING,
            kind=kind, request_id=request_id, payout_id=ctx.payout_id, attempt=ctx.attempt,
            correlation_id=ctx.correlation_id, trace_id=fields["trace_id"],
            key_id=handle.config.key_id,
            client=fields["client"], tx_hash=tx_hash, decision=decision, rule=rule,
            detail=detail, amount_stroops=amount,
        )

    async def _refuse_client(
        self, kind: str, handle: KeyHandle, clients: list[str], request_id: str,
        ctx: signer_pb2.SigningContext, tx_hash: str,
    ) -> RpcFailure:
        who = echo(clients[0]) if clients else "(no identity)"
        detail = f"client {who} may not use key {handle.config.key_id}"
        await self._record(kind=kind, handle=handle, clients=clients, request_id=request_id,
                           ctx=ctx, tx_hash=tx_hash, decision="refuse",
                           rule="allowed_clients", detail=detail)
        return RpcFailure(grpc.StatusCode.PERMISSION_DENIED, detail, rule="allowed_clients",
                          key_id=handle.config.key_id)

    async def _decide_and_sign(
        self, kind: str, handle: KeyHandle, clients: list[str], request_id: str,
        ctx: signer_pb2.SigningContext, digest: bytes,
        decide: Callable[[Callable[[str], int], float], Decision],
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        """Policy check and daily reservation under the key's lock, then sign, then audit.
        `decide` gets what the key spent in the last 24 h, per asset, and the time."""
        key_id, tx_hash = handle.config.key_id, digest.hex()
        async with handle.lock:
            now = self._clock()
            decision = decide(lambda asset: self._spent.spent(spending_bucket(key_id, asset),
                                                              now), now)
            if isinstance(decision, Allow):
                spends = spent_amounts(key_id, decision.amount_stroops,
                                       decision.asset_amounts)
                for bucket, amount in spends:
                    self._spent.add(bucket, now, amount)
                if decision.asset_amounts:
                    extra = {**(extra or {}), "asset_amounts": dict(decision.asset_amounts)}
        if isinstance(decision, Refuse):
            await self._record(kind=kind, handle=handle, clients=clients, request_id=request_id,
                               ctx=ctx, tx_hash=tx_hash, decision="refuse", rule=decision.rule,
                               detail=decision.detail, extra=extra)
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, decision.message,
                             rule=decision.rule, key_id=key_id)
        try:
            start = time.perf_counter()
            # The backend verifies the token's signature before returning it (a token that
            # returns a wrong signature must not hand it out), off the event loop.
            signature = await handle.backend.sign(key_id, digest)
            metrics.BACKEND_SIGN_SECONDS.observe(time.perf_counter() - start)
        except BackendError as err:
            for bucket, amount in spends:
                self._spent.remove(bucket, now, amount)
            await self._record(kind=kind, handle=handle, clients=clients, request_id=request_id,
                               ctx=ctx, tx_hash=tx_hash, decision="error", rule="backend",
                               detail=type(err).__name__)
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "signing backend failed") from None
        try:
            await self._record(kind=kind, handle=handle, clients=clients, request_id=request_id,
                               ctx=ctx, tx_hash=tx_hash, decision="allow", rule="none",
                               amount=decision.amount_stroops, extra=extra)
        except RpcFailure:
            # Not recorded, so not handed out: the amount was never spent.
            for bucket, amount in spends:
                self._spent.remove(bucket, now, amount)
            raise
        return signature

    # ---------------------------------------------------------------- RPCs

    @rpc("SignTransaction")
    async def SignTransaction(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.SignTransactionRequest, context: Any
    ) -> signer_pb2.SignTransactionResponse:
        return await self._sign_transaction(request, client_identities(context))

    @rpc("SignTransactions")
    async def SignTransactions(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.SignTransactionsRequest, context: Any
    ) -> signer_pb2.SignTransactionsResponse:
        if not request.requests:
            raise bad_request("requests", "is required (1 to 100 requests)")
        if len(request.requests) > MAX_BATCH:
            raise bad_request("requests", f"{len(request.requests)} requests, at most {MAX_BATCH}")
        clients = client_identities(context)

        async def one(item: signer_pb2.SignTransactionRequest) -> signer_pb2.SignTransactionResult:
            try:
                return signer_pb2.SignTransactionResult(
                    signed=await self._sign_transaction(item, clients))
            except RpcFailure as failure:
                return signer_pb2.SignTransactionResult(error=signer_pb2.SigningError(
                    code=failure.code.value[0], message=failure.message,
                    field=failure.field or ""))

        # Concurrently: the batch shares the PKCS#11 thread's pass and the audit log's fsync.
        results = await asyncio.gather(*(one(item) for item in request.requests))
        return signer_pb2.SignTransactionsResponse(results=results)

    async def _sign_transaction(
        self, request: signer_pb2.SignTransactionRequest, clients: list[str]
    ) -> signer_pb2.SignTransactionResponse:
        handle = self._key_for(request.key_id)
        if not request.request_id:
            raise bad_request("request_id", "is required")
        if not request.envelope_xdr:
            raise bad_request("envelope_xdr", "is required")
        try:
            envelope = parse_envelope(request.envelope_xdr)
        except EnvelopeProblem as problem:
            raise bad_request("envelope_xdr", str(problem)) from None
        digest = envelope.hash(self._passphrase)
        if not self._may_use(handle, clients):
            raise await self._refuse_client("transaction", handle, clients, request.request_id,
                                            request.context, digest.hex())
        signature = await self._decide_and_sign(
            "transaction", handle, clients, request.request_id, request.context, digest,
            lambda spent, now: check_transaction(
                envelope.tx, handle.config.policy, network_passphrase=self._passphrase,
                spent_last_24h=spent(NATIVE), now=int(now), signer_account=handle.address,
                spent_of_asset=spent, channel_accounts=self._channel_accounts,
            ),
        )
        decorated = sx.DecoratedSignature(sx.SignatureHint(handle.hint), sx.Signature(signature))
        return signer_pb2.SignTransactionResponse(
            signed_envelope_xdr=base64.b64encode(envelope.with_signature(decorated)).decode(),
            decorated_signature_xdr=decorated.to_xdr(),
            tx_hash=digest.hex(),
            public_key=handle.address,
        )

    @rpc("SignAuthorizationEntry")
    async def SignAuthorizationEntry(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.SignAuthorizationEntryRequest, context: Any
    ) -> signer_pb2.SignAuthorizationEntryResponse:
        clients = client_identities(context)
        handle = self._key_for(request.key_id)
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
        expiration = request.signature_expiration_ledger
        preimage = build_authorization_preimage(entry, expiration, self._passphrase)
        digest = authorization_payload_hash(preimage)
        if not self._may_use(handle, clients):
            raise await self._refuse_client("authorization", handle, clients,
                                            request.request_id, request.context, digest.hex())
        current = request.current_ledger

        def decide(spent: Callable[[str], int], now: float) -> Decision:
            claim = LedgerClaim(current, expiration, ledger_ceiling(now, self._ledger_watermark))
            decision = check_authorization(
                entry, handle.config.policy, network_passphrase=self._passphrase,
                signer_account=handle.address, spent_last_24h=spent(NATIVE), ledgers=claim,
            )
            if isinstance(decision, Allow) and (
                self._ledger_watermark is None or current > self._ledger_watermark[0]
            ):
                self._ledger_watermark = (current, now)
            return decision

        signature = await self._decide_and_sign(
            "authorization", handle, clients, request.request_id, request.context, digest,
            decide, extra={"current_ledger": current, "expiration_ledger": expiration},
        )
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

    @rpc("ListKeys")
    async def ListKeys(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.ListKeysRequest, context: Any
    ) -> signer_pb2.ListKeysResponse:
        clients = client_identities(context)
        await self.refresh_keys()
        return signer_pb2.ListKeysResponse(keys=[
            self._key_message(h) for h in self._keys.values() if self._may_use(h, clients)
        ])

    @rpc("GetPublicKey")
    async def GetPublicKey(  # noqa: N802 - gRPC method name
        self, request: signer_pb2.GetPublicKeyRequest, context: Any
    ) -> signer_pb2.GetPublicKeyResponse:
        clients = client_identities(context)
        if request.key_id not in self._keys:
            await self.refresh_keys(wait=True)  # a channel key generated since the last one
        handle = self._key_for(request.key_id)
        if not self._may_use(handle, clients):
            who = echo(clients[0]) if clients else "(no identity)"
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED,
                             f"client {who} may not use key {handle.config.key_id}")
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
            key_id=handle.config.key_id, public_key=handle.address,
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
    signer_pb2_grpc.add_SignerServiceServicer_to_server(servicer, server)
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
