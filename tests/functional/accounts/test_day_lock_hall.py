"""Locking a service hall's day on the daily close page (日结): a manager chooses the hall (the org
the cashiers' sessions live in) among those in the data scope; other roles are refused; an org
outside the scope is a 404; open sessions block the lock and are shown."""

from django.utils import timezone

from mmis.accounts import services
from mmis.accounts.models import CashierSession, DayLock
from mmis.org import services as org_services
from mmis_testing import PASSWORD


def _session(user):
    return services.open_session(cashier=user, at=timezone.now(), opening_float="0")


def _close(session, user):
    services.close_session(session=session, counted_cash="0", actor=user, at=timezone.now())


def _lock(client, org, day, **extra):
    data = {"action": "lock", "business_date": day.isoformat(), **extra}
    if org is not None:
        data["org"] = org.pk
    return client.post("/accounts/close/", data, follow=True)


def test_city_manager_locks_the_hall_not_the_city(login, utility):
    hall = utility.counties[0]
    cashier = utility.users["counter_a"]
    s = _session(cashier)
    assert s.org == hall
    m = login(utility.users["manager"])
    html = m.get("/accounts/close/").content.decode()
    # the hall is offered, the open session is shown as blocking
    assert f'<option value="{hall.pk}"' in html and "有未日结班次，不能锁定" in html
    assert str(cashier) in html
    # open session: refused, the error names the field, nothing locked
    html = _lock(m, hall, s.business_date).content.decode()
    assert "business_date: 1 cashier session(s) still open" in html
    assert not DayLock.objects.exists()
    _close(s, cashier)
    html = _lock(m, hall, s.business_date).content.decode()
    assert "营业日已锁定" in html
    lock = DayLock.objects.get()
    assert (lock.org, lock.business_date, lock.totals["sessions"]) == (hall, s.business_date, 1)
    assert not DayLock.objects.filter(org=utility.cities[0]).exists()
    assert "已锁定" in m.get("/accounts/close/").content.decode()
    # the city itself (no sessions) is not a hall: refused
    html = _lock(m, utility.cities[0], s.business_date).content.decode()
    assert "org: " in html and DayLock.objects.count() == 1
    # without a hall chosen, the manager's own org (the city) is not taken
    _lock(m, None, s.business_date)
    assert DayLock.objects.count() == 1


def test_counter_staff_and_cashier_cannot_lock(login, utility):
    hall = utility.counties[0]
    counter = utility.users["counter_a"]
    cashier = org_services.create_user(
        username="cashier_a", password=PASSWORD, org=hall, roles=["cashier"], display_name="甲县收费员"
    )
    for user in (counter, cashier):
        s = _session(user)
        _close(s, user)
        c = login(user)
        assert "只有管理人员或系统管理员可以锁定营业日" in c.get("/accounts/close/").content.decode()
        for org in (hall, None):
            html = _lock(c, org, s.business_date).content.decode()
            assert "只有管理人员或系统管理员可以锁定营业日" in html
    assert not DayLock.objects.exists()


def test_cashier_still_closes_own_session_on_the_page(login, utility):
    user = utility.users["counter_a"]
    s = _session(user)
    c = login(user)
    r = c.post("/accounts/close/", {"counted_cash": "0.00"})
    assert r.status_code == 302
    assert CashierSession.objects.get(pk=s.pk).state == CashierSession.State.CLOSED


def test_manager_choosing_an_org_outside_the_scope_gets_404(login, utility):
    other_hall = utility.counties[2]  # under the second city
    other = org_services.create_user(
        username="cashier_c", password=PASSWORD, org=other_hall, roles=["cashier"], display_name="丙县收费员"
    )
    s = _session(other)
    _close(s, other)
    m = login(utility.users["manager"])
    assert f'<option value="{other_hall.pk}"' not in m.get("/accounts/close/").content.decode()
    r = m.post("/accounts/close/", {"action": "lock", "org": other_hall.pk, "business_date": s.business_date})
    assert r.status_code == 404
    r = m.post("/accounts/close/", {"action": "lock", "org": "x", "business_date": s.business_date})
    assert r.status_code == 404
    assert not DayLock.objects.exists()
    # the province administrator sees it and locks it
    a = login(utility.users["admin"])
    assert "营业日已锁定" in _lock(a, other_hall, s.business_date).content.decode()
    assert DayLock.objects.get().org == other_hall


def test_lock_page_and_messages_in_english(login, utility):
    hall = utility.counties[0]
    cashier = utility.users["counter_a"]
    s = _session(cashier)
    m = login(utility.users["manager"])
    assert m.post("/i18n/setlang/", {"language": "en", "next": "/accounts/close/"}).status_code == 302
    html = m.get("/accounts/close/").content.decode()
    assert "Lock a service hall's business day" in html and "Sessions still open: cannot lock" in html
    _close(s, cashier)
    html = _lock(m, hall, s.business_date).content.decode()
    assert f"{hall.name}: business day {s.business_date.isoformat()} locked" in html
    c = login(cashier)
    c.post("/i18n/setlang/", {"language": "en", "next": "/accounts/close/"})
    html = _lock(c, hall, s.business_date).content.decode()
    assert "Only managers or administrators can lock a business day" in html
