"""Allocation and late-fee rules of the receivables ledger (DOMAIN.md §5.2, §5.3, spec/late-fee.md)."""

from datetime import date
from decimal import Decimal as D

import pytest

from mmis.accounts import rules
from mmis.rating.late_fee import late_fee


def test_domain_5_2_example_accrued_basis_late_fee_first():
    # January 300.00 with 4.50 accrued (15 days × 1‰), February 280.00 with 1.12 (4 days × 1‰).
    jan = rules.Debt(id=1, open=D("300.00"), due_date=date(2026, 3, 1), late_fee_class="residential")
    feb = rules.Debt(id=2, open=D("280.00"), due_date=date(2026, 3, 12), late_fee_class="residential")
    plan = rules.plan_payment(
        amount=D("400.00"), debts=[feb, jan], paid_on=date(2026, 3, 16), basis="accrued"
    )
    assert [(d, f) for d, f, _ in plan.fees] == [(1, D("4.50")), (2, D("1.12"))]
    assert plan.allocations == [
        (("fee", 1), "late_fee", D("4.50")),
        (("debt", 1), "principal", D("300.00")),
        (("fee", 2), "late_fee", D("1.12")),
        (("debt", 2), "principal", D("94.38")),
    ]
    assert plan.unallocated == 0
    assert D("280.00") - D("94.38") == D("185.62")


def test_domain_5_3_partial_payments_portion_basis():
    debt = rules.Debt(id=7, open=D("10000.00"), due_date=date(2026, 3, 10), late_fee_class="non_residential")
    p1 = rules.plan_payment(amount=D("4080.00"), debts=[debt], paid_on=date(2026, 3, 20))
    assert p1.fees[0][1] == D("80.00")
    assert p1.allocations[-1] == (("debt", 7), "principal", D("4000.00"))
    rest = rules.Debt(
        id=7,
        open=D("6000.00"),
        due_date=date(2026, 3, 10),
        late_fee_class="non_residential",
        fee_charged_before=True,
    )
    p2 = rules.plan_payment(amount=D("6252.00"), debts=[rest], paid_on=date(2026, 3, 31))
    assert p2.fees[0][1] == D("252.00")
    assert p1.fees[0][1] + p2.fees[0][1] == D("332.00")
    assert p2.unallocated == 0


def test_portion_fee_is_the_late_fee_command_function():
    debt = rules.Debt(id=1, open=D("1000.00"), due_date=date(2026, 3, 15), late_fee_class="residential")
    fee, days = rules.fee_on(
        principal=D("1000.00"), debt=debt, paid_on=date(2026, 4, 1), minimum=D("1.00"), minimum_scope="bill"
    )
    expected = late_fee(
        principal=D("1000.00"),
        due_date=date(2026, 3, 15),
        paid_date=date(2026, 4, 1),
        customer_class="residential",
    )
    assert (fee, days) == (expected.amount, expected.days) == (D("17.00"), 17)


def test_largest_portion_never_exceeds_budget():
    debt = rules.Debt(id=1, open=D("30.00"), due_date=date(2026, 1, 1), late_fee_class="residential")
    x, fee = rules.largest_portion(
        budget=D("10.00"), debt=debt, paid_on=date(2026, 1, 4), minimum=D("1.00"), minimum_scope="bill"
    )
    assert x + fee <= D("10.00")
    assert (x, fee) == (D("9.00"), D("1.00"))  # the 1.00 minimum applies to the first portion


def test_principal_first_leaves_fee_open_when_money_runs_out():
    debt = rules.Debt(id=1, open=D("500.00"), due_date=date(2026, 1, 1), late_fee_class="residential")
    plan = rules.plan_payment(
        amount=D("500.00"), debts=[debt], paid_on=date(2026, 1, 11), order=rules.PRINCIPAL_FIRST
    )
    assert plan.allocations == [(("debt", 1), "principal", D("500.00"))]
    assert plan.fees[0][1] == D("5.00")  # charged, still open


def test_oldest_first_and_undue_after_overdue_and_prepayment_rest():
    old = rules.Debt(id=1, open=D("50.00"), due_date=date(2026, 1, 1), late_fee_class="")
    new = rules.Debt(id=2, open=D("70.00"), due_date=date(2026, 2, 1), late_fee_class="")
    plan = rules.plan_payment(amount=D("200.00"), debts=[new, old], paid_on=date(2026, 1, 1))
    assert [a[0][1] for a in plan.allocations] == [1, 2]
    assert plan.unallocated == D("80.00")


def test_designated_debt_first():
    old = rules.Debt(id=1, open=D("50.00"), due_date=date(2026, 1, 1))
    new = rules.Debt(id=2, open=D("70.00"), due_date=date(2026, 2, 1))
    plan = rules.plan_payment(amount=D("70.00"), debts=[old, new], paid_on=date(2026, 1, 1), designated=2)
    assert plan.allocations == [(("debt", 2), "principal", D("70.00"))]


def test_waived_debt_has_no_fee():
    debt = rules.Debt(
        id=1, open=D("100.00"), due_date=date(2026, 1, 1), late_fee_class="residential", waived=True
    )
    plan = rules.plan_payment(amount=D("100.00"), debts=[debt], paid_on=date(2026, 3, 1))
    assert plan.fees == []


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(0, "current"), (1, "1-30"), (31, "31-90"), (120, "91-180"), (200, "181-365"), (400, "365+")],
)
def test_ageing_buckets(days, bucket):
    assert rules.ageing_bucket(days) == bucket


def test_prepaid_state_thresholds():
    kw = {"threshold1": D("50"), "threshold2": D("20")}
    assert rules.prepaid_state(available=D("49.36"), **kw) == "alarm1"
    assert rules.prepaid_state(available=D("11.70"), **kw) == "alarm2"
    assert rules.prepaid_state(available=D("-7.13"), **kw) == "negative"
    assert rules.prepaid_state(available=D("60"), **kw) == "normal"


def test_zero_payment_is_refused():
    with pytest.raises(ValueError):
        rules.plan_payment(amount=D("0"), debts=[], paid_on=date(2026, 1, 1))
