"""Payments API (Idempotency-Key), signed callbacks, balances and statements through the test client."""

import json
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from mmis.accounts import channels, queries, services
from mmis.accounts.models import CallbackLog, LedgerEntry, Payment
from mmis.common.errors import InvalidInput


@pytest.fixture
def acc(utility):
    a = utility.customers["a"].accounts.get()
    services.post_charge(
        account=a,
        amount=D("120.00"),
        source_type="bill",
        source_id=1,
        document_no="B1",
        due_date=timezone.localdate() + timedelta(days=10),
        at=timezone.now(),
        actor=None,
    )
    return a


def post(client, body, key="key-1"):
    return client.post(
        "/api/v1/payments", data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_payment_with_idempotency_key(login, utility, acc):
    c = login(utility.users["counter_a"])
    r = post(c, {"account_no": acc.account_no, "amount": "150.00", "channel": "cash"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["balance"] == "-30.00"
    r2 = post(c, {"account_no": acc.account_no, "amount": "150.00", "channel": "cash"})
    assert r2.status_code == 200 and r2.json()["receipt_no"] == body["receipt_no"]
    r3 = post(c, {"account_no": acc.account_no, "amount": "151.00", "channel": "cash"})
    assert r3.status_code == 422
    assert r3.json()["errors"][0]["path"] == "Idempotency-Key"
    assert Payment.objects.count() == 1


def test_payment_bad_input(login, utility, acc):
    c = login(utility.users["counter_a"])
    r = c.post(
        "/api/v1/payments",
        data=json.dumps({"account_no": acc.account_no, "amount": "1"}),
        content_type="application/json",
    )
    assert r.status_code == 422  # no Idempotency-Key
    for amount in ["-1", "0", "1.001"]:
        r = post(c, {"account_no": acc.account_no, "amount": amount}, key=f"k{amount}")
        assert r.status_code == 422, amount
        assert r.json()["errors"][0]["path"] == "amount"
    r = post(c, {"account_no": "9999999", "amount": "1.00"}, key="kx")
    assert r.status_code == 404
    # an account of another county is outside counter_a's scope
    other = utility.customers["b"].accounts.get()
    assert post(c, {"account_no": other.account_no, "amount": "1.00"}, key="ky").status_code == 404
    assert Payment.objects.count() == 0


def test_payment_needs_role(login, utility, acc):
    from mmis.org import services as org_services

    reader = org_services.create_user(
        username="r1", password="Mmis@2026-test", org=utility.counties[0], roles=["meter_reader"]
    )
    c = login(reader)
    assert post(c, {"account_no": acc.account_no, "amount": "1.00"}).status_code == 403


def _callback(client, payload, secret=None, sig=None):
    body = json.dumps(payload).encode()
    signature = sig if sig is not None else channels.sign(body, secret)
    return client.post(
        "/api/v1/callbacks/payments",
        data=body,
        content_type="application/json",
        HTTP_X_MMIS_SIGNATURE=signature,
    )


def test_callback_signed_posted_once_replay_and_tamper_rejected(client, utility, acc):
    now = timezone.now()
    payload = {
        "channel": "online",
        "txn_id": "WX20260301001",
        "account_no": acc.account_no,
        "amount": "120.00",
        "paid_at": now.isoformat(),
        "timestamp": now.isoformat(),
    }
    r = _callback(client, payload)
    assert r.status_code == 200, r.content
    assert queries.balance(acc) == 0
    again = _callback(client, payload)
    assert again.status_code == 409
    tampered = _callback(
        client,
        {**payload, "txn_id": "WX2", "amount": "999.00"},
        sig=channels.sign(json.dumps(payload).encode()),
    )
    assert tampered.status_code == 401
    wrong_key = _callback(client, {**payload, "txn_id": "WX3"}, secret=b"not-the-key")
    assert wrong_key.status_code == 401
    stale = _callback(
        client, {**payload, "txn_id": "WX4", "timestamp": (now - timedelta(hours=1)).isoformat()}
    )
    assert stale.status_code == 409
    bad = _callback(client, {**payload, "txn_id": "WX5", "amount": "1.234"})
    assert bad.status_code == 422
    assert Payment.objects.count() == 1
    outcomes = list(CallbackLog.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["posted", "replay", "bad_signature", "bad_signature", "stale", "invalid"]


def test_balance_and_statement(login, utility, acc):
    c = login(utility.users["counter_a"])
    r = c.get(f"/api/v1/balances/{acc.account_no}")
    assert r.status_code == 200
    assert r.json()["balance"] == "120.00"
    assert r.json()["open_items"][0]["document_no"] == "B1"
    r = c.get(f"/api/v1/statements/{acc.account_no}")
    assert r.json()["closing"] == "120.00"
    assert [ln["kind"] for ln in r.json()["lines"]] == ["charge"]
    r = c.get("/api/v1/arrears", {"on": (date.today() + timedelta(days=40)).isoformat()})
    assert r.json()["accounts"] == 1


def test_bank_withholding_round_trip(utility):
    from mmis.customers.models import Account

    a = utility.customers["a"].accounts.get()
    b = utility.customers["b"].accounts.get()
    Account.objects.filter(pk__in=[a.pk, b.pk]).update(payment_method="bank_withholding")
    for n, (acct, amt) in enumerate([(a, "100.00"), (b, "200.00")]):
        services.post_charge(
            account=acct,
            amount=D(amt),
            source_type="bill",
            source_id=10 + n,
            document_no=f"B{n}",
            due_date=date(2026, 3, 15),
            at=timezone.now(),
            actor=None,
        )
    admin = utility.users["admin"]
    batch = channels.export_batch(org=utility.province, actor=admin, at=timezone.now())
    text = channels.batch_file(batch)
    assert text.splitlines()[0].startswith("#MMIS-WITHHOLDING")
    assert batch.line_count == 2
    lines = {ln.account_id: ln.line_no for ln in batch.lines.all()}
    # duplicate rows: refused whole, nothing posted
    dup = f"{lines[a.pk]},{a.account_no},100.00,0000,T1\n{lines[a.pk]},{a.account_no},100.00,0000,T1\n"
    with pytest.raises(Exception) as exc:
        channels.import_results(batch=batch, content=dup, actor=admin, at=timezone.now())
    assert "duplicate" in str(exc.value)
    unknown = f"{lines[a.pk]},6199999999,100.00,0000,T1\n"
    with pytest.raises(Exception) as exc:
        channels.import_results(batch=batch, content=unknown, actor=admin, at=timezone.now())
    assert "unknown account" in str(exc.value)
    assert Payment.objects.count() == 0
    ok = f"{lines[a.pk]},{a.account_no},100.00,0000,T1\n{lines[b.pk]},{b.account_no},200.00,3001,\n"
    report = channels.import_results(batch=batch, content=ok, actor=admin, at=timezone.now())
    assert report["paid"] == 1 and report["failed"] == 1 and report["posted"] == 1
    assert queries.balance(a) == 0
    assert queries.balance(b) == D("200.00")
    assert queries.ledger_check()["balanced"]
    with pytest.raises(InvalidInput):
        channels.import_results(batch=batch, content=ok, actor=admin, at=timezone.now())
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_callback_paid_at_window_and_the_public_demo_key(client, utility, acc):
    """A payment time ahead of the callback or days behind it (dodging the late fee) is refused;
    a body signed with the key the source once carried is refused (the key is per installation)."""
    now = timezone.now()
    base = {
        "channel": "online",
        "account_no": acc.account_no,
        "amount": "10.00",
        "timestamp": now.isoformat(),
    }
    ahead = _callback(client, {**base, "txn_id": "F1", "paid_at": (now + timedelta(days=1)).isoformat()})
    assert ahead.status_code == 422 and "paid_at" in ahead.content.decode()
    back = _callback(client, {**base, "txn_id": "F2", "paid_at": (now - timedelta(days=30)).isoformat()})
    assert back.status_code == 422 and "more than 3 days" in back.content.decode()
    demo = _callback(
        client, {**base, "txn_id": "F3", "paid_at": now.isoformat()}, secret=b"mmis-demo-callback-secret"
    )
    assert demo.status_code == 401
    # an amount sent as a JSON number is read exactly (never through a float)
    exact = _callback(client, {**base, "txn_id": "F4", "paid_at": now.isoformat(), "amount": 0.1})
    assert exact.status_code == 200, exact.content
    assert Payment.objects.get(channel_txn_id="F4").amount == D("0.10")
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("channel", ["bank_withholding", "card_vend", "bogus"])
def test_payments_api_refuses_internal_channels(login, utility, acc, channel):
    c = login(utility.users["counter_a"])
    r = post(c, {"account_no": acc.account_no, "amount": "10.00", "channel": channel}, key=f"k-{channel}")
    assert r.status_code == 422 and "channel" in r.content.decode()
    assert not Payment.objects.exists()
