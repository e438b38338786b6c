"""Seasonal baseline, metering changes inside a period and the file-change rule (DOMAIN.md §1,
§2.1, §2.3) on plain values, with worked figures."""

from datetime import date
from decimal import Decimal as D

import pytest

from mmis.common.errors import InvalidInput
from mmis.readings import rules


def regs(total, **kw):
    return {"total": D(total), **{k: D(v) for k, v in kw.items()}}


def rules_of(v):
    return [f.rule for f in v.findings]


# --- seasonal baseline ------------------------------------------------------------------------
RECENT = dict(history_kwh=[D(270), D(300), D(330)], history_days=92)  # 9.78 kWh/day


def test_baseline_is_the_recent_mean_unless_seasonal():
    b = rules.baseline(**RECENT, last_year_kwh=D(900), last_year_days=30)
    assert b.basis == "recent" and b.daily == D(900) / 92
    s = rules.baseline(**RECENT, last_year_kwh=D(900), last_year_days=30, seasonal=True)
    assert s.basis == "last_year" and s.daily == D(30)
    # a seasonal user without last year's month falls back to the recent mean
    assert rules.baseline(**RECENT, seasonal=True).basis == "recent"
    assert rules.baseline() is None


def test_irrigation_month_is_a_jump_for_a_plain_user_but_not_for_a_seasonal_one():
    # 1,500 kWh in 30 days = 50 kWh/day; recent 9.78/day (k=2 → limit 19.57); last July 30/day (limit 60)
    common = dict(
        start=regs("1000"),
        end=regs("2500"),
        multiplier=D(1),
        register_digits=6,
        days=30,
        last_year_kwh=D(900),
        last_year_days=30,
        **RECENT,
    )
    plain = rules.validate(**common)
    assert rules_of(plain) == ["jump"] and "近3期日均 9.78" in plain.findings[0].detail
    assert rules.validate(**common, seasonal=True).ok
    # and a seasonal month far above last year's is still a jump, measured against last year
    high = rules.validate(**{**common, "end": regs("3000")}, seasonal=True)  # 66.67/day > 60
    assert rules_of(high) == ["jump"] and "去年同期日均 30.00" in high.findings[0].detail


def test_seasonal_drop_against_last_year():
    # last year 30/day, this year 300 kWh in 30 days = 10/day < 30 / 2
    v = rules.validate(
        start=regs("1000"),
        end=regs("1300"),
        multiplier=D(1),
        register_digits=6,
        days=30,
        last_year_kwh=D(900),
        last_year_days=30,
        seasonal=True,
        **RECENT,
    )
    assert rules_of(v) == ["drop"]


# --- metering changes inside a period --------------------------------------------------------
MAR1, MAR11, MAR31 = date(2026, 3, 1), date(2026, 3, 11), date(2026, 3, 31)


def test_multiplier_change_without_a_reading_splits_pro_rata_by_days():
    # 1000.00 → 1300.00 over 30 days, ×40 for 10 days then ×60 for 20: 100 × 40 + 200 × 60
    parts = ((MAR1, MAR11, D(40)), (MAR11, MAR31, D(60)))
    assert rules.split_by_days(D(300), parts) == D(16000)
    assert rules.day_shares(D(300), parts) == [D(100), D(200)]
    # shares are 4-decimal half-up, the last takes the remainder: 100.00 over 3 + 3 + 1 days
    odd = (
        (date(2026, 3, 1), date(2026, 3, 4), D(1)),
        (date(2026, 3, 4), date(2026, 3, 7), D(1)),
        (date(2026, 3, 7), date(2026, 3, 8), D(1)),
    )
    assert rules.day_shares(D(100), odd) == [D("42.8571"), D("42.8571"), D("14.2858")]
    change = rules.MeteringChange(
        day=MAR11, old_meter=7, new_meter=7, old_multiplier=D(40), new_multiplier=D(60)
    )
    segs = rules.segments(
        start=regs("1000"),
        end=regs("1300"),
        start_date=MAR1,
        end_date=MAR31,
        multiplier=D(40),
        register_digits=6,
        changes=[change],
        meter=7,
    )
    assert len(segs) == 1 and rules.period_energy(segs, "total").kwh == D(16000)


