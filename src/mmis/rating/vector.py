"""Vectorised rating: many customers sharing one tariff, in scaled integers (NumPy int64).

Scales: energy, demand and capacity in 1/10,000 (`Q = 10_000`, the 4 decimals of
`DecimalField(16, 4)`), money in fen. A price is kept as an exact fraction n / 10^k, so a line's
amount in fen is `q · n / 10^(k+2)` reduced by their gcd and rounded half-up in integers:
`(2·x + d) // (2·d)` (away from zero for negative power-factor adjustments, like the Decimal path).
Every product is bounded before it is formed; a line whose product could pass 2^63 is computed
in Python integers (object arrays) instead, so nothing ever wraps.

The scalar engine (`mmis.rating.engine.rate`) is the reference; property tests prove this one
equal to it to the fen. Quantities are returned in 1/10,000 too (the power-factor line's
quantity, a sum of money, as fen × 100); a basic quantity that needs more than 4 decimals
(1.05 × a contract demand with 3–4 decimals, or a prorated one) is rounded half-up to 4, as the
scalar engine prints prorated quantities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from math import gcd

import numpy as np

from mmis.common.periods import Period
from mmis.rating.engine import DERIVED_PRICE_QUANTUM, proration, tier_bounds
from mmis.rating.power_factor import STANDARDS, adjustment_rate_for, pf_hundredths_exact
from mmis.rating.tariff import (
    TOU_PERIODS,
    CapacityBasic,
    DemandContractBasic,
    FlatEnergy,
    Tariff,
    TieredEnergy,
    TouEnergy,
    Usage,
)

Q = 10_000  # quantity scale: 1/10,000 kWh (kvarh, kW, kVA)
_INT64_SAFE = 2**62
_I64 = np.int64


# --- exact integer helpers -------------------------------------------------------------------
def _fraction(price: Decimal) -> tuple[int, int]:
    """price = n / 10^k → (n, k)."""
    sign, digits, exp = price.as_tuple()
    assert isinstance(exp, int)
    n = int("".join(map(str, digits)) or "0")
    return (-n if sign else n), -exp


def to_scaled(value: Decimal, scale: int = Q) -> int:
    """An exact Decimal as an integer count of 1/scale; refuses to drop digits."""
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more decimals than the vector engine's 1/{scale} scale")
    return int(scaled)


def _amounts(
    q: np.ndarray, price: Decimal, *, q_scale: int = Q, mult: np.ndarray | int = 1, div: int = 1
) -> np.ndarray:
    """round_half_up(q / q_scale × price × mult / div) in fen, for q ≥ 0 (int64 arrays)."""
    n, k = _fraction(price)
    num, den = n * 100, q_scale * div
    if k >= 0:
        den *= 10**k
    else:
        num *= 10 ** (-k)
    g = gcd(num, den)
    num, den = num // g, den // g
    if num == 0 or q.size == 0:
        return np.zeros(q.shape, dtype=_I64)
    q_max = int(q.max(initial=0))
    m_max = int(np.max(mult)) if isinstance(mult, np.ndarray) else mult
    if 2 * q_max * m_max * abs(num) + den < _INT64_SAFE:
        x = q * mult * num if num != 1 else q * mult
        if den == 1:
            return x if isinstance(x, np.ndarray) else np.asarray(x, dtype=_I64)
        return (2 * x + den) // (2 * den)
    # would overflow int64: exact Python integers
    xo = q.astype(object) * (mult.astype(object) if isinstance(mult, np.ndarray) else mult) * num
    return ((2 * xo + den) // (2 * den)).astype(_I64)


def _signed_round_div(x: np.ndarray, den: int) -> np.ndarray:
    """round_half_up(x / den), half away from zero, for int64 x of either sign."""
    a = np.abs(x)
    r = (2 * a + den) // (2 * den)
    return np.where(x < 0, -r, r)


def _band_split(kwh: np.ndarray, ytd: np.ndarray | None, bounds: list) -> list[np.ndarray]:
    """Per band, the part of (ytd, ytd + kwh] inside it; bounds may be scalars or arrays (bonus)."""
    out = []
    if ytd is None:  # monthly: bands of (0, kwh]
        lower: np.ndarray | int = 0
        for upper in bounds:
            if upper is None:
                out.append(np.maximum(kwh - lower, 0))
            else:
                upper = (
                    np.maximum(upper, lower)
                    if isinstance(upper, np.ndarray) or isinstance(lower, np.ndarray)
                    else max(upper, lower)
                )
                out.append(np.clip(kwh, lower, upper) - lower)
                lower = upper
        return out
    hi = ytd + kwh
    lower = 0
    for upper in bounds:
        bottom = np.maximum(ytd, lower)
        if upper is None:
            top = hi
        else:
            upper = np.maximum(upper, lower)
            top = np.minimum(hi, upper)
        out.append(np.maximum(top - bottom, 0))
        if upper is not None:
            lower = upper
    return out


def _pf_rates_e4(standard: str) -> np.ndarray:
    return np.array([to_scaled(adjustment_rate_for(standard, k), Q) for k in range(101)], dtype=_I64)


_PF_RATES_E4 = {s: _pf_rates_e4(s) for s in STANDARDS}


def pf_hundredths(kwh: np.ndarray, kvarh: np.ndarray) -> np.ndarray:
    """Round(kWh / √(kWh² + kvarh²), 2) half-up as hundredths; float estimate, exact at the edges."""
    a = kwh.astype(np.float64)
    b = kvarh.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = a / np.hypot(a, b) * 100.0 + 0.5
    x = np.nan_to_num(x, nan=100.5)  # 0/0 (no energy at all): kvarh 0 gives 1.00 below
    near = np.abs(x - np.rint(x)) < 1e-6
    k = np.floor(x).astype(_I64)
    k[kvarh == 0] = 100
    k[(kwh == 0) & (kvarh != 0)] = 0
    near &= (kvarh != 0) & (kwh != 0)
    for i in np.flatnonzero(near):  # rare: within 1e-8 of a rounding edge
        k[i] = pf_hundredths_exact(int(kwh[i]), int(kvarh[i]))
    return k


# --- inputs and outputs ----------------------------------------------------------------------
@dataclass
class UsageBatch:
    """Usage of n customers as int64 arrays in 1/10,000 (kWh, kvarh, kW); persons as counts.

    `proration_days` is min(days, 30) of each period, 30 for a whole calendar month (see
    `proration_days_of`). `basic_quantity` overrides the tariff's kva / contract_kw /
    transformer_kva per customer (customers with different capacities share one tariff).
    """

    kwh: np.ndarray
    ytd_kwh: np.ndarray | None = None
    persons: np.ndarray | None = None
    tou_kwh: dict[str, np.ndarray] | None = None
    kvarh: np.ndarray | None = None
    max_demand_kw: np.ndarray | None = None
    proration_days: np.ndarray | int = 30
    basic_quantity: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.kwh.shape[0])


@dataclass
class BatchResult:
    """Per line (rows) and customer (columns): quantities in 1/10,000 and amounts in fen."""

    codes: list[str]
    prices: list[Decimal | None]  # None for pf_adjustment: the rate is per customer
    quantities: np.ndarray  # int64 (lines, n)
    amounts: np.ndarray  # int64 (lines, n), fen
    total: np.ndarray  # int64 (n,), fen
    power_factor: np.ndarray | None = None  # hundredths
    pf_rate_e4: np.ndarray | None = None  # rate × 10,000

    def bill_lines(self, i: int) -> list[tuple[str, Decimal, Decimal, Decimal]]:
        """Customer i's listed lines as (code, quantity, price, amount): non-zero quantities only."""
        out = []
        for row, code in enumerate(self.codes):
            q = int(self.quantities[row, i])
            if q == 0:
                continue
            price = self.prices[row]
            if price is None:
                assert self.pf_rate_e4 is not None
                price = Decimal(int(self.pf_rate_e4[i])).scaleb(-4)
            out.append((code, Decimal(q).scaleb(-4), price, Decimal(int(self.amounts[row, i])).scaleb(-2)))
        return out

    def total_of(self, i: int) -> Decimal:
        return Decimal(int(self.total[i])).scaleb(-2)


