"""Pure billing rules: audit rules (DOMAIN §4.2), period splits (§1), 定比定量, nested meters,
and the correction difference of §4.4 (re-rate, do not reprice: 28.88, not 23.88)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from mmis.billing import rules
from mmis.billing.rules import BillFacts
from mmis.common.periods import Period
from mmis.rating.engine import rate
from mmis.rating.tariff import Usage, parse_tariff

DEFAULTS = rules.effective_rules()


def codes(facts, r=DEFAULTS):
    return {f.code for f in rules.audit_bill(facts, r)}


def test_clean_bill_raises_no_flag():
    assert (
        codes(BillFacts("residential", 10000, 1000000, last_amount_fen=9000, last_year_amount_fen=11000))
        == set()
    )


@pytest.mark.parametrize(
    ("category", "amount", "last", "flagged"),
    [
        ("residential", 15000, 10000, False),  # +50 %: not beyond ±50 %
        ("residential", 15001, 10000, True),
        ("residential", 4999, 10000, True),  # −50.01 %
        ("general_ci", 13000, 10000, False),  # +30 %
        ("general_ci", 13001, 10000, True),
        ("general_ci", 6999, 10000, True),
    ],
)
def test_change_against_last_month_thresholds(category, amount, last, flagged):
    assert ("change_last_month" in codes(BillFacts(category, amount, 1, last_amount_fen=last))) is flagged


def test_change_against_same_month_last_year():
    assert "change_last_year" in codes(BillFacts("general_ci", 20000, 1, last_year_amount_fen=10000))


def test_zero_negative_large_estimated_first_and_changes():
    assert "zero_bill" in codes(BillFacts("residential", 0, 0))
    assert "negative" in codes(BillFacts("residential", -100, 0))
    assert "negative" in codes(BillFacts("residential", 100, 0, negative_line=True))
    assert "large_bill" in codes(BillFacts("residential", 200001, 0))
    assert "large_bill" not in codes(BillFacts("residential", 200000, 0))
    assert "estimated" in codes(BillFacts("residential", 100, 1, estimated=True))
    assert "new_customer" in codes(BillFacts("residential", 100, 1, first_bill=True))
    assert "tariff_change" in codes(BillFacts("residential", 100, 1, changed_in_period=True))
    assert "low_pf" in codes(BillFacts("large_industry", 100, 1, pf_hundredths=69))
    assert "low_pf" not in codes(BillFacts("large_industry", 100, 1, pf_hundredths=70))
    over = BillFacts("large_industry", 100, 1, max_demand_e4=10510000, contract_demand_e4=10000000)
    assert "demand_over" in codes(over)
    ok = BillFacts("large_industry", 100, 1, max_demand_e4=10500000, contract_demand_e4=10000000)
    assert "demand_over" not in codes(ok)
    idle = BillFacts("large_industry", 2500000, 0, last_energy_e4=0, basic_fen=2500000)
    assert "basic_no_energy" in codes(idle)


def test_org_settings_override_and_disable_rules():
    r = rules.effective_rules(
        {"change_last_month": {"params": {"residential_pct": "20"}}, "zero_bill": {"enabled": False}}
    )
    assert "change_last_month" in codes(BillFacts("residential", 12100, 1, last_amount_fen=10000), r)
    assert "zero_bill" not in codes(BillFacts("residential", 0, 0), r)
    assert r["change_last_month"]["other_pct"] == "30"  # the rest of the defaults kept


def test_risk_orders_by_weight_and_size():
    flags = rules.audit_bill(BillFacts("residential", 0, 0, estimated=True), DEFAULTS)
    assert rules.risk_score(flags, 0) == rules.RULE_WEIGHTS["zero_bill"] + rules.RULE_WEIGHTS["estimated"]
    assert rules.risk_score([], 10**9) == 0


def test_split_period_and_pro_rata_energy():
    march = Period.month(2026, 3)
    segs = rules.split_period(march, [date(2026, 3, 16), date(2026, 3, 1), date(2026, 4, 1)])
    assert segs == [Period(date(2026, 3, 1), date(2026, 3, 16)), Period(date(2026, 3, 16), date(2026, 4, 1))]
    parts = rules.split_pro_rata(Decimal("450"), segs)
    assert parts == [Decimal("217.7419"), Decimal("232.2581")] and sum(parts) == 450
    assert rules.split_pro_rata(Decimal("1"), [march]) == [Decimal("1")]


def test_fixed_quantity_then_ratio():
    assert rules.split_mixed_use(kwh=Decimal(10000), fixed_kwh=Decimal(500), ratio=Decimal("0.2")) == (
        Decimal(500),
        Decimal(1900),
        Decimal(7600),
    )
    assert rules.split_mixed_use(kwh=Decimal(300), fixed_kwh=Decimal(500), ratio=Decimal("0.2"))[0] == 300


def test_nested_meters():
    assert rules.main_meter_energy(main_kwh=Decimal(1000), sub_kwh=[Decimal(300), Decimal(200)]) == 500
    with pytest.raises(rules.NegativeMainEnergy):
        rules.main_meter_energy(main_kwh=Decimal(100), sub_kwh=[Decimal(300)])


def test_due_date_and_bill_number():
    assert rules.due_date(issued_on=date(2026, 4, 3), payment_term_days=15) == date(2026, 4, 18)
    assert rules.bill_number(period_start=date(2026, 3, 1), point_id=42) == "B2026030000000042"


def test_correction_re_rates_the_whole_period_28_88():
    tariff = parse_tariff(
        {
            "energy": {
                "type": "tiered",
                "basis": "monthly",
                "tiers": [
                    {"up_to": "210", "price": "0.5469"},
                    {"up_to": "400", "price": "0.5969"},
                    {"up_to": None, "price": "0.8469"},
                ],
            }
        }
    )
    march = Period.month(2026, 3)
    original = rate(tariff, Usage(Decimal(380)), march)
    corrected = rate(tariff, Usage(Decimal(420)), march)
    assert (original.total, corrected.total) == (Decimal("216.32"), Decimal("245.20"))
    diff = rules.correction_lines(
        [(ln.code, ln.quantity, ln.amount) for ln in original.lines],
        [(ln.code, ln.quantity, ln.amount) for ln in corrected.lines],
    )
    assert diff == [
        ("energy.tier2", Decimal(20), Decimal("11.94")),
        ("energy.tier3", Decimal(20), Decimal("16.94")),
    ]
    assert sum(a for _, _, a in diff) == Decimal("28.88")  # repricing 40 kWh at band 2 would give 23.88
