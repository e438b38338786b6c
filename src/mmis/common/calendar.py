"""Working-day calendar (工作日历): official Chinese holidays and swapped working weekends (调休),
with per-province overrides. Pure: no clock, no Django; every date and time is passed in.

Working time is counted in whole working days: the time of a datetime that falls on a working
day counts, the time on a rest day does not. So "2 working days from Friday 15:00" is Tuesday
15:00, and "1 working day from Saturday 10:00" is Tuesday 00:00 (Monday counts in full).

Years the `chinese_calendar` package does not know yet fall back to Monday–Friday; a province
fills the gap (or corrects a local holiday) with explicit overrides in `Calendar`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import chinese_calendar

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Calendar:
    """A province's calendar: the official one, corrected by `holidays` (rest days) and
    `workdays` (extra working days)."""

    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)

    def is_workday(self, day: date) -> bool:
        return is_workday(day, calendar=self)


OFFICIAL = Calendar()


def is_workday(day: date, *, calendar: Calendar | None = None) -> bool:
    """True on a working day: Monday–Friday unless an official holiday, plus swapped working
    weekends (调休); the province's overrides win."""
    cal = calendar or OFFICIAL
    if day in cal.workdays:
        return True
    if day in cal.holidays:
        return False
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # year not covered by the package yet
        return day.weekday() < 5


def next_workday(day: date, *, calendar: Calendar | None = None) -> date:
    """`day` itself if it is a working day, else the next one."""
    while not is_workday(day, calendar=calendar):
        day += DAY
    return day


def add_working_days(start: date, days: int, *, calendar: Calendar | None = None) -> date:
    """The date `days` working days after `start` (a rest-day start counts from the next working
    day). `add_working_days(fri, 1)` is the next Monday; 0 days → `start` moved to a working day."""
    if days < 0:
        raise ValueError("days must not be negative")
    day = next_workday(start, calendar=calendar)
    for _ in range(days):
        day = next_workday(day + DAY, calendar=calendar)
    return day


def _midnight(d: date, like: datetime) -> datetime:
    return datetime.combine(d, time(0), tzinfo=like.tzinfo)


def add_working_time(start: datetime, duration: timedelta, *, calendar: Calendar | None = None) -> datetime:
    """`start` plus `duration` of working time (time on rest days does not count)."""
    if duration < timedelta(0):
        raise ValueError("duration must not be negative")
    current = start
    left = duration
    while True:
        day = current.date()
        if not is_workday(day, calendar=calendar):
            current = _midnight(next_workday(day, calendar=calendar), start)
            continue
        day_end = _midnight(day + DAY, start)
        available = day_end - current
        if left <= available:
            return current + left
        left -= available
        current = day_end


def add_working_days_at(
    start: datetime, days: Decimal | int | float, *, calendar: Calendar | None = None
) -> datetime:
    """`start` plus a (possibly fractional) number of working days; 0.8 × 5 days = 4 days."""
    return add_working_time(start, timedelta(days=float(days)), calendar=calendar)


def working_time_between(start: datetime, end: datetime, *, calendar: Calendar | None = None) -> timedelta:
    """Working time inside [start, end); zero when end ≤ start."""
    if end <= start:
        return timedelta(0)
    total = timedelta(0)
    current = start
    while current < end:
        day = current.date()
        day_end = _midnight(day + DAY, start)
        chunk_end = min(day_end, end)
        if is_workday(day, calendar=calendar):
            total += chunk_end - current
        current = chunk_end
    return total


def working_days_between(start: datetime, end: datetime, *, calendar: Calendar | None = None) -> Decimal:
    """Working time inside [start, end) in days, to 2 decimals."""
    t = working_time_between(start, end, calendar=calendar)
    return (Decimal(t.total_seconds()) / Decimal(86400)).quantize(Decimal("0.01"))


def add_limit(
    start: datetime, value: Decimal | int | float, unit: str, *, calendar: Calendar | None = None
) -> datetime:
    """A time limit from `start`: unit `working_days`, `days` (calendar) or `hours` (clock)."""
    if unit == "working_days":
        return add_working_days_at(start, value, calendar=calendar)
    if unit == "days":
        return start + timedelta(days=float(value))
    if unit == "hours":
        return start + timedelta(hours=float(value))
    raise ValueError(f"unknown time-limit unit {unit!r}")


def elapsed(start: datetime, end: datetime, unit: str, *, calendar: Calendar | None = None) -> timedelta:
    """Time that counts against a limit of `unit` between start and end."""
    if unit == "working_days":
        return working_time_between(start, end, calendar=calendar)
    return max(end - start, timedelta(0))
