"""The lean, group-committed path of API counter payments (PostgreSQL): the same rows as the
general `take_payment`, the caller's token, role and scope checked live (a revocation counts at
once), declines handed to the general path, batches of several payments, and a failed batch
retried one by one."""

import hashlib
import json
import threading
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mmis.accounts import counter, queries, services
from mmis.accounts.models import Allocation, Approval, CashierSession, LedgerEntry, Payment, PrepaidAccount
from mmis.org import services as org_services
from mmis.org.models import ApiToken, AuditLog
from mmis_testing import bill_charge, individual_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ROLES = ("cashier", "counter_staff", "manager", "administrator")


@pytest.fixture(autouse=True)
def _pg_only():
    if connection.vendor != "postgresql":
        pytest.skip("the lean path runs on PostgreSQL (MMIS_DATABASE_URL)")


def _individual(utility, n):
    return individual_account(utility, n, name="测试")


def _charge(acc, amount, n, due):
    return bill_charge(acc, amount, n, due)


def _request(user, acc, amount, key, **kw):
    body = {
        "account_no": acc.account_no,
        "amount": amount,
        "channel": kw.get("channel", "cash"),
        "bill_document_no": None,
        "require_open": False,
        "reference": "",
        "channel_txn_id": "",
    }
    return counter.CounterPayment(
        token=kw.get("token"),
        user_id=None if kw.get("token") else user.pk,
        account_no=acc.account_no,
        amount=D(amount),
        channel=body["channel"],
        roles=ROLES,
        idempotency_key=key,
        body=body,
        at=kw.get("at") or timezone.now(),
    )


def _statements(ctx):
    """The statements run, less savepoints (the test's transaction) and the org policy lookup
    (cached per process once a transaction commits, which a test's transaction never does)."""
    return [
        q["sql"]
        for q in ctx.captured_queries
        if "SAVEPOINT" not in q["sql"] and "accounts_policy" not in q["sql"]
    ]


def _request_hash(user, body):
    return hashlib.sha256(json.dumps({"u": user.pk, **body}, sort_keys=True).encode()).hexdigest()


def _setup_debts(acc, utility, manager):
    """Two overdue charges (one with an approved late-fee waiver), one not yet due, and an earlier
    partial payment that already charged a late fee on the oldest."""
    today = timezone.localdate()
    # small enough that the fee on what is left stays under the 1.00 minimum, which applies to a
    # bill's first fee only (minimum scope "bill")
    old = _charge(acc, "20.00", 1, today - timedelta(days=40))
    waived = _charge(acc, "50.00", 2, today - timedelta(days=10))
    _charge(acc, "80.00", 3, today + timedelta(days=20))
    ap = services.request_approval(
        kind="late_fee_waiver",
        account=acc,
        actor=utility.users["counter_a"],
        at=timezone.now(),
        reason="抄表差错",
        target=waived,
    )
    services.decide_approval(approval=ap, approve=True, actor=manager, at=timezone.now())
    session = services.open_session(cashier=utility.users["admin"], at=timezone.now())
    services.take_payment(
        account=acc,
        amount="5.00",
        channel="cash",
        at=timezone.now() - timedelta(days=5),
        actor=utility.users["admin"],
        session=session,
    )
    assert LedgerEntry.objects.filter(account=acc, kind="late_fee", refers_to=old).exists()
    return session


