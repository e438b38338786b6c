"""The workbench pages through Django's test client: 我的待办 with due colours, acceptance at the
counter, the work-order page (form errors next to fields, completion, timeline), queue, search,
overdue dashboard, compliance report and contract alerts."""

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mmis.org import services as org_services
from mmis.services import services as svc
from mmis.workflow import services as wf
from mmis.workflow.models import ProcessInstance, Task

pytestmark = pytest.mark.django_db

DATA = {
    "d_customer_kind": "individual",
    "d_customer_name": "李娜",
    "d_id_type": "resident_id",
    "d_id_number": "11010519491231002X",
    "d_phone": "13812345678",
    "d_region": "示范省第1市甲县",
    "d_detail": "幸福路8号",
    "d_voltage_level": "220V",
    "d_capacity_kva": "8",
    "d_tier_persons": "3",
}


@pytest.fixture
def pu(utility):
    svc.install_definitions(
        actor=utility.users["admin"],
        province=utility.province,
        at=timezone.now() - timedelta(days=3),
        effective_from=date(2020, 1, 1),
    )
    utility.users["inspector_a"] = org_services.create_user(
        username="inspector_a", password="Mmis@2026-test", org=utility.counties[0], roles=["inspector"]
    )
    return utility


def test_accept_at_the_counter_then_work_the_order(client, pu):
    u = pu
    client.force_login(u.users["counter_a"])
    page = client.get(reverse("services:index")).content.decode()
    assert "低压居民新装" in page and "过户" in page
    url = reverse("services:start", args=["lv_residential_new"])
    r = client.post(url, {**DATA, "org": u.stations[0].pk, "d_capacity_kva": "800"})
    assert r.status_code == 200 and 'data-field="capacity_kva"' in r.content.decode()
    assert not ProcessInstance.objects.exists()
    r = client.post(url, {**DATA, "org": u.stations[0].pk})
    inst = ProcessInstance.objects.get()
    assert r.status_code == 302 and r.url == reverse("workflow:order", args=[inst.pk])
    page = client.get(r.url).content.decode()
    assert "已受理" in page and inst.number in page and 'data-task="accept"' in page
    mine = client.get(reverse("workflow:my_tasks")).content.decode()
    assert inst.number in mine and 'data-due="ok"' in mine
    task = Task.objects.get()
    r = client.post(r.url, {"action": "complete", "task": task.pk, "step": "accept", "f_documents_ok": "on"})
    assert r.status_code == 302
    client.force_login(u.users["inspector_a"])
    assert inst.number in client.get(reverse("workflow:queue")).content.decode()
    survey = Task.objects.get(step_code="survey")
    client.post(reverse("workflow:claim", args=[survey.pk]))
    r = client.post(
        reverse("workflow:order", args=[inst.pk]), {"action": "complete", "task": survey.pk, "step": "survey"}
    )
    assert r.status_code == 200 and 'data-field="survey_result"' in r.content.decode()
    r = client.post(
        reverse("workflow:order", args=[inst.pk]),
        {"action": "send_back", "task": survey.pk, "to_step": "accept", "reason": "证件模糊"},
    )
    assert r.status_code == 302
    page = client.get(reverse("workflow:order", args=[inst.pk])).content.decode()
    assert 'data-action="sent_back"' in page and "证件模糊" in page
    client.force_login(u.users["counter_b"])
    assert client.get(reverse("workflow:order", args=[inst.pk])).status_code == 404


def test_due_colours_overdue_dashboard_and_reports(client, pu):
    u = pu
    t0 = timezone.now() - timedelta(days=10)
    inst = svc.apply(
        actor=u.users["counter_a"],
        code="name_change",
        org=None,
        at=t0,
        data={"customer_no": u.customers["a"].customer_no, "new_name": "张伟伟"},
    )
    wf.check_deadlines(now=timezone.now())
    client.force_login(u.users["counter_a"])
    page = client.get(reverse("workflow:my_tasks")).content.decode()
    assert 'data-due="overdue"' in page and inst.number in page
    client.force_login(u.users["manager"])
    page = client.get(reverse("workflow:overdue")).content.decode()
    assert "overdue-chart" in page and "督办" in page and inst.number in page
    page = client.get(reverse("workflow:search") + "?overdue=1").content.decode()
    assert inst.number in page
    r = client.get(reverse("services:compliance") + "?month=2026-11")
    assert r.status_code == 200 and u.counties[0].name in r.content.decode()
    assert client.get(reverse("services:contracts")).status_code == 200


def test_process_wording_follows_the_chosen_language(client, pu):
    """Process names, steps, field labels and choices are data, shown through the catalogue."""
    u = pu
    client.force_login(u.users["counter_a"])
    url = reverse("services:start", args=["lv_residential_new"])
    r = client.post(url, {**DATA, "org": u.stations[0].pk})
    order_url = r.url
    zh = client.get(order_url).content.decode()
    assert "低压居民新装" in zh and "业务受理" in zh and "资料齐全" in zh
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    en = client.get(order_url).content.decode()
    assert "LV residential new connection" in en and "Application acceptance" in en
    assert "Documents complete" in en and "Proof of identity" in en
    assert '<h1 class="mb-0">LV residential new connection' in en and "资料齐全" not in en
    start = client.get(url).content.decode()
    assert "Customer type" in start and "Single supply" not in start and "客户类型" not in start
    index = client.get(reverse("services:index")).content.decode()
    assert "HV new connection" in index and "高压新装" not in index
