"""Client of the isolated signer service (mTLS gRPC). The payout process holds no key."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from payout_approvals.statement import Approval
from payout_service.config import SignerClientConfig
from payout_service.core.channels import KeyRole
from payout_service.tracing import client_interceptors
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc

log = logging.getLogger(__name__)


# google.rpc.ErrorInfo.domain the signer gives its refusals (signer_service/server.py).
REFUSAL_DOMAIN = "signer.payouts"


class SigningRefused(Exception):
    """The signer refused (PERMISSION_DENIED by policy, or the key or request is not
    acceptable); the message names the rule. `rule`: the policy rule that refused, from the
    status's google.rpc.ErrorInfo (None when the signer sent none: an unknown key, a bad
    request, an older signer). `key_id`: the key that was asked (None: no key could be).
    `code`: the status code's name (NOT_FOUND: no such key), or NO_KEY when no key could be
    asked. `account`: for rule source_accounts, the account the signer did not allow (the
    transaction source, an operation source, a payer), when the signer names it."""

    def __init__(self, message: str, *, rule: str | None = None,
                 key_id: str | None = None, code: str | None = None,
                 account: str | None = None) -> None:
        super().__init__(message)
        self.rule, self.key_id, self.code, self.account = rule, key_id, code, account


def refusal_info(err: grpc.aio.AioRpcError) -> tuple[str | None, str | None]:
    """The rule and the refused account of the signer's google.rpc.ErrorInfo detail."""
    try:
        status = rpc_status.from_call(err)
    except ValueError:  # details that do not match the status: ignore them
        return None, None
    if status is None:
        return None, None
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info) and info.domain == REFUSAL_DOMAIN and info.reason:
            return str(info.reason), info.metadata.get("account") or None
    return None, None


def refusal_rule(err: grpc.aio.AioRpcError) -> str | None:
    """The rule of the signer's google.rpc.ErrorInfo detail, if the status carries one."""
    return refusal_info(err)[0]


class SignerUnavailable(Exception):
    """Transient: unreachable, deadline, overloaded. Nothing was signed, or we retry safely."""


@dataclass(frozen=True)
class SignedEnvelope:
    envelope_xdr: str
    tx_hash: str


@dataclass(frozen=True)
class SignerKey:
    key_id: str
    public_key: str
    role: KeyRole


def _signer_key(key: signer_pb2.Key) -> SignerKey:
    # KEY_ROLE_CHANNEL -> "channel"; a role this client does not know yet reads unspecified.
    name = signer_pb2.KeyRole.Name(key.role).removeprefix("KEY_ROLE_").lower() \
        if key.role in signer_pb2.KeyRole.values() else "unspecified"
    return SignerKey(key.key_id, key.public_key, KeyRole(name))


def _tls_stamp(config: SignerClientConfig) -> tuple[tuple[int, int], ...]:
    """Changes when any of the TLS files is replaced or rewritten."""
    stats = (os.stat(p) for p in (config.ca_cert, config.client_cert, config.client_key))
    return tuple((s.st_mtime_ns, s.st_size) for s in stats)


# Worth asking another signer instance with the same request (same request_id): this one
# did not answer (down, unreachable, too slow), or its share of a daily limit is spent.
# Nothing signed twice matters: a transaction signed twice is the same transaction, and
# Ed25519 gives the same signature for the same hash on any instance holding the key.
FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
FAILOVER_RULES = frozenset({"max_amount_stroops_per_day"})
# Not transient: asking again (here or elsewhere) gets the same answer.
REFUSAL_CODES = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
                           grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS})


@dataclass(frozen=True)
class CheckResult:
    """The signer's CheckTransaction answer: would it sign, and if not, why."""

    would_sign: bool
    rule: str | None
    account: str | None
    message: str


