"""Agency collection files (代收对账) through the page and the API: import, the same file again,
a bad file refused with its lines named, roles and the org scope."""

import json
from datetime import timedelta
from decimal import Decimal as D

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from mmis.accounts import agency, services
from mmis.accounts.models import AgencyFile, Payment
from mmis.org import services as org_services
from mmis_testing import PASSWORD


def _bill(acc, amount="88.00"):
    services.post_charge(
        account=acc,
        amount=D(amount),
        source_type="bill",
        source_id=acc.pk,
        document_no=f"B{acc.pk}",
        due_date=timezone.localdate() + timedelta(days=10),
        at=timezone.now() - timedelta(days=5),
        actor=None,
    )


def _line(txn, acc, amount):
    at = timezone.localtime(timezone.now() - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    return f"{txn},{acc.account_no},{amount},{at}\n"


def test_page_imports_a_file_and_lists_it(login, utility):
    acc = utility.customers["a"].accounts.get()
    _bill(acc)
    c = login(utility.users["manager"])
    r = c.get("/accounts/agency/")
    assert r.status_code == 200 and "代收对账" in r.content.decode()
    content = "txn_id,account_no,amount,paid_at\n" + _line("P1", acc, "88.00")
    upload = SimpleUploadedFile("agency.csv", content.encode("utf-8-sig"), content_type="text/csv")
    r = c.post("/accounts/agency/", {"agency": "邮储银行代收", "org": utility.cities[0].pk, "file": upload})
    assert r.status_code == 302
    p = Payment.objects.get()
    assert (p.channel, p.channel_txn_id, p.amount, p.reference) == (
        "agency",
        "P1",
        D("88.00"),
        "邮储银行代收",
    )
    html = c.get("/accounts/agency/").content.decode()
    assert "代收文件已入账：1 笔，88.00 元" in html and "邮储银行代收" in html and "市营销经理" in html
    # the same file again: nothing posted twice, said so
    upload = SimpleUploadedFile("agency.csv", content.encode("utf-8-sig"), content_type="text/csv")
    c.post("/accounts/agency/", {"agency": "邮储银行代收", "org": utility.cities[0].pk, "file": upload})
    assert Payment.objects.count() == 1
    assert "该文件已导入过" in c.get("/accounts/agency/").content.decode()
    # a file imported from the command line (no user) is listed too
    agency.import_file(
        org=utility.cities[0],
        agency="命令行导入",
        content=_line("P9", acc, "1.00"),
        actor=None,
        at=timezone.now(),
    )
    html = c.get("/accounts/agency/").content.decode()
    assert "命令行导入" in html and "命令行</td>" in html


def test_page_names_the_bad_lines_and_posts_nothing(login, utility):
    acc = utility.customers["a"].accounts.get()
    c = login(utility.users["manager"])
    content = _line("P1", acc, "10.001") + _line("P2", acc, "5.00").replace(acc.account_no, "123")
    upload = SimpleUploadedFile("agency.csv", content.encode(), content_type="text/csv")
    c.post("/accounts/agency/", {"agency": "便民超市", "file": upload})
    html = c.get("/accounts/agency/").content.decode()
    assert "lines[1].amount: money has at most two decimals" in html
    assert "lines[2].account_no: unknown account 123" in html
    assert not Payment.objects.exists() and not AgencyFile.objects.exists()
    upload = SimpleUploadedFile("agency.csv", b"\xff\xfe\x00bad", content_type="text/csv")
    c.post("/accounts/agency/", {"agency": "便民超市", "file": upload})
    assert "file: 文件不是 UTF-8 编码的文本" in c.get("/accounts/agency/").content.decode()


def test_page_roles_and_scope(login, utility):
    acc = utility.customers["a"].accounts.get()
    # counter staff see the page but may not import
    c = login(utility.users["counter_a"])
    assert "校验并入账" not in c.get("/accounts/agency/").content.decode()
    upload = SimpleUploadedFile("a.csv", _line("P1", acc, "1.00").encode(), content_type="text/csv")
    c.post("/accounts/agency/", {"agency": "甲", "file": upload})
    assert not Payment.objects.exists()
    # a cashier of the other county: an org outside the scope is 404, its own org refuses the account
    cashier_b = org_services.create_user(
        username="cashier_b",
        password=PASSWORD,
        org=utility.counties[1],
        roles=["cashier"],
        check_password=False,
    )
    client = login(cashier_b)
    upload = SimpleUploadedFile("a.csv", _line("P1", acc, "1.00").encode(), content_type="text/csv")
    r = client.post("/accounts/agency/", {"agency": "甲", "org": utility.counties[0].pk, "file": upload})
    assert r.status_code == 404
    upload = SimpleUploadedFile("a.csv", _line("P1", acc, "1.00").encode(), content_type="text/csv")
    client.post("/accounts/agency/", {"agency": "甲", "file": upload})
    assert f"account {acc.account_no} is not one of" in client.get("/accounts/agency/").content.decode()
    assert not Payment.objects.exists()


def _api(c, body):
    return c.post("/api/v1/agency-files", data=json.dumps(body), content_type="application/json")


def test_api_imports_lists_and_refuses(login, utility):
    a = utility.customers["a"].accounts.get()
    b = utility.customers["b"].accounts.get()
    _bill(a)
    _bill(b, "40.00")
    c = login(utility.users["manager"])
    content = _line("Q1", a, "88.00") + _line("Q2", b, "50.00")
    r = _api(c, {"agency": "微信代收", "content": content})
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["posted"], body["posted_amount"], body["already_posted"]) == (2, "138.00", 0)
    assert body["org_id"] == utility.cities[0].pk
    assert services.available_credit(b) == D("10.00")
    r = _api(c, {"agency": "微信代收", "content": content})
    assert r.status_code == 200 and r.json()["already_imported"] is True
    assert Payment.objects.count() == 2
    r = c.get("/api/v1/agency-files")
    assert [f["agency"] for f in r.json()["files"]] == ["微信代收"]
    r = _api(c, {"agency": "微信代收", "content": _line("Q3", a, "0")})
    assert r.status_code == 422
    assert "lines[1].amount" in r.content.decode()
    r = _api(c, {"agency": "微信代收", "content": _line("Q3", a, "1.00"), "org_id": utility.cities[1].pk})
    assert r.status_code == 404
    r = _api(login(utility.users["counter_a"]), {"agency": "微信代收", "content": _line("Q4", a, "1.00")})
    assert r.status_code == 403
    assert Payment.objects.count() == 2
