"""Paginated history: getTransactions, getLedgers and getEvents, with stellar-rpc's cursors.

Sources: cmd/stellar-rpc/internal/methods/get_transactions.go, get_ledgers.go, get_events.go
(stellar/stellar-rpc) and the request/response types in protocols/rpc (stellar/go). Cursors
are the real ones: TOIDs (ledger << 32 | tx << 12 | op) for transactions, ledger sequences for
ledgers, ``%019d-%010d`` TOID-event ids for events, and the end-of-window MaxCursor.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import StrKey
from stellar_sdk import xdr as x

from .chain_view import ChainView
from .records import Event, IncludedTx
from .rpc_params import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    Params,
    RpcError,
    check_format,
    ledger_pagination,
    list_param,
    object_param,
    str_param,
    uint_param,
)

MAX_TRANSACTIONS_LIMIT, DEFAULT_TRANSACTIONS_LIMIT = 200, 50  # config/options.go defaults
MAX_LEDGERS_LIMIT, DEFAULT_LEDGERS_LIMIT = 200, 50
MAX_EVENTS_LIMIT, DEFAULT_EVENTS_LIMIT = 10_000, 100
LEDGER_SCAN_LIMIT = 10_000  # get_events.go: one request scans at most this many ledgers
MAX_FILTERS = MAX_CONTRACT_IDS = MAX_TOPICS = 5  # protocols/rpc/get_events.go
MAX_TOPIC_SEGMENTS = 4
# protocols/rpc/cursor.go MaxCursor: tx and op masks of the TOID, event = MaxUint32.
TOID_TX_MASK, TOID_OP_MASK, EVENT_MAX = (1 << 20) - 1, (1 << 12) - 1, 2**32 - 1


def toid(ledger: int, tx: int, op: int) -> int:
    return (ledger << 32) | (tx << 12) | op


def parse_toid(value: int) -> tuple[int, int, int]:
    return value >> 32, (value >> 12) & TOID_TX_MASK, value & TOID_OP_MASK


def event_cursor(ledger: int, tx: int, op: int, event: int) -> str:
    return f"{toid(ledger, tx, op):019d}-{event:010d}"


def transaction_details(tx: IncludedTx) -> dict[str, Any]:
    """protocol.TransactionDetails in base64 form (getTransaction and getTransactions)."""
    events: dict[str, Any] = {}
    if tx.transaction_events:
        events["transactionEventsXdr"] = list(tx.transaction_events)
    events["contractEventsXdr"] = [list(op) for op in tx.contract_events]  # one per operation
    return {
        "status": "SUCCESS" if tx.successful else "FAILED",
        "txHash": tx.hash,
        "applicationOrder": tx.application_order,
        "feeBump": False,
        "envelopeXdr": tx.envelope_xdr,
        "resultXdr": tx.result_xdr,
        "resultMetaXdr": tx.meta_xdr,
        "events": events,
        "ledger": tx.ledger,
    }


def get_transactions(chain: ChainView, params: Params) -> dict[str, Any]:
    oldest, latest = chain.oldest, chain.latest
    start_ledger, cursor, limit = ledger_pagination(
        params, max_limit=MAX_TRANSACTIONS_LIMIT, first=oldest.seq, last=latest.seq
    )
    limit = limit or DEFAULT_TRANSACTIONS_LIMIT
    start = (start_ledger, 1, 1)
    if cursor:
        try:
            parsed = int(cursor, 10)
        except ValueError:
            raise RpcError(
                INVALID_PARAMS, f'strconv.ParseInt: parsing "{cursor}": invalid syntax'
            ) from None
        c_ledger, c_tx, c_op = parse_toid(parsed)
        start = (c_ledger, c_tx + 1, c_op)  # resume right after the cursor's transaction
    found: list[dict[str, Any]] = []
    last_cursor = 0  # toid.New(0, 0, 0) when no ledger is scanned
    for seq in range(start[0], latest.seq + 1):
        closed = chain.ledger_at(seq)
        if closed is None:
            raise RpcError(
                INVALID_PARAMS, f"database does not contain metadata for ledger: {seq}"
            )
        first_tx = start[1] if seq == start[0] else 1
        order = 0
        for order in range(first_tx, len(closed.tx_hashes) + 1):
            tx = chain.transaction(closed.tx_hashes[order - 1])
            assert tx is not None
            found.append(transaction_details(tx) | {"createdAt": tx.created_at})
            if len(found) >= limit:
                break
        last_cursor = toid(seq, order, 1)
        if len(found) >= limit:
            break
    return {
        "transactions": found,
        "latestLedger": latest.seq,
        "latestLedgerCloseTimestamp": latest.close_time,
        "oldestLedger": oldest.seq,
        "oldestLedgerCloseTimestamp": oldest.close_time,
        "cursor": str(last_cursor),
    }


def get_ledgers(chain: ChainView, params: Params) -> dict[str, Any]:
    oldest, latest = chain.oldest, chain.latest
    start, cursor, limit = ledger_pagination(
        params, max_limit=MAX_LEDGERS_LIMIT, first=oldest.seq, last=latest.seq
    )
    limit = limit or DEFAULT_LEDGERS_LIMIT
    if cursor:
        try:
            parsed = int(cursor, 10)
            if not 0 <= parsed <= 2**32 - 1:
                raise ValueError
        except ValueError:
            raise RpcError(
                INVALID_PARAMS, f'strconv.ParseUint: parsing "{cursor}": invalid syntax'
            ) from None
        start = parsed + 1
        if not oldest.seq <= start <= latest.seq:
            raise RpcError(
                INVALID_PARAMS,
                f"cursor ('{cursor}') must be between the oldest ledger: {oldest.seq} and the "
                f"latest ledger: {latest.seq} for this rpc instance",
            )
    ledgers = []
    for seq in range(start, min(start + limit - 1, latest.seq) + 1):
        closed = chain.ledger_at(seq)
        assert closed is not None
        ledgers.append(
            {
                "hash": closed.hash.hex(),
                "sequence": closed.seq,
                "ledgerCloseTime": str(closed.close_time),
                # LedgerHeaderHistoryEntry here (getLatestLedger serves the bare header).
                "headerXdr": _header_history_entry(closed.meta_xdr),
                "metadataXdr": closed.meta_xdr,
            }
        )
    if ledgers:
        next_cursor = str(ledgers[-1]["sequence"])
    else:
        next_cursor = cursor or str(start - 1)
    return {
        "ledgers": ledgers,
        "latestLedger": latest.seq,
        "latestLedgerCloseTime": latest.close_time,
        "oldestLedger": oldest.seq,
        "oldestLedgerCloseTime": oldest.close_time,
        "cursor": next_cursor,
    }


def _header_history_entry(meta_xdr: str) -> str:
    meta = x.LedgerCloseMeta.from_xdr(meta_xdr)
    assert meta.v2 is not None
    return base64.b64encode(meta.v2.ledger_header.to_xdr_bytes()).decode()


def get_events(chain: ChainView, params: Params) -> dict[str, Any]:
    check_format(params)
    start_ledger = uint_param(params, "startLedger")
    end_ledger = uint_param(params, "endLedger")
    pagination = object_param(params, "pagination")
    limit = uint_param(pagination, "limit", bits=64) if pagination is not None else 0
    raw_cursor = str_param(pagination, "cursor") if pagination is not None else ""
    cursor = _parse_event_cursor(raw_cursor) if raw_cursor else None
    filters = [_event_filter(f) for f in list_param(params, "filters")]
    # GetEventsRequest.Valid (protocols/rpc/get_events.go), in its order.
    if cursor is not None:
        if start_ledger or end_ledger:
            raise RpcError(INVALID_PARAMS, "ledger ranges and cursor cannot both be set")
    elif start_ledger <= 0:
        raise RpcError(INVALID_PARAMS, "startLedger must be positive")
    if limit > MAX_EVENTS_LIMIT:
        raise RpcError(INVALID_PARAMS, f"limit must not exceed {MAX_EVENTS_LIMIT}")
    if len(filters) > MAX_FILTERS:
        raise RpcError(INVALID_PARAMS, "maximum 5 filters per request")
    for index, event_filter in enumerate(filters, start=1):
        problem = _filter_problem(event_filter)
        if problem:
            raise RpcError(INVALID_PARAMS, f"filter {index} invalid: {problem}")
    oldest, latest = chain.oldest, chain.latest
    limit = limit or DEFAULT_EVENTS_LIMIT
    start = (start_ledger, 0, 0, 0) if cursor is None else (*cursor[:3], cursor[3] + 1)
    end = min(latest.seq + 1, start[0] + LEDGER_SCAN_LIMIT)
    if end_ledger:
        end = min(end_ledger, end)
    if not oldest.seq <= start[0] <= latest.seq:
        raise RpcError(
            INVALID_REQUEST,
            f"startLedger must be within the ledger range: {oldest.seq} - {latest.seq}",
        )
    selected: list[Event] = []
    for event in chain.events:
        if event.position < start:
            continue
        if event.ledger >= end:
            break
        if filters and not any(_matches(f, event) for f in filters):
            continue
        selected.append(event)
        if len(selected) == limit:
            break
    if len(selected) == limit:
        next_cursor = selected[-1].id
    else:
        next_cursor = event_cursor(end - 1, TOID_TX_MASK, TOID_OP_MASK, EVENT_MAX)
    return {
        "events": [_event_json(e) for e in selected],
        "cursor": next_cursor,
        "latestLedger": latest.seq,
        "oldestLedger": oldest.seq,
        "latestLedgerCloseTime": str(latest.close_time),
        "oldestLedgerCloseTime": str(oldest.close_time),
    }


def _parse_event_cursor(raw: str) -> tuple[int, int, int, int]:
    """protocol.ParseCursor: ``<toid>-<event>``."""
    head, sep, tail = raw.partition("-")
    try:
        if not sep:
            raise ValueError
        ledger, tx, op = parse_toid(int(head, 10))
        event = int(tail, 10)
        if not 0 <= event <= EVENT_MAX:
            raise ValueError
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"invalid event id {raw}") from None
    return ledger, tx, op, event


def _event_filter(raw: Any) -> dict[str, Any]:
    """Decode one EventFilter as Go's JSON decoding does (a wrong type is -32602)."""
    if not isinstance(raw, dict):
        raise RpcError(INVALID_PARAMS, "invalid parameters: filters: each filter is an object")
    types = str_param(raw, "type")
    contract_ids = list_param(raw, "contractIds")
    topics = list_param(raw, "topics")
    for topic in topics:
        if not isinstance(topic, list):
            raise RpcError(INVALID_PARAMS, "invalid parameters: a topic filter is an array")
        for segment in topic:
            if not isinstance(segment, str):
                raise RpcError(INVALID_PARAMS, "invalid parameters: a topic segment is a string")
            if segment not in ("*", "**"):
                try:
                    x.SCVal.from_xdr(segment)
                except Exception as exc:  # noqa: BLE001 - any decode failure is bad input
                    raise RpcError(INVALID_PARAMS, f"invalid parameters: {exc}") from exc
    return {
        "type": {t for t in types.split(",")} if types else set(),
        "contractIds": contract_ids,
        "topics": topics,
    }


