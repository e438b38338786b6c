"""The arrears list's filters, sorting and paging, its totals, and the ageing report by org, on a
small tree with the figures worked by hand (on 2026-03-20)."""

from datetime import date
from decimal import Decimal as D

import pytest

from mmis.accounts import queries, rules
from mmis.common.errors import InvalidInput
from mmis.customers.models import Account, Customer
from mmis_testing import bill_charge, individual_account

ON = date(2026, 3, 20)


def _move(acc, org):
    Account.objects.filter(pk=acc.pk).update(org=org)
    Customer.objects.filter(pk=acc.customer_id).update(org=org)
    acc.refresh_from_db()
    return acc


@pytest.fixture
def book(utility):
    """a: 100.00 78 days + 50.00 19 days (station 0); b: 70.00 443 days (station 1); c 测试1:
    33.33 170 days + 20.00 1 day (station 0); d 远方2: 200.00 109 days (station 2, the other
    city); e 直属3: 5.00 47 days, sitting on the first city itself; f: not due yet."""
    a = utility.customers["a"].accounts.get()
    b = utility.customers["b"].accounts.get()
    c = individual_account(utility, 1, name="测试")
    d = _move(individual_account(utility, 2, name="远方"), utility.stations[2])
    e = _move(individual_account(utility, 3, name="直属"), utility.cities[0])
    f = individual_account(utility, 4, name="未到期")
    bill_charge(a, "100.00", 1, date(2026, 1, 1))
    bill_charge(a, "50.00", 2, date(2026, 3, 1))
    bill_charge(b, "70.00", 1, date(2025, 1, 1))
    bill_charge(c, "33.33", 1, date(2025, 10, 1))
    bill_charge(c, "20.00", 2, date(2026, 3, 19))
    bill_charge(d, "200.00", 1, date(2025, 12, 1))
    bill_charge(e, "5.00", 1, date(2026, 2, 1))
    bill_charge(f, "999.00", 1, date(2026, 3, 20))
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}


def _names(book, rows):
    by_pk = {acc.pk: k for k, acc in book.items()}
    return [by_pk[r.account_id] for r in rows]


def test_ageing_bounds_invert_ageing_bucket():
    for days in range(-3, 800):
        lo, hi = rules.ageing_bounds(rules.ageing_bucket(days))
        assert (lo is None or days >= lo) and (hi is None or days <= hi)
    with pytest.raises(ValueError):
        rules.ageing_bounds("2-3")


def test_filters_sorting_and_paging(utility, book):
    admin = utility.users["admin"]

    def names(**kw):
        return _names(book, queries.arrears(admin, on=ON, **kw))

    rows = queries.arrears(admin, on=ON)
    assert [(r.total, r.days, r.bucket, r.items) for r in rows] == [
        (D("200.00"), 109, "91-180", 1),
        (D("150.00"), 78, "31-90", 2),
        (D("70.00"), 443, "365+", 1),
        (D("53.33"), 170, "91-180", 2),
        (D("5.00"), 47, "31-90", 1),
    ]
    assert _names(book, rows) == ["d", "a", "b", "c", "e"]
    assert dict(rows[3].buckets) == {"1-30": D("20.00"), "91-180": D("33.33")}
    assert names(order="days") == ["b", "c", "d", "a", "e"]
    assert names(order="account_no") == [
        k for k, _ in sorted(((k, v) for k, v in book.items() if k != "f"), key=lambda kv: kv[1].account_no)
    ]
    # the bucket of the oldest debt: c has a 1-day debt, but its oldest is 170 days
    assert names(bucket="91-180") == ["d", "c"]
    assert names(bucket="1-30") == []
    assert names(bucket="365+") == ["b"]
    assert names(min_amount=D("70.00")) == ["d", "a", "b"]
    # min_days drops the younger debts from the totals too
    rows = queries.arrears(admin, on=ON, min_days=100)
    assert [(k, r.total) for k, r in zip(_names(book, rows), rows, strict=True)] == [
        ("d", D("200.00")),
        ("b", D("70.00")),
        ("c", D("33.33")),
    ]
    assert names(search="测试") == ["c"]
    assert names(search="宏达") == ["b"]
    assert names(search=book["b"].account_no) == ["b"]
    prefix = book["a"].account_no[:-1]
    assert names(search=prefix) == [
        k for k in ["d", "a", "b", "c", "e"] if book[k].account_no.startswith(prefix)
    ]
    assert names(search="x" + book["a"].account_no) == []
    assert names(org=utility.cities[1]) == ["d"]
    assert names(org=utility.cities[0]) == ["a", "b", "c", "e"]
    assert names(org=utility.stations[0], min_amount=D("60")) == ["a"]
    assert names(offset=1, limit=2) == ["a", "b"]
    assert names(offset=4, limit=50) == ["e"]
    assert names(order="days", offset=3, limit=1) == ["a"]


