"""Settings of the programs, from the environment; bad values fail at start-up (ConfigError)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from payout_service.config import ConfigError
from payout_service.core.amounts import AmountError, parse_amount

DEFAULT_MAX_BATCH_ITEMS = 500


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


@dataclass(frozen=True)
class WebhookSettings:
    urls: tuple[str, ...] = ()
    secret: str = ""
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    timeout_seconds: float = 10.0

    def __repr__(self) -> str:
        # Never let the secret reach a log line through a repr.
        return f"WebhookSettings(urls={self.urls!r}, secret=<{len(self.secret)} chars>)"


@dataclass(frozen=True)
class ProgramSettings:
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    thresholds: AlertThresholds = AlertThresholds()
    webhooks: WebhookSettings = WebhookSettings()
    scheduler_interval: float = 30.0
    settle_interval: float = 5.0
    alert_interval: float = 30.0
    outbox_interval: float = 1.0
    reconcile_interval: float = 3600.0
    # Events of payouts settled longer ago than this move to the archive (migration 060);
    # 0 keeps every event in payout_events.
    events_retention_days: float = 400.0
    events_retention_interval: float = 3600.0


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value < minimum:  # NaN or below the minimum
        raise ConfigError(f"{name} must be a number of at least {minimum}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _xlm(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_amount(raw)
    except AmountError as err:
        raise ConfigError(f"{name} {err}, got {raw!r}") from None


def max_batch_items(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return _integer(env, "PAYOUTS_MAX_BATCH_ITEMS", DEFAULT_MAX_BATCH_ITEMS, minimum=1)


def load_thresholds(env: Mapping[str, str]) -> AlertThresholds:
    warning = _number(env, "PAYOUTS_ALERT_FAILURE_RATE", 0.10)
    critical = _number(env, "PAYOUTS_ALERT_FAILURE_RATE_CRITICAL", 0.25)
    delay = _number(env, "PAYOUTS_ALERT_DELAY_SECONDS", 900.0)
    delay_critical = _number(env, "PAYOUTS_ALERT_DELAY_SECONDS_CRITICAL", 3600.0)
    if warning > 1 or critical > 1:
        raise ConfigError("PAYOUTS_ALERT_FAILURE_RATE(_CRITICAL) must be between 0 and 1")
    if critical < warning:
        raise ConfigError(
            "PAYOUTS_ALERT_FAILURE_RATE_CRITICAL must not be below PAYOUTS_ALERT_FAILURE_RATE"
        )
    if delay_critical < delay:
        raise ConfigError(
            "PAYOUTS_ALERT_DELAY_SECONDS_CRITICAL must not be below PAYOUTS_ALERT_DELAY_SECONDS"
        )
    return AlertThresholds(
        failure_rate_warning=warning,
        failure_rate_critical=critical,
        pending_count=_integer(env, "PAYOUTS_ALERT_PENDING_COUNT", 50),
        delay_seconds_warning=delay,
        delay_seconds_critical=delay_critical,
        amount_24h_stroops=_xlm(env, "PAYOUTS_ALERT_AMOUNT_24H", 10_000 * 10_000_000),
    )


def load_webhooks(env: Mapping[str, str]) -> WebhookSettings:
    urls = tuple(u.strip() for u in env.get("PAYOUTS_WEBHOOK_URLS", "").split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"PAYOUTS_WEBHOOK_URLS entry {url!r} must be an http(s) URL")
    secret = env.get("PAYOUTS_WEBHOOK_SECRET", "")
    if urls and not secret:
        raise ConfigError("PAYOUTS_WEBHOOK_SECRET is required when PAYOUTS_WEBHOOK_URLS is set")
    base = _number(env, "PAYOUTS_WEBHOOK_BACKOFF_SECONDS", 1.0, minimum=0.001)
    cap = _number(env, "PAYOUTS_WEBHOOK_MAX_BACKOFF_SECONDS", 300.0, minimum=0.001)
    return WebhookSettings(
        urls=urls, secret=secret, backoff_base_seconds=base, backoff_max_seconds=max(cap, base),
        timeout_seconds=_number(env, "PAYOUTS_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1),
    )


def load_program_settings(env: Mapping[str, str] | None = None) -> ProgramSettings:
    env = os.environ if env is None else env
    return ProgramSettings(
        max_batch_items=max_batch_items(env),
        thresholds=load_thresholds(env),
        webhooks=load_webhooks(env),
        scheduler_interval=_number(env, "PAYOUTS_SCHEDULER_INTERVAL_SECONDS", 30.0, minimum=0.01),
        settle_interval=_number(env, "PAYOUTS_SETTLE_INTERVAL_SECONDS", 5.0, minimum=0.01),
        alert_interval=_number(env, "PAYOUTS_ALERT_INTERVAL_SECONDS", 30.0, minimum=0.01),
        outbox_interval=_number(env, "PAYOUTS_OUTBOX_INTERVAL_SECONDS", 1.0, minimum=0.01),
        reconcile_interval=_number(env, "PAYOUTS_RECONCILE_INTERVAL_SECONDS", 3600.0,
                                   minimum=0.01),
        events_retention_days=_number(env, "PAYOUTS_EVENTS_RETENTION_DAYS", 400.0),
        events_retention_interval=_number(env, "PAYOUTS_EVENTS_RETENTION_INTERVAL_SECONDS",
                                          3600.0, minimum=0.01),
    )