def _filter_problem(event_filter: dict[str, Any]) -> str | None:
    """EventFilter.Valid (protocols/rpc/get_events.go)."""
    if event_filter["type"] - {"system", "contract"}:
        return "filter type invalid: if set, type must be either 'system' or 'contract'"
    if len(event_filter["contractIds"]) > MAX_CONTRACT_IDS:
        return "maximum 5 contract IDs per filter"
    if len(event_filter["topics"]) > MAX_TOPICS:
        return "maximum 5 topics per filter"
    for index, contract_id in enumerate(event_filter["contractIds"], start=1):
        if not isinstance(contract_id, str) or not StrKey.is_valid_contract(contract_id):
            return f"contract ID {index} invalid"
    for index, topic in enumerate(event_filter["topics"], start=1):
        problem = _topic_problem(topic)
        if problem:
            return f"topic {index} invalid: {problem}"
    return None


def _topic_problem(topic: list[str]) -> str | None:
    if not topic:
        return "topic must have at least 1 segment"
    segments = topic[:-1] if topic[-1] == "**" else topic
    for index, segment in enumerate(segments, start=1):
        if segment == "**":
            return f"segment {index} invalid: wildcard '**' is only allowed as the last segment"
    if len(segments) > MAX_TOPIC_SEGMENTS:
        return f"topic cannot have more than {MAX_TOPIC_SEGMENTS} segments"
    return None


