"""Server interceptors: the input boundary, per-method authorization and gRPC metrics,
applied to every RPC of every service."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import code_pb2
from grpc_status import rpc_status

from payout_service import metrics
from payout_service.core.validation import FieldViolation
from payout_service.grpc_errors import bad_request, bounded
from payout_service.request_limits import string_violations
from payout_service.tracing import caller_trace, end_caller_trace

# Operator actions: resolving rounds, retries, monitoring, alerts, channels and the watchdog
# change what is paid or how, so only admin identities may call them.
ADMIN_METHODS = frozenset({
    "/payout.v1.RoundService/ResolveRound",
    "/payout.v1.PayoutService/RetryPayout",
})
ADMIN_SERVICES = frozenset({"payout.v1.PayoutAdminService"})


def is_admin_method(method: str) -> bool:
    service = method.lstrip("/").split("/", 1)[0]
    return method in ADMIN_METHODS or service in ADMIN_SERVICES


def peer_identities(context: grpc.aio.ServicerContext) -> set[str]:
    """Client certificate CN and SANs (empty without mTLS)."""
    auth = context.auth_context() or {}
    names = list(auth.get("x509_common_name", [])) + list(
        auth.get("x509_subject_alternative_name", [])
    )
    return {n.decode() if isinstance(n, bytes) else str(n) for n in names}


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return default


Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


class Undecodable:
    """Stands in for a request whose bytes are not the method's message."""


UNDECODABLE = Undecodable()


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's deserializer, answering UNDECODABLE instead of raising: gRPC core would
    log a traceback and answer UNKNOWN naming the parser's class; the boundary answers
    INVALID_ARGUMENT instead."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError, RuntimeError):
            return UNDECODABLE

    return parse


async def check_input(request: Any, context: grpc.aio.ServicerContext) -> None:
    """Aborts with INVALID_ARGUMENT (BadRequest naming the fields) at the boundary."""
    if request is UNDECODABLE:
        violations = [FieldViolation("request", "is not a valid message of this method")]
    else:
        violations = string_violations(request)
    if violations:
        await context.abort_with_status(rpc_status.to_status(bounded(bad_request(
            code_pb2.INVALID_ARGUMENT,
            "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in violations),
            violations,
        ))))


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Before the handler runs: checks the admin identity, then the input boundary (bytes
    that decode, strings within their limits and free of control characters); afterwards
    records code and latency."""

    def __init__(self, *, admin_identities: Collection[str], plaintext: bool,
                 continue_trace: bool = False) -> None:
        self.admins = frozenset(admin_identities)
        # Without the OpenTelemetry interceptor (tracing.server_interceptors): make the
        # caller's trace context current here, so a payout still continues the caller's trace.
        self.continue_trace = continue_trace
        # Plaintext is only for explicit local use, where there is no identity to check.
        self.open_admin = plaintext
        # Per method: (the handler it wrapped, the wrapper). Bounded by the number of methods.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        # The wrapper depends on the method and its registered handler only: built once per
        # method, not on every call (this runs on every RPC's hot path).
        cached = self._wrapped.get(details.method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[details.method] = (handler, self._wrap(details.method, handler))
        return cached[1]

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").partition("/")
        needs_admin = is_admin_method(method) and not self.open_admin

        async def authorize(context: grpc.aio.ServicerContext) -> None:
            if needs_admin and not (peer_identities(context) & self.admins):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} needs an admin client identity",
                )

        # The method's metric children, looked up once (labels() locks and hashes per call).
        seconds = metrics.GRPC_SECONDS.labels(service, name)
        handled: dict[str, Any] = {}
        continue_trace = self.continue_trace

        def record(context: grpc.aio.ServicerContext, started: float, default: str) -> None:
            code = _code_name(context, default)
            counter = handled.get(code)
            if counter is None:
                counter = handled[code] = metrics.GRPC_HANDLED.labels(service, name, code)
            counter.inc()
            seconds.observe(time.perf_counter() - started)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started, outcome = time.perf_counter(), "OK"
                trace = caller_trace(context.invocation_metadata()) if continue_trace else None
                try:
                    await authorize(context)
                    await check_input(request, context)
                    return await inner(request, context)
                except BaseException:
                    outcome = "UNKNOWN"
                    raise
                finally:
                    end_caller_trace(trace)
                    record(context, started, outcome)

            return grpc.unary_unary_rpc_method_handler(
                unary, tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            @contextlib.asynccontextmanager
            async def observed(request: Any, context: grpc.aio.ServicerContext
                               ) -> AsyncIterator[None]:
                started, outcome = time.perf_counter(), "OK"
                trace = caller_trace(context.invocation_metadata()) if continue_trace else None
                try:
                    await authorize(context)
                    await check_input(request, context)
                    yield
                except BaseException:
                    outcome = "UNKNOWN"
                    raise
                finally:
                    end_caller_trace(trace)
                    record(context, started, outcome)

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with observed(request, context):
                    async for item in inner_stream(request, context):
                        yield item

            async def written(request: Any, context: grpc.aio.ServicerContext) -> None:
                async with observed(request, context):
                    await inner_stream(request, context)

            # A handler may write its messages with context.write() instead of yielding them:
            # grpc.health.v1 Health/Watch does, and callers' client-side health checking
            # (round robin that skips a NOT_SERVING replica) depends on it.
            wrapper = written if inspect.iscoroutinefunction(inner_stream) else stream
            return grpc.unary_stream_rpc_method_handler(
                wrapper, tolerant(handler.request_deserializer), handler.response_serializer
            )
        return handler