def proration_days_of(period: Period) -> int:
    num, _ = proration(period)
    return num


def batch_from_usages(usages: Sequence[Usage], periods: Sequence[Period] | Period) -> UsageBatch:
    """Exact conversion of Decimal usages (≤ 4 decimals) into a batch."""
    n = len(usages)

    def arr(values) -> np.ndarray:
        return np.fromiter(values, dtype=_I64, count=n)

    tou = None
    if any(u.tou_kwh for u in usages):
        tou = {p: arr(to_scaled((u.tou_kwh or {}).get(p, Decimal(0))) for u in usages) for p in TOU_PERIODS}
    if isinstance(periods, Period):
        days: np.ndarray | int = proration_days_of(periods)
    else:
        days = arr(proration_days_of(p) for p in periods)
    return UsageBatch(
        kwh=arr(to_scaled(u.kwh) for u in usages),
        ytd_kwh=arr(to_scaled(u.ytd_kwh) for u in usages),
        persons=arr((u.persons or 0) for u in usages),
        tou_kwh=tou,
        kvarh=arr(to_scaled(u.kvarh or Decimal(0)) for u in usages),
        max_demand_kw=arr(to_scaled(u.max_demand_kw or Decimal(0)) for u in usages),
        proration_days=days,
    )


# --- the engine ------------------------------------------------------------------------------
class _Lines:
    def __init__(self) -> None:
        self.codes: list[str] = []
        self.prices: list[Decimal | None] = []
        self.q: list[np.ndarray] = []
        self.a: list[np.ndarray] = []
        self.pf_base: list[bool] = []

    def add(self, code: str, price: Decimal | None, q: np.ndarray, a: np.ndarray, pf_base: bool) -> None:
        self.codes.append(code)
        self.prices.append(price)
        self.q.append(q)
        self.a.append(a)
        self.pf_base.append(pf_base)


