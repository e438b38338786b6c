"""The receivables ledger against the database: posting, allocation, reversal, invariants."""

from datetime import date, datetime
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from mmis.accounts import queries, services
from mmis.accounts.models import (
    Allocation,
    Approval,
    EntryKind,
    ImmutableRow,
    LedgerEntry,
    LedgerLine,
    Payment,
    Policy,
)
from mmis.common.errors import InvalidInput
from mmis.org import services as org_services

TZ = ZoneInfo("Asia/Shanghai")


def at(y, m, d, h=10):
    return datetime(y, m, d, h, tzinfo=TZ)


@pytest.fixture
def acc(utility):
    return utility.customers["a"].accounts.get()


@pytest.fixture
def cashier(utility):
    return org_services.create_user(
        username="cashier1",
        password="Mmis@2026-test",
        org=utility.counties[0],
        roles=["cashier"],
        display_name="收费员甲",
    )


@pytest.fixture
def approver(utility):
    return utility.users["manager"]


def charge(acc, n, amount, due, actor=None):
    return services.post_charge(
        account=acc,
        amount=D(amount),
        source_type="test_bill",
        source_id=n,
        document_no=f"B{n}",
        due_date=due,
        at=at(due.year, due.month, 1),
        actor=actor,
    )


def assert_ledger_ok():
    check = queries.ledger_check()
    assert check["balanced"], check


def test_post_charge_is_idempotent_and_balanced(acc):
    e1 = charge(acc, 1, "123.45", date(2026, 3, 15))
    e2 = charge(acc, 1, "123.45", date(2026, 3, 15))
    assert e1.pk == e2.pk
    assert LedgerEntry.objects.count() == 1
    assert sorted(LedgerLine.objects.filter(entry=e1).values_list("amount", flat=True)) == [
        D("-123.45"),
        D("123.45"),
    ]
    assert queries.balance(acc) == D("123.45")
    assert e1.late_fee_class == "residential"  # customer a is an individual
    assert_ledger_ok()


def test_post_charge_with_lines_must_add_up(acc):
    with pytest.raises(InvalidInput) as exc:
        services.post_charge(
            account=acc,
            amount=D("100.00"),
            source_type="b",
            source_id=1,
            document_no="X",
            due_date=date(2026, 1, 1),
            at=at(2026, 1, 1),
            actor=None,
            lines=[{"code": "principal", "amount": "90.00"}],
        )
    assert exc.value.errors[0].path == "lines"
    assert LedgerEntry.objects.count() == 0


def test_domain_example_allocation_with_accrued_fees(acc, utility):
    Policy.objects.create(org=utility.province, late_fee_basis="accrued")
    s = services.open_session(cashier=utility.users["counter_a"], at=at(2026, 3, 16, 9))
    charge(acc, 1, "300.00", date(2026, 3, 1))
    charge(acc, 2, "280.00", date(2026, 3, 12))
    p = services.take_payment(
        account=acc,
        amount="400.00",
        channel="cash",
        at=at(2026, 3, 16),
        actor=utility.users["counter_a"],
        session=s,
    )
    items = queries.open_items(acc)
    assert [(i.entry.document_no, i.open) for i in items] == [("B2", D("185.62"))]
    fees = LedgerEntry.objects.filter(kind=EntryKind.LATE_FEE).order_by("id")
    assert [f.amount for f in fees] == [D("4.50"), D("1.12")]
    assert queries.balance(acc) == D("185.62")
    assert Allocation.objects.filter(credit=p.entry).count() == 4
    assert_ledger_ok()


def test_overpayment_is_prepayment_applied_to_next_bill(acc, utility):
    s = services.open_session(cashier=utility.users["counter_a"], at=at(2026, 3, 1, 9))
    charge(acc, 1, "100.00", date(2026, 3, 15))
    services.take_payment(
        account=acc,
        amount="250.00",
        channel="pos",
        at=at(2026, 3, 1),
        actor=utility.users["counter_a"],
        session=s,
    )
    assert queries.balance(acc) == D("-150.00")
    assert queries.prepayment(acc) == D("150.00")
    charge(acc, 2, "120.00", date(2026, 4, 15))
    assert queries.open_items(acc) == []
    assert queries.prepayment(acc) == D("30.00")
    assert_ledger_ok()


