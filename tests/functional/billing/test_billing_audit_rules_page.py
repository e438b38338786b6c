"""The audit rules page: an org's rules as they apply (and from where), its own settings saved from a
date with errors next to the field, audited, limited to the user's org subtree, in Chinese and in
English; a saved setting flags bills when the audit stage runs again."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "billing"))

from billing_support import FakeSource, add_point, new_customer, reading

from mmis.billing import inputs, services
from mmis.billing.models import AuditRule, Bill
from mmis.common.periods import Period
from mmis.org.models import AuditLog

URL = "/billing/audit-rules/"


@pytest.fixture
def setup(utility):
    from mmis.org import services as org_services

    county = utility.counties[0]
    auditor = org_services.create_user(
        username="county_auditor", password="Mmis@2026-test", org=county, roles=["billing_auditor"]
    )
    return {"utility": utility, "county": county, "auditor": auditor}


def _form(org, **extra) -> dict:
    data = {"org": str(org.pk), "effective_from": "2026-03-01"}
    data.update(extra)
    return data


def test_the_page_shows_what_applies_and_where_from(setup, login):
    client = login(setup["auditor"])
    r = client.get(URL)
    assert r.status_code == 200
    page = r.content.decode()
    assert "审核规则设置" in page and setup["county"].name in page and "系统默认" in page
    assert 'name="change_last_month.residential_pct" value="50"' in page  # the default
    AuditRule.objects.create(
        org=setup["utility"].province, code="change_last_month", params={"residential_pct": "40"}
    )
    page = client.get(URL).content.decode()
    assert 'value="40"' in page and setup["utility"].province.name in page  # inherited from above


def test_saving_a_setting_is_validated_per_field_and_audited(setup, login):
    client = login(setup["auditor"])
    county = setup["county"]
    bad = client.post(
        URL,
        _form(
            county,
            own_change_last_month="1",
            enabled_change_last_month="1",
            **{"change_last_month.residential_pct": "abc", "change_last_month.other_pct": ""},
            own_large_bill="1",
            enabled_large_bill="1",
            **{
                "large_bill.residential": "1000.123",
                "large_bill.general_ci": "-5",
                "large_bill.large_industry": "2000000",
                "large_bill.agricultural": "50000",
            },
        ),
    )
    assert bad.status_code == 422
    page = bad.content.decode()
    assert 'id="change_last_month.residential_pct-error">请输入数字' in page
    assert 'id="change_last_month.other_pct-error">启用该规则时必须填写' in page
    assert 'id="large_bill.residential-error">最多 2 位小数' in page
    assert 'id="large_bill.general_ci-error">应在 0 至' in page
    assert 'value="abc"' in page  # what was typed stays in the form
    assert AuditRule.objects.count() == 0  # nothing half-written

    ok = client.post(
        URL,
        _form(
            county,
            own_change_last_month="1",
            enabled_change_last_month="1",
            **{"change_last_month.residential_pct": "30", "change_last_month.other_pct": "25.5"},
            own_new_customer="1",  # switched off: no parameters needed
        ),
    )
    assert ok.status_code == 302
    rows = {r.code: r for r in AuditRule.objects.filter(org=county)}
    assert rows["change_last_month"].params == {"residential_pct": "30", "other_pct": "25.5"}
    assert rows["change_last_month"].effective_from == date(2026, 3, 1)
    assert rows["new_customer"].enabled is False
    logs = AuditLog.objects.filter(action="billing.audit_rule.set")
    assert logs.count() == 2 and {log.actor_id for log in logs} == {setup["auditor"].pk}
    assert logs.get(target_id=str(rows["change_last_month"].pk)).after["params"]["residential_pct"] == "30"
    # unticking the org's own setting inherits again (audited too)
    client.post(
        URL,
        _form(
            county,
            had_own_new_customer="1",
            own_change_last_month="1",
            enabled_change_last_month="1",
            **{"change_last_month.residential_pct": "30", "change_last_month.other_pct": "25.5"},
        ),
    )
    assert set(AuditRule.objects.filter(org=county).values_list("code", flat=True)) == {"change_last_month"}
    assert AuditLog.objects.filter(action="billing.audit_rule.inherit").count() == 1


def test_only_the_users_subtree_and_only_auditors_write(setup, login):
    utility = setup["utility"]
    client = login(setup["auditor"])
    other_county = utility.counties[3]
    assert client.get(f"{URL}?org={other_county.pk}").status_code == 404
    assert client.post(URL, _form(other_county, own_zero_bill="1")).status_code == 404
    assert client.get(f"{URL}?org={utility.province.pk}").status_code == 404  # above the user's org
    assert client.get(f"{URL}?org={utility.stations[0].pk}").status_code == 200  # below it
    manager = login(utility.users["manager"])
    assert manager.get(URL).status_code == 200
    assert manager.post(URL, _form(utility.cities[0], own_zero_bill="1")).status_code == 403  # reads only
    clerk = login(utility.users["counter_a"])
    assert clerk.get(URL).status_code == 403


def test_the_page_in_english(setup, login):
    client = login(setup["auditor"])
    assert client.post("/i18n/setlang/", {"language": "en", "next": URL}).status_code == 302
    page = client.get(URL).content.decode()
    assert "Audit rules" in page and "Change against last month" in page and "Effective from" in page
    bad = client.post(
        URL,
        _form(setup["county"], own_low_pf="1", enabled_low_pf="1", **{"low_pf.below": "1.5"}),
    )
    assert "must be 0 to 1" in bad.content.decode()


def test_a_saved_threshold_flags_bills_when_audited_again(setup, login, monkeypatch):
    utility, county = setup["utility"], setup["county"]
    fake = FakeSource()
    st = utility.stations[0]  # under the county
    feb, mar = Period.month(2026, 2), Period.month(2026, 3)
    p = add_point(new_customer(st, 900), tariff_code="RES", book="R1")
    with inputs.use(fake):
        fake.readings[p.pk] = reading(p.pk, "100")
        services.run_in_process(services.plan_run(org=utility.province, month=feb, actor=None, at=AT))
        fake.readings[p.pk] = reading(p.pk, "140")  # +40 %: under the default 50 %
        run = services.run_in_process(services.plan_run(org=utility.province, month=mar, actor=None, at=AT))
    bill = Bill.objects.get(point=p, period_start=mar.start)
    assert "change_last_month" not in bill.flags and bill.state == "passed"
    client = login(setup["auditor"])
    client.post(
        URL,
        _form(
            county,
            own_change_last_month="1",
            enabled_change_last_month="1",
            **{"change_last_month.residential_pct": "30", "change_last_month.other_pct": "30"},
        ),
    )
    from mmis.billing import views

    monkeypatch.setattr(  # the page starts the audit stage in the background; here, at once
        views,
        "_audit_in_background",
        lambda run, *, actor, org: services.audit_run(run=run, actor=actor, at=AT, org=org),
    )
    r = client.post(f"/billing/runs/{run.pk}/audit/")
    assert r.status_code == 302
    bill.refresh_from_db()
    assert bill.state == "flagged" and bill.flags == ["change_last_month"]


AT = __import__("datetime").datetime(2026, 4, 2, 9, 0, tzinfo=__import__("datetime").UTC)
