"""Domain errors -> gRPC status with google.rpc details, in one place. Never a stack trace to the
caller."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from payout_service.adapters.database import database_unavailable
from payout_service.core.errors import (
    Conflict,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFoundError,
    PermissionDenied,
    Unavailable,
)

log = logging.getLogger(__name__)

CORRELATION_HEADER = "x-correlation-id"
# Status messages and field descriptions are cut to these lengths, so no input echoed in them
# can push the answer past the caller's metadata limit (that would turn into
# RESOURCE_EXHAUSTED on the client and hide the real answer).
MAX_MESSAGE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 256


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def bad_request(code: int, message: str, violations: list[FieldViolation]) -> status_pb2.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )
    return status_pb2.Status(code=code, message=message, details=[_pack(detail)])


def precondition(kind: str, subject: str, description: str) -> status_pb2.Status:
    detail = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=kind, subject=subject, description=description
            )
        ]
    )
    return status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION, message=description, details=[_pack(detail)]
    )


def status_for(err: Exception) -> status_pb2.Status | None:
    """The status a known domain error maps to; None for unexpected errors.

    The one table from the domain's kinds of error (core/errors.py) to gRPC codes."""
    if isinstance(err, InvalidArgument):
        return bad_request(code_pb2.INVALID_ARGUMENT, err.message, err.violations)
    if isinstance(err, Conflict):
        return bad_request(code_pb2.ALREADY_EXISTS, str(err), err.violations)
    if isinstance(err, FailedPrecondition):
        return precondition(err.kind, err.subject, err.description)
    if isinstance(err, NotFoundError):
        return status_pb2.Status(code=code_pb2.NOT_FOUND, message=str(err))
    if isinstance(err, PermissionDenied):
        return status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=str(err))
    if isinstance(err, NotImplementedError):
        return status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message=str(err))
    if isinstance(err, Unavailable):
        return status_pb2.Status(
            code=code_pb2.UNAVAILABLE, message=f"{err.dependency} is unavailable; retry later"
        )
    if database_unavailable(err):
        return status_pb2.Status(
            code=code_pb2.UNAVAILABLE, message="the database is unavailable; retry later"
        )
    return None


def bounded(status: status_pb2.Status) -> status_pb2.Status:
    """The same status with its message and BadRequest descriptions cut to a safe size."""
    status.message = _short(status.message, MAX_MESSAGE_CHARS)
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail = error_details_pb2.BadRequest()
            packed.Unpack(detail)
            for v in detail.field_violations:
                v.field = _short(v.field, MAX_DESCRIPTION_CHARS)
                v.description = _short(v.description, MAX_DESCRIPTION_CHARS)
            packed.Pack(detail)
    return status


def correlation_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


def handles_errors(method: Callable[..., Awaitable[Any]]) -> Any:
    """Maps domain errors to statuses and echoes the correlation id in initial metadata."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        corr = correlation_id(context)
        await context.send_initial_metadata(((CORRELATION_HEADER, corr),))
        try:
            return await method(self, request, context, corr)
        except Exception as err:  # noqa: BLE001 - the boundary: nothing escapes unmapped
            await _abort(context, err, corr, method.__name__)

    return wrapper


def streams_errors(method: Callable[..., AsyncIterator[Any]]) -> Any:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        corr = correlation_id(context)
        await context.send_initial_metadata(((CORRELATION_HEADER, corr),))
        try:
            async for item in method(self, request, context, corr):
                yield item
        except Exception as err:  # noqa: BLE001
            await _abort(context, err, corr, method.__name__)

    return wrapper


async def _abort(
    context: grpc.aio.ServicerContext, err: Exception, corr: str, method: str
) -> None:
    if isinstance(err, grpc.aio.AbortError):
        raise err
    status = status_for(err)
    if status is None:
        log.exception(
            "unhandled error", extra={"correlation_id": corr, "rpc_method": method}
        )
        status = status_pb2.Status(
            code=code_pb2.INTERNAL, message=f"internal error (correlation id {corr})"
        )
    elif status.code == code_pb2.UNAVAILABLE:
        log.warning("dependency unavailable", extra={
            "correlation_id": corr, "rpc_method": method, "error": type(err).__name__,
        })
    await context.abort_with_status(rpc_status.to_status(bounded(status)))
