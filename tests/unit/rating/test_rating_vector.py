"""The vectorised engine equals the scalar engine to the fen (hypothesis), plus edge cases."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmis.common.periods import Period
from mmis.rating.engine import rate
from mmis.rating.tariff import TOU_PERIODS, Usage, parse_tariff
from mmis.rating.vector import UsageBatch, batch_from_usages, pf_hundredths, rate_batch


def dec(max_value: int, places: int, *, min_value: int = 0) -> st.SearchStrategy[str]:
    scale = 10**places
    return st.integers(min_value=min_value * scale, max_value=max_value * scale).map(
        lambda n: format(D(n).scaleb(-places), "f")
    )


price = st.integers(min_value=0, max_value=8).flatmap(lambda p: dec(12, p))
qty4 = st.integers(min_value=0, max_value=4).flatmap(lambda p: dec(200_000, p))


@st.composite
def bands(draw, price_key: str, pstrat):
    n = draw(st.integers(min_value=1, max_value=4))
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=60_000), min_size=n - 1, max_size=n - 1)))
    ups = [str(D(b) / 10) for b in bounds] + [None]
    return [{"up_to": u, price_key: draw(pstrat)} for u in ups]


bonus = st.none() | st.fixed_dictionaries({"min_persons": st.integers(1, 6), "tier1_extra": dec(500, 2)})


@st.composite
def tariffs(draw):
    kind = draw(st.sampled_from(["flat", "tiered", "tou"]))
    if kind == "flat":
        energy = {"type": "flat", "price": draw(price)}
    elif kind == "tiered":
        energy = {
            "type": "tiered",
            "basis": draw(st.sampled_from(["monthly", "annual"])),
            "tiers": draw(bands("price", price)),
        }
        b = draw(bonus)
        if b:
            energy["household_bonus"] = b
    else:
        periods = draw(st.lists(st.sampled_from(TOU_PERIODS), min_size=1, max_size=4, unique=True))
        energy = {"type": "tou", "prices": {p: draw(price) for p in periods}}
        if draw(st.booleans()):
            energy["basis"] = draw(st.sampled_from(["monthly", "annual"]))
            energy["tiers"] = draw(bands("increment", price))
            b = draw(bonus)
            if b:
                energy["household_bonus"] = b
    basic = draw(
        st.none()
        | st.fixed_dictionaries({"type": st.just("capacity"), "price": price, "kva": qty4})
        | st.fixed_dictionaries(
            {"type": st.just("demand_contract"), "price": price, "contract_kw": dec(5000, 2, min_value=1)}
        )
        | st.fixed_dictionaries(
            {"type": st.just("demand_actual"), "price": price, "transformer_kva": dec(5000, 2)}
        )
    )
    pf = draw(st.none() | st.fixed_dictionaries({"standard": st.sampled_from(["0.90", "0.85", "0.80"])}))
    codes = draw(
        st.lists(st.sampled_from(["renewable", "hydro", "reservoir", "rural"]), max_size=4, unique=True)
    )
    tariff = {
        "energy": energy,
        "basic": basic,
        "power_factor": pf,
        "funds": [{"code": c, "price": draw(price)} for c in codes],
    }
    components = []
    if draw(st.booleans()):
        floats = kind == "tou" and draw(st.booleans())
        comp = {
            "code": "agency_purchase",
            "price": draw(price),
            "floats_with_tou": floats,
            "pf_base": draw(st.booleans()),
        }
        if floats:
            comp["tou_ratios"] = {p: draw(dec(3, 2)) for p in energy["prices"]}
        components.append(comp)
    if components:
        tariff["components"] = components
    return parse_tariff(tariff)


@st.composite
def usages(draw, tariff):
    tou = None
    if tariff.energy.type == "tou":
        tou = {p: D(draw(qty4)) for p in tariff.energy.prices if draw(st.booleans())}
        kwh = sum(tou.values(), D(0))
    else:
        kwh = D(draw(qty4))
    return Usage(
        kwh=kwh,
        tou_kwh=tou,
        ytd_kwh=D(draw(qty4)),
        persons=draw(st.integers(0, 8)),
        kvarh=D(draw(qty4)),
        max_demand_kw=D(draw(dec(8000, 4))),
    )


@st.composite
def periods(draw):
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 400)))
    if draw(st.booleans()):
        start = start.replace(day=1)
        return Period.month(start.year, start.month)
    return Period(start, start + timedelta(days=draw(st.integers(1, 40))))


@st.composite
def cases(draw):
    tariff = draw(tariffs())
    n = draw(st.integers(1, 12))
    us = [draw(usages(tariff)) for _ in range(n)]
    ps = [draw(periods()) for _ in range(n)]
    return tariff, us, ps


def scalar_lines(result):
    return [(x.code, x.quantity, x.price, x.amount) for x in result.lines]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(cases())
def test_vector_equals_scalar_to_the_fen(case) -> None:
    tariff, us, ps = case
    got = rate_batch(tariff, batch_from_usages(us, ps))
    for i, (u, p) in enumerate(zip(us, ps, strict=True)):
        expected = rate(tariff, u, p)
        assert got.bill_lines(i) == scalar_lines(expected), (tariff.to_dict(), u, p)
        assert got.total_of(i) == expected.total
        if expected.power_factor is not None:
            assert (
                got.power_factor is not None
                and D(int(got.power_factor[i])).scaleb(-2) == expected.power_factor
            )


@settings(max_examples=100, deadline=None)
@given(tariffs(), st.lists(st.integers(0, 10**12), min_size=1, max_size=5))
def test_shared_whole_month_period(tariff, kwhs) -> None:
    march = Period(date(2026, 3, 1), date(2026, 4, 1))
    us = [
        Usage(
            kwh=D(k).scaleb(-4),
            tou_kwh={p: D(k).scaleb(-4) if j == 0 else D(0) for j, p in enumerate(tariff.energy.prices)}
            if tariff.energy.type == "tou"
            else None,
            kvarh=D(k // 3).scaleb(-4),
            max_demand_kw=D(k % 10**9).scaleb(-4),
        )
        for k in kwhs
    ]
    got = rate_batch(tariff, batch_from_usages(us, march))
    for i, u in enumerate(us):
        expected = rate(tariff, u, march)
        assert got.bill_lines(i) == scalar_lines(expected)
        assert got.total_of(i) == expected.total


def test_overflow_falls_back_to_exact_integers() -> None:
    tariff = parse_tariff(
        {
            "energy": {"type": "flat", "price": "9.87654321"},
            "basic": {"type": "capacity", "price": "99.12345678", "kva": "99999999.9999"},
            "power_factor": {"standard": "0.90"},
            "funds": [{"code": "f", "price": "0.00196875"}],
        }
    )
    u = Usage(kwh=D("123456789012.3456"), kvarh=D("98765432109.8765"))
    march = Period(date(2026, 3, 1), date(2026, 4, 1))
    part = Period(date(2026, 3, 3), date(2026, 3, 20))
    for p in (march, part):
        got = rate_batch(tariff, batch_from_usages([u, u], p))
        assert got.bill_lines(1) == scalar_lines(rate(tariff, u, p))


def test_pf_edges_exact() -> None:
    kwh = np.array([100000, 3, 0, 0, 1000, 300000], dtype=np.int64) * 10_000
    kvarh = np.array([48500, 4, 5, 0, 0, 98000], dtype=np.int64) * 10_000
    assert pf_hundredths(kwh, kvarh).tolist() == [90, 60, 0, 100, 100, 95]


def test_worked_bill_vectorised() -> None:
    tariff = parse_tariff(
        {
            "energy": {
                "type": "tou",
                "prices": {"sharp": "1.2750", "peak": "1.0200", "flat": "0.6000", "valley": "0.2280"},
            },
            "basic": {"type": "demand_contract", "price": "28", "contract_kw": "1000"},
            "power_factor": {"standard": "0.90"},
            "funds": [
                {"code": "hydro_project", "price": "0.00196875"},
                {"code": "reservoir_resettlement", "price": "0.0062"},
                {"code": "renewable", "price": "0.019"},
                {"code": "rural_grid_loan", "price": "0.02"},
            ],
        }
    )
    e4 = 10_000
    batch = UsageBatch(
        kwh=np.array([400_000 * e4]),
        tou_kwh={
            "sharp": np.array([20_000 * e4]),
            "peak": np.array([100_000 * e4]),
            "flat": np.array([120_000 * e4]),
            "valley": np.array([160_000 * e4]),
        },
        kvarh=np.array([250_000 * e4]),
        max_demand_kw=np.array([1200 * e4]),
    )
    got = rate_batch(tariff, batch)
    assert int(got.total[0]) == 29_949_200
    assert int(got.pf_rate_e4[0]) == 250
