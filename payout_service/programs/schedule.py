"""The payout schedule: validation and next-run computation. Pure; zoneinfo only.

Local wall-clock times follow the timezone's rules: a time that does not exist on a
spring-forward day runs at the same instant shifted by the gap (02:30 -> 03:30 in Paris),
and a repeated time on a fall-back day runs at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from payout_service.core.validation import FieldViolation, ValidationFailed, quote


class Frequency(StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


@dataclass(frozen=True)
class Schedule:
    enabled: bool = False
    frequency: Frequency = Frequency.MONTHLY
    day_of_week: int = 0  # 0 = Sunday
    day_of_month: int = 1  # 1-28, so every month has it
    hour: int = 9
    minute: int = 0
    timezone: str = "UTC"
    minimum_threshold_stroops: int = 25 * 10_000_000
    next_run_at: datetime | None = None


def zone_problem(name: str) -> str | None:
    if not name:
        return "is required (an IANA name such as 'UTC' or 'Europe/Paris')"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{quote(name)} is not an IANA timezone name"
    return None


def validate_schedule(s: Schedule) -> Schedule:
    violations: list[FieldViolation] = []

    def check(name: str, ok: bool, description: str) -> None:
        if not ok:
            violations.append(FieldViolation(f"schedule.{name}", description))

    check("hour", 0 <= s.hour <= 23, "must be 0-23")
    check("minute", 0 <= s.minute <= 59, "must be 0-59")
    check("day_of_week", 0 <= s.day_of_week <= 6, "must be 0-6 (0 = Sunday)")
    if s.frequency == Frequency.MONTHLY:
        check("day_of_month", 1 <= s.day_of_month <= 28, "must be 1-28")
    else:
        check("day_of_month", 0 <= s.day_of_month <= 28, "must be 1-28")
    check("minimum_threshold", s.minimum_threshold_stroops >= 0, "must not be negative")
    if problem := zone_problem(s.timezone):
        violations.append(FieldViolation("schedule.timezone", problem))
    if violations:
        raise ValidationFailed(violations)
    return replace(s, day_of_month=s.day_of_month or 1)


def _sunday_based(d: date) -> int:
    return (d.weekday() + 1) % 7


def _add_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def _candidate_days(s: Schedule, start: date) -> list[date]:
    """Local dates on or after `start` on which the schedule fires, enough to find the next."""
    if s.frequency == Frequency.DAILY:
        return [start + timedelta(days=n) for n in range(3)]
    if s.frequency == Frequency.WEEKLY:
        ahead = (s.day_of_week - _sunday_based(start)) % 7
        first = start + timedelta(days=ahead)
        return [first, first + timedelta(days=7)]
    this_month = start.replace(day=1)
    months = [this_month, _add_month(this_month), _add_month(_add_month(this_month))]
    return [m.replace(day=s.day_of_month) for m in months if m.replace(day=s.day_of_month) >= start]


def next_run_after(s: Schedule, after: datetime) -> datetime:
    """The first scheduled instant strictly after `after` (aware), in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = ZoneInfo(s.timezone)
    local_start = after.astimezone(zone).date() - timedelta(days=1)
    for day in _candidate_days(s, local_start):
        at = datetime.combine(day, time(s.hour, s.minute), tzinfo=zone).astimezone(UTC)
        if at > after:
            return at
    raise AssertionError("no candidate day found")  # the candidates always cover a period
