"""Fault injection settings, the one seeded random stream that drives them, and the one place
that decides which RPC node answers a call.

Every random decision the sandbox makes is drawn from one ``random.Random(seed)``, and only for
faults that are switched on (a rate above zero, more than one node), so the same seed and the
same request sequence replay the same faults.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

MAX_HANG_MS = 120_000  # a "timeout" hang is bounded so a forgotten fault cannot wedge a run
# How far behind the network a node (its stellar-core plus its transaction store) may answer:
# the ledger keeps what each entry was over this many ledgers (Ledger.ENTRY_HISTORY_LEDGERS).
MAX_LAG_LEDGERS = 32
MAX_NODES = 16

RATE_FIELDS = (
    "try_again_later_rate",
    "http_503_rate",
    "timeout_rate",
    "drop_rate",
    "fail_on_chain_rate",
    "ingest_race_rate",
    "node_restart_rate",
    "replay_rate",
)


class FaultError(ValueError):
    """A fault setting is out of range; the message names the field and the rule."""


@dataclass
class Faults:
    try_again_later_rate: float = 0.0  # sendTransaction answers TRY_AGAIN_LATER, tx not queued
    http_503_rate: float = 0.0  # any RPC call answers HTTP 503 before doing anything
    timeout_rate: float = 0.0  # the call is processed, then the answer hangs for timeout_ms
    timeout_ms: int = 30_000
    latency_ms: int = 0  # added to every RPC call
    drop_rate: float = 0.0  # sendTransaction says PENDING but the tx is never included
    fail_on_chain_rate: float = 0.0  # the tx is included but the invocation fails (txFAILED)
    stall_ledgers: bool | float = False  # True: no ledger closes until unset; N: for N seconds
    # The lies of a real deployment (README "Faults"): one view of the chain per answering node.
    tx_store_lag_ledgers: int = 0  # each node's transaction store is K ledgers behind its core
    entries_follow_store: bool = False  # getLedgerEntries at the store's ledger, not the core's
    node_lags: list[int] = field(default_factory=lambda: [0])  # one entry per node behind an LB
    # The methods the load balancer spreads over node_lags' nodes; every other call goes to
    # the first node (e.g. a provider routing reads to a replica pool, sendTransaction to a
    # primary). Empty: every method.
    balanced_methods: list[str] = field(default_factory=list)
    ingest_race_rate: float = 0.0  # getTransaction looks up before the ledger it reports
    retention_ledgers: int = 0  # 0: the --retention-ledgers window; N: serve only the last N
    node_restart_rate: float = 0.0  # per ledger close: a node restarts with an empty history
    replay_rate: float = 0.0  # per ledger close and open envelope: an outsider re-submits it

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def updated(current: Faults, changes: dict[str, Any]) -> Faults:
    """A copy of ``current`` with ``changes`` applied; unknown names and bad values raise."""
    known = {f.name for f in fields(Faults)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise FaultError(f"unknown fault setting(s): {', '.join(unknown)}")
    values = current.as_json() | changes
    for name in RATE_FIELDS:
        rate = values[name]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultError(f"{name} must be a number between 0 and 1, got {rate!r}")
        values[name] = float(rate)
    for name in ("latency_ms", "timeout_ms"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HANG_MS:
            raise FaultError(
                f"{name} must be an integer between 0 and {MAX_HANG_MS}, got {value!r}"
            )
    stall = values["stall_ledgers"]
    if not isinstance(stall, bool) and (
        not isinstance(stall, int | float) or stall < 0 or not math.isfinite(stall)
    ):
        raise FaultError(f"stall_ledgers must be true, false or a number of seconds, got {stall!r}")
    _check_lags(values)
    balanced = values["balanced_methods"]
    if not isinstance(balanced, list) or not all(isinstance(m, str) for m in balanced):
        raise FaultError(f"balanced_methods must be a list of method names, got {balanced!r}")
    values["balanced_methods"] = list(balanced)
    retention = values["retention_ledgers"]
    if not _is_int(retention) or retention < 0:
        raise FaultError(
            f"retention_ledgers must be 0 (off) or a number of ledgers, got {retention!r}"
        )
    if not isinstance(values["entries_follow_store"], bool):
        raise FaultError("entries_follow_store must be true or false")
    return Faults(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_lags(values: dict[str, Any]) -> None:
    store_lag, lags = values["tx_store_lag_ledgers"], values["node_lags"]
    if not _is_int(store_lag) or not 0 <= store_lag <= MAX_LAG_LEDGERS:
        raise FaultError(
            f"tx_store_lag_ledgers must be an integer between 0 and {MAX_LAG_LEDGERS}, "
            f"got {store_lag!r}"
        )
    if (
        not isinstance(lags, list)
        or not 1 <= len(lags) <= MAX_NODES
        or not all(_is_int(lag) and lag >= 0 for lag in lags)
    ):
        raise FaultError(
            f"node_lags must be a list of 1 to {MAX_NODES} non-negative integers (ledgers each "
            f"node is behind), got {lags!r}"
        )
    if max(lags) + store_lag > MAX_LAG_LEDGERS:
        raise FaultError(
            f"node_lags plus tx_store_lag_ledgers must stay within {MAX_LAG_LEDGERS} ledgers "
            "(how far back the sandbox keeps ledger entries)"
        )
    values["node_lags"] = list(lags)


class FaultDice:
    """Seeded decisions. ``roll(rate)`` draws only when the fault is switched on."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        return self._rng.random() < rate

    def pick(self, count: int) -> int:
        """One of ``count`` choices, uniformly; no draw when there is only one."""
        if count <= 1:
            return 0
        return self._rng.randrange(count)


@dataclass(frozen=True)
class Route:
    """Which node answers one RPC call, and how far behind it is."""

    node: int = 0
    core_lag: int = 0  # ledgers the node's stellar-core is behind the network
    store_lag: int = 0  # ledgers its transaction store (ingested DB) is behind its core
    entries_follow_store: bool = False
    ingest_race: bool = False  # getTransaction reads before the store commits what it reports


UP_TO_DATE = Route()


def node_route(faults: Faults, node: int, *, ingest_race: bool = False) -> Route:
    return Route(
        node=node,
        core_lag=faults.node_lags[node],
        store_lag=faults.tx_store_lag_ledgers,
        entries_follow_store=faults.entries_follow_store,
        ingest_race=ingest_race,
    )


def route(faults: Faults, dice: FaultDice, method: str) -> Route:
    """The load balancer and the node's own lags, decided in one place for every call: a
    node picked uniformly (no draw with one node), and for getTransaction the ingestion race."""
    balanced = not faults.balanced_methods or method in faults.balanced_methods
    node = dice.pick(len(faults.node_lags)) if balanced else 0
    race = method == "getTransaction" and dice.roll(faults.ingest_race_rate)
    return node_route(faults, node, ingest_race=race)
