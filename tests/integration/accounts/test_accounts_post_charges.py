"""post_charges (many charges in one transaction) leaves the ledger exactly as one post_charge per item."""

from datetime import date, datetime
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from mmis.accounts import queries, services
from mmis.accounts.models import Allocation, ChargeLine, LedgerEntry, LedgerLine
from mmis.org.models import AuditLog

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 4, 4, 9, tzinfo=TZ)


class _Rollback(Exception):
    pass


@pytest.fixture
def accs(utility):
    a = utility.customers["a"].accounts.get()
    b = utility.customers["b"].accounts.get()
    # an older charge on each, and prepayment on a (paid more than owed)
    for n, acc in enumerate((a, b), start=1):
        services.post_charge(
            account=acc,
            amount=D("100.00"),
            source_type="old_bill",
            source_id=n,
            document_no=f"OLD{n}",
            due_date=date(2026, 3, 15),
            at=datetime(2026, 3, 1, 9, tzinfo=TZ),
            actor=None,
        )
    s = services.open_session(cashier=utility.users["counter_a"], at=datetime(2026, 3, 10, 9, tzinfo=TZ))
    services.take_payment(
        account=a,
        amount="250.00",
        channel="cash",
        at=datetime(2026, 3, 10, 10, tzinfo=TZ),
        actor=utility.users["counter_a"],
        session=s,
    )
    return a, b


def _items(a, b) -> list[services.ChargeItem]:
    rows = [
        (
            a,
            "80.00",
            1,
            [
                {"code": "electricity", "category": "residential", "amount": "75.00"},
                {"code": "fund", "category": "residential", "amount": "5.00"},
            ],
        ),
        (b, "300.00", 2, None),
        (a, "90.00", 3, None),  # a's prepayment (150.00) covers 80.00 and 70.00 of this one
        (b, "45.50", 4, [{"code": "electricity", "category": "residential", "amount": "45.50"}]),
    ]
    return [
        services.ChargeItem(
            account=acc,
            amount=D(amount),
            source_type="billing.bill",
            source_id=n,
            document_no=f"BILL{n}",
            due_date=date(2026, 4, 24),
            lines=lines,
            memo="2026-03 电费",
        )
        for acc, amount, n, lines in rows
    ]


def _state(accounts) -> dict:
    """Everything a charge writes, without ids (entries named by document number)."""
    docs = dict(LedgerEntry.objects.values_list("pk", "document_no"))
    entry_fields = ("document_no", "account_id", "org_id", "kind", "amount", "due_date", "business_date")
    entry_fields += ("posted_at", "source_type", "source_id", "late_fee_class", "actor_id", "memo")
    lines = LedgerLine.objects.values_list("entry_id", "account_id", "gl", "amount")
    charge_lines = ChargeLine.objects.values_list("entry_id", "code", "category", "amount")
    allocs = Allocation.objects.values_list("credit_id", "debit_id", "component", "amount", "by_entry_id")
    return {
        "entries": sorted(LedgerEntry.objects.values_list(*entry_fields), key=str),
        "lines": sorted(((docs[e], a, g, amt) for e, a, g, amt in lines), key=str),
        "charge_lines": sorted(((docs[e], c, k, amt) for e, c, k, amt in charge_lines), key=str),
        "allocations": sorted(((docs[c], docs[d], k, amt, docs[b]) for c, d, k, amt, b in allocs), key=str),
        "balances": [queries.balance(acc) for acc in accounts],
        "prepayments": [queries.prepayment(acc) for acc in accounts],
        "open_items": [
            [(i.entry.document_no, i.open) for i in queries.open_items(acc, on=date(2026, 4, 10))]
            for acc in accounts
        ],
    }


@pytest.mark.django_db
def test_post_charges_equals_one_post_charge_per_item(accs, utility):
    a, b = accs
    actor = utility.users["admin"]
    items = _items(a, b)
    try:
        with transaction.atomic():
            for it in items:
                services.post_charge(
                    account=it.account,
                    amount=it.amount,
                    source_type=it.source_type,
                    source_id=it.source_id,
                    document_no=it.document_no,
                    due_date=it.due_date,
                    at=AT,
                    actor=actor,
                    lines=it.lines,
                    memo=it.memo,
                )
            one_by_one = _state([a, b])
            raise _Rollback
    except _Rollback:
        pass
    assert LedgerEntry.objects.filter(source_type="billing.bill").count() == 0

    assert services.post_charges(items=items, at=AT, actor=actor) == 4
    batch = _state([a, b])
    assert batch == one_by_one
    # a's prepayment went to its new charges, b owes everything
    assert batch["prepayments"] == [D("0.00"), D("0.00")]
    assert batch["balances"] == [D("20.00"), D("445.50")]
    assert batch["open_items"][0] == [("BILL3", D("20.00"))]
    assert queries.ledger_check()["balanced"], queries.ledger_check()
    log = AuditLog.objects.get(action="ledger.charges")
    assert log.after["count"] == 4 and D(log.after["total"]) == D("515.50")


@pytest.mark.django_db
def test_post_charges_is_idempotent(accs, utility):
    a, b = accs
    items = _items(a, b)
    services.post_charge(
        account=b,
        amount=D("300.00"),
        source_type="billing.bill",
        source_id=2,
        document_no="BILL2",
        due_date=date(2026, 4, 24),
        at=AT,
        actor=None,
    )
    assert services.post_charges(items=items + items[:1], at=AT, actor=None) == 3  # 2 was posted, 1 twice
    before = _state([a, b])
    assert services.post_charges(items=items, at=AT, actor=None) == 0
    assert _state([a, b]) == before
    assert LedgerEntry.objects.filter(source_type="billing.bill").count() == 4
    assert queries.ledger_check()["balanced"]


@pytest.mark.django_db
def test_post_charges_validates_everything_first(accs):
    a, b = accs
    items = _items(a, b)
    bad = services.ChargeItem(
        account=a,
        amount=D("10.001"),
        source_type="billing.bill",
        source_id=9,
        document_no="",
        due_date=date(2026, 4, 24),
    )
    with pytest.raises(services.UnableToPost) as exc:
        services.post_charges(items=[*items, bad], at=AT, actor=None)
    paths = {e.path for e in exc.value.errors}
    assert {"items[4].amount", "items[4].document_no"} <= paths
    assert LedgerEntry.objects.filter(source_type="billing.bill").count() == 0
