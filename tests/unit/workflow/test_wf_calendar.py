"""The working-day calendar: official holidays, swapped working weekends, province overrides."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from mmis.common import calendar as cal

TZ = ZoneInfo("Asia/Shanghai")


def at(*args):
    return datetime(*args, tzinfo=TZ)


def test_official_holidays_and_swapped_weekends():
    assert not cal.is_workday(date(2026, 10, 1))  # National Day
    assert not cal.is_workday(date(2026, 9, 25))  # Mid-Autumn (Friday)
    assert cal.is_workday(date(2026, 9, 20))  # Sunday worked (调休)
    assert cal.is_workday(date(2026, 10, 10))  # Saturday worked (调休)
    assert not cal.is_workday(date(2026, 11, 21))  # ordinary Saturday
    assert cal.is_workday(date(2026, 11, 23))


def test_years_outside_the_package_fall_back_to_weekdays():
    assert cal.is_workday(date(2031, 3, 3))  # Monday
    assert not cal.is_workday(date(2031, 3, 2))  # Sunday


def test_province_overrides_win():
    c = cal.Calendar(holidays=frozenset({date(2026, 11, 23)}), workdays=frozenset({date(2026, 11, 22)}))
    assert not cal.is_workday(date(2026, 11, 23), calendar=c)
    assert cal.is_workday(date(2026, 11, 22), calendar=c)


def test_add_working_days_skips_the_national_day_week():
    # Wednesday 30 Sep + 1 working day: 1–7 Oct are holidays, Thu 8 Oct works
    assert cal.add_working_days(date(2026, 9, 30), 1) == date(2026, 10, 8)
    assert cal.add_working_days(date(2026, 10, 8), 2) == date(2026, 10, 10)  # Saturday worked
    assert cal.add_working_days(date(2026, 11, 20), 1) == date(2026, 11, 23)  # Fri → Mon
    assert cal.add_working_days(date(2026, 11, 21), 0) == date(2026, 11, 23)  # rest day → next workday


def test_add_working_time_keeps_the_time_of_day_and_skips_rest_days():
    # 5 working days from Friday 15:00 = next Friday 15:00
    assert cal.add_working_days_at(at(2026, 11, 20, 15), 5) == at(2026, 11, 27, 15)
    # from a Saturday: Monday counts in full
    assert cal.add_working_days_at(at(2026, 11, 21, 10), 1) == at(2026, 11, 24, 0)
    # 80 % of 5 working days = 4 days
    assert cal.add_working_days_at(at(2026, 11, 23, 9), Decimal("4.0")) == at(2026, 11, 27, 9)
    # across National Day: Wed 30 Sep 12:00 + 1 day = Thu 8 Oct 12:00
    assert cal.add_working_days_at(at(2026, 9, 30, 12), 1) == at(2026, 10, 8, 12)


def test_working_time_between_is_the_inverse_of_adding():
    start = at(2026, 9, 28, 9, 30)
    for days in (0, 1, 3, 5, 10):
        end = cal.add_working_days_at(start, days)
        assert cal.working_time_between(start, end) == timedelta(days=days)
    assert cal.working_time_between(at(2026, 11, 21), at(2026, 11, 23)) == timedelta(0)  # weekend
    assert cal.working_days_between(at(2026, 11, 20, 12), at(2026, 11, 23, 12)) == Decimal("1.00")
    assert cal.working_time_between(at(2026, 11, 23), at(2026, 11, 22)) == timedelta(0)


def test_limits_in_hours_and_calendar_days():
    start = at(2026, 11, 21, 10)
    assert cal.add_limit(start, 3, "hours") == at(2026, 11, 21, 13)
    assert cal.add_limit(start, 7, "days") == at(2026, 11, 28, 10)
    with pytest.raises(ValueError):
        cal.add_limit(start, 1, "weeks")
