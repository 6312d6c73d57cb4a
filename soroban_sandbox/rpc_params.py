"""Parameter checks shared by the RPC methods, with stellar-rpc's codes and messages.

stellar-rpc decodes params into Go structs (jrpc2): a wrong JSON type is -32602 before the
method runs; each method then validates values (cmd/stellar-rpc/internal/methods/*.go and the
request types of go-stellar-sdk protocols/rpc/*.go). Messages here are the real ones where the
real server has one, so clients and tests that match on them behave the same.
"""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PARSE_ERROR = -32700

UINT32_MAX = 2**32 - 1

Params = dict[str, Any]

# Refused loudly rather than answered differently (README "not modelled"): stellar-sdk for
# Python has no XDR-to-JSON encoder, so the sandbox cannot produce stellar-rpc's JSON forms.
JSON_FORMAT_NOT_MODELLED = (
    "xdrFormat 'json' is not modelled by soroban-sandbox (a test harness): use 'base64'"
)


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def format_error(params: Params) -> str | None:
    """protocol.IsValidFormat (protocols/rpc/format.go), plus the sandbox's JSON refusal."""
    value = params.get("xdrFormat", "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        return _type_message("xdrFormat", value, "string")
    if value in ("", "base64"):
        return None
    if value == "json":
        return JSON_FORMAT_NOT_MODELLED
    return f"got '{value}': expected base64, json for optional 'xdrFormat'"


def check_format(params: Params) -> None:
    message = format_error(params)
    if message is not None:
        raise RpcError(INVALID_PARAMS, message)


def _type_message(name: str, value: Any, go_type: str) -> str:
    kind = {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(value), "number")
    return f"invalid parameters: json: cannot unmarshal {kind} into field {name} of type {go_type}"


def uint_param(params: Params, name: str, *, bits: int = 32) -> int:
    """An optional unsigned integer param; absent or null is 0, as Go's zero value."""
    value = params.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise RpcError(INVALID_PARAMS, _type_message(name, value, f"uint{bits}"))
    return value


def str_param(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, _type_message(name, value, "string"))
    return value


def object_param(params: Params, name: str) -> Params | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RpcError(INVALID_PARAMS, _type_message(name, value, "object"))
    return value


def list_param(params: Params, name: str) -> list[Any]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RpcError(INVALID_PARAMS, _type_message(name, value, "array"))
    return value


def ledger_pagination(
    params: Params, *, max_limit: int, first: int, last: int
) -> tuple[int, str, int]:
    """ValidatePagination (protocols/rpc/get_ledgers.go) for getTransactions and getLedgers:
    (startLedger, cursor, limit). Failures are -32600 InvalidRequest, joined with the format
    check as errors.Join does."""
    start = uint_param(params, "startLedger")
    pagination = object_param(params, "pagination")
    cursor = str_param(pagination, "cursor") if pagination is not None else ""
    limit = uint_param(pagination, "limit", bits=64) if pagination is not None else 0
    problems: list[str] = []
    out_of_range = (
        f"start ledger ({start}) must be between the oldest ledger: {first} and the latest "
        f"ledger: {last} for this rpc instance"
    )
    if pagination is not None:
        if cursor:
            if start != 0:
                problems.append(f"startLedger ({start}) and cursor ({cursor}) cannot both be set")
        elif not first <= start <= last:
            problems.append(out_of_range)
        if not problems and limit > max_limit:
            problems.append(f"limit must not exceed {max_limit}")
    elif not first <= start <= last:
        problems.append(out_of_range)
    format_problem = format_error(params)
    if format_problem == JSON_FORMAT_NOT_MODELLED:
        raise RpcError(INVALID_PARAMS, format_problem)
    if format_problem is not None:
        problems.append(format_problem)
    if problems:
        raise RpcError(INVALID_REQUEST, "\n".join(problems))
    return start, cursor, limit


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds: 45s, 1m30s, 2h0m0s."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
