"""Client of the isolated signer service (mTLS gRPC). The payout process holds no key."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

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
    asked."""

    def __init__(self, message: str, *, rule: str | None = None,
                 key_id: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.rule, self.key_id, self.code = rule, key_id, code


def refusal_rule(err: grpc.aio.AioRpcError) -> str | None:
    """The rule of the signer's google.rpc.ErrorInfo detail, if the status carries one."""
    try:
        status = rpc_status.from_call(err)
    except ValueError:  # details that do not match the status: ignore them
        return None
    if status is None:
        return None
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info) and info.domain == REFUSAL_DOMAIN and info.reason:
            return str(info.reason)
    return None


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


class SignerClient:
    """Reloads its CA and client certificate when the files change (checked before each
    call), like the signer does with its own, so a rotated certificate needs no restart;
    calls already running finish on the old channel."""

    def __init__(
        self, config: SignerClientConfig, *, timeout_seconds: float = 10.0,
        channel_registry: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self._config = config
        self._stamp = _tls_stamp(config)
        self._channel = self._open_channel()
        self._stub = signer_pb2_grpc.SignerServiceStub(self._channel)
        self._key_id = config.key_id
        self._channel_keys = dict(config.channel_keys)
        # Channels added while the service runs are read from the registry (a key id never
        # changes for an account, so a hit is kept).
        self._channel_registry = channel_registry
        self._timeout = timeout_seconds
        self._retiring: set[asyncio.Task[None]] = set()

    def _open_channel(self) -> grpc.aio.Channel:
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
        return grpc.aio.secure_channel(
            config.address, creds, options=options, interceptors=client_interceptors()
        )

    def _reload_if_changed(self) -> None:
        try:
            stamp = _tls_stamp(self._config)
            if stamp == self._stamp:
                return
            channel = self._open_channel()
        except OSError as err:
            # Mid-rotation (a file briefly missing): keep the working channel, retry next call.
            log.warning("signer TLS files unreadable; keeping the current ones",
                        extra={"error": type(err).__name__})
            return
        old, self._channel, self._stamp = self._channel, channel, stamp
        self._stub = signer_pb2_grpc.SignerServiceStub(channel)
        retire = asyncio.get_running_loop().create_task(old.close(grace=self._timeout))
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        log.info("signer client certificate reloaded")

    async def close(self) -> None:
        await self._channel.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)

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
        self._reload_if_changed()
        try:
            response = await self._stub.GetPublicKey(
                signer_pb2.GetPublicKeyRequest(key_id=key_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.INVALID_ARGUMENT):
                raise SigningRefused(f"{err.code().name}: {err.details()}") from None
            raise SignerUnavailable(f"{err.code().name}: {err.details()}") from None
        return _signer_key(response.key)

    async def list_keys(self) -> list[SignerKey]:
        """Every key the signer offers, with its role (ListKeys)."""
        self._reload_if_changed()
        try:
            response = await self._stub.ListKeys(
                signer_pb2.ListKeysRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            raise SignerUnavailable(f"{err.code().name}: {err.details()}") from None
        return [_signer_key(k) for k in response.keys]

    async def sign_transaction(
        self, envelope_xdr: str, *, payout_id: str, attempt: int, correlation_id: str,
        key_id: str | None = None,
    ) -> SignedEnvelope:
        """Adds the signature of `key_id` (default: the paying account's key)."""
        key_id = key_id or self._key_id
        request = signer_pb2.SignTransactionRequest(
            key_id=key_id,
            envelope_xdr=envelope_xdr,
            request_id=uuid.uuid4().hex,
            context=signer_pb2.SigningContext(
                payout_id=payout_id, attempt=attempt, correlation_id=correlation_id
            ),
        )
        self._reload_if_changed()
        try:
            response = await self._stub.SignTransaction(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
                              grpc.StatusCode.NOT_FOUND):
                raise SigningRefused(f"{err.code().name}: {err.details()}",
                                     rule=refusal_rule(err), key_id=key_id,
                                     code=err.code().name) from None
            raise SignerUnavailable(f"{err.code().name}: {err.details()}") from None
        return SignedEnvelope(response.signed_envelope_xdr, response.tx_hash)

    async def check(self) -> bool:
        self._reload_if_changed()
        try:
            await self._stub.ListKeys(signer_pb2.ListKeysRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError:
            return False
        return True
