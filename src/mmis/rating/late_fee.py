"""Late-payment fee (电费违约金; spec/late-fee.md, DOMAIN.md §5.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from mmis.common.inputs import Reader
from mmis.common.money import money_str, round_fen

CUSTOMER_CLASSES: tuple[str, ...] = ("residential", "non_residential")
DEFAULT_MINIMUM = Decimal("1.00")
# per-day rates (1996 defaults): class → (current year, cross year)
DEFAULT_RATES: dict[str, tuple[Decimal, Decimal]] = {
    "residential": (Decimal("0.001"), Decimal("0.001")),
    "non_residential": (Decimal("0.002"), Decimal("0.003")),
}


@dataclass(frozen=True, slots=True)
class LateFeeLine:
    code: str
    days: int
    rate: Decimal
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "days": self.days,
            "rate": str(self.rate),
            "amount": money_str(self.amount),
        }


@dataclass(frozen=True, slots=True)
class LateFeeResult:
    days: int
    lines: tuple[LateFeeLine, ...]
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "lines": [x.to_dict() for x in self.lines],
            "amount": money_str(self.amount),
        }


def split_days(*, due_date: date, paid_date: date) -> tuple[int, int]:
    """(days up to and including 31 December of the due year, days from 1 January of a later year)."""
    days = (paid_date - due_date).days
    if days <= 0:
        return 0, 0
    in_year = min(days, (date(due_date.year, 12, 31) - due_date).days)
    return in_year, days - in_year


def late_fee(
    *,
    principal: Decimal,
    due_date: date,
    paid_date: date,
    customer_class: str,
    minimum: Decimal = DEFAULT_MINIMUM,
    rates: dict[str, tuple[Decimal, Decimal]] | None = None,
) -> LateFeeResult:
    """The fee on `principal` paid `paid_date` against `due_date`; each line rounded to the fen.

    Residential bills run at one rate in one line (`late_fee.current_year`), whatever the year.
    """
    if principal < 0:
        raise ValueError("principal must not be negative")
    current_rate, cross_rate = (rates or DEFAULT_RATES)[customer_class]
    days = (paid_date - due_date).days
    lines: list[LateFeeLine] = []
    if days > 0:
        if customer_class == "residential" and current_rate == cross_rate:
            parts = [("late_fee.current_year", days, current_rate)]
        else:
            in_year, cross = split_days(due_date=due_date, paid_date=paid_date)
            parts = [
                ("late_fee.current_year", in_year, current_rate),
                ("late_fee.cross_year", cross, cross_rate),
            ]
        for code, n, rate in parts:
            if n > 0:
                lines.append(LateFeeLine(code, n, rate, round_fen(principal * rate * n)))
    amount = sum((x.amount for x in lines), Decimal("0.00"))
    if days > 0 and amount < minimum:
        amount = minimum
    return LateFeeResult(days, tuple(lines), round_fen(amount))


def late_fee_from_json(obj: Any) -> LateFeeResult:
    r = Reader()
    principal = r.decimal(obj, "principal", min_value=Decimal(0))
    due = r.date(obj, "due_date")
    paid = r.date(obj, "paid_date")
    cls = r.choice(obj, "customer_class", CUSTOMER_CLASSES)
    minimum = r.decimal(obj, "minimum", required=False, default=DEFAULT_MINIMUM, min_value=Decimal(0))
    r.raise_if_errors()
    assert principal is not None and due is not None and paid is not None and cls is not None
    return late_fee(
        principal=principal, due_date=due, paid_date=paid, customer_class=cls, minimum=minimum or Decimal(0)
    )
