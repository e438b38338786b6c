"""Late fee (§5.3), theft (§6.1), energy from registers (§2.1), estimates (§2.4), losses (§7.1)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from mmis.common.errors import InvalidInput
from mmis.rating.energy import billed_energy, estimate_kwh, replacement_energy
from mmis.rating.late_fee import late_fee, late_fee_from_json
from mmis.rating.losses import (
    add_loss,
    allocate_loss,
    transformer_loss_formula,
    transformer_loss_ratio,
    transformer_reactive_loss_formula,
)
from mmis.rating.theft import theft, theft_from_json


# --- §5.3 late fee ---------------------------------------------------------------------------
def test_residential_17_days() -> None:
    r = late_fee(
        principal=D("1000.00"),
        due_date=date(2026, 3, 15),
        paid_date=date(2026, 4, 1),
        customer_class="residential",
    )
    assert (r.days, r.amount) == (17, D("17.00"))


def test_non_residential_across_year_end() -> None:
    r = late_fee(
        principal=D("10000.00"),
        due_date=date(2025, 12, 20),
        paid_date=date(2026, 1, 10),
        customer_class="non_residential",
    )
    assert [(x.code, x.days, x.rate, x.amount) for x in r.lines] == [
        ("late_fee.current_year", 11, D("0.002"), D("220.00")),
        ("late_fee.cross_year", 10, D("0.003"), D("300.00")),
    ]
    assert r.amount == D("520.00")


def test_minimum_raises_amount_not_line() -> None:
    r = late_fee(
        principal=D("30.00"),
        due_date=date(2026, 3, 1),
        paid_date=date(2026, 3, 4),
        customer_class="residential",
    )
    assert r.lines[0].amount == D("0.09")
    assert r.amount == D("1.00")
    r0 = late_fee(
        principal=D("30.00"),
        due_date=date(2026, 3, 1),
        paid_date=date(2026, 3, 4),
        customer_class="residential",
        minimum=D(0),
    )
    assert r0.amount == D("0.09")


def test_partial_payments_each_portion_its_own_days() -> None:
    due = date(2026, 3, 10)
    first = late_fee(
        principal=D("4000.00"), due_date=due, paid_date=date(2026, 3, 20), customer_class="non_residential"
    )
    second = late_fee(
        principal=D("6000.00"), due_date=due, paid_date=date(2026, 3, 31), customer_class="non_residential"
    )
    assert (first.amount, second.amount) == (D("80.00"), D("252.00"))
    assert first.amount + second.amount == D("332.00")


def test_early_payment_has_no_fee() -> None:
    r = late_fee(
        principal=D("10"),
        due_date=date(2026, 3, 15),
        paid_date=date(2026, 3, 1),
        customer_class="residential",
    )
    assert (r.days, r.lines, r.amount) == (-14, (), D("0.00"))


def test_late_fee_errors_name_every_field() -> None:
    with pytest.raises(InvalidInput) as exc:
        late_fee_from_json(
            {"principal": "-1", "due_date": "2026-02-30", "paid_date": 5, "customer_class": "x"}
        )
    assert {e.path for e in exc.value.errors} == {"principal", "due_date", "paid_date", "customer_class"}


# --- §6.1 theft ------------------------------------------------------------------------------
def test_theft_lighting_estimate() -> None:
    r = theft(capacity_kw=D("2.5"), use="lighting", days=180, price=D("0.538"))
    assert (r.kwh, r.back_charge, r.penalty, r.total) == (D(2700), D("1452.60"), D("4357.80"), D("5810.40"))


def test_theft_power_estimate() -> None:
    r = theft(capacity_kw=D(10), use="power", price=D("0.65"))
    assert (r.kwh, r.back_charge, r.penalty, r.total) == (
        D(21600),
        D("14040.00"),
        D("42120.00"),
        D("56160.00"),
    )


def test_theft_from_meter_capacity() -> None:
    kw = 3 * D(220) * D("1.5") * 20 / 1000
    assert kw == D("19.8")


def test_theft_errors() -> None:
    with pytest.raises(InvalidInput) as exc:
        theft_from_json({"capacity_kw": "-2", "use": "heating", "days": -1, "price": "0"})
    assert {"capacity_kw", "use", "days", "price"} <= {e.path for e in exc.value.errors}


# --- §2.1 energy -----------------------------------------------------------------------------
def test_energy_multiplier() -> None:
    r = billed_energy(start_reading=D("1234.56"), end_reading=D("1404.89"), multiplier=D(40))
    assert (r.register_delta, r.rollover, r.kwh) == (D("170.33"), False, D("6813.2"))
    assert D(200) / 5 * (D(10000) / 100) == D(4000)


def test_energy_rollover() -> None:
    r = billed_energy(start_reading=D("999850.25"), end_reading=D("120.75"), register_digits=6)
    assert (r.register_delta, r.rollover) == (D("270.50"), True)


def test_energy_reverse_without_digits_is_an_error() -> None:
    with pytest.raises(InvalidInput) as exc:
        billed_energy(start_reading=D(10), end_reading=D(5))
    assert exc.value.errors[0].path == "end_reading"


def test_meter_replacement() -> None:
    kwh = replacement_energy(
        start_reading=D("1000.00"),
        old_final_reading=D("1200.50"),
        old_multiplier=D(40),
        new_initial_reading=D("0.00"),
        end_reading=D("35.25"),
        new_multiplier=D(80),
    )
    assert kwh == D("200.50") * 40 + D("35.25") * 80 == D("10840.00")


# --- §2.4 estimate ---------------------------------------------------------------------------
def test_estimate_293() -> None:
    assert estimate_kwh(history_kwh=[D(270), D(300), D(330)], history_days=92, days=30) == D(293)


def test_estimate_half_up() -> None:
    assert estimate_kwh(history_kwh=[D(1)], history_days=2, days=1) == D(1)  # 0.5 → 1


# --- §7.1 transformer loss -------------------------------------------------------------------
def test_transformer_loss_formula_857() -> None:
    loss = transformer_loss_formula(
        kwh=D(90000),
        no_load_kw=D("0.48"),
        load_loss_kw=D("3.65"),
        rated_kva=D(315),
        cos_phi=D("0.9"),
        hours=D(720),
    )
    assert loss == D(857)


def test_no_load_loss_with_zero_use() -> None:
    loss = transformer_loss_formula(
        kwh=D(0),
        no_load_kw=D("0.48"),
        load_loss_kw=D("3.65"),
        rated_kva=D(315),
        cos_phi=D("0.9"),
        hours=D(720),
    )
    assert loss == D(346)  # 345.6


def test_reactive_loss_and_ratio() -> None:
    q = transformer_reactive_loss_formula(
        kwh=D(0),
        no_load_current_pct=D("1.4"),
        impedance_voltage_pct=D(4),
        rated_kva=D(315),
        cos_phi=D("0.9"),
        hours=D(720),
    )
    assert q == D(3175)  # 1.4 % × 315 × 720 = 3175.2
    assert transformer_loss_ratio(kwh=D(90000), ratio=D("0.015")) == D(1350)


def test_loss_allocation_286_333_238() -> None:
    tou = {"peak": D(30000), "flat": D(35000), "valley": D(25000)}
    shares = allocate_loss(loss_kwh=D(857), tou_kwh=tou)
    assert shares == {"peak": D(286), "flat": D(333), "valley": D(238)}
    assert add_loss(tou_kwh=tou, loss_kwh=D(857)) == {"peak": D(30286), "flat": D(35333), "valley": D(25238)}


def test_loss_allocation_residue_goes_to_largest() -> None:
    shares = allocate_loss(loss_kwh=D(10), tou_kwh={"peak": D(1), "flat": D(1), "valley": D(1)})
    assert sum(shares.values()) == D(10)
    assert shares == {"peak": D(4), "flat": D(3), "valley": D(3)}
