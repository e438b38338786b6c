"""The API of work orders and service processes: start, my tasks, complete with form data,
refusals in the one error shape, read with history, customer applications, contract PDF,
renewal alerts and the compliance report."""

import json
from datetime import date, timedelta

import pytest
from django.utils import timezone

from mmis.assets import services as asset_services
from mmis.customers import services as cs
from mmis.org import services as org_services
from mmis.services import services as svc
from mmis.workflow.models import ProcessInstance, Task

pytestmark = pytest.mark.django_db
PASSWORD = "Mmis@2026-test"

PARTY = {
    "customer_kind": "individual",
    "customer_name": "李娜",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13812345678",
    "region": "示范省第1市甲县",
    "detail": "幸福路8号",
    "voltage_level": "220V",
    "capacity_kva": "8",
    "tier_persons": 3,
}


def post(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def api_u(utility):
    u = utility
    svc.install_definitions(
        actor=u.users["admin"],
        province=u.province,
        at=timezone.now() - timedelta(days=1),
        effective_from=date(2020, 1, 1),
        codes=["lv_residential_new", "name_change"],
    )
    u.users["inspector_a"] = org_services.create_user(
        username="inspector_a", password=PASSWORD, org=u.counties[0], roles=["inspector"]
    )
    from mmis.org.models import User

    u.users["customer_x"] = User.objects.create_user(username="customer_x", password=PASSWORD)
    asset_services.register_meter(
        actor=u.users["admin"], org=u.counties[0], asset_no="A000001", kind="single_phase"
    )
    return u


def test_start_complete_and_read_with_history(client, api_u):
    u = api_u
    client.force_login(u.users["counter_a"])
    r = client.get("/api/v1/service-processes")
    assert r.status_code == 200
    assert {p["code"] for p in r.json()} == {"lv_residential_new", "name_change"}
    r = post(
        client,
        "/api/v1/service-processes/lv_residential_new/start",
        {"org_id": u.stations[0].pk, "data": PARTY},
    )
    assert r.status_code == 201, r.json()
    wo = r.json()
    assert wo["state"] == "running" and wo["history"][0]["action"] == "started"
    assert "id_number" not in wo["data"]
    [task] = client.get("/api/v1/tasks/mine").json()
    assert task["step"] == "accept" and task["due_status"] == "ok"
    # missing fields, wrong step: 422 with paths, nothing changes
    r = post(
        client, f"/api/v1/tasks/{task['id']}/complete", {"form": {"documents_ok": "maybe"}, "step": "survey"}
    )
    assert r.status_code == 422
    assert {e["path"] for e in r.json()["errors"]} == {"step"}
    r = post(client, f"/api/v1/tasks/{task['id']}/complete", {"form": {"documents_ok": "maybe"}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "form.documents_ok"
    r = post(
        client, f"/api/v1/tasks/{task['id']}/complete", {"form": {"documents_ok": True}, "step": "accept"}
    )
    assert r.status_code == 200
    assert [t["step"] for t in r.json()["current"]] == ["survey"]
    # twice
    r = post(client, f"/api/v1/tasks/{task['id']}/complete", {"form": {"documents_ok": True}})
    assert r.status_code == 422
    survey = r.json()["errors"]
    survey_id = Task.objects.get(step_code="survey").pk
    # the counter clerk is no inspector: cannot claim; not assigned: cannot complete
    assert post(client, f"/api/v1/tasks/{survey_id}/claim").status_code == 422
    assert (
        post(client, f"/api/v1/tasks/{survey_id}/complete", {"form": {"survey_result": "ok"}}).status_code
        == 422
    )
    client.force_login(u.users["inspector_a"])
    queue = client.get("/api/v1/tasks/queue").json()
    assert [t["id"] for t in queue] == [survey_id]
    assert post(client, f"/api/v1/tasks/{survey_id}/claim").status_code == 200
    r = post(client, f"/api/v1/tasks/{survey_id}/send-back", {"reason": "地址不详"})
    assert r.status_code == 200 and r.json()["current"][0]["step"] == "accept"
    detail = client.get(f"/api/v1/work-orders/{wo['id']}").json()
    assert [e["action"] for e in detail["history"]].count("sent_back") == 1
    # outside the scope: 404
    client.force_login(u.users["counter_b"])
    assert client.get(f"/api/v1/work-orders/{wo['id']}").status_code == 404
    assert post(client, f"/api/v1/tasks/{survey_id}/complete", {"form": {}}).status_code == 404
    client.force_login(u.users["counter_a"])
    r = post(client, f"/api/v1/work-orders/{wo['id']}/cancel", {"reason": "客户撤回"})
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    accept = Task.objects.filter(step_code="accept").order_by("-id").first()
    r = post(client, f"/api/v1/tasks/{accept.pk}/complete", {"form": {}})
    assert r.status_code == 422 and "cancel" in r.json()["errors"][0]["message"]
    assert survey  # refusal carried a reason


def test_a_customer_applies_and_follows_the_application(client, api_u):
    u = api_u
    client.force_login(u.users["customer_x"])
    assert (
        post(client, "/api/v1/service-processes/lv_residential_new/start", {"data": PARTY}).status_code == 403
    )
    r = post(
        client,
        "/api/v1/applications",
        {"process": "lv_residential_new", "org_id": u.stations[0].pk, "data": PARTY},
    )
    assert r.status_code == 201, r.json()
    number = r.json()["number"]
    assert r.json()["current_step"] == "业务受理"
    # acceptance lands in the counter queue, not on the customer
    inst = ProcessInstance.objects.get(number=number)
    assert inst.tasks.get().assignee is None and inst.applicant == u.users["customer_x"]
    assert client.get(f"/api/v1/applications/{number}").json()["state"] == "running"
    assert [a["number"] for a in client.get("/api/v1/applications").json()] == [number]
    r = post(
        client,
        "/api/v1/applications",
        {"process": "lv_residential_new", "org_id": u.stations[0].pk, "data": {}},
    )
    assert r.status_code == 422 and "data.customer_name" in {e["path"] for e in r.json()["errors"]}
    client.force_login(u.users["counter_a"])
    assert [t["work_order_no"] for t in client.get("/api/v1/tasks/queue").json()] == [number]


def test_contract_pdf_renewal_alerts_and_compliance_report(client, api_u):
    u = api_u
    a = u.customers["a"]
    c = cs.create_contract(
        actor=u.users["admin"],
        customer=a,
        data={
            "contract_type": "residential",
            "capacity_kva": "8",
            "expires_on": (timezone.localdate() + timedelta(days=20)).isoformat(),
        },
    )
    cs.change_contract_state(actor=u.users["admin"], contract=c, transition="sign", on=date(2025, 1, 1))
    cs.change_contract_state(
        actor=u.users["admin"], contract=c, transition="make_effective", on=date(2025, 1, 1)
    )
    client.force_login(u.users["counter_a"])
    r = client.get(f"/api/v1/contract-documents/{c.pk}")
    assert r.status_code == 200 and r["Content-Type"] == "application/pdf" and r.content.startswith(b"%PDF")
    expiring = client.get("/api/v1/contracts-expiring").json()
    assert [e["contract_no"] for e in expiring] == [c.contract_no] and expiring[0]["days_left"] == 20
    client.force_login(u.users["counter_b"])
    assert client.get(f"/api/v1/contract-documents/{c.pk}").status_code == 404
    client.force_login(u.users["manager"])
    month = timezone.localdate().strftime("%Y-%m")
    r = client.get(f"/api/v1/reports/commitments?month={month}")
    assert r.status_code == 200 and {row["org"] for row in r.json()} == {
        u.counties[0].name,
        u.counties[1].name,
    }
    assert client.get("/api/v1/reports/commitments?month=2026-13").status_code == 422
