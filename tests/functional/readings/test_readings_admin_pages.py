"""VEE settings per org, handing exceptions over from the queue and the metering point page
(metering changes, opening a metering work order) through the test client."""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from django.urls import reverse

from mmis.org import services as org_services
from mmis.org.models import AuditLog
from mmis.readings import services as rs
from mmis.readings import views, workorders
from mmis.readings.models import MeterChange, ReadingException, ValidationSettings
from mmis.workflow.models import ProcessInstance
from mmis_testing import PASSWORD

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def to_english(client):
    assert client.post(reverse("set_language"), {"language": "en", "next": "/"}).status_code == 302


def settings_url(org):
    return f"{reverse('readings:settings')}?org={org.pk}"


def row(html: str, name: str) -> str:
    """The table row of one setting."""
    start = html.index(f'data-setting="{name}"')
    return html[start : html.index("</tr>", start)]


# --- VEE settings ------------------------------------------------------------------------------
def test_settings_show_what_is_in_force_and_where_it_comes_from(world, login):
    u = world.utility
    rs.set_thresholds(actor=None, org=u.province, values={"jump_factor": "4"}, at=AT)
    c = login(world.auditor)
    r = c.get(reverse("readings:settings"))  # the user's own org by default
    assert r.status_code == 200
    html = r.content.decode()
    assert "抄表审核设置" in html and u.counties[0].name in html
    jump = row(html, "jump_factor")
    assert ">4<" in jump and u.province.name in jump  # inherited from the province
    assert "系统默认" in row(html, "exception_days") and ">3<" in row(html, "exception_days")
    assert "农业" in row(html, "seasonal_categories")  # the DOMAIN.md default


def test_auditor_sets_the_org_own_values_audited(world, login):
    u = world.utility
    county = u.counties[0]
    c = login(world.auditor)
    r = c.post(
        reverse("readings:settings"),
        {
            "org": county.pk,
            "jump_factor": "2.5",
            "exception_days": "5",
            "own_seasonal": "1",
            "seasonal_categories": ["agricultural", "residential"],
            "auditor": str(world.auditor.pk),
        },
    )
    assert r.status_code == 302
    th = rs.thresholds_for(u.stations[0])  # a station below inherits the county's values
    assert th.jump_factor == D("2.5") and th.exception_days == 5
    assert th.seasonal_categories == ("agricultural", "residential")
    assert th.zero_use_periods == 3  # left blank: inherited (default)
    s = ValidationSettings.objects.get(org=county)
    assert s.auditor == world.auditor and s.missing_grace_days is None
    log = AuditLog.objects.filter(action="readings.thresholds").latest("pk")
    assert log.actor_id == world.auditor.pk and log.after["exception_days"] == 5
    html = c.get(settings_url(county)).content.decode()
    assert "本单位" in row(html, "jump_factor") and 'value="2.5"' in row(html, "jump_factor")
    # emptying a field inherits again
    c.post(reverse("readings:settings"), {"org": county.pk, "exception_days": "5"})
    s.refresh_from_db()
    assert s.jump_factor is None and s.seasonal_categories is None and s.auditor is None
    assert s.exception_days == 5


def test_bad_values_are_shown_next_to_their_fields_and_nothing_is_saved(world, login):
    county = world.utility.counties[0]
    c = login(world.auditor)
    r = c.post(
        reverse("readings:settings"),
        {"org": county.pk, "jump_factor": "abc", "exception_days": "2.5", "missing_grace_days": "-1"},
    )
    assert r.status_code == 422
    html = r.content.decode()
    assert "请输入数字" in row(html, "jump_factor")
    assert "请输入整数" in row(html, "exception_days")
    assert "不能小于 0" in row(html, "missing_grace_days")
    assert 'value="abc"' in row(html, "jump_factor")  # what was typed is kept
    assert not ValidationSettings.objects.filter(org=county).exists()
    assert not AuditLog.objects.filter(action="readings.thresholds").exists()


def test_settings_only_inside_the_user_subtree_and_for_setting_roles(world, login):
    u = world.utility
    c = login(world.auditor)
    other = u.counties[1]
    assert c.get(settings_url(other)).status_code == 404
    assert c.post(reverse("readings:settings"), {"org": other.pk, "jump_factor": "3"}).status_code == 404
    assert c.get(settings_url(u.province)).status_code == 404  # above the auditor's org
    assert not ValidationSettings.objects.exists()
    # a reader sees nothing; a manager sees the settings but does not change them
    assert login(world.reader).get(reverse("readings:settings")).status_code == 403
    m = login(u.users["manager"])
    r = m.get(settings_url(u.counties[0]))
    assert r.status_code == 200 and "只有核算员或系统管理员可以修改" in r.content.decode()
    assert (
        m.post(reverse("readings:settings"), {"org": u.counties[0].pk, "jump_factor": "3"}).status_code == 403
    )
    assert not ValidationSettings.objects.exists()


def test_settings_page_in_english(world, client, login):
    login(world.auditor)
    to_english(client)
    r = client.post(reverse("readings:settings"), {"org": world.utility.counties[0].pk, "jump_factor": "x"})
    html = r.content.decode()
    assert r.status_code == 422
    assert "Reading validation settings" in html and "must be a number" in row(html, "jump_factor")
    assert "System default" in row(html, "exception_days")


