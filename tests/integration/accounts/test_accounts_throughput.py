"""What the payments fast path keeps: the API token's last use written at most once a minute, the
org policy cache (never filled by an uncommitted read, dropped when a policy is saved), a bounded
number of queries per API payment, late fees still charged on overdue debts, and the set-based
bank-withholding import (several chunks, lines linked to their payments)."""

import json
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mmis.accounts import channels, queries, services
from mmis.accounts.models import BankBatchLine, LedgerEntry, Payment, Policy
from mmis.common.errors import InvalidInput
from mmis.customers.models import Account
from mmis.org import services as org_services
from mmis.org.models import ApiToken

pytestmark = pytest.mark.django_db


def _charge(acc, amount, n, due):
    return services.post_charge(
        account=acc,
        amount=D(amount),
        source_type="bill",
        source_id=n,
        document_no=f"B{n}",
        due_date=due,
        at=timezone.now(),
        actor=None,
    )


def test_token_last_used_written_at_most_once_a_minute(utility):
    user = utility.users["counter_a"]
    secret = org_services.issue_api_token(user=user, name="t")
    t0 = timezone.now()
    assert org_services.user_for_token(secret, at=t0) == user
    token = ApiToken.objects.get(user=user)
    assert token.last_used_at == t0
    # within the minute: found, but not written again
    assert org_services.user_for_token(secret, at=t0 + timedelta(seconds=59)) == user
    token.refresh_from_db()
    assert token.last_used_at == t0
    # a minute later: written
    later = t0 + timedelta(seconds=61)
    assert org_services.user_for_token(secret, at=later) == user
    token.refresh_from_db()
    assert token.last_used_at == later
    # revoked and unknown tokens still refused
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=later)
    assert org_services.user_for_token(secret, at=later + timedelta(minutes=5)) is None
    assert org_services.user_for_token("mmis_nope") is None


def test_policy_cache_needs_a_commit_and_drops_on_save(utility, django_capture_on_commit_callbacks):
    services.clear_policy_cache()
    org = utility.counties[0]
    pol = Policy.objects.create(org=utility.province, late_fee_minimum=D("2.00"))
    # read inside a transaction that has not committed: not cached
    services.policy_for(org)
    assert services._policy_cache == {}
    with django_capture_on_commit_callbacks(execute=True):
        assert services.policy_for(org).late_fee_minimum == D("2.00")
    with CaptureQueriesContext(connection) as ctx:
        assert services.policy_for(org).late_fee_minimum == D("2.00")
    assert len(ctx.captured_queries) == 0  # served from the cache
    pol.late_fee_minimum = D("3.00")
    pol.save()  # the signal drops the cache
    assert services._policy_cache == {}
    assert services.policy_for(org).late_fee_minimum == D("3.00")
    services.clear_policy_cache()


def test_api_payment_query_budget(utility):
    services.clear_policy_cache()
    acc = utility.customers["a"].accounts.get()
    _charge(acc, "120.00", 1, timezone.localdate() + timedelta(days=10))
    user = utility.users["counter_a"]
    secret = org_services.issue_api_token(user=user, name="t")
    client = Client()

    def pay(key):
        return client.post(
            "/api/v1/payments",
            data=json.dumps({"account_no": acc.account_no, "amount": "20.00", "channel": "cash"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    assert pay("k0").status_code == 201  # opens the session, writes last_used_at
    with CaptureQueriesContext(connection) as ctx:
        r = pay("k1")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["balance"] == "80.00" and body["reversed"] is False
    # (the test's own transaction turns the service's BEGIN/COMMIT into savepoints: not counted)
    sql = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert not any("org_apitoken" in s and s.startswith("UPDATE") for s in sql)
    # token, roles, replay check, account, scope, session, lock, replay check under the lock,
    # session+day lock, entry, lines, policy, debts, allocation, payment, audit, balance
    assert len(sql) <= 18, "\n".join(sql)
    # the replay answers 200 with the same receipt
    again = pay("k1")
    assert again.status_code == 200 and again.json()["receipt_no"] == body["receipt_no"]
    assert queries.ledger_check()["balanced"]


def test_overdue_debt_still_charges_a_late_fee(utility):
    acc = utility.customers["a"].accounts.get()
    cashier = utility.users["counter_a"]
    now = timezone.now()
    _charge(acc, "100.00", 1, timezone.localdate() - timedelta(days=20))
    session = services.open_session(cashier=cashier, at=now)
    services.take_payment(
        account=acc, amount="200.00", channel="cash", at=now, actor=cashier, session=session
    )
    fees = LedgerEntry.objects.filter(account=acc, kind="late_fee")
    assert fees.count() == 1 and fees.get().amount > 0
    assert queries.ledger_check()["balanced"]


def test_withholding_import_in_chunks(utility):
    admin = utility.users["admin"]
    a = utility.customers["a"].accounts.get()
    b = utility.customers["b"].accounts.get()
    Account.objects.filter(pk__in=[a.pk, b.pk]).update(payment_method="bank_withholding")
    due = timezone.localdate() + timedelta(days=5)
    older = _charge(a, "30.00", 1, due - timedelta(days=1))
    newer = _charge(a, "50.00", 2, due)
    _charge(b, "200.00", 3, due)
    batch = channels.export_batch(org=utility.province, actor=admin, at=timezone.now())
    lines = {ln.account_id: ln for ln in batch.lines.all()}
    assert lines[a.pk].amount == D("80.00") and lines[b.pk].amount == D("200.00")
    content = (
        f"{lines[b.pk].line_no},{b.account_no},200.00,0000,TB\n"
        f"{lines[a.pk].line_no},{a.account_no},80.00,0000,TA\n"
    )
    report = channels.import_results(batch=batch, content=content, actor=admin, at=timezone.now(), chunk=1)
    assert report["paid"] == 2 and report["posted"] == 2
    assert queries.balance(a) == 0 and queries.balance(b) == 0
    for acc_id, txn in ((a.pk, "TA"), (b.pk, "TB")):
        line = BankBatchLine.objects.get(pk=lines[acc_id].pk)
        assert line.state == "paid" and line.bank_txn_id == txn
        assert line.payment.account_id == acc_id and line.payment.channel_txn_id == txn
    # oldest debt first, both settled
    pay_a = Payment.objects.get(account=a)
    assert {(x.debit_id, x.amount) for x in pay_a.entry.allocations_out.all()} == {
        (older.pk, D("30.00")),
        (newer.pk, D("50.00")),
    }
    assert queries.ledger_check()["balanced"]
    with pytest.raises(InvalidInput):
        channels.import_results(batch=batch, content=content, actor=admin, at=timezone.now())
    assert Payment.objects.count() == 2
    # the next export has nothing left to collect
    assert channels.export_batch(org=utility.province, actor=admin, at=timezone.now()).line_count == 0


def test_export_skips_accounts_pending_in_another_batch(utility):
    admin = utility.users["admin"]
    a = utility.customers["a"].accounts.get()
    Account.objects.filter(pk=a.pk).update(payment_method="bank_withholding")
    _charge(a, "30.00", 1, date(2099, 1, 1))
    first = channels.export_batch(org=utility.province, actor=admin, at=timezone.now())
    assert first.line_count == 1
    assert channels.export_batch(org=utility.province, actor=admin, at=timezone.now()).line_count == 0
