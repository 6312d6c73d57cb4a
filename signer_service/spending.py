"""Rolling 24-hour amount signed per key. Rebuilt from the audit log, the source of truth."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from signer_service.ledger_claims import LedgerAnchor

DAY_SECONDS = 86_400


def spending_bucket(key_id: str, asset: str) -> str:
    """Where a key's spending in one asset is summed: native under the key id (as before
    classic batches existed), another asset under `key_id asset` (its own daily limit)."""
    return key_id if asset == "native" else f"{key_id} {asset}"


def spent_amounts(key_id: str, native: int, asset_amounts: Iterable[tuple[str, int]]
                  ) -> list[tuple[str, int]]:
    """(bucket, amount) pairs one allowed decision spends: native, then each issued asset."""
    return [(key_id, native)] + [(spending_bucket(key_id, a), n) for a, n in asset_amounts]


class SpentLedger:
    """Per key: the (time, amount) entries of the last 24 h and their running total, so a
    decision costs O(expired entries), not O(entries in the day)."""

    def __init__(self) -> None:
        self._entries: dict[str, deque[tuple[float, int]]] = {}
        self._totals: dict[str, int] = {}

    @classmethod
    def from_audit(cls, records: Iterable[dict[str, Any]]) -> SpentLedger:
        ledger = cls()
        for r in records:
            amount = r.get("amount_stroops")
            if r.get("decision") != "allow":
                continue
            key_id, at = str(r.get("key_id")), float(r.get("time", 0.0))
            if isinstance(amount, int) and amount > 0:
                ledger.add(key_id, at, amount)
            assets = r.get("asset_amounts")
            for asset, value in (assets.items() if isinstance(assets, dict) else ()):
                if isinstance(value, int) and value > 0:
                    ledger.add(spending_bucket(key_id, str(asset)), at, value)
        return ledger

    def add(self, key_id: str, at: float, amount: int) -> None:
        self._entries.setdefault(key_id, deque()).append((at, amount))
        self._totals[key_id] = self._totals.get(key_id, 0) + amount

    def remove(self, key_id: str, at: float, amount: int) -> None:
        entries = self._entries.get(key_id)
        if entries is not None and (at, amount) in entries:
            entries.remove((at, amount))
            self._totals[key_id] -= amount

    def spent(self, key_id: str, now: float) -> int:
        entries = self._entries.get(key_id)
        if not entries:
            return 0
        while entries and entries[0][0] <= now - DAY_SECONDS:
            self._totals[key_id] -= entries.popleft()[1]
        return self._totals[key_id]


def ledger_anchor(records: Iterable[dict[str, Any]]) -> LedgerAnchor | None:
    """The first current_ledger an allowed authorization claimed in this log, and when: the
    signer's only knowledge of the network's ledger (policy.ledger_ceiling), rebuilt from the
    verified log like the spending, so a restart does not make a new first claim."""
    for r in records:
        ledger = r.get("current_ledger")
        if r.get("decision") == "allow" and isinstance(ledger, int) and \
                not isinstance(ledger, bool):
            return LedgerAnchor(ledger, float(r.get("time", 0.0)))
    return None