# --- handing exceptions over -------------------------------------------------------------------
def test_auditor_hands_an_exception_over_from_the_queue(world, login):
    u = world.utility
    colleague = org_services.create_user(
        username="auditor_b",
        password=PASSWORD,
        org=u.counties[0],
        roles=["billing_auditor"],
        display_name="赵核算",
    )
    outsider = org_services.create_user(
        username="auditor_c",
        password=PASSWORD,
        org=u.counties[1],
        roles=["billing_auditor"],
        display_name="钱核算",
    )
    rs.mark_not_read(
        actor=None, point=world.points[0], reading_date=date(2026, 3, 25), reason="no_access", at=AT
    )
    exc = ReadingException.objects.get()
    assert exc.owner == world.auditor
    c = login(world.auditor)
    html = c.get(reverse("readings:exceptions")).content.decode()
    form = html[html.index(f'data-assign="{exc.pk}"') :]
    form = form[: form.index("</form>")]
    assert "赵核算" in form and "钱核算" not in form and "转派" in form  # only who can see the point
    r = c.post(reverse("readings:assign", args=[exc.pk]), {"owner": outsider.pk}, follow=True)
    assert "请选择接收人" in r.content.decode()
    exc.refresh_from_db()
    assert exc.owner == world.auditor
    r = c.post(
        reverse("readings:assign", args=[exc.pk]),
        {"owner": colleague.pk, "next": "/readings/exceptions/?who=mine"},
    )
    assert r.status_code == 302 and r.url == "/readings/exceptions/?who=mine"
    exc.refresh_from_db()
    assert exc.owner == colleague
    log = AuditLog.objects.get(action="reading_exception.assign")
    assert log.actor_id == world.auditor.pk and log.after == {"owner": str(colleague)}
    # a reader cannot hand exceptions over
    assert (
        login(world.reader)
        .post(reverse("readings:assign", args=[exc.pk]), {"owner": world.auditor.pk})
        .status_code
        == 403
    )
    exc.refresh_from_db()
    assert exc.owner == colleague


# --- metering point page -----------------------------------------------------------------------
def test_point_page_opens_a_metering_work_order_and_lists_the_changes(world, login):
    u = world.utility
    p = world.points[0]
    c = login(world.auditor)
    url = reverse("readings:point", args=[p.pk])
    # no process published yet: a clear error, nothing opened
    r = c.post(url, {"reason": "fault"})
    assert r.status_code == 422 and "尚未发布计量装拆工单流程" in r.content.decode()
    workorders.install_definitions(actor=None, province=u.province, at=AT, effective_from=date(2025, 1, 1))
    r = c.post(url, {"reason": "bogus"})
    assert r.status_code == 422 and "请选择变更原因" in r.content.decode()
    assert not ProcessInstance.objects.exists()
    r = c.post(url, {"reason": "ratio", "note": "CT 增容"})
    assert r.status_code == 302
    order = ProcessInstance.objects.get(definition__code="meter_change")
    assert order.data == {"point_no": p.point_no, "reason": "ratio", "note": "CT 增容"}
    assert order.subject_id == str(p.pk) and order.initiator == world.auditor
    mc = rs.record_meter_change(
        actor=None,
        point=p,
        changed_on=date(2026, 3, 10),
        old_meter=world.meters[0],
        new_meter=world.meters[0],
        old_multiplier=D(1),
        new_multiplier=D(40),
        old_final={"total": "120"},
        new_initial=None,
        work_order=order,
        at=AT,
    )
    MeterChange.objects.create(
        org=p.org,
        metering_point=p,
        changed_on=date(2026, 1, 5),
        old_meter=world.meters[0],
        new_meter=world.meters[0],
        old_multiplier=D(1),
        new_multiplier=D(1),
        recorded_at=AT,
    )
    html = c.get(url).content.decode()
    table = html[html.index('id="meter-changes"') :]
    table = table[: table.index("</table>")]
    order_url = reverse("workflow:order", args=[order.pk])
    assert f'href="{order_url}"' in table and order.number in table and "1 → 40" in table
    assert "2026-03-10" in table and "total 120" in table and "无工单" in table
    assert mc.work_order == order
    assert order.number in html[html.index('id="metering-orders"') :]
    # a reader sees the page but cannot open orders
    reader = login(world.reader)
    page = reader.get(url)
    assert page.status_code == 200 and "发起工单" not in page.content.decode()
    assert reader.post(url, {"reason": "fault"}).status_code == 403
    assert ProcessInstance.objects.filter(definition__code="meter_change").count() == 1


def test_point_page_is_scoped_and_linked_from_the_customer_page(world, login):
    u = world.utility
    p = world.points[0]
    outsider = org_services.create_user(
        username="auditor_c", password=PASSWORD, org=u.counties[1], roles=["billing_auditor"]
    )
    assert login(outsider).get(reverse("readings:point", args=[p.pk])).status_code == 404
    c = login(world.auditor)
    html = c.get(reverse("web:customer_detail", args=[p.customer_id])).content.decode()
    assert reverse("readings:point", args=[p.pk]) in html


def test_reasons_match_the_process_definition():
    spec_reasons = next(f for f in workorders.SPEC["start_form"] if f["name"] == "reason")["choices"]
    assert [k for k, _ in spec_reasons] == list(views.METER_CHANGE_REASONS)