def _effect(payment: Payment) -> dict:
    """What a payment wrote, with ids replaced by what they stand for (comparable across accounts)."""
    entry = payment.entry
    acc = payment.account
    name = {entry.pk: "payment"}
    for e in LedgerEntry.objects.filter(account=acc).exclude(pk=entry.pk):
        name[e.pk] = e.document_no if e.kind != "late_fee" else f"fee({e.refers_to.document_no})"
    docs = [d.replace(f"B{acc.pk}-", "B-") for d in name.values()]
    fees = LedgerEntry.objects.filter(origin=entry).order_by("pk")
    entries = [entry, *fees]

    def ref(pk):
        return None if pk is None else name[pk].replace(f"B{acc.pk}-", "B-")

    audit = AuditLog.objects.get(action="payment.take", target_id=str(entry.pk))
    return {
        "entries": [
            (
                e.kind,
                e.amount,
                e.due_date,
                e.business_date,
                e.posted_at,
                e.document_no[:2],
                ref(e.refers_to_id),
                ref(e.origin_id),
                e.late_fee_class,
                e.actor_id,
                e.memo,
                e.source_type,
                e.source_id,
                e.org_id,
            )
            for e in entries
        ],
        "ids_in_order": [e.pk for e in entries] == sorted(e.pk for e in entries),
        "lines": [
            (ref(ln.entry_id), ln.account_id == acc.pk, ln.gl, ln.amount)
            for e in entries
            for ln in e.lines.order_by("pk")
        ],
        "allocations": sorted(
            (ref(a.credit_id), ref(a.debit_id), a.component, a.amount, a.at, ref(a.by_entry_id))
            for a in Allocation.objects.filter(by_entry=entry)
        ),
        "payment": (
            payment.org_id,
            payment.channel,
            payment.amount,
            payment.paid_at,
            payment.business_date,
            payment.receipt_no == entry.document_no,
            payment.session_id,
            payment.cashier_id,
            payment.reference,
            payment.channel_txn_id,
        ),
        "audit": (
            audit.actor_id,
            audit.actor_name,
            audit.org_id,
            audit.target_type,
            audit.target_repr == f"{entry.document_no} payment {entry.amount}",
            {k: v for k, v in audit.after.items() if k not in ("account", "receipt_no")},
            audit.after["receipt_no"] == entry.document_no,
            audit.after["account"] == acc.account_no,
        ),
        "debts": len(docs),
        "balance": queries.balance(acc),
    }


def test_same_rows_as_take_payment(utility):
    admin, manager = utility.users["admin"], utility.users["manager"]
    lean_acc, general_acc = _individual(utility, 1), _individual(utility, 2)
    session = _setup_debts(lean_acc, utility, manager)
    _setup_debts(general_acc, utility, manager)
    at = timezone.now()
    req = _request(admin, lean_acc, "200.00", "k-lean", at=at)
    (out,) = counter.take_counter_payments([req])
    assert out is not None
    general = services.take_payment(
        account=general_acc,
        amount="200.00",
        channel="cash",
        at=at,
        actor=admin,
        session=session,
        idempotency_key="k-general",
    )
    lean = Payment.objects.get(idempotency_key="k-lean")
    lean_effect, general_effect = _effect(lean), _effect(general)
    assert lean_effect == general_effect
    # a late fee on the oldest charge, none on the waived one, oldest debt first, rest allocated
    kinds = [e[0] for e in lean_effect["entries"]]
    assert kinds == ["payment", "late_fee"]
    assert {a[1] for a in lean_effect["allocations"]} == {"B-1", "fee(B-1)", "B-2", "B-3"}
    fee = lean_effect["entries"][1][1]
    assert D("0") < fee < D("1.00")  # no second minimum on the same bill
    assert lean.request_hash == _request_hash(admin, req.body)
    assert out == {
        "id": lean.pk,
        "receipt_no": lean.receipt_no,
        "account_no": lean_acc.account_no,
        "amount": "200.00",
        "channel": "cash",
        "paid_at": at.isoformat(),
        "business_date": session.business_date.isoformat(),
        "balance": str(queries.balance(lean_acc)),
        "reversed": False,
    }
    assert queries.ledger_check()["balanced"]


def test_a_batch_of_payments_in_one_transaction(utility):
    admin = utility.users["admin"]
    services.open_session(cashier=admin, at=timezone.now())
    accs = [_individual(utility, n) for n in range(3, 7)]
    due = timezone.localdate() + timedelta(days=10)
    for a in accs:
        _charge(a, "30.00", 1, due)
    # the same account twice: two rounds, the second payment sees what the first allocated
    reqs = [_request(admin, a, "20.00", f"k{i}") for i, a in enumerate(accs)]
    reqs.append(_request(admin, accs[0], "20.00", "k-again"))
    with CaptureQueriesContext(connection) as ctx:
        results = counter.take_counter_payments(reqs)
    assert all(r is not None for r in results)
    statements = _statements(ctx)
    # round 1: resolve + lock, locked reads, one INSERT statement; round 2 the same for one payment
    assert len(statements) == 6, statements
    for a in accs[1:]:
        assert queries.balance(a) == D("10.00")
    assert queries.balance(accs[0]) == D("-10.00")
    second = Payment.objects.get(idempotency_key="k-again")
    assert [(x.amount, x.debit.document_no) for x in second.entry.allocations_out.all()] == [
        (D("10.00"), f"B{accs[0].pk}-1")
    ]
    assert results[-1]["balance"] == "-10.00"
    # the same key again: declined (the API answers the replay through the general path)
    assert counter.take_counter_payments([_request(admin, accs[1], "20.00", "k1")]) == [None]
    assert Payment.objects.count() == 5
    assert queries.ledger_check()["balanced"]


