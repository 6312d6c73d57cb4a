"""Fault injection settings and the one seeded random stream that drives them.

Every random decision the sandbox makes is drawn from one ``random.Random(seed)``, and only for
faults whose rate is above zero, so the same seed and the same request sequence replay the same
faults.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_HANG_MS = 120_000  # a "timeout" hang is bounded so a forgotten fault cannot wedge a run

RATE_FIELDS = (
    "try_again_later_rate",
    "http_503_rate",
    "timeout_rate",
    "drop_rate",
    "fail_on_chain_rate",
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
    return Faults(**values)


class FaultDice:
    """Seeded decisions. ``roll(rate)`` draws only when the fault is switched on."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        return self._rng.random() < rate
