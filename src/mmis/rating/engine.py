"""The scalar reference rating engine: rate(tariff, usage, period) → lines (spec/rating.md).

Decimal everywhere; every amount line is rounded ROUND_HALF_UP to the fen on its own and the
total is the sum of the rounded lines. The vectorised engine (`mmis.rating.vector`) is proven
equal to this one by property tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mmis.common.inputs import format_decimal
from mmis.common.money import money_str, round_fen
from mmis.common.periods import Period
from mmis.rating.power_factor import power_factor, rate_at
from mmis.rating.tariff import (
    TOU_PERIODS,
    CapacityBasic,
    DemandContractBasic,
    FlatEnergy,
    HouseholdBonus,
    Tariff,
    TieredEnergy,
    TouEnergy,
    Usage,
)

ZERO = Decimal(0)
DEMAND_TOLERANCE = Decimal("1.05")  # contract demand may be exceeded by 5 % without excess charge
DEMAND_ACTUAL_FLOOR = Decimal("0.40")  # actual-demand billing: at least 40 % of transformer capacity
DERIVED_PRICE_QUANTUM = Decimal("0.0001")  # floated TOU component prices (DOMAIN §3.3)
_Q4 = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Line:
    code: str
    quantity: Decimal
    price: Decimal
    amount: Decimal
    pf_base: bool = False  # does this line enter the power-factor base?

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "quantity": format_decimal(self.quantity),
            "price": str(self.price),
            "amount": money_str(self.amount),
        }


@dataclass(frozen=True, slots=True)
class RatingResult:
    lines: tuple[Line, ...]
    power_factor: Decimal | None
    pf_adjustment_rate: Decimal | None
    total: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": [line.to_dict() for line in self.lines],
            "power_factor": None if self.power_factor is None else f"{self.power_factor:.2f}",
            "pf_adjustment_rate": None
            if self.pf_adjustment_rate is None
            else format_decimal(self.pf_adjustment_rate),
            "total": money_str(self.total),
        }

    def amount_of(self, code: str) -> Decimal:
        return sum((line.amount for line in self.lines if line.code == code), ZERO)


# --- small pure pieces -----------------------------------------------------------------------
def line_amount(*, quantity: Decimal, price: Decimal) -> Decimal:
    return round_fen(quantity * price)


def round_fen_ratio(numerator: Decimal, denominator: int) -> Decimal:
    """numerator / denominator rounded half-up (away from zero) to the fen, exactly in integers."""
    sign, digits, exp = numerator.as_tuple()
    n = int("".join(map(str, digits)) or "0")
    assert isinstance(exp, int)
    # value = n * 10^exp / denominator; in fen: n * 10^(exp+2) / denominator
    if exp + 2 >= 0:
        num, den = n * 10 ** (exp + 2), denominator
    else:
        num, den = n, denominator * 10 ** (-(exp + 2))
    fen = (2 * num + den) // (2 * den)
    return Decimal(-fen if sign else fen).scaleb(-2)


def band_split(*, kwh: Decimal, bounds: list[Decimal | None], ytd_kwh: Decimal = ZERO) -> list[Decimal]:
    """The part of (ytd, ytd + kwh] falling in each band; bounds are upper bounds, the last None."""
    lo_use, hi_use = ytd_kwh, ytd_kwh + kwh
    out: list[Decimal] = []
    lower = ZERO
    for upper in bounds:
        top = hi_use if upper is None else min(hi_use, max(upper, lower))
        bottom = max(lo_use, lower)
        out.append(max(top - bottom, ZERO))
        if upper is not None:
            lower = max(upper, lower)
    return out


def tier_bounds(
    bounds: list[Decimal | None], bonus: HouseholdBonus | None, persons: int | None
) -> list[Decimal | None]:
    """Band upper bounds with the household bonus applied to the first band."""
    if bonus is None or persons is None or persons < bonus.min_persons or not bounds or bounds[0] is None:
        return list(bounds)
    return [bounds[0] + bonus.tier1_extra, *bounds[1:]]


def proration(period: Period) -> tuple[int, int]:
    """Basic-charge factor as (numerator, 30): 30/30 for a whole calendar month, else min(days, 30)/30."""
    if period.is_whole_month():
        return 30, 30
    return min(period.days, 30), 30


# --- energy ----------------------------------------------------------------------------------
def energy_lines(tariff: Tariff, usage: Usage) -> list[Line]:
    e = tariff.energy
    out: list[Line] = []
    if isinstance(e, FlatEnergy):
        out.append(
            Line("energy.flat", usage.kwh, e.price, line_amount(quantity=usage.kwh, price=e.price), True)
        )
    elif isinstance(e, TieredEnergy):
        bounds = tier_bounds([t.up_to for t in e.tiers], e.household_bonus, usage.persons)
        ytd = usage.ytd_kwh if e.basis == "annual" else ZERO
        for i, (q, tier) in enumerate(
            zip(band_split(kwh=usage.kwh, bounds=bounds, ytd_kwh=ytd), e.tiers, strict=True)
        ):
            out.append(
                Line(f"energy.tier{i + 1}", q, tier.price, line_amount(quantity=q, price=tier.price), True)
            )
    elif isinstance(e, TouEnergy):
        tou = usage.tou_kwh or {}
        for p in TOU_PERIODS:
            if p in tou:
                q, price = tou[p], e.prices[p]
                out.append(Line(f"energy.{p}", q, price, line_amount(quantity=q, price=price), True))
        if e.tiers is not None:
            bounds = tier_bounds([t.up_to for t in e.tiers], e.household_bonus, usage.persons)
            ytd = usage.ytd_kwh if e.basis == "annual" else ZERO
            split = band_split(kwh=usage.kwh, bounds=bounds, ytd_kwh=ytd)
            for i, (q, tier) in enumerate(zip(split, e.tiers, strict=True)):
                if i == 0 or tier.increment == 0:
                    continue
                amount = line_amount(quantity=q, price=tier.increment)
                out.append(Line(f"energy.tier{i + 1}_increment", q, tier.increment, amount, True))
    for c in tariff.components:
        if c.floats_with_tou and c.tou_ratios is not None:
            tou = usage.tou_kwh or {}
            for p in TOU_PERIODS:
                if p in tou:
                    price = (c.price * c.tou_ratios.get(p, Decimal(1))).quantize(
                        DERIVED_PRICE_QUANTUM, rounding=ROUND_HALF_UP
                    )
                    amount = line_amount(quantity=tou[p], price=price)
                    out.append(Line(f"component.{c.code}.{p}", tou[p], price, amount, c.pf_base))
        else:
            amount = line_amount(quantity=usage.kwh, price=c.price)
            out.append(Line(f"component.{c.code}", usage.kwh, c.price, amount, c.pf_base))
    return out


# --- basic -----------------------------------------------------------------------------------
def _basic_line(code: str, quantity: Decimal, price: Decimal, factor: tuple[int, int]) -> Line:
    num, den = factor
    if num == den:
        return Line(code, quantity, price, line_amount(quantity=quantity, price=price), True)
    shown = (quantity * num / den).quantize(_Q4, rounding=ROUND_HALF_UP) if quantity else ZERO
    return Line(code, shown, price, round_fen_ratio(price * quantity * num, den), True)


def basic_quantities(tariff: Tariff, usage: Usage) -> list[tuple[str, Decimal, Decimal]]:
    """(code, monthly quantity, price) of each basic line before proration."""
    b = tariff.basic
    if b is None:
        return []
    if isinstance(b, CapacityBasic):
        return [("basic.capacity", b.kva, b.price)]
    demand = usage.max_demand_kw if usage.max_demand_kw is not None else ZERO
    if isinstance(b, DemandContractBasic):
        ceiling = b.contract_kw * DEMAND_TOLERANCE
        if demand <= ceiling:
            return [("basic.demand", b.contract_kw, b.price)]
        return [("basic.demand", ceiling, b.price), ("basic.demand_excess", demand - ceiling, 2 * b.price)]
    return [("basic.demand", max(demand, b.transformer_kva * DEMAND_ACTUAL_FLOOR), b.price)]


def basic_lines(tariff: Tariff, usage: Usage, period: Period) -> list[Line]:
    factor = proration(period)
    return [_basic_line(code, q, p, factor) for code, q, p in basic_quantities(tariff, usage)]


# --- the whole bill --------------------------------------------------------------------------
def rate(tariff: Tariff, usage: Usage, period: Period) -> RatingResult:
    """One bill's lines: energy (and components), basic, power-factor adjustment, funds."""
    # zero-quantity lines are not listed (and so never enter the power-factor base or the total)
    lines = [
        line
        for line in energy_lines(tariff, usage) + basic_lines(tariff, usage, period)
        if line.quantity != 0
    ]
    pf_value: Decimal | None = None
    pf_rate: Decimal | None = None
    if tariff.power_factor is not None:
        kvarh = usage.kvarh if usage.kvarh is not None else ZERO
        pf_value = power_factor(usage.kwh, kvarh)
        pf_rate = rate_at(tariff.power_factor.standard, pf_value)
        base = sum((line.amount for line in lines if line.pf_base), ZERO)
        lines.append(Line("pf_adjustment", base, pf_rate, round_fen(base * pf_rate)))
    for f in tariff.funds:
        lines.append(
            Line(f"fund.{f.code}", usage.kwh, f.price, line_amount(quantity=usage.kwh, price=f.price))
        )
    kept = tuple(line for line in lines if line.quantity != 0)
    return RatingResult(kept, pf_value, pf_rate, sum((line.amount for line in kept), ZERO) + Decimal("0.00"))
