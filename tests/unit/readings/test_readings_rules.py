"""VEE rules and estimates (DOMAIN.md §2.1, §2.3, §2.4) on plain values."""

from decimal import Decimal as D

import pytest

from mmis.readings import rules


def regs(total, **kw):
    return {"total": D(total), **{k: D(v) for k, v in kw.items()}}


def rules_of(v):
    return [f.rule for f in v.findings]


def test_plain_reading_is_valid_and_energy_uses_multiplier():
    v = rules.validate(
        start=regs("1234.56"), end=regs("1404.89"), multiplier=D(40), register_digits=6, days=30
    )
    assert v.ok and v.kwh == D("6813.20")


def test_first_reading_only_opens_a_period():
    assert rules.validate(start=None, end=regs("10"), multiplier=D(1), register_digits=6).ok


def test_zero_use_flags_and_escalates_after_three_periods():
    v = rules.validate(start=regs("100"), end=regs("100"), multiplier=D(1), register_digits=6, days=30)
    assert rules_of(v) == ["zero_use"] and "转用电检查" not in v.findings[0].detail
    v3 = rules.validate(
        start=regs("100"),
        end=regs("100"),
        multiplier=D(1),
        register_digits=6,
        days=30,
        previous_zero_periods=2,
    )
    assert "连续 3 期" in v3.findings[0].detail
    suspended = rules.validate(
        start=regs("100"), end=regs("100"), multiplier=D(1), register_digits=6, active=False
    )
    assert suspended.ok


def test_reverse_without_digits_is_an_exception():
    v = rules.validate(start=regs("500"), end=regs("499"), multiplier=D(1), register_digits=None, days=30)
    assert rules_of(v) == ["reverse"]


def test_plausible_rollover_is_valid_and_implausible_is_reverse():
    hist = dict(history_kwh=[D(270), D(300), D(330)], history_days=92)
    ok = rules.validate(
        start=regs("999850.25"),
        end=regs("120.75"),
        multiplier=D(1),
        register_digits=6,
        days=30,
        thresholds=rules.Thresholds(jump_factor=D(100)),
        **hist,
    )
    assert ok.ok and ok.energy["total"].rollover and ok.kwh == D("270.50")
    bad = rules.validate(
        start=regs("5000"), end=regs("4990"), multiplier=D(1), register_digits=6, days=30, **hist
    )
    assert rules_of(bad) == ["reverse"]
    unknown = rules.validate(
        start=regs("999850.25"), end=regs("120.75"), multiplier=D(1), register_digits=6, days=30
    )
    assert rules_of(unknown) == ["rollover"]


def test_jump_and_drop_against_the_baseline_with_configurable_k():
    hist = dict(history_kwh=[D(300), D(300), D(300)], history_days=90, days=30)
    jump = rules.validate(start=regs("0"), end=regs("601"), multiplier=D(1), register_digits=6, **hist)
    assert rules_of(jump) == ["jump"]
    assert rules.validate(start=regs("0"), end=regs("599"), multiplier=D(1), register_digits=6, **hist).ok
    drop = rules.validate(start=regs("0"), end=regs("149"), multiplier=D(1), register_digits=6, **hist)
    assert rules_of(drop) == ["drop"]
    k3 = rules.validate(
        start=regs("0"),
        end=regs("800"),
        multiplier=D(1),
        register_digits=6,
        thresholds=rules.DEFAULT_THRESHOLDS.merged({"jump_factor": D(3)}),
        **hist,
    )
    assert k3.ok


def test_tou_registers_must_balance_within_one_unit_per_register():
    start = regs("100", sharp="10", peak="30", flat="40", valley="20")
    ok = rules.validate(
        start=start,
        end=regs("200", sharp="20", peak="60", flat="80", valley="40.04"),
        multiplier=D(1),
        register_digits=6,
        tou=True,
    )
    assert ok.ok
    bad = rules.validate(
        start=start,
        end=regs("200", sharp="20", peak="60", flat="80", valley="41"),
        multiplier=D(1),
        register_digits=6,
        tou=True,
    )
    assert rules_of(bad) == ["tou_imbalance"]


def test_meter_fault_flags_and_demand_over_capacity():
    v = rules.validate(
        start=regs("0"), end=regs("10"), multiplier=D(1), register_digits=6, fault_flags=["voltage_loss"]
    )
    assert rules_of(v) == ["meter_fault"] and "失压" in v.findings[0].detail
    d = rules.validate(
        start=regs("0"),
        end=regs("10"),
        multiplier=D(40),
        register_digits=6,
        max_demand=D("11"),
        contract_capacity_kva=D(400),
    )
    assert rules_of(d) == ["demand_over"]


def test_estimate_of_the_domain_example_and_tou_split_balances():
    e = rules.estimate(
        start=regs("1000", sharp="100", peak="300", flat="400", valley="200"),
        history_kwh=[D(270), D(300), D(330)],
        history_days=92,
        days=30,
        multiplier=D(1),
        register_digits=6,
        tou_split={"sharp": D("0.1"), "peak": D("0.3"), "flat": D("0.4"), "valley": D("0.2")},
    )
    assert e.kwh == D(293) and e.registers["total"] == D(1293)
    assert sum(e.registers[n] for n in rules.TOU_REGISTERS) - D(1000) == D(293)
    assert e.registers["reactive"] is None


def test_estimate_wraps_at_register_digits_and_needs_history():
    e = rules.estimate(
        start=regs("999990"),
        history_kwh=[D(30)],
        history_days=30,
        days=30,
        multiplier=D(1),
        register_digits=6,
    )
    assert e.registers["total"] == D(20)
    with pytest.raises(Exception, match="history"):
        rules.estimate(
            start=regs("0"), history_kwh=[], history_days=0, days=30, multiplier=D(1), register_digits=6
        )
