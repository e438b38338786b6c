"""Collection pages through the test client: workbench, payment, receipt and statement PDFs,
arrears, approvals, bank, daily close, prepaid, Excel report."""

from datetime import date, timedelta
from decimal import Decimal as D

from django.utils import timezone

from mmis.accounts import services
from mmis.accounts.models import Approval, Payment


def _charge(acc):
    services.post_charge(
        account=acc,
        amount=D("120.00"),
        source_type="bill",
        source_id=1,
        document_no="B1",
        due_date=timezone.localdate() - timedelta(days=40),
        at=timezone.now(),
        actor=None,
    )


def test_cashier_journey(login, utility):
    acc = utility.customers["a"].accounts.get()
    _charge(acc)
    c = login(utility.users["counter_a"])
    r = c.get("/accounts/")
    assert r.status_code == 200 and "开班" in r.content.decode()
    c.post("/accounts/session/open/", {"float": "100.00"})
    r = c.get("/accounts/", {"q": acc.account_no})
    html = r.content.decode()
    assert "B1" in html and "收费" in html
    r = c.post(f"/accounts/accounts/{acc.pk}/pay/", {"amount": "200.00", "channel": "cash", "form_key": "f1"})
    assert r.status_code == 302
    p = Payment.objects.get()
    assert p.amount == D("200.00")
    r = c.get(f"/accounts/payments/{p.pk}/receipt.pdf")
    assert r["Content-Type"] == "application/pdf" and r.content.startswith(b"%PDF")
    r = c.get(f"/accounts/accounts/{acc.pk}/statement/")
    assert "期末余额" in r.content.decode()
    r = c.get(f"/accounts/accounts/{acc.pk}/statement/", {"format": "pdf"})
    assert r.content.startswith(b"%PDF")
    c.post(f"/accounts/payments/{p.pk}/reversal/", {"reason": "收错金额"})
    ap = Approval.objects.get()
    assert ap.kind == "reversal"
    m = login(utility.users["manager"])
    assert "收错金额" in m.get("/accounts/approvals/").content.decode()
    m.post(f"/accounts/approvals/{ap.pk}/decide/", {"decision": "approve"})
    assert Approval.objects.get().state == "approved"
    c = login(utility.users["counter_a"])
    r = c.post("/accounts/close/", {"counted_cash": "100.00"})
    assert r.status_code == 302
    assert "长短款" in c.get("/accounts/close/").content.decode()


def test_other_pages_render(login, utility):
    acc = utility.customers["a"].accounts.get()
    _charge(acc)
    c = login(utility.users["admin"])
    r = c.get("/accounts/arrears/")
    assert r.status_code == 200 and acc.account_no in r.content.decode()
    for url in ["/accounts/bank/", "/accounts/prepaid/", "/accounts/approvals/?state="]:
        assert c.get(url).status_code == 200, url
    r = c.get("/accounts/reports/ledger.xlsx", {"start": (date.today() - timedelta(days=5)).isoformat()})
    assert r.content[:2] == b"PK"


def test_reader_cannot_take_payments_and_scope_is_404(login, utility):
    from mmis.org import services as org_services

    reader = org_services.create_user(
        username="r2", password="Mmis@2026-test", org=utility.counties[0], roles=["meter_reader"]
    )
    assert login(reader).get("/accounts/").status_code == 403
    other = utility.customers["b"].accounts.get()
    assert (
        login(utility.users["counter_a"]).get(f"/accounts/accounts/{other.pk}/statement/").status_code == 404
    )