def test_portion_fees_non_residential(utility):
    acc_b = utility.customers["b"].accounts.get()
    s = services.open_session(cashier=utility.users["counter_b"], at=at(2026, 3, 20, 8))
    charge(acc_b, 1, "10000.00", date(2026, 3, 10))
    services.take_payment(
        account=acc_b,
        amount="4080.00",
        channel="cash",
        at=at(2026, 3, 20),
        actor=utility.users["counter_b"],
        session=s,
    )
    services.close_session(
        session=s, counted_cash="4080.00", actor=utility.users["counter_b"], at=at(2026, 3, 20, 18)
    )
    s2 = services.open_session(cashier=utility.users["counter_b"], at=at(2026, 3, 31, 8))
    services.take_payment(
        account=acc_b,
        amount="6252.00",
        channel="cash",
        at=at(2026, 3, 31),
        actor=utility.users["counter_b"],
        session=s2,
    )
    fees = list(
        LedgerEntry.objects.filter(kind=EntryKind.LATE_FEE).order_by("id").values_list("amount", flat=True)
    )
    assert fees == [D("80.00"), D("252.00")]
    assert queries.balance(acc_b) == 0
    assert_ledger_ok()


def test_bad_input_posts_nothing(acc, utility):
    s = services.open_session(cashier=utility.users["counter_a"], at=at(2026, 3, 1, 9))
    user = utility.users["counter_a"]
    for amount, msg in [
        ("-5", "greater than zero"),
        ("0", "greater than zero"),
        ("1.234", "two decimals"),
        ("abc", "not a number"),
    ]:
        with pytest.raises(InvalidInput) as exc:
            services.take_payment(
                account=acc, amount=amount, channel="cash", at=at(2026, 3, 1), actor=user, session=s
            )
        assert exc.value.errors[0].path == "amount"
        assert msg in exc.value.errors[0].message
    with pytest.raises(InvalidInput):
        services.take_payment(
            account=acc, amount="5", channel="bitcoin", at=at(2026, 3, 1), actor=user, session=s
        )
    with pytest.raises(InvalidInput):
        services.take_payment(
            account=acc, amount="5", channel="cash", at=at(2026, 3, 1), actor=user, session=None
        )
    assert LedgerEntry.objects.count() == 0
    assert Payment.objects.count() == 0


def test_entries_cannot_be_edited_or_deleted(acc):
    e = charge(acc, 1, "10.00", date(2026, 1, 1))
    e.amount = D("1.00")
    with pytest.raises(ImmutableRow):
        e.save()
    with pytest.raises(ImmutableRow):
        e.delete()
    line = e.lines.first()
    with pytest.raises(ImmutableRow):
        line.save()
    assert LedgerEntry.objects.get(pk=e.pk).amount == D("10.00")


def test_the_database_refuses_to_change_posted_rows(acc, utility):
    """Past the ORM (a queryset UPDATE/DELETE, raw SQL): the migration's triggers refuse it."""
    from django.db import IntegrityError, connection, transaction
    from django.utils import timezone

    e = charge(acc, 1, "10.00", date(2026, 1, 1))
    session = services.open_session(cashier=utility.users["counter_a"], at=timezone.now())
    p = services.take_payment(
        account=acc,
        amount="4.00",
        channel="cash",
        at=timezone.now(),
        actor=utility.users["counter_a"],
        session=session,
    )
    attempts = [
        lambda: LedgerEntry.objects.filter(pk=e.pk).update(amount=D("1.00")),
        lambda: LedgerEntry.objects.filter(pk=e.pk).delete(),
        lambda: e.lines.all().update(amount=D("0")),
        lambda: Allocation.objects.filter(credit=p.entry).update(amount=D("0.01")),
        lambda: Payment.objects.filter(pk=p.pk).update(amount=D("400.00")),
    ]
    table = LedgerLine._meta.db_table
    for attempt in attempts:
        with pytest.raises(IntegrityError), transaction.atomic():
            attempt()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute(f'DELETE FROM "{table}" WHERE entry_id = %s', [e.pk])
    assert LedgerEntry.objects.get(pk=e.pk).amount == D("10.00") and e.lines.count() == 2
    assert Payment.objects.get(pk=p.pk).amount == D("4.00")
    assert queries.ledger_check()["balanced"]


