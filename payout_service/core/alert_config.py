"""Seed 003's alert configuration, changeable at run time: the rules of a valid one. Pure.

The PAYOUTS_ALERT_* variables seed it on first start (config.py, ProgramsConfig.thresholds);
from then on the stored configuration is in force and PayoutAdminService/UpdateAlertConfig
changes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from payout_service.core.amounts import INT64_MAX
from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.health import AlertThresholds
from payout_service.core.webhooks import redacted

MAX_WEBHOOK_URLS = 10
MAX_URL_CHARS = 2048
MAX_DELAY_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class AlertConfig:
    enabled: bool = True
    thresholds: AlertThresholds = AlertThresholds()
    webhook_urls: tuple[str, ...] = ()
    version: int = 0  # 0 before it is stored
    updated_at: datetime | None = None
    updated_by: str = ""

    def as_document(self) -> dict[str, Any]:
        """For the audit trail (URLs reduced to scheme://host/path: no credentials)."""
        t = self.thresholds
        return {
            "enabled": self.enabled, "failure_rate_warning": t.failure_rate_warning,
            "failure_rate_critical": t.failure_rate_critical, "pending_count": t.pending_count,
            "delay_seconds_warning": t.delay_seconds_warning,
            "delay_seconds_critical": t.delay_seconds_critical,
            "amount_24h_stroops": t.amount_24h_stroops, "system_errors": t.system_errors,
            "webhook_urls": [redacted(u) for u in self.webhook_urls], "version": self.version,
        }


def url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS:
        return f"at most {MAX_URL_CHARS} characters"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def validate_alert_config(config: AlertConfig) -> AlertConfig:
    """The config, or ValidationFailed naming every bad `config.<field>`."""
    t = config.thresholds
    violations: list[FieldViolation] = []

    def check(name: str, ok: bool, description: str) -> None:
        if not ok:
            violations.append(FieldViolation(f"config.{name}", description))

    def fraction(value: float) -> bool:
        return math.isfinite(value) and 0 <= value <= 1

    def seconds(value: float) -> bool:
        return math.isfinite(value) and 0 <= value <= MAX_DELAY_SECONDS

    check("failure_rate_warning", fraction(t.failure_rate_warning), "must be between 0 and 1")
    check("failure_rate_critical", fraction(t.failure_rate_critical), "must be between 0 and 1")
    if fraction(t.failure_rate_warning) and fraction(t.failure_rate_critical):
        check("failure_rate_critical", t.failure_rate_critical >= t.failure_rate_warning,
              "must not be below failure_rate_warning")
    check("processing_delay_seconds_warning", seconds(t.delay_seconds_warning),
          f"must be between 0 and {MAX_DELAY_SECONDS} seconds")
    check("processing_delay_seconds_critical", seconds(t.delay_seconds_critical),
          f"must be between 0 and {MAX_DELAY_SECONDS} seconds")
    if seconds(t.delay_seconds_warning) and seconds(t.delay_seconds_critical):
        check("processing_delay_seconds_critical",
              t.delay_seconds_critical >= t.delay_seconds_warning,
              "must not be below processing_delay_seconds_warning")
    check("pending_count", 0 <= t.pending_count <= INT64_MAX, f"must be at most {INT64_MAX}")
    check("system_errors", 0 <= t.system_errors <= INT64_MAX, f"must be at most {INT64_MAX}")
    check("amount_24h", 0 <= t.amount_24h_stroops <= INT64_MAX,
          "must be between 0 and the largest Stellar amount")
    check("webhook_urls", len(config.webhook_urls) <= MAX_WEBHOOK_URLS,
          f"at most {MAX_WEBHOOK_URLS} URLs")
    check("webhook_urls", len(set(config.webhook_urls)) == len(config.webhook_urls),
          "lists a URL twice")
    for i, url in enumerate(config.webhook_urls[:MAX_WEBHOOK_URLS]):
        if problem := url_problem(url):
            violations.append(FieldViolation(f"config.webhook_urls[{i}]", problem))
    if violations:
        raise ValidationFailed(violations)
    return config