def test_a_failed_batch_is_retried_one_by_one(utility, monkeypatch):
    admin = utility.users["admin"]
    services.open_session(cashier=admin, at=timezone.now())
    accs = [_individual(utility, n) for n in range(7, 10)]
    first = counter.take_counter_payments([_request(admin, accs[0], "5.00", "first")])[0]
    # the batch's first receipt number is taken (and again when that payment is retried alone)
    taken = first["receipt_no"]
    numbers = iter([taken, "SK-B", "SK-C", taken, "SK-E", "SK-F"])
    monkeypatch.setattr(counter, "new_number", lambda prefix, on: next(numbers))
    results = counter.take_counter_payments([_request(admin, a, "5.00", f"r{i}") for i, a in enumerate(accs)])
    assert [r is not None for r in results] == [False, True, True]
    assert Payment.objects.filter(idempotency_key__in=["r1", "r2"]).count() == 2
    assert not Payment.objects.filter(idempotency_key="r0").exists()
    assert queries.ledger_check()["balanced"]


def test_declines_leave_nothing_written(utility):
    admin = utility.users["admin"]
    acc = _individual(utility, 10)
    # no open session: declined (the API opens one and takes the general path)
    assert counter.take_counter_payments([_request(admin, acc, "5.00", "d1")]) == [None]
    session = services.open_session(cashier=admin, at=timezone.now())
    PrepaidAccount.objects.create(account=acc, org_id=acc.org_id)
    assert counter.take_counter_payments([_request(admin, acc, "5.00", "d2")]) == [None]  # prepaid
    PrepaidAccount.objects.filter(account=acc).delete()
    CashierSession.objects.filter(pk=session.pk).update(state="closed")
    assert counter.take_counter_payments([_request(admin, acc, "5.00", "d3")]) == [None]  # closed
    outsider = utility.users["counter_b"]  # another county: out of scope
    services.open_session(cashier=outsider, at=timezone.now())
    assert counter.take_counter_payments([_request(outsider, acc, "5.00", "d4")]) == [None]
    assert not Payment.objects.exists() and not LedgerEntry.objects.filter(kind="payment").exists()