def test_reversal_needs_approval_by_someone_else_and_restores_debts(acc, utility, approver):
    user = utility.users["counter_a"]
    s = services.open_session(cashier=user, at=at(2026, 4, 1, 9))
    charge(acc, 1, "300.00", date(2026, 3, 1))
    p = services.take_payment(
        account=acc, amount="400.00", channel="cash", at=at(2026, 4, 1), actor=user, session=s
    )
    assert queries.balance(acc) < 0
    ap = services.request_approval(
        kind="reversal", account=acc, actor=user, at=at(2026, 4, 1, 11), reason="收错户", target=p.entry
    )
    with pytest.raises(InvalidInput):
        services.decide_approval(approval=ap, approve=True, actor=user, at=at(2026, 4, 1, 12))
    services.decide_approval(approval=ap, approve=True, actor=approver, at=at(2026, 4, 1, 12))
    assert queries.balance(acc) == D("300.00")
    assert [i.open for i in queries.open_items(acc)] == [D("300.00")]
    assert LedgerEntry.objects.filter(reverses=p.entry).count() == 1
    assert Payment.objects.filter(pk=p.pk).exists()  # nothing deleted
    with pytest.raises(InvalidInput):
        services.reverse_payment(payment=p, reason="again", actor=approver, at=at(2026, 4, 2))
    totals = services.session_totals(s)
    assert totals["cash"] == 0
    assert_ledger_ok()


def test_idempotency_key_returns_same_payment_and_rejects_other_body(acc, utility):
    kw = {"account": acc, "channel": "online", "at": at(2026, 3, 1), "actor": utility.users["admin"]}
    p1 = services.take_payment(amount="50.00", idempotency_key="k-1", request_hash="h1", **kw)
    p2 = services.take_payment(amount="50.00", idempotency_key="k-1", request_hash="h1", **kw)
    assert p1.pk == p2.pk
    with pytest.raises(services.IdempotencyConflict):
        services.take_payment(amount="60.00", idempotency_key="k-1", request_hash="h2", **kw)
    p3 = services.take_payment(amount="50.00", channel_txn_id="T1", **{**kw, "channel": "agency"})
    p4 = services.take_payment(amount="50.00", channel_txn_id="T1", **{**kw, "channel": "agency"})
    assert p3.pk == p4.pk
    assert Payment.objects.count() == 2


def test_designated_bill_already_settled_is_refused(acc, utility):
    user = utility.users["counter_a"]
    s = services.open_session(cashier=user, at=at(2026, 3, 1, 9))
    bill = charge(acc, 1, "88.00", date(2026, 3, 15))
    services.take_payment(
        account=acc,
        amount="88.00",
        channel="cash",
        at=at(2026, 3, 1),
        actor=user,
        session=s,
        designated=bill,
        require_open=True,
    )
    with pytest.raises(InvalidInput) as exc:
        services.take_payment(
            account=acc,
            amount="88.00",
            channel="cash",
            at=at(2026, 3, 1),
            actor=user,
            session=s,
            designated=bill,
            require_open=True,
        )
    assert "already settled" in exc.value.errors[0].message
    assert Payment.objects.count() == 1


def test_credit_adjustment_settles_the_original(acc):
    b1 = charge(acc, 1, "100.00", date(2026, 1, 15))
    b2 = charge(acc, 2, "100.00", date(2026, 2, 15))
    services.post_adjustment(
        account=acc,
        original=b2,
        direction="credit",
        amount=D("40.00"),
        reason="抄表错误",
        source_type="corr",
        source_id=1,
        document_no="C1",
        at=at(2026, 2, 20),
        actor=None,
    )
    opens = {i.entry.pk: i.open for i in queries.open_items(acc)}
    assert opens == {b1.pk: D("100.00"), b2.pk: D("60.00")}
    debit = services.post_adjustment(
        account=acc,
        original=b1,
        direction="debit",
        amount=D("28.88"),
        reason="抄表错误",
        source_type="corr",
        source_id=2,
        document_no="C2",
        at=at(2026, 2, 20),
        actor=None,
        due_date=date(2026, 3, 10),
    )
    assert debit.kind == EntryKind.ADJUSTMENT_DEBIT
    assert queries.balance(acc) == D("188.88")
    assert_ledger_ok()


