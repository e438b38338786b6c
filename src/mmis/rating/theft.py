"""Back-billing for electricity theft (窃电追补; spec/theft.md, DOMAIN.md §6.1)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mmis.common.inputs import MISSING, Reader, format_decimal
from mmis.common.money import money_str, round_fen

HOURS_PER_DAY: dict[str, int] = {"lighting": 6, "power": 12}
DEFAULT_DAYS = 180
PENALTY_MULTIPLE = Decimal(3)


@dataclass(frozen=True, slots=True)
class TheftResult:
    kwh: Decimal
    back_charge: Decimal
    penalty: Decimal
    total: Decimal

    def to_dict(self) -> dict[str, str]:
        return {
            "kwh": format_decimal(self.kwh),
            "back_charge": money_str(self.back_charge),
            "penalty": money_str(self.penalty),
            "total": money_str(self.total),
        }


def estimated_theft_kwh(*, capacity_kw: Decimal, hours_per_day: Decimal, days: int = DEFAULT_DAYS) -> Decimal:
    """Capacity × hours per day × days (1996 Art. 103)."""
    return capacity_kw * hours_per_day * days


def theft(
    *,
    price: Decimal,
    kwh: Decimal | None = None,
    capacity_kw: Decimal | None = None,
    use: str | None = None,
    hours_per_day: Decimal | None = None,
    days: int = DEFAULT_DAYS,
    penalty_multiple: Decimal = PENALTY_MULTIPLE,
) -> TheftResult:
    """Back charge = kWh × price (to the fen); penalty = multiple × back charge; total = their sum."""
    if (kwh is None) == (capacity_kw is None):
        raise ValueError("give exactly one of kwh and capacity_kw")
    if kwh is None:
        assert capacity_kw is not None
        if hours_per_day is None:
            if use not in HOURS_PER_DAY:
                raise ValueError(f"unknown use {use!r}")
            hours_per_day = Decimal(HOURS_PER_DAY[use])
        kwh = estimated_theft_kwh(capacity_kw=capacity_kw, hours_per_day=hours_per_day, days=days)
    back = round_fen(kwh * price)
    penalty = round_fen(back * penalty_multiple)
    return TheftResult(kwh, back, penalty, back + penalty)


def theft_from_json(obj: Any) -> TheftResult:
    r = Reader()
    has_kwh = r.get(obj, "kwh") not in (MISSING, None)
    has_cap = r.get(obj, "capacity_kw") not in (MISSING, None)
    price = r.decimal(obj, "price", positive=True)
    kwh = cap = hours = None
    use = None
    days = DEFAULT_DAYS
    if has_kwh and has_cap:
        r.error("kwh", "give either kwh (known energy) or capacity_kw (estimate), not both")
        r.error("capacity_kw", "give either kwh (known energy) or capacity_kw (estimate), not both")
    elif not has_kwh and not has_cap:
        r.error("kwh", "is required (or capacity_kw to estimate the stolen energy)")
    elif has_kwh:
        kwh = r.decimal(obj, "kwh", positive=True)
    else:
        cap = r.decimal(obj, "capacity_kw", positive=True)
        raw_hours = r.get(obj, "hours_per_day")
        if raw_hours not in (MISSING, None):
            if isinstance(raw_hours, int) and not isinstance(raw_hours, bool):
                hours = Decimal(raw_hours)
                if hours <= 0 or hours > 24:
                    r.error("hours_per_day", "must be more than 0 and at most 24")
                    hours = None
            else:
                hours = r.decimal(obj, "hours_per_day", positive=True)
                if hours is not None and hours > 24:
                    r.error("hours_per_day", "must be at most 24")
            r.choice(obj, "use", tuple(HOURS_PER_DAY), required=False)
        else:
            use = r.choice(obj, "use", tuple(HOURS_PER_DAY))
        days = r.integer(obj, "days", required=False, default=DEFAULT_DAYS, positive=True) or DEFAULT_DAYS
    r.raise_if_errors()
    assert price is not None
    return theft(price=price, kwh=kwh, capacity_kw=cap, use=use, hours_per_day=hours, days=days)
