"""The arrears page (欠费与催费), its Excel export and GET /api/v1/arrears through the test client:
filters, paging, totals of the whole filter, the ageing by org, bad input and data scope."""

import io
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from mmis.accounts import views
from mmis.accounts.models import DunningAction
from mmis.customers.models import Account, Customer
from mmis.org import services as org_services
from mmis.org.models import AuditLog
from mmis_testing import bill_charge, individual_account


def _move(acc, org):
    Account.objects.filter(pk=acc.pk).update(org=org)
    Customer.objects.filter(pk=acc.customer_id).update(org=org)
    acc.refresh_from_db()
    return acc


@pytest.fixture
def book(utility):
    """As in tests/integration/accounts/test_arrears_report.py, days counted back from today:
    d 200.00 (109 days, other city), a 150.00 (78 + 19), b 70.00 (443), c 53.33 (170 + 1),
    e 5.00 (47, on the first city itself): 5 accounts, 478.33."""
    today = timezone.localdate()

    def ago(n):
        return today - timedelta(days=n)

    a = utility.customers["a"].accounts.get()
    b = utility.customers["b"].accounts.get()
    c = individual_account(utility, 1, name="测试")
    d = _move(individual_account(utility, 2, name="远方"), utility.stations[2])
    e = _move(individual_account(utility, 3, name="直属"), utility.cities[0])
    bill_charge(a, "100.00", 1, ago(78))
    bill_charge(a, "50.00", 2, ago(19))
    bill_charge(b, "70.00", 1, ago(443))
    bill_charge(c, "33.33", 1, ago(170))
    bill_charge(c, "20.00", 2, ago(1))
    bill_charge(d, "200.00", 1, ago(109))
    bill_charge(e, "5.00", 1, ago(47))
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def _listed(book, html):
    """The book's accounts in the order the page lists them."""
    body = html.split('id="arrears-list"', 1)[1].split("</table>", 1)[0]
    found = [(body.find(f">{acc.account_no}<"), k) for k, acc in book.items()]
    return [k for pos, k in sorted(found) if pos >= 0]


def test_page_lists_filters_and_reports_by_org(login, utility, book):
    c = login(utility.users["admin"])
    r = c.get("/accounts/arrears/")
    html = r.content.decode()
    assert r.status_code == 200
    assert _listed(book, html) == ["d", "a", "b", "c", "e"]
    assert "478.33" in html and "符合条件 5 户" in html
    by_org = html.split('id="arrears-by-org"', 1)[1].split("</table>", 1)[0]
    c0, c1 = utility.cities
    assert f"org={c0.pk}" in by_org and f"org={c1.pk}" in by_org and "278.33" in by_org
    html = c.get("/accounts/arrears/", {"q": "测试"}).content.decode()
    assert _listed(book, html) == ["c"] and "符合条件 1 户" in html
    html = c.get("/accounts/arrears/", {"org": c0.pk, "bucket": "91-180"}).content.decode()
    assert _listed(book, html) == ["c"]
    html = c.get("/accounts/arrears/", {"min_amount": "100", "order": "days"}).content.decode()
    assert _listed(book, html) == ["d", "a"] and "350.00" in html
    # the city's own account has its row, the counties link down
    html = c.get("/accounts/arrears/", {"org": c0.pk}).content.decode()
    by_org = html.split('id="arrears-by-org"', 1)[1].split("</table>", 1)[0]
    assert f"{c0.name}（本级）" in by_org and f"org={utility.counties[0].pk}" in by_org
    assert "203.33" in by_org and "278.33" in by_org
    assert _listed(book, html) == ["a", "b", "c", "e"]


