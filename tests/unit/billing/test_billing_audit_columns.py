"""The audit rules over columns (`rules.audit_columns`, `rules.risk_scores`) flag exactly what
`rules.audit_bill` flags bill by bill, with the same messages and risk, under random facts and
random org settings (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mmis.billing import rules

CATEGORIES = ["residential", "general_ci", "large_industry", "agricultural", "other"]
optional_int = st.one_of(st.none(), st.integers(-(10**12), 10**12))
facts_st = st.builds(
    rules.BillFacts,
    usage_category=st.sampled_from(CATEGORIES),
    amount_fen=st.one_of(st.integers(-(10**6), 10**6), st.integers(-(10**13), 10**13), st.just(0)),
    energy_e4=st.one_of(st.just(0), st.integers(0, 10**12)),
    last_amount_fen=st.one_of(optional_int, st.just(0), st.integers(-1000, 1000)),
    last_year_amount_fen=st.one_of(optional_int, st.just(0)),
    last_energy_e4=st.one_of(st.none(), st.just(0), st.integers(0, 10**9)),
    estimated=st.booleans(),
    changed_in_period=st.booleans(),
    first_bill=st.booleans(),
    negative_line=st.booleans(),
    pf_hundredths=st.one_of(st.none(), st.integers(0, 100)),
    max_demand_e4=st.one_of(st.none(), st.integers(-(10**6), 10**9)),
    contract_demand_e4=st.one_of(st.none(), st.just(0), st.integers(1, 10**9)),
    basic_fen=st.one_of(st.just(0), st.integers(0, 10**6)),
)
pct = st.decimals(min_value=Decimal("-5"), max_value=Decimal("500"), places=3).map(str)
settings_st = st.fixed_dictionaries(
    {},
    optional={
        "change_last_month": st.fixed_dictionaries(
            {
                "enabled": st.booleans(),
                "params": st.fixed_dictionaries({"residential_pct": pct, "other_pct": pct}),
            }
        ),
        "change_last_year": st.fixed_dictionaries(
            {"enabled": st.booleans(), "params": st.fixed_dictionaries({"other_pct": pct})}
        ),
        "large_bill": st.fixed_dictionaries(
            {
                "params": st.dictionaries(
                    st.sampled_from(CATEGORIES),
                    st.decimals(min_value=0, max_value=10**9, places=3).map(str),
                )
            }
        ),
        "low_pf": st.fixed_dictionaries(
            {"params": st.fixed_dictionaries({"below": st.sampled_from(["0.7", "0.85", "0.9"])})}
        ),
        "demand_over": st.fixed_dictionaries(
            {
                "params": st.fixed_dictionaries(
                    {"ratio": st.decimals(min_value=0, max_value=3, places=4).map(str)}
                )
            }
        ),
        "zero_bill": st.fixed_dictionaries({"enabled": st.booleans()}),
        "new_customer": st.fixed_dictionaries({"enabled": st.booleans()}),
    },
)


def _columns(facts: list[rules.BillFacts]) -> rules.FactColumns:
    def col(name):
        return np.array(
            [rules.NONE if getattr(f, name) is None else getattr(f, name) for f in facts], np.int64
        )

    def flag(name):
        return np.array([getattr(f, name) for f in facts], bool)

    return rules.FactColumns(
        usage_category=[f.usage_category for f in facts],
        amount_fen=col("amount_fen"),
        energy_e4=col("energy_e4"),
        last_amount_fen=col("last_amount_fen"),
        last_year_amount_fen=col("last_year_amount_fen"),
        last_energy_e4=col("last_energy_e4"),
        estimated=flag("estimated"),
        changed_in_period=flag("changed_in_period"),
        first_bill=flag("first_bill"),
        negative_line=flag("negative_line"),
        pf_hundredths=col("pf_hundredths"),
        max_demand_e4=col("max_demand_e4"),
        contract_demand_e4=col("contract_demand_e4"),
        basic_fen=col("basic_fen"),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(facts_st, min_size=1, max_size=25), settings_st)
def test_columns_flag_what_the_scalar_rules_flag(facts, overrides):
    effective = rules.effective_rules(overrides)
    hits = rules.audit_columns(_columns(facts), effective)
    risks = rules.risk_scores(hits, np.array([f.amount_fen for f in facts], np.int64)).tolist()
    for i, f in enumerate(facts):
        expected = rules.audit_bill(f, effective)
        got = [rules.Flag(h.code, h.message(i), h.weight) for h in hits if h.mask[i]]
        assert got == expected, f
        assert risks[i] == rules.risk_score(expected, f.amount_fen)


@st.composite
def at_the_edges(draw):
    """Bills whose change against last month / year sits on or next to a threshold, demand next to
    the contract ratio and amounts next to a large-bill limit."""
    ref = draw(st.integers(1, 100_000)) * draw(st.sampled_from([1, -1, 100]))
    k = draw(st.sampled_from([-50, -30, 30, 50, 0, 100]))
    amount = ref + abs(ref) * k // 100 + draw(st.sampled_from([-1, 0, 1]))
    cd = draw(st.integers(1, 10**6))
    md = cd * 105 // 100 + draw(st.sampled_from([-1, 0, 1]))
    return rules.BillFacts(
        usage_category=draw(st.sampled_from(CATEGORIES)),
        amount_fen=draw(st.sampled_from([amount, 200000 + draw(st.sampled_from([-1, 0, 1]))])),
        energy_e4=1,
        last_amount_fen=ref,
        last_year_amount_fen=ref,
        max_demand_e4=md,
        contract_demand_e4=cd,
        pf_hundredths=draw(st.sampled_from([69, 70, 71])),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(at_the_edges(), min_size=1, max_size=25))
def test_columns_agree_at_the_thresholds(facts):
    test_columns_flag_what_the_scalar_rules_flag.hypothesis.inner_test(facts, {})


def test_rule_order_is_the_scalar_order():
    f = rules.BillFacts(
        "residential",
        -500,
        0,
        last_amount_fen=100,
        last_year_amount_fen=100,
        last_energy_e4=0,
        estimated=True,
        changed_in_period=True,
        first_bill=True,
        pf_hundredths=50,
        max_demand_e4=2000,
        contract_demand_e4=1000,
        basic_fen=10,
    )
    flagged = [x.code for x in rules.audit_bill(f, rules.effective_rules())]
    assert flagged == [c for c in rules.RULE_ORDER if c in flagged]
    assert len(flagged) == 9