def _tier_bound_arrays(bounds_dec, bonus, persons: np.ndarray | None, n: int) -> list:
    plain = [None if b is None else to_scaled(b) for b in bounds_dec]
    if bonus is None or not plain or plain[0] is None or persons is None:
        return plain
    with_bonus = tier_bounds(list(bounds_dec), bonus, bonus.min_persons)
    b0 = np.where(persons >= bonus.min_persons, to_scaled(with_bonus[0]), plain[0])
    return [b0, *plain[1:]]


def _energy(tariff: Tariff, b: UsageBatch, out: _Lines) -> None:
    e = tariff.energy
    n = len(b)
    if isinstance(e, FlatEnergy):
        out.add("energy.flat", e.price, b.kwh, _amounts(b.kwh, e.price), True)
    elif isinstance(e, TieredEnergy):
        bounds = _tier_bound_arrays([t.up_to for t in e.tiers], e.household_bonus, b.persons, n)
        ytd = b.ytd_kwh if e.basis == "annual" and b.ytd_kwh is not None else None
        for i, (q, tier) in enumerate(zip(_band_split(b.kwh, ytd, bounds), e.tiers, strict=True)):
            out.add(f"energy.tier{i + 1}", tier.price, q, _amounts(q, tier.price), True)
    else:
        assert isinstance(e, TouEnergy)
        tou = b.tou_kwh or {}
        for p in TOU_PERIODS:
            if p in e.prices and p in tou:
                out.add(f"energy.{p}", e.prices[p], tou[p], _amounts(tou[p], e.prices[p]), True)
        if e.tiers is not None:
            bounds = _tier_bound_arrays([t.up_to for t in e.tiers], e.household_bonus, b.persons, n)
            ytd = b.ytd_kwh if e.basis == "annual" and b.ytd_kwh is not None else None
            for i, (q, tier) in enumerate(zip(_band_split(b.kwh, ytd, bounds), e.tiers, strict=True)):
                if i and tier.increment != 0:
                    out.add(
                        f"energy.tier{i + 1}_increment", tier.increment, q, _amounts(q, tier.increment), True
                    )
    for c in tariff.components:
        if c.floats_with_tou and c.tou_ratios is not None:
            tou = b.tou_kwh or {}
            for p in TOU_PERIODS:
                if p in tou and (not isinstance(e, TouEnergy) or p in e.prices):
                    price = (c.price * c.tou_ratios.get(p, Decimal(1))).quantize(
                        DERIVED_PRICE_QUANTUM, ROUND_HALF_UP
                    )
                    out.add(f"component.{c.code}.{p}", price, tou[p], _amounts(tou[p], price), c.pf_base)
        else:
            out.add(f"component.{c.code}", c.price, b.kwh, _amounts(b.kwh, c.price), c.pf_base)


