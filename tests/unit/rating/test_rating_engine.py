"""The scalar engine against every worked figure of DOMAIN.md §3 and §4.4."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from mmis.common.errors import InvalidInput
from mmis.common.periods import Period
from mmis.rating.engine import band_split, rate, round_fen_ratio
from mmis.rating.tariff import parse_rate_request, parse_tariff, parse_usage

MARCH = Period(date(2026, 3, 1), date(2026, 4, 1))
SHANDONG = {
    "type": "tiered",
    "basis": "monthly",
    "tiers": [
        {"up_to": "210", "price": "0.5469"},
        {"up_to": "400", "price": "0.5969"},
        {"up_to": None, "price": "0.8469"},
    ],
}
ZHEJIANG = {
    "type": "tiered",
    "basis": "annual",
    "tiers": [
        {"up_to": "2760", "price": "0.538"},
        {"up_to": "4800", "price": "0.588"},
        {"up_to": None, "price": "0.838"},
    ],
}
TOU_GD = {
    "type": "tou",
    "prices": {"sharp": "1.2750", "peak": "1.0200", "flat": "0.6000", "valley": "0.2280"},
}
FUNDS = [
    {"code": "hydro_project", "price": "0.00196875"},
    {"code": "reservoir_resettlement", "price": "0.0062"},
    {"code": "renewable", "price": "0.019"},
    {"code": "rural_grid_loan", "price": "0.02"},
]


def bill(energy, usage, *, basic=None, pf=None, funds=(), period=MARCH, **extra):
    tariff = parse_tariff(
        {"energy": energy, "basic": basic, "power_factor": pf, "funds": list(funds), **extra}
    )
    return rate(tariff, parse_usage(usage, tariff=tariff), period)


def amounts(result):
    return {line.code: line.amount for line in result.lines}


# --- §3.2 residential tiers ------------------------------------------------------------------
def test_monthly_tiers_450_kwh() -> None:
    r = bill(SHANDONG, {"kwh": "450"})
    assert amounts(r) == {
        "energy.tier1": D("114.85"),
        "energy.tier2": D("113.41"),
        "energy.tier3": D("42.35"),
    }
    assert r.total == D("270.61")


def test_household_bonus_raises_first_band_only() -> None:
    energy = {**SHANDONG, "household_bonus": {"min_persons": 5, "tier1_extra": "100"}}
    r = bill(energy, {"kwh": "450", "persons": 5})
    assert [(x.code, x.quantity) for x in r.lines] == [
        ("energy.tier1", D(310)),
        ("energy.tier2", D(90)),
        ("energy.tier3", D(50)),
    ]
    assert amounts(r) == {"energy.tier1": D("169.54"), "energy.tier2": D("53.72"), "energy.tier3": D("42.35")}
    assert r.total == D("265.61")
    assert bill(energy, {"kwh": "450", "persons": 4}).total == D("270.61")
    assert bill(energy, {"kwh": "450"}).total == D("270.61")


@pytest.mark.parametrize(
    ("ytd", "kwh", "expected", "total"),
    [
        ("2600", "400", {"energy.tier1": D("86.08"), "energy.tier2": D("141.12")}, D("227.20")),
        ("4700", "300", {"energy.tier2": D("58.80"), "energy.tier3": D("167.60")}, D("226.40")),
        (
            "2700",
            "2200",
            {"energy.tier1": D("32.28"), "energy.tier2": D("1199.52"), "energy.tier3": D("83.80")},
            D("1315.60"),
        ),
    ],
)
def test_annual_tiers(ytd, kwh, expected, total) -> None:
    r = bill(ZHEJIANG, {"kwh": kwh, "ytd_kwh": ytd})
    assert amounts(r) == expected
    assert r.total == total


def test_annual_quantities_straddling_both_bounds() -> None:
    assert band_split(kwh=D(2200), ytd_kwh=D(2700), bounds=[D(2760), D(4800), None]) == [
        D(60),
        D(2040),
        D(100),
    ]


def test_monthly_basis_ignores_ytd() -> None:
    assert bill(SHANDONG, {"kwh": "450", "ytd_kwh": "9999"}).total == D("270.61")


# --- §3.3 TOU --------------------------------------------------------------------------------
def test_tou_guangdong_example() -> None:
    tou = {"sharp": "20000", "peak": "100000", "flat": "120000", "valley": "160000"}
    r = bill(TOU_GD, {"tou_kwh": tou})
    assert [line.code for line in r.lines] == ["energy.sharp", "energy.peak", "energy.flat", "energy.valley"]
    assert amounts(r) == {
        "energy.sharp": D("25500.00"),
        "energy.peak": D("102000.00"),
        "energy.flat": D("72000.00"),
        "energy.valley": D("36480.00"),
    }
    assert r.total == D("235980.00")


# --- §3.4 basic charge -----------------------------------------------------------------------
FLAT = {"type": "flat", "price": "0.6"}


def test_capacity_charge() -> None:
    r = bill(FLAT, {"kwh": "0"}, basic={"type": "capacity", "price": "25", "kva": "1000"})
    assert r.total == D("25000.00")


def test_demand_contract_excess() -> None:
    r = bill(
        FLAT,
        {"kwh": "0", "max_demand_kw": "1200"},
        basic={"type": "demand_contract", "price": "28", "contract_kw": "1000"},
    )
    assert [(x.code, x.quantity, x.price, x.amount) for x in r.lines] == [
        ("basic.demand", D(1050), D(28), D("29400.00")),
        ("basic.demand_excess", D(150), D(56), D("8400.00")),
    ]
    assert r.total == D("37800.00")


def test_demand_contract_within_tolerance_bills_contract() -> None:
    basic = {"type": "demand_contract", "price": "28", "contract_kw": "1000"}
    for m in ("0", "900", "1050"):
        r = bill(FLAT, {"kwh": "0", "max_demand_kw": m}, basic=basic)
        assert [(x.code, x.quantity) for x in r.lines] == [("basic.demand", D(1000))]


def test_demand_actual_floor() -> None:
    basic = {"type": "demand_actual", "price": "28", "transformer_kva": "1800"}
    assert bill(FLAT, {"kwh": "0", "max_demand_kw": "600"}, basic=basic).total == D("20160.00")
    assert bill(FLAT, {"kwh": "0", "max_demand_kw": "800"}, basic=basic).total == D("22400.00")


@pytest.mark.parametrize(
    ("days", "amount", "quantity"), [(15, D("12500.00"), D(500)), (14, D("11666.67"), D("466.6667"))]
)
def test_part_month_proration(days, amount, quantity) -> None:
    period = Period(date(2026, 3, 1), date(2026, 3, 1 + days))
    r = bill(FLAT, {"kwh": "0"}, basic={"type": "capacity", "price": "25", "kva": "1000"}, period=period)
    assert [(x.code, x.quantity, x.amount) for x in r.lines] == [("basic.capacity", quantity, amount)]


def test_proration_capped_at_one_month() -> None:
    period = Period(date(2026, 3, 10), date(2026, 4, 12))  # 33 days, not a calendar month
    r = bill(FLAT, {"kwh": "0"}, basic={"type": "capacity", "price": "25", "kva": "1000"}, period=period)
    assert r.total == D("25000.00")
    feb = Period(date(2026, 2, 1), date(2026, 3, 1))  # 28 days but a whole month
    assert bill(
        FLAT, {"kwh": "0"}, basic={"type": "capacity", "price": "25", "kva": "1000"}, period=feb
    ).total == D("25000.00")


def test_round_fen_ratio_is_exact_half_up() -> None:
    assert round_fen_ratio(D("0.15"), 1) == D("0.15")
    assert round_fen_ratio(D("0.45"), 30) == D("0.02")  # 0.015 → 0.02
    assert round_fen_ratio(D("-0.45"), 30) == D("-0.02")
    assert round_fen_ratio(D("350000"), 30) == D("11666.67")


# --- §3.5 power factor -----------------------------------------------------------------------
def test_pf_reduction_std_090() -> None:
    # base 205,000.00 (flat energy), 300,000 kWh, 98,000 kvarh → 0.9506 → 0.95 → −0.75 %
    r = bill(
        {"type": "flat", "price": "0.6833333333"},
        {"kwh": "300000", "kvarh": "98000"},
        pf={"standard": "0.90"},
    )
    assert r.power_factor == D("0.95")
    assert r.pf_adjustment_rate == D("-0.0075")
    base = next(x for x in r.lines if x.code == "pf_adjustment").quantity
    assert base == D("205000.00")
    assert amounts(r)["pf_adjustment"] == D("-1537.50")


def test_pf_edge_089976_rounds_to_090_no_adjustment() -> None:
    r = bill(FLAT, {"kwh": "100000", "kvarh": "48500"}, pf={"standard": "0.90"})
    assert r.power_factor == D("0.90")
    assert r.pf_adjustment_rate == D(0)
    assert amounts(r)["pf_adjustment"] == D("0.00")


def test_pf_std_085_at_092() -> None:
    # base 48,000.00, PF 0.92 under 0.85 → −0.80 % → −384.00
    r = bill({"type": "flat", "price": "0.48"}, {"kwh": "100000", "kvarh": "42000"}, pf={"standard": "0.85"})
    assert r.power_factor == D("0.92")
    assert amounts(r)["pf_adjustment"] == D("-384.00")


def test_pf_funds_never_adjusted() -> None:
    r = bill(
        FLAT,
        {"kwh": "1000", "kvarh": "1000"},
        pf={"standard": "0.90"},
        funds=[{"code": "renewable", "price": "0.019"}],
    )
    pf_line = next(x for x in r.lines if x.code == "pf_adjustment")
    assert pf_line.quantity == D("600.00")  # energy only, the 19.00 fund is outside the base


def test_pf_zero_kvarh_is_one() -> None:
    r = bill(FLAT, {"kwh": "1000", "kvarh": "0"}, pf={"standard": "0.80"})
    assert r.power_factor == D("1.00")
    assert r.pf_adjustment_rate == D("-0.013")


# --- §3.6 funds ------------------------------------------------------------------------------
def test_funds_per_line_rounding() -> None:
    r = bill(FLAT, {"kwh": "400000"}, funds=FUNDS)
    a = amounts(r)
    assert [a[f"fund.{f['code']}"] for f in FUNDS] == [D("787.50"), D("2480.00"), D("7600.00"), D("8000.00")]
    assert sum(a[f"fund.{f['code']}"] for f in FUNDS) == D("18867.50")


# --- §3.8 the whole worked bill --------------------------------------------------------------
def test_worked_bill_299492() -> None:
    r = bill(
        TOU_GD,
        {
            "tou_kwh": {"sharp": "20000", "peak": "100000", "flat": "120000", "valley": "160000"},
            "kvarh": "250000",
            "max_demand_kw": "1200",
        },
        basic={"type": "demand_contract", "price": "28", "contract_kw": "1000"},
        pf={"standard": "0.90"},
        funds=FUNDS,
    )
    assert [line.code for line in r.lines] == [
        "energy.sharp",
        "energy.peak",
        "energy.flat",
        "energy.valley",
        "basic.demand",
        "basic.demand_excess",
        "pf_adjustment",
        "fund.hydro_project",
        "fund.reservoir_resettlement",
        "fund.renewable",
        "fund.rural_grid_loan",
    ]
    assert r.power_factor == D("0.85")
    assert r.pf_adjustment_rate == D("0.025")
    pf_line = r.lines[6]
    assert (pf_line.quantity, pf_line.amount) == (D("273780.00"), D("6844.50"))
    assert r.total == D("299492.00")
    assert r.to_dict()["total"] == "299492.00"


# --- §4.4 correction by re-rating ------------------------------------------------------------
def test_correction_by_rerating_is_28_88() -> None:
    original = bill(SHANDONG, {"kwh": "380"})
    corrected = bill(SHANDONG, {"kwh": "420"})
    assert original.total == D("216.32")
    assert corrected.total == D("245.20")
    assert corrected.total - original.total == D("28.88")
    wrong = (D(40) * D("0.5969")).quantize(D("0.01"))
    assert wrong == D("23.88") != D("28.88")


# --- extensions ------------------------------------------------------------------------------
def test_tou_with_tier_increments() -> None:
    energy = {
        "type": "tou",
        "prices": {"peak": "0.568", "valley": "0.288"},
        "basis": "annual",
        "tiers": [
            {"up_to": "2760", "increment": "0"},
            {"up_to": "4800", "increment": "0.05"},
            {"up_to": None, "increment": "0.30"},
        ],
    }
    r = bill(energy, {"tou_kwh": {"peak": "1200", "valley": "1000"}, "ytd_kwh": "2700"})
    assert [(x.code, x.quantity, x.amount) for x in r.lines] == [
        ("energy.peak", D(1200), D("681.60")),
        ("energy.valley", D(1000), D("288.00")),
        ("energy.tier2_increment", D(2040), D("102.00")),
        ("energy.tier3_increment", D(100), D("30.00")),
    ]


def test_agency_purchase_components() -> None:
    components = [
        {
            "code": "agency_purchase",
            "price": "0.40",
            "floats_with_tou": True,
            "pf_base": True,
            "tou_ratios": {"peak": "1.7", "flat": "1", "valley": "0.38"},
        },
        {"code": "system_operation", "price": "0.0123", "floats_with_tou": False, "pf_base": False},
    ]
    energy = {"type": "tou", "prices": {"peak": "0.2", "flat": "0.2", "valley": "0.2"}}
    r = bill(
        energy,
        {"tou_kwh": {"peak": "100", "flat": "100", "valley": "100"}, "kvarh": "0"},
        pf={"standard": "0.90"},
        components=components,
    )
    codes = [line.code for line in r.lines]
    assert codes == [
        "energy.peak",
        "energy.flat",
        "energy.valley",
        "component.agency_purchase.peak",
        "component.agency_purchase.flat",
        "component.agency_purchase.valley",
        "component.system_operation",
        "pf_adjustment",
    ]
    a = amounts(r)
    assert a["component.agency_purchase.peak"] == D("68.00")
    assert a["component.agency_purchase.valley"] == D("15.20")
    assert a["component.system_operation"] == D("3.69")
    # pf base: energy 60.00 + agency 40.00+68.00+15.20 = 183.20; system operation excluded
    assert next(x for x in r.lines if x.code == "pf_adjustment").quantity == D("183.20")


# --- validation ------------------------------------------------------------------------------
def paths(exc: InvalidInput) -> set[str]:
    return {e.path for e in exc.errors}


def request(**over):
    base = {
        "period": {"start": "2026-03-01", "end": "2026-04-01"},
        "tariff": {"energy": FLAT, "basic": None, "power_factor": None, "funds": []},
        "usage": {"kwh": "10"},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("tariff", "usage", "expected"),
    [
        ({"energy": {"type": "nuclear"}}, {"kwh": "1"}, "tariff.energy.type"),
        (
            {"energy": {"type": "tiered", "basis": "weekly", "tiers": SHANDONG["tiers"]}},
            {"kwh": "1"},
            "tariff.energy.basis",
        ),
        (
            {"energy": {"type": "tiered", "basis": "monthly", "tiers": [{"up_to": "1", "price": "1"}]}},
            {"kwh": "1"},
            "tariff.energy.tiers[0].up_to",
        ),
        (
            {
                "energy": {
                    "type": "tiered",
                    "basis": "monthly",
                    "tiers": [{"up_to": None, "price": "1"}, {"up_to": None, "price": "2"}],
                }
            },
            {"kwh": "1"},
            "tariff.energy.tiers[0].up_to",
        ),
        (
            {"energy": {"type": "tiered", "basis": "monthly", "tiers": []}},
            {"kwh": "1"},
            "tariff.energy.tiers",
        ),
        ({"energy": {"type": "flat", "price": "-1"}}, {"kwh": "1"}, "tariff.energy.price"),
        (
            {"energy": {"type": "tou", "prices": {"noon": "1"}}},
            {"tou_kwh": {"noon": "1"}},
            "tariff.energy.prices.noon",
        ),
        ({"energy": {"type": "tou", "prices": {"peak": "1"}}}, {"kwh": "1"}, "usage.tou_kwh"),
        (
            {"energy": {"type": "tou", "prices": {"peak": "1"}}},
            {"tou_kwh": {"valley": "1"}},
            "usage.tou_kwh.valley",
        ),
        ({"energy": FLAT, "basic": {"type": "fixed", "price": "1"}}, {"kwh": "1"}, "tariff.basic.type"),
        (
            {"energy": FLAT, "basic": {"type": "demand_actual", "price": "1", "transformer_kva": "10"}},
            {"kwh": "1"},
            "usage.max_demand_kw",
        ),
        ({"energy": FLAT, "basic": {"type": "capacity", "price": "1"}}, {"kwh": "1"}, "tariff.basic.kva"),
        (
            {"energy": FLAT, "power_factor": {"standard": "0.95"}},
            {"kwh": "1", "kvarh": "1"},
            "tariff.power_factor.standard",
        ),
        ({"energy": FLAT, "power_factor": {"standard": "0.90"}}, {"kwh": "1"}, "usage.kvarh"),
        (
            {"energy": FLAT, "funds": [{"code": "a", "price": "1"}, {"code": "a", "price": "1"}]},
            {"kwh": "1"},
            "tariff.funds[1].code",
        ),
        ({"energy": FLAT}, {}, "usage.kwh"),
        ({"energy": FLAT}, {"kwh": "1", "ytd_kwh": "-1"}, "usage.ytd_kwh"),
        ({"energy": FLAT}, {"kwh": "1", "persons": -1}, "usage.persons"),
        ({}, {"kwh": "1"}, "tariff.energy"),
    ],
)
def test_invalid_rate_input(tariff, usage, expected) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_rate_request(request(tariff=tariff, usage=usage))
    assert expected in paths(exc.value), exc.value.errors


def test_period_end_before_start() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_rate_request(request(period={"start": "2026-04-01", "end": "2026-03-01"}))
    assert paths(exc.value) == {"period.end"}


def test_every_bad_field_is_named_at_once() -> None:
    bad = request(
        tariff={
            "energy": {"type": "flat", "price": 0.6},
            "power_factor": {"standard": "0.95"},
            "funds": [{"code": "", "price": "x"}],
        },
        usage={"kwh": "-5"},
    )
    with pytest.raises(InvalidInput) as exc:
        parse_rate_request(bad)
    assert {
        "tariff.energy.price",
        "tariff.power_factor.standard",
        "tariff.funds[0].code",
        "tariff.funds[0].price",
        "usage.kwh",
    } <= paths(exc.value)


@pytest.mark.parametrize(
    "tariff",
    [
        {
            "energy": SHANDONG | {"household_bonus": {"min_persons": 5, "tier1_extra": "100"}},
            "basic": None,
            "power_factor": None,
            "funds": [],
        },
        {
            "energy": TOU_GD,
            "basic": {"type": "demand_contract", "price": "28", "contract_kw": "1000"},
            "power_factor": {"standard": "0.90"},
            "funds": FUNDS,
        },
        {
            "energy": FLAT,
            "basic": {"type": "capacity", "price": "25.50", "kva": "315"},
            "power_factor": {"standard": "0.85"},
            "funds": [],
        },
        {
            "energy": FLAT,
            "basic": {"type": "demand_actual", "price": "28", "transformer_kva": "1800"},
            "power_factor": None,
            "funds": [],
        },
        {
            "energy": {
                "type": "tou",
                "prices": {"peak": "1.0200", "valley": "0.2280"},
                "basis": "annual",
                "tiers": [{"up_to": "2760", "increment": "0"}, {"up_to": None, "increment": "0.05"}],
                "household_bonus": {"min_persons": 5, "tier1_extra": "1200"},
            },
            "basic": None,
            "power_factor": None,
            "funds": [],
            "components": [
                {
                    "code": "agency_purchase",
                    "price": "0.4",
                    "floats_with_tou": True,
                    "pf_base": True,
                    "tou_ratios": {"peak": "1.7", "valley": "0.38"},
                }
            ],
        },
    ],
)
def test_tariff_round_trip(tariff) -> None:
    parsed = parse_tariff(tariff)
    assert parsed.to_dict() == tariff
    assert parse_tariff(parsed.to_dict()) == parsed
