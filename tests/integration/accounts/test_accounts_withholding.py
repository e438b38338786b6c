"""The set-based bank withholding import (PostgreSQL): the same per-row errors as the row-by-row
validator, the same rows as the row-by-row posting (oldest debt first, a late-fee document just
before its debt), nothing posted twice."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from mmis.accounts import channels, queries, services, withholding
from mmis.accounts.models import Allocation, BankBatchLine, LedgerEntry, Payment, Policy
from mmis.common.errors import InvalidInput
from mmis.customers.models import Account
from mmis_testing import bill_charge, individual_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _pg_only():
    if connection.vendor != "postgresql":
        pytest.skip("the set-based import runs on PostgreSQL (MMIS_DATABASE_URL)")


def _account(utility, n):
    return individual_account(utility, n, name="代扣")


def _charge(acc, amount, n, due):
    return bill_charge(acc, amount, n, due)


def _batch_with(utility, accounts):
    Account.objects.filter(pk__in=[a.pk for a in accounts]).update(payment_method="bank_withholding")
    batch = channels.export_batch(org=utility.province, actor=utility.users["admin"], at=timezone.now())
    Account.objects.filter(pk__in=[a.pk for a in accounts]).update(payment_method="counter")
    return batch


def test_errors_are_those_of_the_row_by_row_validator(utility):
    accs = [_account(utility, n) for n in range(1, 4)]
    for i, a in enumerate(accs):
        _charge(a, "40.00", 1, timezone.localdate() + timedelta(days=10 + i))
    batch = _batch_with(utility, accs)
    lines = {ln.account_id: ln for ln in batch.lines.all()}
    a, b, c = (lines[x.pk] for x in accs)
    content = "\n".join(
        [
            f"#MMIS-RESULT,{batch.batch_no}",
            f"{a.line_no},{accs[0].account_no},40.00,0000,T1",
            f"{a.line_no},{accs[0].account_no},40.00,0000,T2",  # duplicate line
            "x7,1,1.00,0000,T3",  # not a line number
            f"{b.line_no},6100000000,40.00,0000,T1",  # unknown account, duplicate txn
            f"{c.line_no},{accs[2].account_no},1.001,0000,",  # three decimals, no txn
            "999,1,1.00,0000,T9",  # not in the batch
            "1,2",  # too few fields
            f" {c.line_no} ,{accs[2].account_no},abc,3001,",  # spaces around the line: a duplicate
            f"{c.line_no + 100},{accs[2].account_no},0,0000,T5",  # zero, not in batch
        ]
    )
    with pytest.raises(InvalidInput) as python_way:
        channels._parse_results(batch, content)
    with pytest.raises(InvalidInput) as set_based:
        withholding.validate(batch, content)
    expected = [(e.path, e.message) for e in python_way.value.errors]
    assert [(e.path, e.message) for e in set_based.value.errors] == expected
    assert ("rows[3].line_no", "'x7' is not a line number") in expected
    assert any(m.startswith("duplicate bank transaction") for _p, m in expected)
    # amount errors of a good line: the exact messages of parse_amount
    bad_amounts = (
        f"{a.line_no},{accs[0].account_no},-1,3001,\n{b.line_no},{accs[1].account_no},0.00,0000,T8\n"
    )
    with pytest.raises(InvalidInput) as python_way:
        channels._parse_results(batch, bad_amounts)
    with pytest.raises(InvalidInput) as set_based:
        withholding.validate(batch, bad_amounts)
    assert [(e.path, e.message) for e in set_based.value.errors] == [
        (e.path, e.message) for e in python_way.value.errors
    ]
    assert not Payment.objects.exists()


def _setup(utility, acc):
    """An open late-fee document just before its open debt, an older and a newer debt."""
    today = timezone.localdate()
    _charge(acc, "30.00", 1, today - timedelta(days=50))
    first = _charge(acc, "100.00", 2, today - timedelta(days=30))
    _charge(acc, "50.00", 3, today + timedelta(days=10))
    session = services.open_session(cashier=utility.users["admin"], at=timezone.now())
    # principal first: the fee is charged after the principal and left open when money runs out
    Policy.objects.update_or_create(org=utility.province, defaults={"allocation_order": "principal_first"})
    services.clear_policy_cache()
    services.take_payment(
        account=acc,
        amount="90.00",
        channel="cash",
        at=timezone.now(),
        actor=utility.users["admin"],
        session=session,
    )
    Policy.objects.filter(org=utility.province).delete()
    services.clear_policy_cache()
    # the older debt is settled with its fee; the fee on the second is charged and left open
    fee = LedgerEntry.objects.get(account=acc, kind="late_fee", refers_to=first)
    assert fee.amount > (fee.allocations_in.aggregate(t=Sum("amount"))["t"] or 0)


def _posted(acc):
    pay = Payment.objects.get(account=acc, channel="bank_withholding")
    names = {
        e.pk: e.document_no.replace(f"B{acc.pk}-", "B-") for e in LedgerEntry.objects.filter(account=acc)
    }
    for e in LedgerEntry.objects.filter(account=acc, kind="late_fee"):
        names[e.pk] = f"fee({names[e.refers_to_id]})"
    e = pay.entry
    return {
        "entry": (
            e.kind,
            e.amount,
            e.due_date,
            e.business_date,
            e.org_id,
            e.memo,
            e.actor_id,
            e.late_fee_class,
        ),
        "lines": sorted((ln.gl, ln.amount, ln.account_id == acc.pk) for ln in e.lines.all()),
        "allocations": [
            (names[x.debit_id], x.component, x.amount, x.by_entry_id == e.pk)
            for x in Allocation.objects.filter(credit=e).order_by("pk")
        ],
        "payment": (
            pay.amount,
            pay.org_id,
            pay.business_date,
            pay.receipt_no == e.document_no,
            pay.session_id,
        ),
        "balance": queries.balance(acc),
    }


def test_same_rows_as_the_row_by_row_posting(utility):
    set_acc, row_acc = _account(utility, 5), _account(utility, 6)
    _setup(utility, set_acc)
    _setup(utility, row_acc)
    at = timezone.now()
    results = []
    for acc in (set_acc, row_acc):
        batch = _batch_with(utility, [acc])
        (line,) = batch.lines.all()
        results.append((batch, f"{line.line_no},{acc.account_no},{line.amount},0000,TX{acc.pk}\n"))
        # a charge posted after the export, due before the others: the debit settles it first,
        # then the fee document, and leaves 10.00 on its debt (and the newest untouched)
        second = LedgerEntry.objects.get(account=acc, document_no=f"B{acc.pk}-2")
        open_second = second.amount - (second.allocations_in.aggregate(t=Sum("amount"))["t"] or 0)
        _charge(acc, str(D("50.00") + open_second - D("10.00")), 4, timezone.localdate() - timedelta(days=60))
    (b1, c1), (b2, c2) = results
    report = channels.import_results(batch=b1, content=c1, actor=None, at=at)
    assert report["posted"] == 1 and report["paid"] == 1
    rows, _lines = channels._parse_results(b2, c2)
    assert channels._post_withholding_chunk(batch=b2, rows=rows, actor=None, at=at) == 1
    set_based, row_by_row = _posted(set_acc), _posted(row_acc)
    assert set_based == row_by_row
    assert [a[0] for a in set_based["allocations"]] == ["B-4", "fee(B-2)", "B-2"]
    assert set_based["allocations"][0][2] > set_based["allocations"][2][2]
    # the line is paid with the bank's transaction and linked to the payment
    line = BankBatchLine.objects.get(batch=b1)
    assert (
        line.state == "paid"
        and line.bank_txn_id == f"TX{set_acc.pk}"
        and line.payment.account_id == set_acc.pk
    )
    assert queries.ledger_check()["balanced"]


def test_failures_mismatches_and_a_second_import(utility):
    accs = [_account(utility, n) for n in range(7, 10)]
    for a in accs:
        _charge(a, "20.00", 1, timezone.localdate() + timedelta(days=5))
    batch = _batch_with(utility, accs)
    ln = {x.account_id: x.line_no for x in batch.lines.all()}
    content = (
        f"{ln[accs[0].pk]},{accs[0].account_no},20.00,0000,OK1\n"
        f"{ln[accs[1].pk]},{accs[1].account_no},19.00,0000,MM1\n"  # amount differs: suspense
        f"{ln[accs[2].pk]},{accs[2].account_no},20.00,3001,\n"  # refused by the bank
    )
    report = channels.import_results(batch=batch, content=content, actor=None, at=timezone.now(), chunk=1)
    assert report == {
        "lines": 3,
        "results": 3,
        "paid": 1,
        "paid_amount": "20.00",
        "failed": 1,
        "mismatch": 1,
        "mismatch_amount": "19.00",
        "no_result": 0,
        "posted": 1,
    }
    states = dict(BankBatchLine.objects.filter(batch=batch).values_list("account_id", "state"))
    assert states == {accs[0].pk: "paid", accs[1].pk: "mismatch", accs[2].pk: "failed"}
    assert BankBatchLine.objects.get(batch=batch, account=accs[2]).result_code == "3001"
    # the same lines posted again by hand (as a second import running at once would): nothing
    withholding.stage(batch, content)
    assert withholding.post_chunk(batch=batch, lo=1, hi=10, actor=None, at=timezone.now()) == 0
    withholding.clear()
    assert Payment.objects.count() == 1
    assert queries.ledger_check()["balanced"]