def test_multiplier_change_read_at_the_change_splits_at_the_registers():
    # read 1050.00 at the change: 50 × 40 + 250 × 60 = 17,000 kWh
    change = rules.MeteringChange(
        day=MAR11,
        old_meter=7,
        new_meter=7,
        old_multiplier=D(40),
        new_multiplier=D(60),
        old_final=regs("1050"),
        new_initial=regs("1050"),
    )
    segs = rules.segments(
        start=regs("1000"),
        end=regs("1300"),
        start_date=MAR1,
        end_date=MAR31,
        multiplier=D(40),
        register_digits=6,
        changes=[change],
        meter=7,
    )
    assert [s.multiplier for s in segs] == [D(40), D(60)]
    assert rules.period_energy(segs, "total").kwh == D(17000)


def test_meter_replacement_energy_is_old_part_plus_new_part():
    # DOMAIN.md §2.1: (old final − start) × old multiplier + (end − new initial) × new multiplier
    # (5120.00 − 5000.00) × 40 + (80.50 − 0.50) × 60 = 4,800 + 4,800 = 9,600 kWh; TOU the same way
    change = rules.MeteringChange(
        day=MAR11,
        old_meter=7,
        new_meter=8,
        old_multiplier=D(40),
        new_multiplier=D(60),
        new_register_digits=6,
        old_final=regs("5120", peak="2060"),
        new_initial=regs("0.50", peak="0.20"),
    )
    segs = rules.segments(
        start=regs("5000", peak="2000"),
        end=regs("80.50", peak="40.20"),
        start_date=MAR1,
        end_date=MAR31,
        multiplier=D(40),
        register_digits=6,
        changes=[change],
        meter=7,
    )
    assert [s.meter for s in segs] == [7, 8]
    assert rules.period_energy(segs, "total").kwh == D(9600)
    assert rules.period_energy(segs, "peak").kwh == D(60) * 40 + D(40) * 60
    assert rules.period_energy(segs, "valley") is None  # not on the registers
    v = rules.validate(
        start=regs("5000"), end=regs("80.50"), multiplier=D(60), register_digits=6, days=30, segs=segs
    )
    assert v.ok and v.kwh == D(9600)
    # without the segments the same registers look like a reversed meter
    assert rules_of(
        rules.validate(start=regs("5000"), end=regs("80.50"), multiplier=D(60), register_digits=None, days=30)
    ) == ["reverse"]


def test_replacement_without_its_readings_cannot_be_split():
    change = rules.MeteringChange(
        day=MAR11, old_meter=7, new_meter=8, old_multiplier=D(1), new_multiplier=D(1)
    )
    with pytest.raises(InvalidInput, match="final and the new meter's initial"):
        rules.segments(
            start=regs("5000"),
            end=regs("80"),
            start_date=MAR1,
            end_date=MAR31,
            multiplier=D(1),
            register_digits=6,
            changes=[change],
            meter=7,
        )


def test_changes_on_reading_days_belong_where_the_meter_says():
    read_then_replaced = rules.MeteringChange(
        day=MAR1, old_meter=7, new_meter=8, old_multiplier=D(1), new_multiplier=D(1)
    )
    # the start reading was on the old meter: the replacement that day is inside this period
    assert rules.changes_in_period([read_then_replaced], start_date=MAR1, end_date=MAR31, start_meter=7)
    # read on the new meter already: the replacement belonged to the period before
    assert not rules.changes_in_period([read_then_replaced], start_date=MAR1, end_date=MAR31, start_meter=8)
    on_end = rules.MeteringChange(
        day=MAR31, old_meter=7, new_meter=8, old_multiplier=D(1), new_multiplier=D(1)
    )
    assert rules.changes_in_period([on_end], start_date=MAR1, end_date=MAR31, end_meter=8)
    assert not rules.changes_in_period([on_end], start_date=MAR1, end_date=MAR31, end_meter=7)
    later = rules.MeteringChange(
        day=date(2026, 4, 2), old_meter=7, new_meter=7, old_multiplier=D(1), new_multiplier=D(2)
    )
    assert not rules.changes_in_period([later], start_date=MAR1, end_date=MAR31)


