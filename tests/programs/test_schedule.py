"""Next-run computation and schedule validation: pure, no database, several timezones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_service.core.errors import ValidationFailed
from payout_service.core.schedule import (
    Frequency,
    Schedule,
    next_run_after,
    validate_schedule,
)

D, W, M = Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


CASES = [
    # Daily, later today / already past today.
    (Schedule(frequency=D, hour=9), utc(2026, 1, 15, 8, 0), utc(2026, 1, 15, 9, 0)),
    (Schedule(frequency=D, hour=9), utc(2026, 1, 15, 9, 0), utc(2026, 1, 16, 9, 0)),
    # Paris is UTC+1 in winter, UTC+2 in summer.
    (Schedule(frequency=D, hour=9, timezone="Europe/Paris"), utc(2026, 1, 15, 7, 59),
     utc(2026, 1, 15, 8, 0)),
    (Schedule(frequency=D, hour=9, timezone="Europe/Paris"), utc(2026, 7, 15, 7, 30),
     utc(2026, 7, 16, 7, 0)),
    # Kolkata is UTC+5:30: 00:15 local on the 16th is 18:45 UTC on the 15th.
    (Schedule(frequency=D, hour=0, minute=15, timezone="Asia/Kolkata"), utc(2026, 3, 15, 12),
     utc(2026, 3, 15, 18, 45)),
    # New York: local date differs from the UTC date in the evening.
    (Schedule(frequency=W, day_of_week=1, hour=20, timezone="America/New_York"),
     utc(2026, 1, 13, 2, 0), utc(2026, 1, 20, 1, 0)),  # Mon 12th 21:00 EST has just passed
    (Schedule(frequency=W, day_of_week=0, hour=10), utc(2026, 1, 14, 0, 0),
     utc(2026, 1, 18, 10, 0)),  # next Sunday
    # Monthly: end of month rolls to the next month, December to January.
    (Schedule(frequency=M, day_of_month=28, hour=9), utc(2026, 1, 31, 12),
     utc(2026, 2, 28, 9)),
    (Schedule(frequency=M, day_of_month=1, hour=0), utc(2026, 12, 31, 23, 59),
     utc(2027, 1, 1, 0, 0)),
    (Schedule(frequency=M, day_of_month=28, hour=9), utc(2028, 2, 28, 9, 0),
     utc(2028, 3, 28, 9, 0)),  # leap year: 28th passed, next is March
    # Auckland (UTC+13 in January): the 1st at 09:00 local is the 31st at 20:00 UTC.
    (Schedule(frequency=M, day_of_month=1, hour=9, timezone="Pacific/Auckland"),
     utc(2026, 1, 20), utc(2026, 1, 31, 20, 0)),
    # Spring forward in Paris (29 March 2026, 02:00 -> 03:00): 02:30 does not exist.
    (Schedule(frequency=D, hour=2, minute=30, timezone="Europe/Paris"),
     utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 1, 30)),
    # Fall back in New York (1 Nov 2026): 01:30 happens twice; the first one is used.
    (Schedule(frequency=D, hour=1, minute=30, timezone="America/New_York"),
     utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 5, 30)),
]


@pytest.mark.parametrize("schedule,after,expected", CASES)
def test_next_run(schedule, after, expected):
    assert next_run_after(schedule, after) == expected


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]


@given(
    frequency=st.sampled_from(list(Frequency)), dow=st.integers(0, 6), dom=st.integers(1, 28),
    hour=st.integers(0, 23), minute=st.integers(0, 59), zone=st.sampled_from(ZONES),
    after=st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1)),
)
def test_next_run_is_the_first_matching_local_time_after(
    frequency, dow, dom, hour, minute, zone, after
):
    s = Schedule(frequency=frequency, day_of_week=dow, day_of_month=dom, hour=hour,
                 minute=minute, timezone=zone)
    after = after.replace(tzinfo=UTC)
    nxt = next_run_after(s, after)
    assert nxt > after
    period = {D: timedelta(days=1, hours=2), W: timedelta(days=7, hours=2),
              M: timedelta(days=31, hours=2)}[frequency]
    assert nxt - after <= period
    local = nxt.astimezone(ZoneInfo(zone))
    if frequency == W:
        assert (local.weekday() + 1) % 7 == dow
    if frequency == M:
        assert local.day == dom
    # Wall clock matches unless the time fell into a DST gap.
    if (local.hour, local.minute) != (hour, minute):
        assert abs((local.hour * 60 + local.minute) - (hour * 60 + minute)) <= 60


@pytest.mark.parametrize("field,changes", [
    ("schedule.hour", {"hour": 24}),
    ("schedule.minute", {"minute": 60}),
    ("schedule.day_of_week", {"day_of_week": 7}),
    ("schedule.day_of_month", {"day_of_month": 31}),
    ("schedule.timezone", {"timezone": "Mars/Olympus"}),
    ("schedule.timezone", {"timezone": ""}),
    ("schedule.minimum_threshold", {"minimum_threshold_stroops": -1}),
])
def test_bad_schedules_name_the_field(field, changes):
    with pytest.raises(ValidationFailed) as err:
        validate_schedule(Schedule(**changes))
    assert field in {v.field for v in err.value.violations}