class SignerClient:
    """One channel per signer instance (PAYOUTS_SIGNER_ADDR, comma-separated). A call goes
    to the instance that answered last; on FAILOVER_CODES (or a daily-limit refusal) the same
    request goes to each other instance in turn. Reloads its CA and client certificate when
    the files change (checked before each call), like the signer does with its own, so a
    rotated certificate needs no restart; calls already running finish on the old channels."""

    def __init__(
        self, config: SignerClientConfig, *, timeout_seconds: float = 10.0,
        channel_registry: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self._config = config
        self._stamp = _tls_stamp(config)
        self._channels = self._open_channels()
        self._stubs = [signer_pb2_grpc.SignerServiceStub(c) for c in self._channels]
        self._preferred = 0
        self._key_id = config.key_id
        self._channel_keys = dict(config.channel_keys)
        # Channels added while the service runs are read from the registry (a key id never
        # changes for an account, so a hit is kept).
        self._channel_registry = channel_registry
        self._timeout = timeout_seconds
        self._retiring: set[asyncio.Task[None]] = set()

    def _open_channels(self) -> list[grpc.aio.Channel]:
        config = self._config
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(config.ca_cert).read_bytes(),
            private_key=Path(config.client_key).read_bytes(),
            certificate_chain=Path(config.client_cert).read_bytes(),
        )
        options = []
        if config.server_name:
            options.append(("grpc.ssl_target_name_override", config.server_name))
        # The tracing interceptors carry the payout's trace context across the signer hop.
        return [grpc.aio.secure_channel(address, creds, options=options,
                                        interceptors=client_interceptors())
                for address in config.addresses]

    def _reload_if_changed(self) -> None:
        try:
            stamp = _tls_stamp(self._config)
            if stamp == self._stamp:
                return
            channels = self._open_channels()
        except OSError as err:
            # Mid-rotation (a file briefly missing): keep the working channel, retry next call.
            log.warning("signer TLS files unreadable; keeping the current ones",
                        extra={"error": type(err).__name__})
            return
        old, self._channels, self._stamp = self._channels, channels, stamp
        self._stubs = [signer_pb2_grpc.SignerServiceStub(c) for c in channels]
        for channel in old:
            retire = asyncio.get_running_loop().create_task(channel.close(grace=self._timeout))
            self._retiring.add(retire)
            retire.add_done_callback(self._retiring.discard)
        log.info("signer client certificate reloaded")

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels))
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _call(self, method: str, request: Any) -> Any:
        """`request` to the preferred instance, then (on failover) to each other one. When
        none signs: an instance that did not answer makes it transient (its share may still
        sign later), else the last refusal. The instance that answers becomes preferred."""
        self._reload_if_changed()
        count = len(self._stubs)
        first = self._preferred % count
        passed: list[grpc.aio.AioRpcError] = []
        for index in [(first + step) % count for step in range(count)]:
            try:
                response = await getattr(self._stubs[index], method)(
                    request, timeout=self._timeout)
            except grpc.aio.AioRpcError as err:
                if not (err.code() in FAILOVER_CODES or (
                        err.code() == grpc.StatusCode.PERMISSION_DENIED
                        and refusal_rule(err) in FAILOVER_RULES)):
                    raise
                if count > 1:
                    log.warning("signer instance did not sign; asking the next one",
                                extra={"signer": self._config.addresses[index],
                                       "code": err.code().name, "method": method})
                passed.append(err)
                continue
            self._preferred = index
            return response
        unanswered = [err for err in passed if err.code() in FAILOVER_CODES]
        raise (unanswered or passed)[-1]

    async def channel_key(self, source_account: str) -> str | None:
        """The signer key id of a channel account, None for the paying account."""
        known = self._channel_keys.get(source_account)
        if known is None and self._channel_registry is not None:
            known = await self._channel_registry(source_account)
            if known is not None:
                self._channel_keys[source_account] = known
        return known

    async def key(self, key_id: str) -> SignerKey:
        """A key the signer holds: its G... address and role (GetPublicKey)."""
        try:
            response = await self._call("GetPublicKey",
                                        signer_pb2.GetPublicKeyRequest(key_id=key_id))
        except grpc.aio.AioRpcError as err:
            if err.code() in REFUSAL_CODES:
                raise SigningRefused(f"{err.code().name}: {err.details()}") from None
            raise SignerUnavailable(f"{err.code().name}: {err.details()}") from None
        return _signer_key(response.key)

    async def list_keys(self) -> list[SignerKey]:
        """Every key the signer offers, with its role (ListKeys)."""
        try:
            response = await self._call("ListKeys", signer_pb2.ListKeysRequest())
        except grpc.aio.AioRpcError as err:
            raise SignerUnavailable(f"{err.code().name}: {err.details()}") from None
        return [_signer_key(k) for k in response.keys]

    async def sign_transaction(
        self, envelope_xdr: str, *, payout_id: str, attempt: int, correlation_id: str,
        key_id: str | None = None, approvals: Sequence[tuple[int, Approval]] = (),
    ) -> SignedEnvelope:
        """Adds the signature of `key_id` (default: the paying account's key). One request
        id for every instance asked, so an instance that already signed it answers with the
        same signature without counting it again. `approvals`: (operation index, approval),
        for a key whose policy asks for approvals above a threshold."""
        key_id = key_id or self._key_id
        request = signer_pb2.SignTransactionRequest(
            key_id=key_id,
            envelope_xdr=envelope_xdr,
            request_id=uuid.uuid4().hex,
            context=signer_pb2.SigningContext(
                payout_id=payout_id, attempt=attempt, correlation_id=correlation_id
            ),
            approvals=_approvals(approvals),
        )
        try:
            response = await self._call("SignTransaction", request)
        except grpc.aio.AioRpcError as err:
            raise _signing_error(err, key_id) from None
        return SignedEnvelope(response.signed_envelope_xdr, response.tx_hash)

    async def check_transaction(
        self, envelope_xdr: str, *, payout_id: str = "", correlation_id: str = "",
        key_id: str | None = None, approvals: Sequence[tuple[int, Approval]] = (),
    ) -> CheckResult:
        """Would the signer sign this envelope with `key_id` now (CheckTransaction)? Nothing
        is signed or counted; a refusal's rule and account say what is not allowed."""
        key_id = key_id or self._key_id
        request = signer_pb2.CheckTransactionRequest(
            key_id=key_id, envelope_xdr=envelope_xdr, request_id=uuid.uuid4().hex,
            context=signer_pb2.SigningContext(payout_id=payout_id,
                                              correlation_id=correlation_id),
            approvals=_approvals(approvals))
        try:
            response = await self._call("CheckTransaction", request)
        except grpc.aio.AioRpcError as err:
            raise _signing_error(err, key_id) from None
        return CheckResult(response.would_sign, response.rule or None, response.account or None,
                           response.message)

    async def check(self) -> bool:
        """Whether any signer instance answers."""
        try:
            await self._call("ListKeys", signer_pb2.ListKeysRequest())
        except grpc.aio.AioRpcError:
            return False
        return True


def _approvals(approvals: Sequence[tuple[int, Approval]]) -> list[signer_pb2.Approval]:
    return [signer_pb2.Approval(operation_index=index, approver_public_key=a.approver,
                                signature=a.signature, payout_id=a.payout_id,
                                expires_at=a.expires_at)
            for index, a in approvals]


def _signing_error(err: grpc.aio.AioRpcError, key_id: str) -> Exception:
    if err.code() in REFUSAL_CODES:
        rule, account = refusal_info(err)
        return SigningRefused(f"{err.code().name}: {err.details()}", rule=rule, key_id=key_id,
                              code=err.code().name, account=account)
    return SignerUnavailable(f"{err.code().name}: {err.details()}")
