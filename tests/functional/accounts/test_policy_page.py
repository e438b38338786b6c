"""The collection policy page (收费策略): the policy in force at an org and where it comes from; a
manager or administrator saves the org's own policy, validated per field (nothing saved on any
error), audited, and seen at once by services.policy_for below it; other roles only read; orgs
outside the user's scope are 404."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmis.accounts import services
from mmis.accounts.models import Policy
from mmis.org.models import AuditLog

URL = "/accounts/policy/"


def _form(org, **extra) -> dict:
    data = {
        "org": str(org.pk),
        "action": "save",
        "allocation_order": "principal_first",
        "late_fee_minimum": "2.50",
        "minimum_scope": "portion",
        "late_fee_basis": "accrued",
        "late_fee_during_plan": "1",
        "payment_term_days": "20",
        "dunning_min_amount": "10.00",
        "disconnect_min_overdue_days": "45",
        "prepaid_threshold1": "60",
        "prepaid_threshold2": "30",
        "prepaid_grace_hours": "12",
        "reconnect_threshold": "0",
        "reconnect_within_hours": "24",
        "write_off_approval_amount": "8000.00",
        "ladder-0-code": "reminder",
        "ladder-0-after_days": "3",
        "ladder-0-channel": "sms",
        "ladder-1-code": "disconnection_notice",
        "ladder-1-after_days": "35",
        "ladder-1-channel": "ebill",
        "ladder-2-code": "disconnection_order",
        "ladder-2-after_days": "45",
    }
    data.update(extra)
    return data


@pytest.fixture(autouse=True)
def _fresh_cache():
    services.clear_policy_cache()
    yield
    services.clear_policy_cache()


def test_a_manager_saves_the_citys_policy_audited_and_in_force_below(utility, login):
    city, station = utility.cities[0], utility.stations[0]
    client = login(utility.users["manager"])
    r = client.post(URL, _form(city))
    assert r.status_code == 302, r.content.decode()[:2000]
    pol = Policy.objects.get(org=city)
    assert pol.allocation_order == "principal_first"
    assert pol.late_fee_minimum == Decimal("2.50")
    assert pol.late_fee_during_plan is True
    assert pol.payment_term_days == 20
    assert pol.write_off_approval_amount == Decimal("8000.00")
    assert pol.dunning_ladder == [
        {"code": "reminder", "after_days": 3, "channel": "sms"},
        {"code": "disconnection_notice", "after_days": 35, "channel": "ebill"},
        {"code": "disconnection_order", "after_days": 45},
    ]
    log = AuditLog.objects.get(action="accounts.policy.set")
    assert log.org_id == city.pk and log.before is None
    assert log.after["late_fee_minimum"] == "2.50" and log.after["payment_term_days"] == 20
    effective = services.policy_for(station)
    assert effective.org_id == city.pk
    assert effective.dunning_min_amount == Decimal("10.00") and effective.disconnect_min_overdue_days == 45

    # a second save records before and after
    assert client.post(URL, _form(city, late_fee_minimum="3")).status_code == 302
    log2 = AuditLog.objects.filter(action="accounts.policy.set").order_by("-pk").first()
    assert log2.before["late_fee_minimum"] == "2.50" and log2.after["late_fee_minimum"] == "3.00"
    assert services.policy_for(station).late_fee_minimum == Decimal("3.00")


def test_bad_ladder_and_amounts_are_named_and_nothing_is_saved(utility, login):
    city = utility.cities[0]
    client = login(utility.users["manager"])
    r = client.post(
        URL,
        _form(
            city,
            late_fee_minimum="1.001",
            dunning_min_amount="-1",
            minimum_scope="whenever",
            payment_term_days="abc",
            **{
                "ladder-0-after_days": "10",
                "ladder-1-after_days": "5",  # descending
                "ladder-3-code": "phone_call",
                "ladder-3-after_days": "50",
                "ladder-3-channel": "fax",
            },
        ),
    )
    assert r.status_code == 422
    page = r.content.decode()
    assert 'id="late_fee_minimum-error">金额最多 2 位小数' in page
    assert 'id="dunning_min_amount-error">金额不能为负数' in page
    assert 'id="minimum_scope-error">请从列表中选择' in page
    assert 'id="payment_term_days-error">请输入不小于 1 的整数' in page
    assert 'id="ladder-1-after_days-error">逾期天数须按步骤递增' in page
    assert 'id="ladder-3-code-error">未知的催费步骤' in page
    assert 'id="ladder-3-channel-error">未知的渠道' in page
    assert "本次没有保存任何设置" in page
    assert not Policy.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="accounts.policy").exists()


def test_a_disconnection_order_needs_a_notice_before_it(utility, login):
    client = login(utility.users["manager"])
    r = client.post(URL, _form(utility.cities[0], **{"ladder-1-code": "notice"}))
    assert r.status_code == 422
    assert "停电工单之前必须有停电通知步骤" in r.content.decode()
    assert not Policy.objects.exists()


def test_counter_staff_reads_but_cannot_save(utility, login):
    client = login(utility.users["counter_a"])
    r = client.get(URL)
    assert r.status_code == 200
    page = r.content.decode()
    assert "收费策略" in page and "系统默认" in page and "保存本单位收费策略" not in page
    r = client.post(URL, _form(utility.counties[0]))
    assert r.status_code == 403
    assert not Policy.objects.exists()


def test_an_org_outside_the_scope_is_404(utility, login):
    client = login(utility.users["manager"])
    assert client.get(URL, {"org": utility.cities[1].pk}).status_code == 404
    assert client.post(URL, _form(utility.cities[1])).status_code == 404
    assert client.get(URL, {"org": "x"}).status_code == 404
    assert not Policy.objects.exists()


def test_the_page_shows_where_the_policy_comes_from(utility, login):
    Policy.objects.create(org=utility.cities[0], payment_term_days=21, late_fee_minimum=Decimal("4.00"))
    client = login(utility.users["manager"])
    page = client.get(URL, {"org": utility.stations[0].pk}).content.decode()
    assert f"来自 {utility.cities[0].name}" in page
    assert 'name="payment_term_days" value="21"' in page
    assert "取消单独设置" not in page  # the station has no policy of its own
    page = client.get(URL, {"org": utility.cities[0].pk}).content.decode()
    assert "本单位单独设置" in page and "取消单独设置" in page


def test_inherit_again_drops_the_orgs_own_policy(utility, login):
    Policy.objects.create(org=utility.province, payment_term_days=18)
    Policy.objects.create(org=utility.cities[0], payment_term_days=21)
    client = login(utility.users["admin"])
    r = client.post(URL, {"org": str(utility.cities[0].pk), "action": "inherit"})
    assert r.status_code == 302
    assert not Policy.objects.filter(org=utility.cities[0]).exists()
    assert AuditLog.objects.filter(action="accounts.policy.inherit").count() == 1
    assert services.policy_for(utility.stations[0]).payment_term_days == 18


def test_the_page_in_english(utility, login):
    client = login(utility.users["manager"])
    assert client.post("/i18n/setlang/", {"language": "en", "next": URL}).status_code == 302
    page = client.get(URL).content.decode()
    assert "Collection policy" in page and "System default" in page