def _api(client, token, acc, amount, key):
    return client.post(
        "/api/v1/payments",
        data=json.dumps({"account_no": acc.account_no, "amount": amount, "channel": "cash"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_api_takes_the_lean_path_and_answers_like_the_general_one(utility):
    acc = utility.customers["a"].accounts.get()
    _charge(acc, "120.00", 1, timezone.localdate() + timedelta(days=10))
    cashier = utility.users["counter_a"]
    token = org_services.issue_api_token(user=cashier, name="t")
    client = Client()
    assert _api(client, token, acc, "20.00", "warm").status_code == 201  # opens the session
    with CaptureQueriesContext(connection) as ctx:
        r = _api(client, token, acc, "20.00", "k1")
    assert r.status_code == 201, r.content
    sql = _statements(ctx)
    # resolve + lock, locked reads, one INSERT statement
    assert sql == [counter._SQL["resolve"], counter._SQL["locked"], counter._SQL["post"]], sql
    body = r.json()
    p = Payment.objects.get(idempotency_key="k1")
    assert body["receipt_no"] == p.receipt_no and body["balance"] == "80.00"
    assert p.cashier == cashier and p.session.cashier == cashier
    # replay: 200 with the same receipt; the same key with another body: 422
    again = _api(client, token, acc, "20.00", "k1")
    assert again.status_code == 200 and again.json()["receipt_no"] == p.receipt_no
    conflict = _api(client, token, acc, "21.00", "k1")
    assert conflict.status_code == 422 and conflict.json()["errors"][0]["path"] == "Idempotency-Key"
    # bad input and unknown accounts answer as before
    bad = _api(client, token, acc, "1.001", "k2")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "amount"
    other = utility.customers["b"].accounts.get()  # another county
    assert _api(client, token, other, "1.00", "k3").status_code == 404
    assert _api(client, "mmis_not-a-token", acc, "1.00", "k4").status_code == 401
    assert Payment.objects.filter(account=acc).count() == 2
    assert queries.ledger_check()["balanced"]


def test_revoked_token_role_or_grant_counts_at_once(utility):
    acc = utility.customers["a"].accounts.get()
    cashier = utility.users["counter_a"]
    admin = utility.users["admin"]
    token = org_services.issue_api_token(user=cashier, name="t")
    client = Client()
    assert _api(client, token, acc, "1.00", "a1").status_code == 201
    # the scope grant revoked: the account is out of scope at once
    org_services.revoke_scope(user=cashier, org=utility.counties[0], actor=admin)
    assert _api(client, token, acc, "1.00", "a2").status_code == 404
    org_services.grant_scope(user=cashier, org=utility.counties[0], actor=admin)
    assert _api(client, token, acc, "1.00", "a3").status_code == 201
    # the paying role taken away: 403
    org_services.set_roles(user=cashier, roles=["meter_reader"], actor=admin)
    assert _api(client, token, acc, "1.00", "a4").status_code == 403
    org_services.set_roles(user=cashier, roles=["counter_staff"], actor=admin)
    # the token revoked (a plain UPDATE, no signal to hear): 401 at once
    ApiToken.objects.filter(user=cashier).update(revoked_at=timezone.now())
    assert _api(client, token, acc, "1.00", "a5").status_code == 401
    # a new token, then the user deactivated: 401
    token2 = org_services.issue_api_token(user=cashier, name="t2")
    assert _api(client, token2, acc, "1.00", "a6").status_code == 201
    type(cashier).objects.filter(pk=cashier.pk).update(is_active=False)
    assert _api(client, token2, acc, "1.00", "a7").status_code == 401
    assert set(Payment.objects.values_list("idempotency_key", flat=True)) == {"a1", "a3", "a6"}


def test_signed_in_user_takes_the_lean_path_too(login, utility):
    acc = utility.customers["a"].accounts.get()
    c = login(utility.users["counter_a"])
    services.open_session(cashier=utility.users["counter_a"], at=timezone.now())
    with CaptureQueriesContext(connection) as ctx:
        r = c.post(
            "/api/v1/payments",
            data=json.dumps({"account_no": acc.account_no, "amount": "3.00", "channel": "pos"}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="s1",
        )
    assert r.status_code == 201, r.content
    assert any(q["sql"] == counter._SQL["post"] for q in ctx.captured_queries)
    p = Payment.objects.get(idempotency_key="s1")
    assert p.channel == "pos" and p.entry.lines.filter(gl="pos", amount=D("3.00")).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_are_group_committed(utility):
    admin = utility.users["admin"]
    services.open_session(cashier=admin, at=timezone.now())
    accs = [_individual(utility, n) for n in range(20, 26)]
    for a in accs:
        _charge(a, "50.00", 1, timezone.localdate() + timedelta(days=10))
    n_threads = 12
    barrier = threading.Barrier(n_threads)
    out: list = [None] * n_threads

    def pay(i):
        try:
            barrier.wait()
            # two payments per account, and one key sent twice at the same moment
            key = "dup" if i in (10, 11) else f"c{i}"
            req = _request(admin, accs[i % 6], "30.00", key)
            out[i] = counter.take_counter_payment(
                token=None,
                user_id=admin.pk,
                account_no=req.account_no,
                amount=req.amount,
                channel=req.channel,
                roles=ROLES,
                idempotency_key=key,
                body=req.body,
                at=timezone.now(),
            )
        except Exception as exc:
            out[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(isinstance(o, Exception) for o in out), out
    assert sum(o is not None for o in out[:10]) == 10
    assert sum(o is not None for o in out[10:]) == 1  # the other copy is declined (a replay)
    assert Payment.objects.count() == 11
    for i, a in enumerate(accs):
        paid = Payment.objects.filter(account=a).count()
        assert queries.balance(a) == D("50.00") - paid * D("30.00"), i
        # never more allocated to the charge than it was
        assert sum(x.amount for x in Allocation.objects.filter(debit__account=a)) <= D("50.00")
    assert queries.ledger_check()["balanced"]
    assert not Approval.objects.exists()
