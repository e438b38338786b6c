"""Races on PostgreSQL: two cashiers paying the same bill, the same callback delivered twice at
once, a payment during a bill release. No double posting, no lost payment."""

import json
import threading
from datetime import date
from decimal import Decimal as D

import pytest
from django.db import connection, connections
from django.utils import timezone

from mmis.accounts import channels, queries, services
from mmis.accounts.models import CallbackLog, LedgerEntry, Payment

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _pg_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (MMIS_DATABASE_URL)")


def race(*fns):
    """Run the functions at the same moment in threads (own connections); results or exceptions."""
    barrier = threading.Barrier(len(fns))
    out = [None] * len(fns)

    def run(i, fn):
        try:
            barrier.wait()
            out[i] = fn()
        except Exception as exc:  # collected for the assertions
            out[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_two_cashiers_pay_the_same_bill(utility):
    from mmis.org import services as org_services

    acc = utility.customers["a"].accounts.get()
    bill = services.post_charge(
        account=acc,
        amount=D("88.00"),
        source_type="bill",
        source_id=1,
        document_no="B1",
        due_date=date(2099, 1, 1),
        at=timezone.now(),
        actor=None,
    )
    c1 = utility.users["counter_a"]
    c2 = org_services.create_user(
        username="counter_a2", password="Mmis@2026-test", org=utility.counties[0], roles=["counter_staff"]
    )
    s1 = services.open_session(cashier=c1, at=timezone.now())
    s2 = services.open_session(cashier=c2, at=timezone.now())
    for _ in range(5):
        results = race(
            *[
                (
                    lambda c=c, s=s: services.take_payment(
                        account=acc,
                        amount="88.00",
                        channel="cash",
                        at=timezone.now(),
                        actor=c,
                        session=s,
                        designated=bill,
                        require_open=True,
                    )
                )
                for c, s in ((c1, s1), (c2, s2))
            ]
        )
        ok = [r for r in results if isinstance(r, Payment)]
        refused = [r for r in results if isinstance(r, Exception)]
        if len(ok) == 1:
            break
    assert len(ok) == 1 and len(refused) == 1, results
    assert "already settled" in str(refused[0])
    assert Payment.objects.count() == 1
    assert queries.balance(acc) == 0
    assert queries.ledger_check()["balanced"]


def test_same_callback_twice_at_once(utility):
    acc = utility.customers["a"].accounts.get()
    now = timezone.now()
    body = json.dumps(
        {
            "channel": "online",
            "txn_id": "T-RACE",
            "account_no": acc.account_no,
            "amount": "50.00",
            "paid_at": now.isoformat(),
            "timestamp": now.isoformat(),
        }
    ).encode()
    sig = channels.sign(body)
    results = race(*[lambda: channels.handle_callback(body=body, signature=sig, at=timezone.now())] * 4)
    posted = {r.pk for r in results if isinstance(r, Payment)}
    assert len(posted) <= 1 and Payment.objects.count() == 1
    assert queries.balance(acc) == D("-50.00")
    assert CallbackLog.objects.filter(outcome="posted").count() == 1
    assert queries.ledger_check()["balanced"]


def test_same_idempotency_key_in_parallel(utility):
    acc = utility.customers["a"].accounts.get()
    user = utility.users["admin"]
    results = race(
        *[
            lambda: services.take_payment(
                account=acc,
                amount="10.00",
                channel="online",
                at=timezone.now(),
                actor=user,
                idempotency_key="same",
                request_hash="h",
            )
        ]
        * 4
    )
    assert len({r.pk for r in results if isinstance(r, Payment)}) == 1, results
    assert Payment.objects.count() == 1


def test_payment_during_bill_release_is_not_lost(utility):
    acc = utility.customers["a"].accounts.get()
    user = utility.users["admin"]
    for n in range(5):
        race(
            lambda n=n: services.post_charge(
                account=acc,
                amount=D("100.00"),
                source_type="bill",
                source_id=100 + n,
                document_no=f"R{n}",
                due_date=date(2099, 1, 1),
                at=timezone.now(),
                actor=None,
            ),
            lambda n=n: services.take_payment(
                account=acc,
                amount="100.00",
                channel="online",
                at=timezone.now(),
                actor=user,
                channel_txn_id=f"P{n}",
            ),
            lambda n=n: services.post_charge(
                account=acc,
                amount=D("100.00"),
                source_type="bill",
                source_id=100 + n,
                document_no=f"R{n}",
                due_date=date(2099, 1, 1),
                at=timezone.now(),
                actor=None,
            ),
        )
    assert LedgerEntry.objects.filter(kind="charge").count() == 5
    assert Payment.objects.count() == 5
    assert queries.balance(acc) == 0
    assert queries.open_items(acc) == []
    assert queries.prepayment(acc) == 0
    assert queries.ledger_check()["balanced"]


def test_the_same_bank_result_file_imported_twice_at_once(utility):
    from mmis.customers.models import Account

    admin = utility.users["admin"]
    accs = [utility.customers[k].accounts.get() for k in ("a", "b")]
    Account.objects.filter(pk__in=[a.pk for a in accs]).update(payment_method="bank_withholding")
    for n, a in enumerate(accs):
        services.post_charge(
            account=a,
            amount=D("60.00"),
            source_type="bill",
            source_id=50 + n,
            document_no=f"W{n}",
            due_date=date(2099, 1, 1),
            at=timezone.now(),
            actor=None,
        )
    batch = channels.export_batch(org=utility.province, actor=admin, at=timezone.now())
    content = "".join(
        f"{ln.line_no},{ln.account.account_no},{ln.amount},0000,T{ln.line_no}\n"
        for ln in batch.lines.select_related("account")
    )

    def run():
        return channels.import_results(batch=batch, content=content, actor=admin, at=timezone.now(), chunk=1)

    out = race(run, run)
    posted = sum(r["posted"] for r in out if isinstance(r, dict))
    assert posted == 2, out
    assert Payment.objects.filter(channel="bank_withholding").count() == 2
    assert all(queries.balance(a) == 0 for a in accs)
    assert queries.ledger_check()["balanced"]