def _basic(tariff: Tariff, b: UsageBatch, out: _Lines) -> None:
    basic = tariff.basic
    if basic is None:
        return
    n = len(b)
    # quantities at 1/1,000,000 so that 1.05 × D and 0.40 × C stay exact
    if isinstance(basic, CapacityBasic):
        base_q = b.basic_quantity if b.basic_quantity is not None else np.full(n, to_scaled(basic.kva), _I64)
        parts = [("basic.capacity", base_q * 100, basic.price)]
    else:
        m6 = (b.max_demand_kw if b.max_demand_kw is not None else np.zeros(n, _I64)) * 100
        if isinstance(basic, DemandContractBasic):
            d4 = (
                b.basic_quantity
                if b.basic_quantity is not None
                else np.full(n, to_scaled(basic.contract_kw), _I64)
            )
            ceiling6 = d4 * 105
            over = m6 > ceiling6
            parts = [
                ("basic.demand", np.where(over, ceiling6, d4 * 100), basic.price),
                ("basic.demand_excess", np.where(over, m6 - ceiling6, 0), 2 * basic.price),
            ]
        else:
            c4 = (
                b.basic_quantity
                if b.basic_quantity is not None
                else np.full(n, to_scaled(basic.transformer_kva), _I64)
            )
            parts = [("basic.demand", np.maximum(m6, c4 * 40), basic.price)]
    days = b.proration_days
    whole = isinstance(days, int) and days == 30
    for code, q6, price in parts:
        if whole:
            amount = _amounts(q6, price, q_scale=Q * 100)
            shown = (q6 + 50) // 100  # 4 decimals, half-up
        else:
            amount = _amounts(q6, price, q_scale=Q * 100, mult=days, div=30)
            shown = (2 * q6 * days + 3000) // 6000
            amount = np.where(shown == 0, 0, amount)
        out.add(code, price, shown, amount, True)


def rate_batch(tariff: Tariff, batch: UsageBatch) -> BatchResult:
    """Rate every customer of `batch` on `tariff`: the same lines and fen as `engine.rate`."""
    lines = _Lines()
    _energy(tariff, batch, lines)
    _basic(tariff, batch, lines)
    pf_value = pf_rate = None
    n = len(batch)
    if tariff.power_factor is not None:
        kvarh = batch.kvarh if batch.kvarh is not None else np.zeros(n, _I64)
        pf_value = pf_hundredths(batch.kwh, kvarh)
        pf_rate = _PF_RATES_E4[tariff.power_factor.standard][pf_value]
        base = np.zeros(n, _I64)
        for a, in_base in zip(lines.a, lines.pf_base, strict=True):
            if in_base:
                base += a
        if 2 * int(np.abs(base).max(initial=0)) * 14500 + Q < _INT64_SAFE:
            adj = _signed_round_div(base * pf_rate, Q)
        else:
            prod = base.astype(object) * pf_rate.astype(object)
            adj = np.array([(1 if v >= 0 else -1) * ((2 * abs(v) + Q) // (2 * Q)) for v in prod], dtype=_I64)
        lines.add("pf_adjustment", None, base * 100, adj, False)
    for f in tariff.funds:
        lines.add(f"fund.{f.code}", f.price, batch.kwh, _amounts(batch.kwh, f.price), False)
    if lines.a:
        amounts = np.vstack(lines.a)
        quantities = np.vstack([np.broadcast_to(q, (n,)) for q in lines.q])
        total = amounts.sum(axis=0)
    else:
        amounts = quantities = np.zeros((0, n), _I64)
        total = np.zeros(n, _I64)
    return BatchResult(lines.codes, lines.prices, quantities, amounts, total, pf_value, pf_rate)


def rate_totals(tariff: Tariff, batch: UsageBatch) -> np.ndarray:
    """Only the bill totals in fen (what a billing run needs to audit)."""
    return rate_batch(tariff, batch).total
