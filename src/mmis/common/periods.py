"""Half-open periods `[start, end)`: days = end − start; March is 2026-03-01 to 2026-04-01."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"period end {self.end} is before its start {self.start}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def __contains__(self, day: date) -> bool:
        return self.start <= day < self.end

    def overlap(self, other: Period) -> Period | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Period(start, end) if start < end else None

    def is_whole_month(self) -> bool:
        return self.start.day == 1 and self.end == next_month_start(self.start)

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        start = date(year, month, 1)
        return cls(start, next_month_start(start))

    def split_at(self, day: date) -> tuple[Period, Period]:
        if not self.start < day < self.end:
            raise ValueError(f"{day} is not inside {self}")
        return Period(self.start, day), Period(day, self.end)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def next_month_start(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def month_periods(start: date, end: date) -> list[Period]:
    """The calendar months touching `[start, end)`, each cut to the range."""
    out = []
    cur = start
    while cur < end:
        nxt = min(next_month_start(cur), end)
        out.append(Period(cur, nxt))
        cur = nxt
    return out


def days_between(start: date, end: date) -> int:
    return (end - start).days


def add_days(day: date, n: int) -> date:
    return day + timedelta(days=n)
