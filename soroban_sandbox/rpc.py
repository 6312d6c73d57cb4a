"""Stellar RPC methods over the ledger core, answering with stellar-rpc's JSON shapes.

Encoding follows stellar-rpc (cmd/stellar-rpc/internal/methods/, protocols/rpc/): 64-bit values
and close times are decimal strings where the real server sends strings (and numbers where it
sends numbers, as getTransactions' ``createdAt``), ledger sequences are JSON numbers, XDR is
base64. Params are by name only. History methods live in ``rpc_history``; parameter checks and
their messages in ``rpc_params``. Every method reads the chain through a ``ChainView``: the
node that answers (``answering_from``), or the network's own up-to-date view.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from typing import Any

from stellar_sdk import xdr as x

from . import rpc_history
from .archival import is_live
from .chain_view import ChainView
from .ledger import Envelope, InvalidEnvelope, Ledger
from .rpc_params import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    Params,
    RpcError,
    check_format,
    format_error,
    go_duration,
    list_param,
    object_param,
    str_param,
)
from .simulation import MAX_INSTRUCTION_LEEWAY, SimulationRefused, simulate

MAX_LEDGER_KEYS = 200  # get_ledger_entries.go getLedgerEntriesMaxKeys
MAX_HEALTHY_LEDGER_LATENCY = 30.0  # stellar-rpc --max-healthy-ledger-latency default (30s)
SOROBAN_FEE_STATS_LEDGERS = 50  # --soroban-fee-stats-retention-window
CLASSIC_FEE_STATS_LEDGERS = 10  # --classic-fee-stats-retention-window
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99)

__all__ = ["METHODS", "RpcError", "StellarRpc"]

METHODS = {  # JSON-RPC method -> StellarRpc method
    "getHealth": "get_health",
    "getNetwork": "get_network",
    "getVersionInfo": "get_version_info",
    "getLatestLedger": "get_latest_ledger",
    "getLedgerEntries": "get_ledger_entries",
    "getFeeStats": "get_fee_stats",
    "simulateTransaction": "simulate_transaction",
    "sendTransaction": "send_transaction",
    "getTransaction": "get_transaction",
    "getTransactions": "get_transactions",
    "getLedgers": "get_ledgers",
    "getEvents": "get_events",
}


def fee_distribution(fees: list[int], ledger_count: int) -> dict[str, Any]:
    """feewindow.computeFeeDistribution (cmd/stellar-rpc/internal/feewindow/feewindow.go):
    nearest-rank percentiles over the window; an empty window is all zeros, ledgerCount 0."""
    if not fees:
        zero: dict[str, Any] = {k: "0" for k in ("max", "min", "mode")}
        zero |= {f"p{p}": "0" for p in PERCENTILES}
        return zero | {"transactionCount": "0", "ledgerCount": 0}
    ordered = sorted(fees)
    counts: dict[int, int] = {}
    for fee in ordered:
        counts[fee] = counts.get(fee, 0) + 1
    mode = max(counts, key=lambda fee: (counts[fee], -fee))  # first of the most repeated
    dist: dict[str, Any] = {
        "max": str(ordered[-1]),
        "min": str(ordered[0]),
        "mode": str(mode),
    }
    for p in PERCENTILES:
        kth = (p * len(ordered) + 99) // 100
        dist[f"p{p}"] = str(ordered[kth - 1])
    return dist | {"transactionCount": str(len(ordered)), "ledgerCount": ledger_count}


class StellarRpc:
    def __init__(
        self,
        ledger: Ledger,
        friendbot_url: str,
        *,
        clock: Callable[[], float] = time.time,
        max_healthy_latency: float = MAX_HEALTHY_LEDGER_LATENCY,
    ) -> None:
        self.ledger = ledger
        self.friendbot_url = friendbot_url
        self.clock = clock
        self.max_healthy_latency = max_healthy_latency
        self._node: ChainView | None = None

    def answering_from(self, view: ChainView) -> StellarRpc:
        """The same methods, answered by the node whose view of the chain is ``view``."""
        node = copy.copy(self)
        node._node = view
        return node

    @property
    def view(self) -> ChainView:
        return self._node if self._node is not None else ChainView.of_network(self.ledger)

    def call(self, method: str, params: Params) -> dict[str, Any]:
        name = METHODS.get(method)
        if name is None:
            # jrpc2 (stellar-rpc's JSON-RPC server): Errorf(MethodNotFound, "no such method %q")
            raise RpcError(METHOD_NOT_FOUND, f"no such method {json.dumps(method)}")
        handler: Callable[[Params], dict[str, Any]] = getattr(self, name)
        return handler(params)

    # -- shared pieces ------------------------------------------------------------------------

    def _window(self) -> dict[str, Any]:
        latest, oldest = self.view.latest, self.view.oldest
        return {
            "latestLedger": latest.seq,
            "latestLedgerCloseTime": str(latest.close_time),
            "oldestLedger": oldest.seq,
            "oldestLedgerCloseTime": str(oldest.close_time),
        }

    # -- methods ------------------------------------------------------------------------------

    def get_health(self, params: Params) -> dict[str, Any]:
        """get_health.go: unhealthy (-32603) once the latest ledger closed longer ago than the
        max healthy ledger latency (a stalled ledger clock, here)."""
        latency = self.clock() - self.view.latest.close_time
        if latency > self.max_healthy_latency:
            raise RpcError(
                INTERNAL_ERROR,
                f"latency ({go_duration(latency)}) since last known ledger closed is too high "
                f"(>{go_duration(self.max_healthy_latency)})",
            )
        return {"status": "healthy", **self._window()} | {
            "ledgerRetentionWindow": self.view.retention_ledgers
        }

    def get_network(self, params: Params) -> dict[str, Any]:
        return {
            "friendbotUrl": self.friendbot_url,
            "passphrase": self.ledger.passphrase,
            "protocolVersion": self.ledger.protocol.version,
        }

    def get_version_info(self, params: Params) -> dict[str, Any]:
        return {
            "version": "soroban-sandbox",
            "commitHash": "",
            "buildTimestamp": "",
            "captiveCoreVersion": "none (test harness)",
            "protocolVersion": self.ledger.protocol.version,
        }

    def get_latest_ledger(self, params: Params) -> dict[str, Any]:
        latest = self.view.latest
        return {
            "id": latest.hash.hex(),
            "protocolVersion": self.ledger.protocol.version,
            "sequence": latest.seq,
            "closeTime": str(latest.close_time),
            "headerXdr": latest.header_xdr,
            "metadataXdr": latest.meta_xdr,
        }

    def get_ledger_entries(self, params: Params) -> dict[str, Any]:
        """get_ledger_entries.go: no keys is an empty answer; TTL keys are refused. A Soroban
        entry carries ``liveUntilLedgerSeq``: its TTL while live, 0 once archived (core's
        query server answers an archived persistent entry with state "archived" and TTL 0,
        QueryServer::getLedgerEntry; ledgerentries/main.go passes it on)."""
        check_format(params)
        keys = list_param(params, "keys")
        if len(keys) > MAX_LEDGER_KEYS:
            raise RpcError(
                INVALID_PARAMS,
                f"key count ({len(keys)}) exceeds maximum supported ({MAX_LEDGER_KEYS})",
            )
        decoded = []
        for index, raw in enumerate(keys):
            try:
                key = x.LedgerKey.from_xdr(raw)
            except Exception:  # noqa: BLE001 - any decode failure is bad input
                raise RpcError(
                    INVALID_PARAMS, f"cannot unmarshal key value {raw} at index {index}"
                ) from None
            if key.type == x.LedgerEntryType.TTL:
                raise RpcError(INVALID_PARAMS, "ledger ttl entries cannot be queried directly")
            decoded.append((raw, key))
        entries = []
        view = self.view
        latest = view.entries_seq
        for raw, key in decoded:
            found = view.ledger_entry(key)
            if found is None:
                continue
            entry: dict[str, Any] = {
                "key": raw,
                "xdr": found.data.to_xdr(),
                "lastModifiedLedgerSeq": found.last_modified,
                "extXdr": base64.b64encode(x.LedgerEntryExt(0).to_xdr_bytes()).decode(),
            }
            if found.live_until is not None:
                live = is_live(found.live_until, latest)
                entry["liveUntilLedgerSeq"] = found.live_until if live else 0
            entries.append(entry)
        return {"entries": entries, "latestLedger": latest}

    def get_fee_stats(self, params: Params) -> dict[str, Any]:
        """Inclusion fees actually charged: for Soroban, fee charged minus resource fee
        charged over the last 50 ledgers; for classic, fee charged per operation over the
        last 10 (stellar-rpc feewindow.IngestFees)."""
        view = self.view
        fees, ledgers = view.recent_inclusion_fees(SOROBAN_FEE_STATS_LEDGERS, soroban=True)
        classic, classic_ledgers = view.recent_inclusion_fees(
            CLASSIC_FEE_STATS_LEDGERS, soroban=False
        )
        return {
            "sorobanInclusionFee": fee_distribution(fees, ledgers),
            "inclusionFee": fee_distribution(classic, classic_ledgers),
            "latestLedger": view.latest.seq,
        }

    def simulate_transaction(self, params: Params) -> dict[str, Any]:
        """simulate_transaction.go: refusals are results with ``error``, not JSON-RPC errors
        (except params of the wrong JSON type, which jrpc2 refuses before the method runs).
        Simulated against the network's latest state whichever node answers (README "Not
        modelled")."""
        envelope = str_param(params, "transaction")
        auth_mode = str_param(params, "authMode")
        resource_config = object_param(params, "resourceConfig") or {}
        leeway = resource_config.get("instructionLeeway", 0)
        if isinstance(leeway, bool) or not isinstance(leeway, int) or not 0 <= leeway < 2**64:
            raise RpcError(
                INVALID_PARAMS,
                "invalid parameters: json: cannot unmarshal into field "
                "resourceConfig.instructionLeeway of type uint64",
            )
        upgraded_auth = params.get("useUpgradedAuth", False)
        if not isinstance(upgraded_auth, bool):
            raise RpcError(
                INVALID_PARAMS,
                "invalid parameters: json: cannot unmarshal into field useUpgradedAuth of "
                "type bool",
            )
        problem = format_error(params)
        if problem is None and params.get("authV2"):
            problem = "authV2 is not modelled by soroban-sandbox (a test harness)"
        if problem is None and leeway > MAX_INSTRUCTION_LEEWAY:
            problem = "out of range integral type conversion attempted"
        if problem is not None:
            # Refused before the ledger is read, as IsValidFormat is: latestLedger 0.
            return {"error": problem, "latestLedger": 0}
        try:
            sim = simulate(
                self.ledger,
                envelope,
                auth_mode=auth_mode,
                instruction_leeway=leeway,
                upgraded_auth=upgraded_auth,
            )
        except SimulationRefused as exc:
            return {"error": str(exc), "latestLedger": 0}
        result: dict[str, Any] = {"latestLedger": sim.latest_ledger}
        if sim.events:
            result["events"] = sim.events
        if sim.error is not None:
            return result | {"error": sim.error}
        return result | {
            "minResourceFee": str(sim.min_resource_fee),
            "transactionData": sim.transaction_data,
            "results": [{"auth": sim.auth, "xdr": sim.result_xdr}],
            "stateChanges": sim.state_changes,
        }

    def send_transaction(
        self,
        params: Params,
        *,
        drop: bool = False,
        fail_on_chain: bool = False,
        parsed: Envelope | None = None,
    ) -> dict[str, Any]:
        """``parsed``: the envelope already decoded from ``params`` by the caller."""
        check_format(params)
        envelope = str_param(params, "transaction")
        try:
            sub = self.ledger.submit(
                envelope,
                drop=drop,
                fail_on_chain=fail_on_chain,
                now=int(self.clock()),
                validated_at=self.view.core_seq,
                parsed=parsed,
            )
        except InvalidEnvelope:
            raise RpcError(INVALID_PARAMS, "invalid_xdr") from None
        return self.submission_answer(sub.status, sub.hash, sub.error_result_xdr)

    def submission_answer(
        self, status: str, tx_hash: str, error_result_xdr: str | None = None
    ) -> dict[str, Any]:
        latest = self.view.latest  # send_transaction.go: the store's range, not core's
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
        """get_transaction.go: NOT_FOUND still carries applicationOrder, feeBump, ledger,
        createdAt (Go zero values) and an empty events object."""
        check_format(params)
        tx_hash = str_param(params, "hash")
        if len(tx_hash) // 2 != 32:
            raise RpcError(INVALID_PARAMS, f"unexpected hash length ({len(tx_hash)})")
        bad = next((c for c in tx_hash if c not in "0123456789abcdefABCDEF"), None)
        if bad is not None:
            message = f"encoding/hex: invalid byte: U+{ord(bad):04X} {bad!r}"
            raise RpcError(INVALID_PARAMS, f"incorrect hash: {message}")
        window = self._window()
        tx = self.view.transaction(tx_hash)
        if tx is None:
            return window | {
                "status": "NOT_FOUND",
                "txHash": tx_hash,
                "applicationOrder": 0,
                "feeBump": False,
                "events": {},
                "ledger": 0,
                "createdAt": "0",
            }
        details = rpc_history.transaction_details(tx) | {"txHash": tx_hash}
        return window | details | {"createdAt": str(tx.created_at)}

    def get_transactions(self, params: Params) -> dict[str, Any]:
        return rpc_history.get_transactions(self.view, params)

    def get_ledgers(self, params: Params) -> dict[str, Any]:
        return rpc_history.get_ledgers(self.view, params)

    def get_events(self, params: Params) -> dict[str, Any]:
        return rpc_history.get_events(self.view, params)