# --- file change without a closed work order ---------------------------------------------------
def fc(**kw):
    base = dict(start_meter=7, start_multiplier=D(40), end_meter=7, end_multiplier=D(40), changes=[])
    return rules.file_change_findings(**{**base, **kw})


def test_nothing_changed_is_fine():
    assert fc() == []


def test_meter_or_multiplier_changed_in_the_file_alone_is_held():
    f = fc(end_meter=8, meter_names={7: "M7", 8: "M8"})
    assert [x.rule for x in f] == ["file_change"] and "电能表 M7 → M8 无换表工单" in f[0].detail
    f = fc(end_multiplier=D(60))
    assert "综合倍率 40 → 60 无变更工单" in f[0].detail


def test_a_change_needs_an_archived_work_order():
    change = rules.MeteringChange(
        day=MAR11,
        old_meter=7,
        new_meter=8,
        old_multiplier=D(40),
        new_multiplier=D(60),
        work_order="JL2026031100001",
        closed=False,
    )
    f = fc(end_meter=8, end_multiplier=D(60), changes=[change])
    assert "工单 JL2026031100001 未归档" in f[0].detail
    closed = rules.MeteringChange(**{**{k: getattr(change, k) for k in change.__slots__}, "closed": True})
    assert fc(end_meter=8, end_multiplier=D(60), changes=[closed]) == []
    no_order = rules.MeteringChange(**{**{k: getattr(change, k) for k in change.__slots__}, "work_order": ""})
    assert "无工单" in fc(end_meter=8, end_multiplier=D(60), changes=[no_order])[0].detail
    # the recorded change explains 40 → 60 but not a second change to 80 made in the file alone
    f = fc(end_meter=8, end_multiplier=D(80), changes=[closed])
    assert "综合倍率 60 → 80 无变更工单" in f[0].detail


def test_a_reading_on_the_change_day_may_show_the_state_before_it():
    change = rules.MeteringChange(
        day=MAR31,
        old_meter=7,
        new_meter=7,
        old_multiplier=D(40),
        new_multiplier=D(60),
        work_order="JL1",
        closed=True,
    )
    assert fc(end_multiplier=D(40), changes=[change], end_date=MAR31) == []
    assert fc(end_multiplier=D(60), changes=[change], end_date=MAR31) == []
    assert fc(end_multiplier=D(40), changes=[change], end_date=date(2026, 4, 30)) != []


def test_a_tariff_change_needs_an_archived_work_order():
    alone = rules.TariffChange(day=MAR11, old_code="RES-TIER", new_code="COM-FLAT")
    f = fc(tariff_changes=[alone])
    assert [x.rule for x in f] == ["file_change"]
    assert f[0].detail == "档案变更未闭环: 2026-03-11 电价码 RES-TIER → COM-FLAT 无工单"
    open_order = rules.TariffChange(
        day=MAR11, old_code="RES-TIER", new_code="COM-FLAT", work_order="YK2026031100007"
    )
    assert (
        "电价码 RES-TIER → COM-FLAT 工单 YK2026031100007 未归档" in fc(tariff_changes=[open_order])[0].detail
    )
    archived = rules.TariffChange(
        day=MAR11, old_code="RES-TIER", new_code="COM-FLAT", work_order="YK2026031100007", closed=True
    )
    assert fc(tariff_changes=[archived]) == []
    # one finding for everything the period's file changes do not explain
    f = fc(end_multiplier=D(60), tariff_changes=[archived, rules.TariffChange(MAR31, "COM-FLAT", "")])
    assert len(f) == 1
    assert f[0].detail == "档案变更未闭环: 综合倍率 40 → 60 无变更工单; 2026-03-31 电价码 COM-FLAT → — 无工单"