def _matches(event_filter: dict[str, Any], event: Event) -> bool:
    types = event_filter["type"]
    if types and "contract" not in types:
        return False  # every event the sandbox records is a contract event
    ids = event_filter["contractIds"]
    if ids and event.contract_id not in ids:
        return False
    topic_filters = event_filter["topics"]
    return not topic_filters or any(_topic_matches(t, event.topics) for t in topic_filters)


def _topic_matches(segments: list[str], topics: list[str]) -> bool:
    """``*`` matches one topic, a trailing ``**`` any remainder, anything else exact XDR."""
    if segments and segments[-1] == "**":
        segments = segments[:-1]
        if len(topics) < len(segments):
            return False
    elif len(topics) != len(segments):
        return False
    return all(seg == "*" or seg == topic for seg, topic in zip(segments, topics, strict=False))


def _event_json(event: Event) -> dict[str, Any]:
    closed_at = datetime.fromtimestamp(event.close_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "contract",
        "ledger": event.ledger,
        "ledgerClosedAt": closed_at,
        "contractId": event.contract_id,
        "id": event.id,
        "operationIndex": event.op_index,
        "transactionIndex": event.tx_index,
        "txHash": event.tx_hash,
        "inSuccessfulContractCall": event.in_successful_call,
        "topic": event.topics,
        "value": event.value,
    }
