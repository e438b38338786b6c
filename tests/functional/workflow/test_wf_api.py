"""Administrator API of the engine: publish a new version of a process (running orders keep
theirs), refusals in the one error shape, and a province calendar correction that moves due dates."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from mmis.workflow import services as wf
from mmis.workflow.models import ProcessDefinition

pytestmark = pytest.mark.django_db
TZ = ZoneInfo("Asia/Shanghai")

SPEC = {
    "time_limit": {"value": 2, "unit": "working_days"},
    "steps": [
        {
            "code": "accept",
            "name": "受理",
            "role": "counter_staff",
            "org_level": "county",
            "assign": "initiator",
            "time_limit": {"value": 1, "unit": "working_days"},
            "next": ["done"],
        },
        {"code": "done", "name": "归档", "role": "counter_staff", "org_level": "county"},
    ],
}


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_publish_versions_and_calendar(client, utility):
    u = utility
    body = {
        "org_id": u.province.pk,
        "code": "simple",
        "name": "简单流程",
        "effective_from": "2020-01-01",
        "spec": SPEC,
    }
    client.force_login(u.users["counter_a"])
    assert post(client, "/api/v1/process-definitions", body).status_code == 403
    client.force_login(u.users["admin"])
    r = post(client, "/api/v1/process-definitions", {**body, "spec": {"steps": [{"code": "x"}]}})
    assert r.status_code == 422
    assert {"spec.steps[0].name", "spec.steps[0].role"} <= {e["path"] for e in r.json()["errors"]}
    r = post(client, "/api/v1/process-definitions", body)
    assert r.status_code == 201 and r.json()["version"] == 1
    # an order started on Friday 2026-11-20: due after 1 working day = Monday
    friday = datetime(2026, 11, 20, 10, tzinfo=TZ)
    first = wf.start_process(
        actor=u.users["counter_a"], code="simple", org=u.stations[0], title="t", data={}, at=friday
    )
    assert first.tasks.get().due_at == datetime(2026, 11, 23, 10, tzinfo=TZ)
    # the province makes Monday a local holiday: new orders move, the limit counts only working days
    r = post(client, "/api/v1/calendar-days", {"day": "2026-11-23", "is_workday": False, "note": "地方假日"})
    assert r.status_code == 200
    second = wf.start_process(
        actor=u.users["counter_a"], code="simple", org=u.stations[0], title="t", data={}, at=friday
    )
    assert second.tasks.get().due_at == datetime(2026, 11, 24, 10, tzinfo=TZ)
    r = post(client, "/api/v1/process-definitions", {**body, "spec": {**SPEC, "time_limit": {"value": 1}}})
    assert r.status_code == 201 and r.json()["version"] == 2
    listed = client.get("/api/v1/process-definitions").json()
    assert [(d["code"], d["version"]) for d in listed] == [("simple", 2)]
    assert ProcessDefinition.objects.get(code="simple", version=1).instances.count() == 2
    assert first.definition.version == 1