def test_scope_and_bad_filters(utility, book):
    counter_a = utility.users["counter_a"]
    assert _names(book, queries.arrears(counter_a, on=ON)) == ["a", "c"]
    assert queries.arrears(counter_a, on=ON, org=utility.cities[1]) == []
    with pytest.raises(InvalidInput) as exc:
        queries.arrears(counter_a, on=ON, bucket="2-3")
    assert exc.value.errors[0].path == "bucket"
    with pytest.raises(InvalidInput) as exc:
        queries.arrears(counter_a, on=ON, order="name")
    assert exc.value.errors[0].path == "order"


def test_totals_cover_the_filter_not_a_page(utility, book):
    admin = utility.users["admin"]
    t = queries.arrears_totals(admin, on=ON)
    assert (t.accounts, t.total) == (5, D("478.33"))
    assert t.ageing == {
        "current": D("0.00"),
        "1-30": D("70.00"),
        "31-90": D("105.00"),
        "91-180": D("233.33"),
        "181-365": D("0.00"),
        "365+": D("70.00"),
    }
    t = queries.arrears_totals(admin, on=ON, min_amount=D("70"))
    assert (t.accounts, t.total) == (3, D("420.00"))
    assert t.ageing["1-30"] == D("50.00") and t.ageing["31-90"] == D("100.00")
    t = queries.arrears_totals(admin, on=ON, bucket="91-180")
    assert (t.accounts, t.total) == (2, D("253.33"))
    t = queries.arrears_totals(utility.users["counter_a"], on=ON)
    assert (t.accounts, t.total) == (2, D("203.33"))
    # the paginator's view of it
    lst = queries.ArrearsList(admin, totals=queries.arrears_totals(admin, on=ON), on=ON)
    assert len(lst) == 5 and _names(book, lst[2:4]) == ["b", "c"]


def _figures(r):
    g = r.ageing
    return (r.accounts, r.total, g["1-30"], g["31-90"], g["91-180"], g["365+"])


def _table(rows, totals):
    return [(r.org.name, r.own, *_figures(r)) for r in rows], _figures(totals)


def test_ageing_by_org(utility, book):
    admin = utility.users["admin"]
    c0, c1 = utility.cities
    rows, totals = queries.ageing_by_org(admin, on=ON, org=utility.province)
    assert _table(rows, totals) == (
        [
            (c0.name, False, 4, D("278.33"), D("70.00"), D("105.00"), D("33.33"), D("70.00")),
            (c1.name, False, 1, D("200.00"), D("0.00"), D("0.00"), D("200.00"), D("0.00")),
        ],
        (5, D("478.33"), D("70.00"), D("105.00"), D("233.33"), D("70.00")),
    )
    # the city's own account comes first, then each county with its subtree
    k0, k1 = utility.counties[0], utility.counties[1]
    rows, totals = queries.ageing_by_org(admin, on=ON, org=c0)
    assert _table(rows, totals) == (
        [
            (c0.name, True, 1, D("5.00"), D("0.00"), D("5.00"), D("0.00"), D("0.00")),
            (k0.name, False, 2, D("203.33"), D("70.00"), D("100.00"), D("33.33"), D("0.00")),
            (k1.name, False, 1, D("70.00"), D("0.00"), D("0.00"), D("0.00"), D("70.00")),
        ],
        (4, D("278.33"), D("70.00"), D("105.00"), D("33.33"), D("70.00")),
    )
    # a child with no arrears still has its row
    rows, totals = queries.ageing_by_org(admin, on=ON, org=c1)
    assert [(r.org.name, r.accounts, r.total) for r in rows] == [
        (utility.counties[2].name, 1, D("200.00")),
        (utility.counties[3].name, 0, D("0.00")),
    ]
    # the account filters apply to whole accounts: c's 1-day debt stays with it
    rows, totals = queries.ageing_by_org(admin, on=ON, org=utility.province, bucket="91-180")
    assert _table(rows, totals) == (
        [
            (c0.name, False, 1, D("53.33"), D("20.00"), D("0.00"), D("33.33"), D("0.00")),
            (c1.name, False, 1, D("200.00"), D("0.00"), D("0.00"), D("200.00"), D("0.00")),
        ],
        (2, D("253.33"), D("20.00"), D("0.00"), D("233.33"), D("0.00")),
    )
    rows, totals = queries.ageing_by_org(
        admin, on=ON, org=utility.province, search="测试", min_amount=D("50")
    )
    assert (totals.accounts, totals.total) == (1, D("53.33"))
    # totals row == the list's totals under the same filters
    for kw in ({}, {"min_amount": D("60")}, {"min_days": 60}, {"search": "县"}):
        _, totals = queries.ageing_by_org(admin, on=ON, org=utility.province, **kw)
        t = queries.arrears_totals(admin, on=ON, org=utility.province, **kw)
        assert (totals.accounts, totals.total, totals.ageing) == (t.accounts, t.total, t.ageing), kw
    # a station user's report of its county: only what it may see
    rows, totals = queries.ageing_by_org(utility.users["counter_a"], on=ON, org=k0)
    assert [(r.org.name, r.accounts, r.total) for r in rows] == [(utility.stations[0].name, 2, D("203.33"))]
