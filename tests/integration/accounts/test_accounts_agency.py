"""Agency collection (代收) files: the whole file validated before anything is posted, on-time
payments posted set-based with the same rows as `take_payment`, late payments through the general
path (late fees charged), every transaction posted once."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from mmis.accounts import agency, queries, services
from mmis.accounts.models import AgencyFile, Allocation, LedgerEntry, Payment
from mmis.common.errors import InvalidInput
from mmis.org.models import AuditLog
from mmis_testing import bill_charge, individual_account

pytestmark = pytest.mark.django_db


def _t(dt):
    return timezone.localtime(dt).strftime("%Y-%m-%d %H:%M:%S")


def _shape(acc):
    """What the ledger holds for an account, without ids and numbers: entries (kind, amount,
    business date, memo) and allocations (component, amount, debit kind and amount)."""
    entries = sorted(
        (e.kind, e.amount, e.business_date, e.memo)
        for e in LedgerEntry.objects.filter(account=acc).exclude(source_type="bill")
    )
    allocs = sorted(
        (a.component, a.amount, a.debit.kind, a.debit.amount, a.credit.amount)
        for a in Allocation.objects.filter(account=acc).select_related("debit", "credit")
    )
    return entries, allocs


def _scenario(utility, base):
    """Accounts with bills: (account, payments [(amount, paid_at)]) covering on time, partial,
    over, two payments of one account, and late."""
    today = timezone.localdate()
    now = timezone.now()
    a = individual_account(utility, base + 1, name="代收")
    bill_charge(a, "120.50", 1, today + timedelta(days=10))
    bill_charge(a, "80.00", 2, today + timedelta(days=40))
    b = individual_account(utility, base + 2, name="代收")
    bill_charge(b, "60.00", 1, today + timedelta(days=5))
    c = individual_account(utility, base + 3, name="代收")
    bill_charge(c, "300.00", 1, today - timedelta(days=20))  # overdue: a late fee on payment
    bill_charge(c, "50.00", 2, today + timedelta(days=10))
    d = individual_account(utility, base + 4, name="代收")  # nothing owed: all prepayment
    return [
        (a, [(D("150.00"), now - timedelta(hours=5)), (D("60.00"), now - timedelta(hours=1))]),
        (b, [(D("100.00"), now - timedelta(hours=3))]),
        (c, [(D("400.00"), now - timedelta(hours=2))]),
        (d, [(D("35.00"), now - timedelta(hours=4))]),
    ]


def test_file_posts_the_same_rows_as_take_payment(utility):
    admin = utility.users["admin"]
    now = timezone.now()
    filed = _scenario(utility, 10)
    by_hand = _scenario(utility, 20)
    lines = ["txn_id,account_no,amount,paid_at"]
    for acc, pays in filed:
        for k, (amount, at) in enumerate(pays):
            lines.append(f"DS{acc.pk}-{k},{acc.account_no},{amount},{_t(at)}")
    report = agency.import_file(
        org=utility.province, agency="示范银行", content="\n".join(lines) + "\n", actor=admin, at=now
    )
    assert report["rows"] == 5 and report["posted"] == 5 and report["already_posted"] == 0
    assert report["late_or_prepaid"] == 1  # account c pays an overdue bill: the general path
    assert report["posted_amount"] == "745.00"
    # the same payments, one by one through the general use case, in the order they were made
    rows = sorted(
        ((at.replace(microsecond=0), acc, amount) for acc, pays in by_hand for amount, at in pays),
        key=lambda r: r[0],
    )
    for at, acc, amount in rows:
        services.take_payment(account=acc, amount=amount, channel="agency", at=at, actor=admin)
    for (fa, _p), (ha, _q) in zip(filed, by_hand, strict=True):
        assert _shape(fa) == _shape(ha)
        assert services.available_credit(fa) == services.available_credit(ha)
    # a: 150 pays bill 1 (120.50) and 29.50 of bill 2; then 50.50 settles it, 9.50 prepaid
    a = filed[0][0]
    assert services.available_credit(a) == D("9.50")
    # c: paid late: a late fee was charged by the rules
    c = filed[2][0]
    assert LedgerEntry.objects.filter(account=c, kind="late_fee").exists()
    p = Payment.objects.get(channel="agency", channel_txn_id=f"DS{a.pk}-0")
    assert p.reference == "示范银行" and p.amount == D("150.00") and p.session_id is None
    assert queries.ledger_check()["balanced"]
    f = AgencyFile.objects.get()
    assert f.posted == 5 and f.total_amount == D("745.00")
    assert AuditLog.objects.filter(action="agency.import", actor=admin).count() == 1


def test_each_transaction_is_posted_once(utility):
    admin = utility.users["admin"]
    acc = individual_account(utility, 31, name="代收")
    bill_charge(acc, "90.00", 1, timezone.localdate() + timedelta(days=9))
    at = _t(timezone.now() - timedelta(hours=1))
    content = f"T1,{acc.account_no},40.00,{at}\nT2,{acc.account_no},50.00,{at}\n"
    first = agency.import_file(
        org=utility.province, agency="甲", content=content, actor=admin, at=timezone.now()
    )
    again = agency.import_file(
        org=utility.province, agency="甲", content=content, actor=admin, at=timezone.now()
    )
    assert again == {**first, "already_imported": True}
    # another file repeating T2: that line is skipped, the new one posted
    other = f"T2,{acc.account_no},50.00,{at}\nT3,{acc.account_no},5.00,{at}\n"
    r = agency.import_file(org=utility.province, agency="甲", content=other, actor=admin, at=timezone.now())
    assert (r["posted"], r["already_posted"]) == (1, 1)
    assert Payment.objects.filter(account=acc).count() == 3
    assert services.available_credit(acc) == D("5.00")


def test_a_bad_file_is_refused_whole_with_every_error_named(utility):
    admin = utility.users["admin"]
    acc = individual_account(utility, 41, name="代收")
    bill_charge(acc, "90.00", 1, timezone.localdate() + timedelta(days=9))
    at = _t(timezone.now() - timedelta(hours=1))
    future = _t(timezone.now() + timedelta(days=1))
    content = "\n".join(
        [
            "txn_id,account_no,amount,paid_at",
            f"A1,{acc.account_no},10.00,{at}",  # good
            f"A2,{acc.account_no},-5,{at}",
            f"A3,{acc.account_no},0,{at}",
            f"A4,{acc.account_no},1.001,{at}",
            f"A1,{acc.account_no},1.00,{at}",  # duplicate transaction
            f"A5,{acc.account_no},1.00,yesterday",
            f"A6,{acc.account_no},1.00,{future}",
            ",x,1.00,{at}",
            "A7,1",
        ]
    )
    with pytest.raises(InvalidInput) as exc:
        agency.import_file(org=utility.province, agency="甲", content=content, actor=admin, at=timezone.now())
    paths = {e.path for e in exc.value.errors}
    assert paths == {
        "lines[3].amount",
        "lines[4].amount",
        "lines[5].amount",
        "lines[6].txn_id",
        "lines[7].paid_at",
        "lines[8].paid_at",
        "lines[9].txn_id",
        "lines[9].paid_at",
        "lines[9].account_no",  # an unknown account, named with the line's other errors
        "lines[10]",
    }
    assert not Payment.objects.filter(account=acc).exists() and not AgencyFile.objects.exists()
    # unknown account, and an account outside the importing org: refused, nothing posted
    content = f"B1,{acc.account_no},10.00,{at}\nB2,9999999999,10.00,{at}\n"
    with pytest.raises(InvalidInput) as exc:
        agency.import_file(org=utility.province, agency="甲", content=content, actor=admin, at=timezone.now())
    assert [(e.path, e.message) for e in exc.value.errors] == [
        ("lines[2].account_no", "unknown account 9999999999")
    ]
    other_station = utility.stations[1]
    with pytest.raises(InvalidInput) as exc:
        agency.import_file(
            org=other_station,
            agency="甲",
            content=f"B1,{acc.account_no},10.00,{at}\n",
            actor=admin,
            at=timezone.now(),
        )
    assert exc.value.errors[0].path == "lines[1].account_no"
    with pytest.raises(InvalidInput) as exc:
        agency.import_file(org=utility.province, agency=" ", content="B1", actor=admin, at=timezone.now())
    assert exc.value.errors[0].path == "agency"
    assert not Payment.objects.filter(account=acc).exists()


def test_cli_imports_a_file_and_names_bad_lines(utility, tmp_path, capsys):
    from mmis.cli import cmd_agency_import

    acc = individual_account(utility, 51, name="代收")
    bill_charge(acc, "20.00", 1, timezone.localdate() + timedelta(days=9))
    at = _t(timezone.now() - timedelta(hours=1))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"C1,{acc.account_no},1.234,{at}\n", encoding="utf-8")
    assert cmd_agency_import.run([str(bad), "--agency", "乙", "--org", utility.province.code]) == 2
    assert "lines[1].amount: money has at most two decimals" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text(f"C1,{acc.account_no},20.00,{at}\n", encoding="utf-8")
    assert cmd_agency_import.run([str(good), "--agency", "乙", "--org", utility.province.code]) == 0
    assert '"posted": 1' in capsys.readouterr().out
    assert queries.arrears(None, on=timezone.localdate() + timedelta(days=30)) == []
    assert cmd_agency_import.run([str(good), "--agency", "乙", "--org", "NOPE"]) == 2
    assert "org: no org 'NOPE'" in capsys.readouterr().err