def test_paging_keeps_the_totals_of_the_whole_filter(login, utility, book, monkeypatch):
    monkeypatch.setattr(views, "ARREARS_PAGE_SIZE", 2)
    c = login(utility.users["admin"])
    html = c.get("/accounts/arrears/", {"page": 2}).content.decode()
    assert _listed(book, html) == ["b", "c"]
    assert "符合条件 5 户" in html and "478.33" in html and "第 2 / 3 页" in html
    assert "page=3" in html and "page=1" in html
    html = c.get("/accounts/arrears/", {"page": 3, "order": "days"}).content.decode()
    assert _listed(book, html) == ["e"] and "order=days" in html
    # the dunning form sends the rows of the page and comes back to the same filter
    r = c.post("/accounts/arrears/dunning/", {"account": [book["e"].pk], "query": "order=days&page=3"})
    assert r.status_code == 302 and r["Location"].endswith("/accounts/arrears/?order=days&page=3")
    assert DunningAction.objects.filter(account=book["e"]).exists()


def test_export_has_every_filtered_row_and_the_report(login, utility, book, monkeypatch):
    from openpyxl import load_workbook

    monkeypatch.setattr(views, "ARREARS_PAGE_SIZE", 1)
    c = login(utility.users["admin"])
    r = c.get("/accounts/arrears/export.xlsx", {"min_amount": "60"})
    assert r.status_code == 200 and r.content[:2] == b"PK"
    wb = load_workbook(io.BytesIO(r.content))
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(min_row=3, values_only=True))
    assert [x[0] for x in rows[:-1]] == [book[k].account_no for k in ("d", "a", "b")]
    assert [D(str(x[3])) for x in rows] == [D("200.00"), D("150.00"), D("70.00"), D("420.00")]
    assert ws.cell(row=3, column=4).number_format == "0.00"
    assert isinstance(ws.cell(row=3, column=4).value, (int, float))
    assert sum(D(str(x[3])) for x in rows[:-1]) == D("420.00")
    report = list(wb.worksheets[1].iter_rows(min_row=3, values_only=True))
    assert [(x[0], x[1], D(str(x[2]))) for x in report] == [
        (utility.cities[0].name, 2, D("220.00")),
        (utility.cities[1].name, 1, D("200.00")),
        ("合计", 3, D("420.00")),
    ]
    assert AuditLog.objects.filter(action="accounts.arrears.export", actor=utility.users["admin"]).exists()
    # bad input: back to the page, which names the field
    r = c.get("/accounts/arrears/export.xlsx", {"min_amount": "abc"})
    assert r.status_code == 302 and "min_amount=abc" in r["Location"]


def test_bad_filters_are_named_not_500(login, utility, book):
    c = login(utility.users["admin"])
    r = c.get("/accounts/arrears/", {"min_days": "abc", "min_amount": "1,000", "bucket": "2-3", "order": "x"})
    html = r.content.decode()
    assert r.status_code == 200
    assert "逾期天数须为不小于 0 的整数：abc" in html
    assert "欠费金额须为不小于 0 的数字" in html and "1,000" in html
    assert "未知的账龄段：2-3" in html and "未知的排序方式：x" in html
    assert _listed(book, html) == ["d", "a", "b", "c", "e"]  # the bad filters are left out
    assert c.get("/accounts/arrears/", {"org": "999999"}).status_code == 404
    assert c.get("/accounts/arrears/", {"org": "abc"}).status_code == 404


def test_a_station_user_sees_only_its_station(login, utility, book):
    st = org_services.create_user(
        username="st0", password="Mmis@2026-test", org=utility.stations[0], roles=["cashier"]
    )
    c = login(st)
    html = c.get("/accounts/arrears/").content.decode()
    assert _listed(book, html) == ["a", "c"] and "203.33" in html
    picker = html.split('name="org"', 1)[1].split("</select>", 1)[0]
    assert f'value="{utility.stations[0].pk}"' in picker
    for other in (utility.stations[1], utility.cities[0], utility.province):
        assert f'value="{other.pk}"' not in picker
        assert c.get("/accounts/arrears/", {"org": other.pk}).status_code == 404
    assert c.get("/accounts/arrears/export.xlsx", {"org": utility.stations[1].pk}).status_code == 404
    # dunning a row of another station does nothing to it
    c.post("/accounts/arrears/dunning/", {"account": [book["b"].pk, book["a"].pk]})
    assert not DunningAction.objects.filter(account=book["b"]).exists()
    assert DunningAction.objects.filter(account=book["a"]).exists()