def test_refund_transfer_and_write_off(acc, utility, approver):
    user = utility.users["admin"]
    other = utility.customers["b"].accounts.get()
    services.take_payment(account=acc, amount="100.00", channel="online", at=at(2026, 3, 1), actor=user)
    ap = services.request_approval(
        kind="refund",
        account=acc,
        actor=utility.users["counter_a"],
        at=at(2026, 3, 2),
        reason="多缴",
        amount="30.00",
    )
    services.decide_approval(approval=ap, approve=True, actor=approver, at=at(2026, 3, 2))
    assert queries.prepayment(acc) == D("70.00")
    with pytest.raises(InvalidInput):
        services.refund(account=acc, amount="70.01", reason="x", actor=user, at=at(2026, 3, 2))
    charge(other, 5, "50.00", date(2026, 3, 1))
    services.transfer_prepayment(
        source=acc, target=other, amount="50.00", reason="同一客户", actor=user, at=at(2026, 3, 3)
    )
    assert queries.balance(other) == 0
    assert queries.prepayment(acc) == D("20.00")
    bad = charge(other, 6, "500.00", date(2025, 1, 1))
    ap = services.request_approval(
        kind="write_off",
        account=other,
        actor=utility.users["counter_b"],
        at=at(2026, 3, 4),
        reason="破产",
        target=bad,
        evidence="法院裁定书",
    )
    assert ap.amount == D("500.00")
    services.decide_approval(approval=ap, approve=True, actor=user, at=at(2026, 3, 4))
    assert queries.balance(other) == 0
    assert Approval.objects.get(pk=ap.pk).result_entry.kind == EntryKind.WRITE_OFF
    assert_ledger_ok()


def test_daily_close_records_difference_and_locks_day(acc, utility):
    user = utility.users["counter_a"]
    s = services.open_session(cashier=user, at=at(2026, 3, 1, 8), opening_float="200.00")
    services.take_payment(
        account=acc, amount="100.00", channel="cash", at=at(2026, 3, 1), actor=user, session=s
    )
    services.take_payment(
        account=acc, amount="50.00", channel="pos", at=at(2026, 3, 1), actor=user, session=s
    )
    closed = services.close_session(session=s, counted_cash="299.50", actor=user, at=at(2026, 3, 1, 18))
    assert (closed.system_cash, closed.system_pos, closed.difference) == (D("300.00"), D("50.00"), D("-0.50"))
    lock = services.lock_day(
        org=s.org, business_date=s.business_date, actor=utility.users["manager"], at=at(2026, 3, 1, 19)
    )
    assert lock.totals["diff"] == "-0.50"
    with pytest.raises(InvalidInput):
        services.open_session(cashier=user, at=at(2026, 3, 1, 20))
    with pytest.raises(InvalidInput):
        services.take_payment(
            account=acc, amount="1.00", channel="cash", at=at(2026, 3, 1), actor=user, session=closed
        )


def test_arrears_ageing(acc, utility):
    other = utility.customers["b"].accounts.get()
    charge(acc, 1, "100.00", date(2026, 1, 1))
    charge(acc, 2, "50.00", date(2026, 3, 1))
    charge(other, 3, "70.00", date(2025, 1, 1))
    rows = queries.arrears(utility.users["admin"], on=date(2026, 3, 20))
    assert [(r.account_no, r.total, r.bucket) for r in rows] == [
        (acc.account_no, D("150.00"), "31-90"),
        (other.account_no, D("70.00"), "365+"),
    ]
    assert rows[0].buckets["1-30"] == D("50.00")
    # counter_a sees only its county
    assert [r.account_no for r in queries.arrears(utility.users["counter_a"], on=date(2026, 3, 20))] == [
        acc.account_no
    ]


def test_write_off_above_the_policy_amount_is_approved_by_the_province(utility):
    """DOMAIN §5.5: approval by amount. The city manager may approve up to the org policy's
    write_off_approval_amount (5,000.00 by default); above it only the province."""
    other = utility.customers["b"].accounts.get()
    small = charge(other, 7, "5000.00", date(2025, 1, 1))
    big = charge(other, 8, "5000.01", date(2025, 1, 1))
    requests = [
        services.request_approval(
            kind="write_off",
            account=other,
            actor=utility.users["counter_b"],
            at=at(2026, 3, 4),
            reason="破产",
            target=debt,
            evidence="法院裁定书",
        )
        for debt in (small, big)
    ]
    city = utility.users["manager"]
    services.decide_approval(approval=requests[0], approve=True, actor=city, at=at(2026, 3, 4))
    with pytest.raises(InvalidInput) as exc:
        services.decide_approval(approval=requests[1], approve=True, actor=city, at=at(2026, 3, 4))
    assert "above 5000.00" in exc.value.errors[0].message
    assert Approval.objects.get(pk=requests[1].pk).state == "requested"
    services.decide_approval(
        approval=requests[1], approve=True, actor=utility.users["admin"], at=at(2026, 3, 4)
    )
    assert queries.balance(other) == 0
    assert_ledger_ok()
