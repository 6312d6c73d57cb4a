"""Stellar RPC methods over the ledger core, answering with stellar-rpc's JSON shapes.

Encoding follows stellar-rpc: 64-bit values and close times are decimal strings
(``latestLedgerCloseTime``, ``minResourceFee``, fee percentiles), ledger sequences are JSON
numbers, XDR is base64. Params are by name only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import xdr as x

from .ledger import PROTOCOL_VERSION, InvalidEnvelope, Ledger
from .records import Event
from .simulation import simulate

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PARSE_ERROR = -32700

MAX_LEDGER_KEYS = 200  # stellar-rpc's getLedgerEntries limit
MAX_EVENTS_LIMIT = 10_000
DEFAULT_EVENTS_LIMIT = 100
HASH_RE = re.compile(r"^[0-9a-fA-F]{64}$")

Params = dict[str, Any]


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StellarRpc:
    def __init__(self, ledger: Ledger, friendbot_url: str) -> None:
        self.ledger = ledger
        self.friendbot_url = friendbot_url
        self.methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "getHealth": self.get_health,
            "getNetwork": self.get_network,
            "getVersionInfo": self.get_version_info,
            "getLatestLedger": self.get_latest_ledger,
            "getLedgerEntries": self.get_ledger_entries,
            "getFeeStats": self.get_fee_stats,
            "simulateTransaction": self.simulate_transaction,
            "sendTransaction": self.send_transaction,
            "getTransaction": self.get_transaction,
            "getEvents": self.get_events,
        }

    def call(self, method: str, params: Params) -> dict[str, Any]:
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"method {method!r} not found")
        return handler(params)

    # -- shared pieces ------------------------------------------------------------------------

    def _window(self) -> dict[str, Any]:
        latest, oldest = self.ledger.latest, self.ledger.oldest
        return {
            "latestLedger": latest.seq,
            "latestLedgerCloseTime": str(latest.close_time),
            "oldestLedger": oldest.seq,
            "oldestLedgerCloseTime": str(oldest.close_time),
        }

    # -- methods ------------------------------------------------------------------------------

    def get_health(self, params: Params) -> dict[str, Any]:
        return {
            "status": "healthy",
            "latestLedger": self.ledger.latest.seq,
            "oldestLedger": self.ledger.oldest.seq,
            "ledgerRetentionWindow": self.ledger.retention_ledgers,
        }

    def get_network(self, params: Params) -> dict[str, Any]:
        return {
            "friendbotUrl": self.friendbot_url,
            "passphrase": self.ledger.passphrase,
            "protocolVersion": PROTOCOL_VERSION,
        }

    def get_version_info(self, params: Params) -> dict[str, Any]:
        return {
            "version": "soroban-sandbox",
            "commitHash": "",
            "buildTimestamp": "",
            "captiveCoreVersion": "none (test harness)",
            "protocolVersion": PROTOCOL_VERSION,
        }

    def get_latest_ledger(self, params: Params) -> dict[str, Any]:
        latest = self.ledger.latest
        return {
            "id": latest.hash.hex(),
            "protocolVersion": PROTOCOL_VERSION,
            "sequence": latest.seq,
            "closeTime": str(latest.close_time),
            "headerXdr": latest.header_xdr,
            "metadataXdr": latest.meta_xdr,
        }

    def get_ledger_entries(self, params: Params) -> dict[str, Any]:
        keys = params.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise RpcError(INVALID_PARAMS, "keys: must be a non-empty list of base64 LedgerKey XDR")
        if len(keys) > MAX_LEDGER_KEYS:
            raise RpcError(INVALID_PARAMS, f"keys: at most {MAX_LEDGER_KEYS} keys per request")
        entries = []
        latest = self.ledger.latest.seq
        for raw in keys:
            try:
                key = x.LedgerKey.from_xdr(raw)
            except Exception as exc:  # noqa: BLE001 - any decode failure is bad input
                raise RpcError(INVALID_PARAMS, f"keys: cannot decode LedgerKey: {exc}") from exc
            found = self.ledger.ledger_entry(key)
            if found is None:
                continue
            data, last_modified = found
            entry: dict[str, Any] = {
                "key": raw,
                "xdr": data.to_xdr(),
                "lastModifiedLedgerSeq": last_modified,
            }
            if key.type == x.LedgerEntryType.CONTRACT_DATA:
                # Soroban entries have a TTL; persistent balances get a generous one.
                entry["liveUntilLedgerSeq"] = latest + 2_073_600
            entries.append(entry)
        return {"entries": entries, "latestLedger": latest}

    def get_fee_stats(self, params: Params) -> dict[str, Any]:
        # No surge pricing in the sandbox: every inclusion fee charged is the base fee.
        def distribution(count: int, ledgers: int) -> dict[str, Any]:
            dist: dict[str, Any] = {k: "100" for k in ("max", "min", "mode")}
            dist |= {f"p{p}": "100" for p in (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99)}
            return dist | {"transactionCount": str(count), "ledgerCount": ledgers}

        window = min(50, self.ledger.latest.seq)
        floor = self.ledger.latest.seq - window
        count = sum(1 for t in self.ledger.transfers if t.ledger > floor)
        return {
            "sorobanInclusionFee": distribution(count, window),
            "inclusionFee": distribution(0, min(10, window)),
            "latestLedger": self.ledger.latest.seq,
        }

    def simulate_transaction(self, params: Params) -> dict[str, Any]:
        envelope = _required_str(params, "transaction")
        try:
            sim = simulate(self.ledger, envelope)
        except InvalidEnvelope as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from exc
        result: dict[str, Any] = {"latestLedger": sim.latest_ledger}
        if sim.error is not None:
            return result | {"error": sim.error}
        return result | {
            "minResourceFee": str(sim.min_resource_fee),
            "transactionData": sim.transaction_data,
            "results": [{"auth": sim.auth, "xdr": sim.result_xdr}],
        }

    def send_transaction(
        self, params: Params, *, drop: bool = False, fail_on_chain: bool = False
    ) -> dict[str, Any]:
        envelope = _required_str(params, "transaction")
        try:
            sub = self.ledger.submit(envelope, drop=drop, fail_on_chain=fail_on_chain)
        except InvalidEnvelope as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from exc
        return self.submission_answer(sub.status, sub.hash, sub.error_result_xdr)

    def submission_answer(
        self, status: str, tx_hash: str, error_result_xdr: str | None = None
    ) -> dict[str, Any]:
        latest = self.ledger.latest
        answer: dict[str, Any] = {
            "status": status,
            "hash": tx_hash,
            "latestLedger": latest.seq,
            "latestLedgerCloseTime": str(latest.close_time),
        }
        if error_result_xdr is not None:
            answer["errorResultXdr"] = error_result_xdr
        return answer

    def get_transaction(self, params: Params) -> dict[str, Any]:
        tx_hash = _required_str(params, "hash")
        if not HASH_RE.match(tx_hash):
            raise RpcError(INVALID_PARAMS, "hash: must be 64 hex characters")
        window = self._window()
        tx = self.ledger.transaction(tx_hash)
        if tx is None or tx.ledger < window["oldestLedger"]:
            return {"status": "NOT_FOUND", "txHash": tx_hash.lower()} | window
        contract_events = [_contract_event_xdrs(tx.meta_xdr)]  # one list per operation
        return {
            "status": "SUCCESS" if tx.successful else "FAILED",
            "txHash": tx.hash,
            **window,
            "applicationOrder": tx.application_order,
            "feeBump": False,
            "envelopeXdr": tx.envelope_xdr,
            "resultXdr": tx.result_xdr,
            "resultMetaXdr": tx.meta_xdr,
            "events": {"transactionEventsXdr": [], "contractEventsXdr": contract_events},
            "ledger": tx.ledger,
            "createdAt": str(tx.created_at),
        }

    def get_events(self, params: Params) -> dict[str, Any]:
        window = self._window()
        pagination = params.get("pagination") or {}
        if not isinstance(pagination, dict):
            raise RpcError(INVALID_PARAMS, "pagination: must be an object")
        limit = pagination.get("limit") or DEFAULT_EVENTS_LIMIT
        if not isinstance(limit, int) or not 0 < limit <= MAX_EVENTS_LIMIT:
            raise RpcError(INVALID_PARAMS, f"pagination.limit: must be 1..{MAX_EVENTS_LIMIT}")
        cursor = pagination.get("cursor")
        start = params.get("startLedger")
        if cursor is None:
            if (
                not isinstance(start, int)
                or not window["oldestLedger"] <= start <= window["latestLedger"]
            ):
                raise RpcError(
                    INVALID_PARAMS,
                    "startLedger: must be between the oldest ledger stored "
                    f"({window['oldestLedger']}) and the latest ledger ({window['latestLedger']})",
                )
        elif start is not None:
            raise RpcError(INVALID_PARAMS, "startLedger and cursor cannot both be set")
        end = params.get("endLedger") or window["latestLedger"] + 1
        if not isinstance(end, int):
            raise RpcError(INVALID_PARAMS, "endLedger: must be a ledger sequence number")
        filters = params.get("filters") or []
        if not isinstance(filters, list) or len(filters) > 5:
            raise RpcError(INVALID_PARAMS, "filters: at most 5 filters")
        selected: list[Event] = []
        for event in self.ledger.events:
            if cursor is not None and event.id <= cursor:
                continue
            if isinstance(start, int) and event.ledger < start:
                continue
            if event.ledger >= end:
                break
            if filters and not any(_matches(f, event) for f in filters):
                continue
            selected.append(event)
            if len(selected) == limit:
                break
        next_cursor = (
            selected[-1].id
            if selected
            else f"{(min(end, window['latestLedger'] + 1) << 32):019d}-{0:010d}"
        )
        return {
            "events": [_event_json(e) for e in selected],
            "cursor": next_cursor,
            **window,
        }


def _contract_event_xdrs(meta_xdr: str) -> list[str]:
    meta = x.TransactionMeta.from_xdr(meta_xdr)
    soroban = meta.v3.soroban_meta if meta.v3 else None
    return [e.to_xdr() for e in soroban.events] if soroban else []


def _required_str(params: Params, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f"{name}: required string parameter")
    return value


def _matches(event_filter: Any, event: Event) -> bool:
    if not isinstance(event_filter, dict):
        raise RpcError(INVALID_PARAMS, "filters: each filter must be an object")
    kind = event_filter.get("type")
    if kind not in (None, "contract"):
        return False
    ids = event_filter.get("contractIds")
    if ids and event.contract_id not in ids:
        return False
    topic_filters = event_filter.get("topics")
    if not topic_filters:
        return True
    return any(_topic_matches(segments, event.topics) for segments in topic_filters)


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
        "inSuccessfulContractCall": True,
        "topic": event.topics,
        "value": event.value,
    }
