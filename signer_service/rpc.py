"""Every RPC ends in a status the caller can act on: the failure types, the field limits and
the wrapper that turns them (and anything unexpected) into gRPC statuses with details."""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from signer_service import metrics
from signer_service.logs import log_event
from signer_service.tracing import request_trace_id
from signer_service.wire import Malformed

SERVICE_NAME = "signer.v1.SignerService"
# google.rpc.ErrorInfo.domain of a refusal: clients read `reason` (the policy rule) from it.
REFUSAL_DOMAIN = "signer.payouts"


class RpcFailure(Exception):
    """Ends an RPC with a status; `field` adds a google.rpc.BadRequest field violation, `rule`
    (a refusal) a google.rpc.ErrorInfo whose reason is the rule that refused and whose
    metadata names the key and, for `source_accounts`, the account refused, so a client can
    tell which rule, key and account without parsing text."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str | None = None, *,
                 rule: str | None = None, key_id: str = "", account: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.rule, self.key_id, self.account = rule, key_id, account


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


def check_request(request: Any) -> None:
    """What every request must be before a handler sees it: parseable, within field limits."""
    if isinstance(request, Malformed):
        raise bad_request(request.field, request.reason)
    too_long = oversized_field(request)
    if too_long is not None:
        raise bad_request(too_long[0], f"is longer than {too_long[1]} bytes")


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
                check_request(request)
                return await fn(self, request, context)
            except RpcFailure as failure:
                code = failure.code
                await abort(context, failure)
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


async def abort(context: Any, failure: RpcFailure) -> None:
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
        metadata = {"key_id": failure.key_id} if failure.key_id else {}
        if failure.account:
            metadata["account"] = failure.account
        status.details.add().Pack(error_details_pb2.ErrorInfo(
            reason=failure.rule, domain=REFUSAL_DOMAIN, metadata=metadata,
        ))
    await context.abort_with_status(rpc_status.to_status(status))