def test_api_filters_paging_and_report(login, utility, book):
    c = login(utility.users["admin"])
    j = c.get("/api/v1/arrears").json()
    assert (j["accounts"], j["total"], j["org"]["id"]) == (5, "478.33", utility.province.pk)
    assert j["ageing"]["91-180"] == "233.33" and j["ageing"]["365+"] == "70.00"
    assert [x["account_no"] for x in j["rows"]] == [book[k].account_no for k in "dabce"]
    first = j["rows"][0]
    assert {"account_no", "name", "total", "days", "bucket", "on_plan"} <= set(first)
    assert (first["total"], first["days"], first["bucket"]) == ("200.00", 109, "91-180")
    assert [(x["org"]["id"], x["accounts"], x["total"]) for x in j["by_org"]["rows"]] == [
        (utility.cities[0].pk, 4, "278.33"),
        (utility.cities[1].pk, 1, "200.00"),
    ]
    assert j["by_org"]["totals"]["total"] == "478.33"
    j = c.get("/api/v1/arrears", {"order": "days", "offset": 1, "limit": 2}).json()
    assert [x["account_no"] for x in j["rows"]] == [book[k].account_no for k in "cd"]
    assert (j["accounts"], j["offset"], j["limit"]) == (5, 1, 2)
    j = c.get("/api/v1/arrears", {"min_amount": "70.00", "bucket": "365+"}).json()
    assert [x["account_no"] for x in j["rows"]] == [book["b"].account_no] and j["total"] == "70.00"
    j = c.get("/api/v1/arrears", {"search": "测试", "org": utility.cities[0].pk}).json()
    assert [x["account_no"] for x in j["rows"]] == [book["c"].account_no]
    assert j["rows"][0]["ageing"] == {"1-30": "20.00", "91-180": "33.33"}
    assert [x["org"]["id"] for x in j["by_org"]["rows"]] == [utility.counties[0].pk, utility.counties[1].pk]
    assert j["by_org"]["totals"] == {
        "accounts": 1,
        "total": "53.33",
        "ageing": {
            "current": "0.00",
            "1-30": "20.00",
            "31-90": "0.00",
            "91-180": "33.33",
            "181-365": "0.00",
            "365+": "0.00",
        },
    }


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"bucket": "2-3"}, "bucket"),
        ({"order": "name"}, "order"),
        ({"min_amount": "abc"}, "min_amount"),
        ({"min_amount": "-1"}, "min_amount"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"min_days": "x"}, "min_days"),
    ],
)
def test_api_bad_filters_are_422_naming_the_field(login, utility, params, path):
    r = login(utility.users["admin"]).get("/api/v1/arrears", params)
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == [path]


def test_api_scope(login, utility, book):
    c = login(utility.users["counter_a"])
    j = c.get("/api/v1/arrears").json()
    assert j["org"]["id"] == utility.counties[0].pk
    assert [x["account_no"] for x in j["rows"]] == [book["a"].account_no, book["c"].account_no]
    assert c.get("/api/v1/arrears", {"org": utility.cities[0].pk}).status_code == 404
    assert c.get("/api/v1/arrears", {"org": utility.counties[1].pk}).status_code == 404
    assert c.get("/api/v1/arrears", {"org": 999999}).status_code == 404


def test_page_and_messages_in_english(login, utility, book):
    c = login(utility.users["admin"])
    assert c.post("/i18n/setlang/", {"language": "en", "next": "/accounts/arrears/"}).status_code == 302
    html = c.get("/accounts/arrears/", {"min_amount": "x"}).content.decode()
    assert "Ageing by org" in html and "Export to Excel" in html and "5 accounts match" in html
    assert "Arrears amount must be a number, 0 or more (like 100 or 100.50): x" in html
    assert "欠费" not in html.split('id="arrears-filter"', 1)[1].split("</form>", 1)[0]
