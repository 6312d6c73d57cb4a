"""Health levels and alert conditions from metrics and thresholds. Pure.

Every comparison is "strictly above the threshold", as in the Prometheus alert rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from payout_service.core.amounts import format_amount


@dataclass(frozen=True)
class AlertThresholds:
    """Names and defaults match the Prometheus alert rules (deploy/)."""

    failure_rate_warning: float = 0.10
    failure_rate_critical: float = 0.25
    pending_count: int = 50
    delay_seconds_warning: float = 900.0
    delay_seconds_critical: float = 3600.0
    amount_24h_stroops: int = 10_000 * 10_000_000
    system_errors: int = 0


class AlertKind(StrEnum):
    FAILURE_RATE = "FAILURE_RATE"
    PENDING_THRESHOLD = "PENDING_THRESHOLD"
    PROCESSING_DELAY = "PROCESSING_DELAY"
    AMOUNT_THRESHOLD = "AMOUNT_THRESHOLD"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    # The watchdog's findings (core/watchdog.py), one kind each, and a paused sender.
    UNEXPLAINED_OUTFLOW = "UNEXPLAINED_OUTFLOW"
    PAID_TWICE = "PAID_TWICE"
    CONFIRMED_UNSEEN = "CONFIRMED_UNSEEN"
    WATCHDOG_GAP = "WATCHDOG_GAP"
    SENDING_PAUSED = "SENDING_PAUSED"
    CHANNELS_HELD = "CHANNELS_HELD"
    WEBHOOKS_DEAD_LETTERED = "WEBHOOKS_DEAD_LETTERED"
    AWAITING_FUNDS = "AWAITING_FUNDS"


FINDING_ALERTS = {
    "unexplained_outflow": (AlertKind.UNEXPLAINED_OUTFLOW,
                            "money left a watched account in a transaction the service did "
                            "not build"),
    "paid_twice": (AlertKind.PAID_TWICE, "a payout was paid by two transactions"),
    "confirmed_unseen": (AlertKind.CONFIRMED_UNSEEN,
                         "a CONFIRMED payout has no matching transfer on chain"),
    "watchdog_gap": (AlertKind.WATCHDOG_GAP,
                     "ledgers left the RPC's history before the watchdog read them"),
}


class Level(IntEnum):
    HEALTHY = 1
    WARNING = 2
    CRITICAL = 3


@dataclass(frozen=True)
class HealthMetrics:
    failure_rate: float
    pending_count: int
    oldest_pending_age_seconds: float
    amount_last_24h_stroops: int
    system_errors_last_hour: int
    # Unresolved watchdog findings per kind (core/watchdog.py FINDING_KINDS).
    open_findings: Mapping[str, int] = field(default_factory=dict)
    sending_paused: bool = False
    paused_reason: str = ""
    # Channels held for a fault of their own, and the reason of one of them.
    channels_held: int = 0
    held_reason: str = ""
    # Webhook events whose retry budget is spent, not yet redelivered.
    webhooks_dead_lettered: int = 0
    # Payouts the paying account cannot cover now (core/funds.py).
    awaiting_funds: int = 0


@dataclass(frozen=True)
class Condition:
    kind: AlertKind
    severity: Level
    message: str


def conditions(m: HealthMetrics, t: AlertThresholds) -> list[Condition]:
    """The alert conditions that hold now, at most one per kind."""
    found: list[Condition] = []
    if m.failure_rate > t.failure_rate_warning:
        severity = Level.CRITICAL if m.failure_rate > t.failure_rate_critical else Level.WARNING
        found.append(Condition(
            AlertKind.FAILURE_RATE, severity,
            f"failure rate over the last hour is {m.failure_rate:.1%} "
            f"(threshold {t.failure_rate_warning:.1%})",
        ))
    if m.pending_count > t.pending_count:
        found.append(Condition(
            AlertKind.PENDING_THRESHOLD, Level.WARNING,
            f"{m.pending_count} payouts pending (threshold {t.pending_count})",
        ))
    if m.oldest_pending_age_seconds > t.delay_seconds_warning:
        critical = m.oldest_pending_age_seconds > t.delay_seconds_critical
        found.append(Condition(
            AlertKind.PROCESSING_DELAY, Level.CRITICAL if critical else Level.WARNING,
            f"oldest pending payout is {m.oldest_pending_age_seconds:.0f} s old "
            f"(threshold {t.delay_seconds_warning:.0f} s)",
        ))
    if m.amount_last_24h_stroops > t.amount_24h_stroops:
        found.append(Condition(
            AlertKind.AMOUNT_THRESHOLD, Level.WARNING,
            f"{format_amount(m.amount_last_24h_stroops)} paid out in 24 h "
            f"(threshold {format_amount(t.amount_24h_stroops)})",
        ))
    if m.system_errors_last_hour > t.system_errors:
        found.append(Condition(
            AlertKind.SYSTEM_ERROR, Level.CRITICAL,
            f"{m.system_errors_last_hour} system errors in the last hour",
        ))
    if m.channels_held:
        found.append(Condition(
            AlertKind.CHANNELS_HELD, Level.WARNING,
            f"{m.channels_held} channel(s) held, the pool carries fewer payouts until they "
            f"are fixed and re-added (payoutctl channels list): {m.held_reason}"[:500]))
    if m.webhooks_dead_lettered:
        # No threshold: each one is an event a receiver never got.
        found.append(Condition(
            AlertKind.WEBHOOKS_DEAD_LETTERED, Level.WARNING,
            f"{m.webhooks_dead_lettered} webhook event(s) dead-lettered after the retry budget "
            f"(payoutctl webhooks list --state dead_lettered; redeliver once the receiver is "
            f"back)"))
    if m.awaiting_funds:
        # No threshold: a held payout is money a payee waits for until the payer tops up.
        found.append(Condition(
            AlertKind.AWAITING_FUNDS, Level.WARNING,
            f"{m.awaiting_funds} payout(s) awaiting funds: the paying account cannot cover "
            f"them; top it up and they go out in creation order"))
    return found + watchdog_conditions(m.open_findings, m.sending_paused, m.paused_reason)


def watchdog_conditions(
    open_findings: Mapping[str, int], sending_paused: bool, paused_reason: str
) -> list[Condition]:
    """Critical while a finding is unresolved (no threshold: one is one too many); a paused
    sender is a warning of its own (its cause, if a finding, is critical already)."""
    found = [
        Condition(kind, Level.CRITICAL,
                  f"{what}: {open_findings[name]} unresolved watchdog finding(s) "
                  f"(ListWatchdogFindings)")
        for name, (kind, what) in FINDING_ALERTS.items() if open_findings.get(name, 0) > 0
    ]
    if sending_paused:
        found.append(Condition(AlertKind.SENDING_PAUSED, Level.WARNING,
                               f"sending is paused: {paused_reason}"[:500]))
    return found


def level_of(found: list[Condition]) -> Level:
    return max((c.severity for c in found), default=Level.HEALTHY)
