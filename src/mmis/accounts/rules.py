"""Pure receivables rules: allocation of a payment and the late fee on each paid portion.

No ORM, no clock: callers pass the open debts and the payment date in (DOMAIN.md §5.2, §5.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from mmis.common.money import ZERO, from_fen, to_fen
from mmis.rating.late_fee import late_fee

LATE_FEE_FIRST = "late_fee_first"
PRINCIPAL_FIRST = "principal_first"


@dataclass(frozen=True, slots=True)
class Debt:
    """An open debit of an account, as the allocation sees it."""

    id: int
    open: Decimal  # still unpaid, > 0
    due_date: date | None
    is_late_fee: bool = False  # an already posted late-fee document
    parent_id: int | None = None  # for a late-fee document: the debt it was charged on
    late_fee_class: str = ""  # "residential" / "non_residential" / "" (no fee)
    fee_charged_before: bool = False  # minimum already applied once on this debt
    waived: bool = False  # no late fee (utility's fault, approved waiver, plan)
    fee_through: date | None = None  # "accrued" basis: fee already charged up to this day


@dataclass(slots=True)
class Plan:
    """What a payment does: late fees to post first, then allocations (debt id or fee key)."""

    fees: list[tuple[int, Decimal, int]] = field(default_factory=list)  # (debt id, fee, days)
    # (target, component, amount): target is ("debt", id) or ("fee", debt id) for a fee posted now
    allocations: list[tuple[tuple[str, int], str, Decimal]] = field(default_factory=list)
    unallocated: Decimal = ZERO


def fee_on(
    *, principal: Decimal, debt: Debt, paid_on: date, minimum: Decimal, minimum_scope: str
) -> tuple[Decimal, int]:
    """Late fee on `principal` of `debt` paid on `paid_on` (mmis.rating.late_fee, the spec's function)."""
    if debt.waived or not debt.late_fee_class or debt.due_date is None or principal <= 0:
        return ZERO, 0
    days = (paid_on - debt.due_date).days
    if days <= 0:
        return ZERO, days
    use_min = minimum if (minimum_scope == "portion" or not debt.fee_charged_before) else ZERO
    r = late_fee(
        principal=principal,
        due_date=debt.due_date,
        paid_date=paid_on,
        customer_class=debt.late_fee_class,
        minimum=use_min,
    )
    return r.amount, r.days


def accrued_fee(*, debt: Debt, paid_on: date, minimum: Decimal) -> tuple[Decimal, int]:
    """ "accrued" basis: fee on the whole open principal from the last fee charged up to `paid_on`.

    Computed as fee(due → paid_on) − fee(due → fee_through) on the same principal, so the split
    at 31 December stays that of the due date's year; the minimum applies to the first fee only.
    """
    if debt.waived or not debt.late_fee_class or debt.due_date is None or debt.open <= 0:
        return ZERO, 0
    days = (paid_on - debt.due_date).days
    if days <= 0:
        return ZERO, days
    whole = late_fee(
        principal=debt.open,
        due_date=debt.due_date,
        paid_date=paid_on,
        customer_class=debt.late_fee_class,
        minimum=ZERO if debt.fee_charged_before else minimum,
    ).amount
    if debt.fee_through is None or debt.fee_through <= debt.due_date:
        return whole, days
    if debt.fee_through >= paid_on:
        return ZERO, 0
    before = late_fee(
        principal=debt.open,
        due_date=debt.due_date,
        paid_date=debt.fee_through,
        customer_class=debt.late_fee_class,
        minimum=ZERO,
    ).amount
    return max(whole - before, ZERO), (paid_on - debt.fee_through).days


def largest_portion(
    *, budget: Decimal, debt: Debt, paid_on: date, minimum: Decimal, minimum_scope: str
) -> tuple[Decimal, Decimal]:
    """Largest principal x ≤ debt.open with x + fee(x) ≤ budget; returns (x, fee(x)).

    The fee grows with x, so a binary search over fen finds it exactly.
    """
    full_fee, _ = fee_on(
        principal=debt.open, debt=debt, paid_on=paid_on, minimum=minimum, minimum_scope=minimum_scope
    )
    if debt.open + full_fee <= budget:
        return debt.open, full_fee
    lo, hi = 0, to_fen(debt.open)  # lo always fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        x = from_fen(mid)
        f, _ = fee_on(principal=x, debt=debt, paid_on=paid_on, minimum=minimum, minimum_scope=minimum_scope)
        if x + f <= budget:
            lo = mid
        else:
            hi = mid - 1
    x = from_fen(lo)
    if lo == 0:
        return ZERO, ZERO
    f, _ = fee_on(principal=x, debt=debt, paid_on=paid_on, minimum=minimum, minimum_scope=minimum_scope)
    return x, f


def order_debts(debts: list[Debt]) -> list[Debt]:
    """Oldest debt first (earliest due date, undated last); a late-fee document just before its debt."""
    by_id = {d.id: d for d in debts}

    def key(d: Debt):
        anchor = by_id.get(d.parent_id) if d.is_late_fee and d.parent_id else None
        due = (anchor or d).due_date or date.max
        return (due, (anchor or d).id, 0 if d.is_late_fee else 1, d.id)

    return sorted(debts, key=key)


def plan_payment(
    *,
    amount: Decimal,
    debts: list[Debt],
    paid_on: date,
    order: str = LATE_FEE_FIRST,
    minimum: Decimal = Decimal("1.00"),
    minimum_scope: str = "bill",
    charge_late_fees: bool = True,
    designated: int | None = None,
    basis: str = "portion",
) -> Plan:
    """Allocate `amount` over open debts, oldest first (a designated debt first of all).

    With `late_fee_first` the fee on each paid portion is taken before that portion's principal
    (DOMAIN §5.2 example: 400.00 over January 300.00 + 4.50 and February 280.00 + 1.12 leaves
    185.62 unpaid). With `principal_first` the principal is settled and its fee is charged and
    settled from what is left, if anything. What cannot be allocated stays as prepayment.
    """
    if amount <= 0:
        raise ValueError("amount must be positive")
    plan = Plan()
    left = amount
    ordered = order_debts(debts)
    if designated is not None:
        ordered = [d for d in ordered if d.id == designated or d.parent_id == designated] + [
            d for d in ordered if not (d.id == designated or d.parent_id == designated)
        ]
    for d in ordered:
        if left <= 0:
            break
        if d.is_late_fee:
            take = min(left, d.open)
            plan.allocations.append((("debt", d.id), "late_fee", take))
            left -= take
            continue
        if not charge_late_fees:
            take = min(left, d.open)
            plan.allocations.append((("debt", d.id), "principal", take))
            left -= take
            continue
        if basis == "accrued":
            fee, days = accrued_fee(debt=d, paid_on=paid_on, minimum=minimum)
            if fee > 0:
                plan.fees.append((d.id, fee, days))
            if order == LATE_FEE_FIRST and fee > 0:
                take = min(left, fee)
                plan.allocations.append((("fee", d.id), "late_fee", take))
                left -= take
            take = min(left, d.open)
            if take > 0:
                plan.allocations.append((("debt", d.id), "principal", take))
                left -= take
            if order != LATE_FEE_FIRST and fee > 0 and left > 0:
                take = min(left, fee)
                plan.allocations.append((("fee", d.id), "late_fee", take))
                left -= take
            continue
        if order == LATE_FEE_FIRST:
            x, fee = largest_portion(
                budget=left, debt=d, paid_on=paid_on, minimum=minimum, minimum_scope=minimum_scope
            )
            if x <= 0:
                break  # not even one fen of principal with its fee fits: keep it as prepayment
            if fee > 0:
                _, days = fee_on(
                    principal=x, debt=d, paid_on=paid_on, minimum=minimum, minimum_scope=minimum_scope
                )
                plan.fees.append((d.id, fee, days))
                plan.allocations.append((("fee", d.id), "late_fee", fee))
            plan.allocations.append((("debt", d.id), "principal", x))
            left -= x + fee
        else:
            x = min(left, d.open)
            fee, days = fee_on(
                principal=x, debt=d, paid_on=paid_on, minimum=minimum, minimum_scope=minimum_scope
            )
            plan.allocations.append((("debt", d.id), "principal", x))
            left -= x
            if fee > 0:
                plan.fees.append((d.id, fee, days))
                take = min(left, fee)
                if take > 0:
                    plan.allocations.append((("fee", d.id), "late_fee", take))
                    left -= take
    plan.unallocated = left
    return plan


def ageing_bucket(days_overdue: int) -> str:
    """Arrears ageing buckets used by the report."""
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "1-30"
    if days_overdue <= 90:
        return "31-90"
    if days_overdue <= 180:
        return "91-180"
    if days_overdue <= 365:
        return "181-365"
    return "365+"


AGEING_BUCKETS = ("current", "1-30", "31-90", "91-180", "181-365", "365+")


def ageing_bounds(bucket: str) -> tuple[int | None, int | None]:
    """Days overdue (low, high), both inclusive, None for open-ended, of an ageing bucket; the
    inverse of `ageing_bucket` (a filter on the due date uses it). ValueError for an unknown one."""
    bounds = {
        "current": (None, 0),
        "1-30": (1, 30),
        "31-90": (31, 90),
        "91-180": (91, 180),
        "181-365": (181, 365),
        "365+": (366, None),
    }
    try:
        return bounds[bucket]
    except KeyError:
        raise ValueError(f"unknown ageing bucket {bucket!r}") from None


def prepaid_state(*, available: Decimal, threshold1: Decimal, threshold2: Decimal) -> str:
    """Cost-control alarm level of an available balance (DOMAIN §5.6)."""
    if available < 0:
        return "negative"
    if available < threshold2:
        return "alarm2"
    if available < threshold1:
        return "alarm1"
    return "normal"
