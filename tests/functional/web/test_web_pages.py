"""The web shell and customer pages through Django's test client, on the small utility."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from mmis.customers.models import Customer
from mmis.org.models import AuditLog
from mmis_testing import PASSWORD

pytestmark = pytest.mark.django_db


def to_english(client):
    response = client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert response.status_code == 302


# --- login and lockout --------------------------------------------------------------------------
def test_login_page_and_successful_login(client, utility):
    page = client.get(reverse("web:login"))
    assert page.status_code == 200
    assert "用户登录" in page.content.decode()
    response = client.post(reverse("web:login"), {"username": "counter_a", "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == reverse("web:home")
    home = client.get(reverse("web:home"))
    assert home.status_code == 200
    assert "甲县营业员" in home.content.decode()


def test_pages_require_login(client, utility):
    for name in ("web:home", "web:customer_search", "web:customer_create", "web:org_tree", "web:audit_log"):
        response = client.get(reverse(name))
        assert response.status_code == 302, name
        assert response.url.startswith(reverse("web:login")), name
    response = client.get(reverse("web:customer_detail", args=[utility.customers["a"].pk]))
    assert response.status_code == 302


def test_five_wrong_passwords_lock_the_account(client, utility):
    for _ in range(5):
        response = client.post(reverse("web:login"), {"username": "counter_a", "password": "wrong-password"})
    # even the right password is refused while locked
    response = client.post(reverse("web:login"), {"username": "counter_a", "password": PASSWORD})
    assert response.status_code in (403, 429)
    assert "账号已锁定，请15分钟后再试" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(client, login, utility):
    login(utility.users["counter_a"])
    response = client.post(reverse("web:logout"))
    assert response.status_code == 302
    assert client.get(reverse("web:home")).status_code == 302


# --- every page renders, in Chinese and in English ----------------------------------------------
PAGES = ["web:home", "web:customer_search", "web:customer_create", "web:org_tree", "web:audit_log"]


def _all_urls(utility):
    a = utility.customers["a"].pk
    return [reverse(n) for n in PAGES] + [
        reverse("web:customer_search") + "?q=张",
        reverse("web:customer_detail", args=[a]),
        reverse("web:customer_detail", args=[a]) + "?as_of=2025-06-01",
        reverse("web:customer_edit", args=[a]),
    ]


def test_pages_render_in_chinese(client, login, utility):
    login(utility.users["admin"])
    for url in _all_urls(utility):
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert 'lang="zh-hans"' in body, url
        assert "电力营销管理系统" in body, url


def test_pages_render_in_english_after_switching(client, login, utility):
    login(utility.users["admin"])
    to_english(client)
    for url in _all_urls(utility):
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert 'lang="en"' in body, url
        assert "Marketing Management System" in body, url
    home = client.get(reverse("web:home")).content.decode()
    assert "Workbench" in home and "Customer search" in home
    detail = client.get(reverse("web:customer_detail", args=[utility.customers["a"].pk])).content.decode()
    assert "Metering point" in detail and "Show full number" in detail


def test_navigation_follows_roles(client, login, utility):
    login(utility.users["counter_a"])
    body = client.get(reverse("web:home")).content.decode()
    assert reverse("web:customer_create") in body
    assert reverse("web:audit_log") not in body
    assert client.get(reverse("web:audit_log")).status_code == 403
    assert client.get(reverse("web:org_tree")).status_code == 403


# --- search -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, matched",
    [
        ("customer_no", "户号"),
        ("张伟", "户名"),
        ("139 1234 5678", "电话"),
        ("11010519491231002X", "证件号"),
        ("人民路", "地址"),
    ],
)
def test_search_finds_within_scope(client, login, utility, text, matched):
    a, b = utility.customers["a"], utility.customers["b"]
    if text == "customer_no":
        text = a.customer_no
    login(utility.users["counter_a"])
    response = client.get(reverse("web:customer_search"), {"q": text}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body  # an htmx fragment
    assert a.customer_no in body
    assert matched in body
    assert b.customer_no not in body
    # masked, never in clear
    assert "13912345678" not in body and "11010519491231002X" not in body
    assert a.phone_mask in body and a.id_number_mask in body


def test_search_does_not_find_the_other_countys_customer(client, login, utility):
    b = utility.customers["b"]
    login(utility.users["counter_a"])
    for text in (b.customer_no, "宏达", "05718888888", "91350100M000100Y43", "工业园区"):
        body = client.get(reverse("web:customer_search"), {"q": text}).content.decode()
        assert reverse("web:customer_detail", args=[b.pk]) not in body, text
        assert "没有找到" in body, text


def test_search_page_has_live_search(client, login, utility):
    login(utility.users["counter_a"])
    body = client.get(reverse("web:customer_search")).content.decode()
    assert 'hx-get="/customers/"' in body
    assert "keyup changed delay:300ms" in body


# --- customer 360° ------------------------------------------------------------------------------
def test_detail_shows_the_file(client, login, utility):
    a = utility.customers["a"]
    login(utility.users["counter_a"])
    body = client.get(reverse("web:customer_detail", args=[a.pk])).content.decode()
    assert a.customer_no in body and "张伟" in body
    assert "人民路12号" in body
    assert a.accounts.get().account_no in body
    assert "示范省电力公司 / 第1市供电公司" in body
    assert a.id_number_mask in body and "11010519491231002X" not in body


def test_detail_out_of_scope_is_404(client, login, utility):
    b = utility.customers["b"]
    login(utility.users["counter_a"])
    assert client.get(reverse("web:customer_detail", args=[b.pk])).status_code == 404
    assert client.get(reverse("web:customer_edit", args=[b.pk])).status_code == 404
    assert client.post(reverse("web:customer_reveal", args=[b.pk]), {"reason": "x"}).status_code == 404
    assert client.get(reverse("web:customer_detail", args=[999999])).status_code == 404


def test_reveal_writes_an_audit_row(client, login, utility):
    a = utility.customers["a"]
    login(utility.users["counter_a"])
    url = reverse("web:customer_reveal", args=[a.pk])
    # no reason: refused, nothing revealed, nothing audited
    body = client.post(url, {"reason": ""}, HTTP_HX_REQUEST="true").content.decode()
    assert "13912345678" not in body
    assert "请说明查看完整号码的原因" in body
    assert not AuditLog.objects.filter(action="customer.reveal_identity").exists()
    body = client.post(url, {"reason": "客户来电核对身份"}, HTTP_HX_REQUEST="true").content.decode()
    assert "13912345678" in body and "11010519491231002X" in body
    row = AuditLog.objects.get(action="customer.reveal_identity")
    assert row.actor == utility.users["counter_a"]
    assert row.reason == "客户来电核对身份"
    assert row.target_id == str(a.pk)


def test_as_of_view_shows_the_old_name_after_rename(client, login, utility):
    a = utility.customers["a"]
    # the file was created at the start of 2025
    a.history.update(history_date=timezone.make_aware(datetime(2025, 1, 10, 9, 0)))
    login(utility.users["counter_a"])
    response = client.post(
        reverse("web:customer_edit", args=[a.pk]),
        {
            "name": "张伟强",
            "contact_name": "",
            "industry_code": "",
            "phone": "",
            "id_type": "resident_id",
            "id_number": "",
            "reason": "更名：户主改名",
        },
    )
    assert response.status_code == 302
    now = client.get(reverse("web:customer_detail", args=[a.pk])).content.decode()
    assert "张伟强" in now
    past = client.get(reverse("web:customer_detail", args=[a.pk]), {"as_of": "2025-06-01"}).content.decode()
    assert '<span id="customer-name">张伟</span>' in past
    assert "2025-06-01" in past
    before = client.get(reverse("web:customer_detail", args=[a.pk]), {"as_of": "2024-06-01"}).content.decode()
    assert "尚无此客户的档案记录" in before


# --- create / edit ------------------------------------------------------------------------------
def _create_payload(utility, **over):
    data = {
        "org": str(utility.stations[0].pk),
        "opened_on": "2026-03-01",
        "kind": "individual",
        "name": "李娜",
        "id_type": "resident_id",
        "id_number": "110105194912310021",  # wrong check digit: should be X
        "phone": "13800138000",
        "contact_name": "",
        "industry_code": "",
        "address_region": "示范省第1市甲县",
        "address_street": "城关镇",
        "address_detail": "",
        "address_postcode": "",
        "payment_method": "counter",
        "bank_name": "",
        "bank_account": "",
    }
    data.update(over)
    return data


def test_create_with_wrong_check_digit_shows_the_reason_next_to_the_field(client, login, utility):
    login(utility.users["counter_a"])
    before = Customer.objects.count()
    response = client.post(reverse("web:customer_create"), _create_payload(utility))
    assert response.status_code == 200
    assert Customer.objects.count() == before
    body = response.content.decode()
    assert 'data-field="id_number">校验位错误：最后一位应为 X，而不是 1</div>' in body
    # the missing detail address is shown on the detail input
    assert 'data-field="address_detail">必填' in body
    # typed values are kept
    assert 'value="李娜"' in body and 'value="110105194912310021"' in body and 'value="城关镇"' in body


def test_create_error_in_english(client, login, utility):
    login(utility.users["counter_a"])
    to_english(client)
    body = client.post(reverse("web:customer_create"), _create_payload(utility)).content.decode()
    assert "wrong check digit: the last character should be X, not 1" in body


def test_create_saves_and_redirects(client, login, utility):
    login(utility.users["counter_a"])
    response = client.post(
        reverse("web:customer_create"),
        _create_payload(utility, id_number="11010519491231002X", address_detail="解放路1号"),
    )
    assert response.status_code == 302
    created = Customer.objects.get(name="李娜")
    assert response.url == reverse("web:customer_detail", args=[created.pk])
    assert created.org == utility.stations[0]
    assert AuditLog.objects.filter(action="customer.create", target_id=str(created.pk)).exists()


def test_create_only_in_own_scope_orgs(client, login, utility):
    login(utility.users["counter_a"])
    body = client.get(reverse("web:customer_create")).content.decode()
    assert utility.stations[0].name in body
    assert utility.stations[1].name not in body
    response = client.post(
        reverse("web:customer_create"),
        _create_payload(
            utility, org=str(utility.stations[1].pk), id_number="11010519491231002X", address_detail="x"
        ),
    )
    assert response.status_code == 200
    assert not Customer.objects.filter(name="李娜").exists()


def test_edit_writes_history_and_audit(client, login, utility):
    a = utility.customers["a"]
    login(utility.users["counter_a"])
    url = reverse("web:customer_edit", args=[a.pk])
    form = {
        "name": "张伟",
        "contact_name": "张三",
        "industry_code": "",
        "phone": "13700001111",
        "id_type": "resident_id",
        "id_number": "",
    }
    # a reason is required
    body = client.post(url, {**form, "reason": ""}).content.decode()
    assert "请填写变更原因" in body
    assert Customer.objects.get(pk=a.pk).contact_name == ""
    response = client.post(url, {**form, "reason": "客户申请变更联系人"})
    assert response.status_code == 302
    a.refresh_from_db()
    assert a.contact_name == "张三"
    assert a.phone_mask != "139****5678"
    last = a.history.order_by("-history_id").first()
    assert last.history_change_reason == "客户申请变更联系人"
    assert last.history_user == utility.users["counter_a"]
    row = AuditLog.objects.get(action="customer.update", target_id=str(a.pk))
    assert row.reason == "客户申请变更联系人"
    assert row.after["contact_name"] == "张三"
    timeline = client.get(reverse("web:customer_detail", args=[a.pk])).content.decode()
    assert "客户申请变更联系人" in timeline


def test_edit_with_bad_phone_shows_error_and_keeps_value(client, login, utility):
    a = utility.customers["a"]
    login(utility.users["counter_a"])
    body = client.post(
        reverse("web:customer_edit", args=[a.pk]),
        {
            "name": "张伟",
            "contact_name": "",
            "industry_code": "",
            "phone": "12345",
            "id_type": "resident_id",
            "id_number": "",
            "reason": "改电话",
        },
    ).content.decode()
    assert 'data-field="phone">不是有效的大陆电话号码' in body
    assert 'value="12345"' in body
    assert not AuditLog.objects.filter(action="customer.update").exists()


# --- org tree and audit log ---------------------------------------------------------------------
def test_org_tree_counts_customers(client, login, utility):
    login(utility.users["manager"])
    body = client.get(reverse("web:org_tree")).content.decode()
    assert utility.cities[0].name in body and utility.stations[0].name in body
    assert utility.cities[1].name not in body  # outside the manager's scope


def test_audit_log_filters_and_pages(client, login, utility):
    login(utility.users["admin"])
    response = client.get(reverse("web:audit_log"), {"action": "customer.create"})
    assert response.status_code == 200
    page = response.context["page"]
    assert page.paginator.count == 2
    assert all(r.action == "customer.create" for r in page)
    response = client.get(reverse("web:audit_log"), {"actor": "counter_b"})
    assert {r.action for r in response.context["page"]} == {"customer.create"}
    assert response.context["page"].paginator.count == 1
    response = client.get(reverse("web:audit_log"), {"date_to": "2000-01-01"})
    assert response.context["page"].paginator.count == 0


# --- Chinese first ------------------------------------------------------------------------------
def test_chinese_first_middleware_ignores_the_browser_language(client, login, utility, settings):
    settings.MIDDLEWARE = [
        "mmis.web.middleware.ChineseFirstLocaleMiddleware" if m.endswith("LocaleMiddleware") else m
        for m in settings.MIDDLEWARE
    ]
    login(utility.users["counter_a"])
    body = client.get(reverse("web:home"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert 'lang="zh-hans"' in body and "我的工作台" in body
    to_english(client)
    body = client.get(reverse("web:home"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert 'lang="en"' in body and "My workbench" in body
