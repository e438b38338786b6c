"""Pure rules of the catalog: version data checks, calendar coverage, resolution by date, overlap,
point application and comparison."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal

import pytest

from mmis.cli.demo.step_tariffs import TOU_CALENDAR, demo_catalog
from mmis.common.errors import InvalidInput
from mmis.common.periods import Period
from mmis.rating.engine import rate
from mmis.rating.tariff import Usage
from mmis.tariffs import rules


def _version(code: str, i: int = 0) -> dict:
    t = next(t for t in demo_catalog("37")["tariffs"] if t["code"] == code)
    return copy.deepcopy(t["versions"][i])


def _paths(exc: InvalidInput) -> dict[str, str]:
    return {e.path: e.message for e in exc.errors}


def test_every_demo_version_is_valid_and_round_trips():
    for t in demo_catalog("37")["tariffs"]:
        for v in t["versions"]:
            data = rules.parse_version_data(v)
            again = rules.parse_version_data(data.to_dict())
            assert again == data


def test_tiers_out_of_order_name_the_field():
    v = _version("RES-TIER")
    v["pricing"]["energy"]["tiers"][1]["up_to"] = "200"
    with pytest.raises(InvalidInput) as exc:
        rules.parse_version_data(v)
    assert "increasing order" in _paths(exc.value)["pricing.energy.tiers[1].up_to"]


def test_negative_price_is_refused():
    v = _version("AGR")
    v["pricing"]["energy"]["price"] = "-0.1"
    with pytest.raises(InvalidInput) as exc:
        rules.parse_version_data(v)
    assert _paths(exc.value) == {"pricing.energy.price": "must not be negative"}


def test_unknown_pf_standard_is_refused():
    v = _version("LI-2P")
    v["pricing"]["power_factor"]["standard"] = "0.95"
    with pytest.raises(InvalidInput) as exc:
        rules.parse_version_data(v)
    assert "unknown value '0.95'" in _paths(exc.value)["pricing.power_factor.standard"]


def test_unknown_fund_is_refused():
    v = _version("AGR")
    v["pricing"]["funds"].append({"code": "coffee", "price": "0.01"})
    with pytest.raises(InvalidInput) as exc:
        rules.parse_version_data(v)
    assert "unknown fund 'coffee'" in _paths(exc.value)["pricing.funds[2].code"]


def test_tou_period_used_by_calendar_needs_a_price():
    v = _version("GCI-TOU")
    del v["pricing"]["energy"]["prices"]["sharp"]
    del v["pricing"]["components"][0]["tou_ratios"]["sharp"]
    with pytest.raises(InvalidInput) as exc:
        rules.parse_version_data(v)
    assert "missing TOU period" in _paths(exc.value)["pricing.energy.prices.sharp"]


def test_tou_tariff_needs_a_calendar():
    v = _version("GCI-TOU")
    v["calendar"] = None
    with pytest.raises(InvalidInput) as exc:
        rules.parse_version_data(v)
    assert "calendar" in _paths(exc.value)


def test_calendar_gaps_overlaps_and_months():
    cal = copy.deepcopy(TOU_CALENDAR)
    cal["seasons"][0]["hours"][1] = {"from": 9, "to": 10, "period": "flat"}  # 8–9 missing
    cal["seasons"][1]["hours"][0] = {"from": 0, "to": 9, "period": "valley"}  # 8–9 twice
    cal["seasons"][1]["months"] = [7, 8]  # September in no season
    r = rules.Reader()
    assert rules.read_calendar(r, cal) is None
    msgs = {e.path: e.message for e in r.errors}
    assert msgs["calendar.seasons[0].hours"] == "missing TOU periods for hours 8–9"
    assert msgs["calendar.seasons[1].hours"] == "hours 8–9 are in more than one period"
    cal["seasons"][0]["hours"][1] = {"from": 8, "to": 10, "period": "flat"}
    cal["seasons"][1]["hours"][0] = {"from": 0, "to": 8, "period": "valley"}
    r = rules.Reader()
    rules.read_calendar(r, cal)
    assert {e.path: e.message for e in r.errors} == {"calendar.seasons": "months 9 are in no season"}


def test_calendar_grid_and_lookup():
    cal = rules.parse_calendar(TOU_CALENDAR)
    assert cal.period_at(month=8, hour=11) == "sharp"
    assert cal.period_at(month=3, hour=11) == "peak"
    assert cal.period_at(month=3, hour=3) == "valley"
    grid = cal.grid()
    assert len(grid) == 24 and grid[15] == (15, ["peak", "sharp"])
    assert cal.hours_per_period(cal.season_of(8)) == {"valley": 8, "flat": 9, "peak": 4, "sharp": 3}


def test_in_force_and_derived_end():
    spans = [
        rules.Span("a", date(2025, 1, 1)),
        rules.Span("b", date(2026, 1, 1)),
        rules.Span("c", date(2026, 7, 1)),
    ]
    assert rules.in_force(spans, date(2024, 12, 31)) is None
    assert rules.in_force(spans, date(2025, 1, 1)).key == "a"
    assert rules.in_force(spans, date(2025, 12, 31)).key == "a"
    assert rules.in_force(spans, date(2026, 6, 30)).key == "b"
    assert rules.in_force(spans, date(2030, 1, 1)).key == "c"
    assert rules.effective_to(spans, spans[0]) == date(2026, 1, 1)
    assert rules.effective_to(spans, spans[2]) is None


def test_overlap_rules():
    published = [rules.Span("2025版", date(2025, 1, 1)), rules.Span("2026版", date(2026, 1, 1))]
    drafts = [rules.Span("草稿", date(2027, 1, 1))]
    others = published + drafts
    assert rules.overlap_error(published=published, others=others, effective_from=date(2026, 7, 1)) is None
    same = rules.overlap_error(published=published, others=others, effective_from=date(2027, 1, 1))
    assert "also starts on 2027-01-01" in same
    inside = rules.overlap_error(published=published, others=others, effective_from=date(2025, 6, 1))
    assert "overlaps published version 2026版" in inside
    assert rules.overlap_error(published=[], others=[], effective_from=date(2020, 1, 1)) is None


def test_point_application_two_part_worked_bill():
    """DOMAIN §3.4 contract demand: 1,050 × 28 + 150 × 56."""
    data = rules.parse_version_data(_version("LI-2P"))
    t = rules.tariff_for_point(
        pricing=data.pricing,
        basic_prices=data.basic_prices,
        basic_mode="demand_contract",
        contract_demand_kw=Decimal(1000),
        pf_standard="",
    )
    assert t.power_factor is None
    usage = Usage(
        kwh=Decimal(400000),
        tou_kwh={
            "sharp": Decimal(20000),
            "peak": Decimal(100000),
            "flat": Decimal(120000),
            "valley": Decimal(160000),
        },
        max_demand_kw=Decimal(1200),
    )
    res = rate(t, usage, Period.month(2026, 3))
    assert res.amount_of("basic.demand") == Decimal("29400.00")
    assert res.amount_of("basic.demand_excess") == Decimal("8400.00")
    # agency purchase floats: peak 0.4012 × 1.7 = 0.68204 → 0.6820
    peak = next(line for line in res.lines if line.code == "component.agency_purchase.peak")
    assert peak.price == Decimal("0.6820")
    cap = rules.tariff_for_point(
        pricing=data.pricing,
        basic_prices=data.basic_prices,
        basic_mode="capacity",
        capacity_kva=Decimal(1000),
    )
    assert rate(cap, usage, Period.month(2026, 3)).amount_of("basic.capacity") == Decimal("25000.00")
    assert cap.power_factor.standard == "0.90"
    with pytest.raises(ValueError):
        rules.tariff_for_point(pricing=data.pricing, basic_prices={}, basic_mode="capacity")


def test_residential_worked_examples():
    data = rules.parse_version_data(_version("RES-TIER"))
    res = rate(data.pricing, Usage(kwh=Decimal(450), persons=5), Period.month(2026, 3))
    energy = sum(line.amount for line in res.lines if line.code.startswith("energy."))
    assert energy == Decimal("265.61")
    y = rules.parse_version_data(_version("RES-TIER-Y"))
    res = rate(y.pricing, Usage(kwh=Decimal(2200), ytd_kwh=Decimal(2700)), Period.month(2026, 3))
    assert sum(line.amount for line in res.lines if line.code.startswith("energy.")) == Decimal("1315.60")


def test_compare_highlights_changed_prices():
    a, b = _version("GCI-TOU", 0), _version("GCI-TOU", 1)
    diffs = rules.compare(a, b)
    changed = {d.path: d for d in diffs}
    d = changed["pricing.components[agency_purchase].price"]
    assert (d.left, d.right, d.change) == ("0.4012", "0.3876", "changed")
    assert d.ratio == Decimal("-0.0339")
    assert "pricing.energy.prices.peak" not in changed  # same T&D price
    same = rules.compare(a, a)
    assert [
        x.path for x in same if x.change != "same" and x.path not in ("label", "effective_from", "note")
    ] == []


def test_derive_tou_prices_domain_example():
    got = rules.derive_tou_prices(
        base=Decimal("0.6000"),
        ratios={
            "sharp": Decimal("2.125"),
            "peak": Decimal("1.7"),
            "flat": Decimal(1),
            "valley": Decimal("0.38"),
        },
    )
    assert got == {
        "sharp": Decimal("1.2750"),
        "peak": Decimal("1.0200"),
        "flat": Decimal("0.6000"),
        "valley": Decimal("0.2280"),
    }
