"""The work-order engine against the database: start, claim, complete with forms, routing,
parallel steps, send back, hand over, suspend/resume, cancel, refusals that change nothing,
versions, inheritance and timers with an injected clock."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mmis.common.errors import InvalidInput, NotFound
from mmis.org import services as org_services
from mmis.org.models import AuditLog
from mmis.workflow import effects, queries
from mmis.workflow import services as wf
from mmis.workflow.models import Alarm, Event, ProcessDefinition, ProcessInstance, Supervision, Task
from mmis_testing import PASSWORD

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # a Monday


def demo_spec(**over):
    spec = {
        "start": "accept",
        "time_limit": {"value": 5, "unit": "working_days"},
        "warn_share": 0.8,
        "steps": [
            {
                "code": "accept",
                "name": "受理",
                "role": "counter_staff",
                "org_level": "county",
                "assign": "initiator",
                "time_limit": {"value": 1, "unit": "working_days"},
                "form": [
                    {"name": "kind", "type": "choice", "choices": ["small", "big"], "required": True},
                    {"name": "kva", "type": "decimal", "required": True, "min": 0},
                ],
                "next": [{"to": "design", "when": {"field": "kind", "value": "big"}}, "survey"],
            },
            {
                "code": "design",
                "name": "设计审查",
                "role": "counter_staff",
                "org_level": "county",
                "customer_side": True,
                "time_limit": {"value": 10, "unit": "working_days"},
                "next": ["survey"],
            },
            {
                "code": "survey",
                "name": "现场勘查",
                "role": "counter_staff",
                "org_level": "county",
                "time_limit": {"value": 2, "unit": "working_days"},
                "form": [{"name": "ok", "type": "bool"}, {"name": "note", "type": "text", "required": True}],
                "split": "parallel",
                "next": ["fees", "install"],
            },
            {
                "code": "fees",
                "name": "确定费用",
                "role": "counter_staff",
                "org_level": "county",
                "next": ["archive"],
            },
            {
                "code": "install",
                "name": "装表接电",
                "role": "counter_staff",
                "org_level": "county",
                "effect": "test.count",
                "next": ["archive"],
            },
            {"code": "archive", "name": "归档", "role": "counter_staff", "org_level": "county", "join": True},
        ],
    }
    spec.update(over)
    return spec


CALLS = []


@effects.register("test.count")
def _count_effect(ctx):
    if ctx.data.get("fail_effect"):
        raise InvalidInput("effect refused")
    CALLS.append(ctx.instance.number)
    return {"installed": True}


@pytest.fixture
def wfu(utility):
    u = utility
    u.users["counter_a2"] = org_services.create_user(
        username="counter_a2",
        password=PASSWORD,
        org=u.counties[0],
        roles=["counter_staff"],
        display_name="甲县营业员二",
    )
    d = wf.publish_definition(
        actor=u.users["admin"],
        org=u.province,
        code="demo",
        name="演示流程",
        spec=demo_spec(),
        effective_from=date(2026, 1, 1),
        at=T0 - timedelta(days=30),
    )
    u.definition = d
    return u


def start(u, at=T0, **kw):
    return wf.start_process(
        actor=u.users["counter_a"], code="demo", org=u.stations[0], title="张伟 新装", data={}, at=at, **kw
    )


def current(instance, code=None):
    qs = Task.objects.filter(instance=instance, state__in=["open", "claimed"]).order_by("id")
    if code:
        qs = qs.filter(step_code=code)
    return list(qs)


def test_happy_path_with_branch_parallel_join_and_effect(wfu):
    u = wfu
    a, a2 = u.users["counter_a"], u.users["counter_a2"]
    inst = start(u)
    assert inst.number.startswith("GD20261123")
    assert inst.due_at == datetime(2026, 11, 30, 9, tzinfo=TZ)  # 5 working days
    assert inst.warn_at == datetime(2026, 11, 27, 9, tzinfo=TZ)
    [t] = current(inst)
    assert (t.step_code, t.state, t.assignee, t.org) == ("accept", "claimed", a, u.counties[0])
    assert t.due_at == datetime(2026, 11, 24, 9, tzinfo=TZ)
    wf.complete_task(actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0 + timedelta(hours=1))
    [t] = current(inst)
    assert t.step_code == "survey" and t.state == "open"
    assert t in queries.team_queue(a2)
    wf.claim_task(actor=a2, task_id=t.pk, at=T0 + timedelta(hours=2))
    assert list(queries.my_tasks(a2)) == [Task.objects.get(pk=t.pk)]
    wf.complete_task(actor=a2, task_id=t.pk, form={"note": "可供电", "ok": True}, at=T0 + timedelta(hours=3))
    fees, install = current(inst)
    assert {fees.step_code, install.step_code} == {"fees", "install"}
    for task in (fees, install):
        wf.claim_task(actor=a, task_id=task.pk, at=T0 + timedelta(hours=4))
    wf.complete_task(actor=a, task_id=install.pk, form={}, at=T0 + timedelta(hours=5))
    assert [t.step_code for t in current(inst)] == ["fees"]  # archive waits for the other branch
    wf.complete_task(actor=a, task_id=fees.pk, form={}, at=T0 + timedelta(hours=6))
    [arch] = current(inst)
    assert arch.step_code == "archive"
    wf.claim_task(actor=a, task_id=arch.pk, at=T0 + timedelta(hours=7))
    wf.complete_task(actor=a, task_id=arch.pk, form={}, at=T0 + timedelta(hours=8))
    inst.refresh_from_db()
    assert inst.state == "completed" and inst.on_time is True
    assert inst.data["installed"] is True and inst.data["kva"] == "8"
    assert CALLS.count(inst.number) == 1
    actions = list(Event.objects.filter(instance=inst).values_list("action", flat=True))
    assert actions[0] == "started" and actions[-1] == "archived"
    assert AuditLog.objects.filter(action="workflow.task.complete", target_type="workflow.task").count() == 5


def test_refusals_change_nothing(wfu):
    u = wfu
    a, a2, b = u.users["counter_a"], u.users["counter_a2"], u.users["counter_b"]
    inst = start(u)
    [t] = current(inst)
    events = Event.objects.count()
    # not assigned to you
    with pytest.raises(wf.UnableToCompleteTask, match="assigned to"):
        wf.complete_task(actor=a2, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0)
    # missing form fields: every one named
    with pytest.raises(wf.UnableToCompleteTask) as exc:
        wf.complete_task(actor=a, task_id=t.pk, form={}, at=T0)
    assert {e.path for e in exc.value.errors} == {"form.kind", "form.kva"}
    # out of order: the work order is at acceptance, not survey
    with pytest.raises(wf.UnableToCompleteTask, match="not survey"):
        wf.complete_task(actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0, step_code="survey")
    t.refresh_from_db()
    assert t.state == "claimed" and Event.objects.count() == events
    wf.complete_task(actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0)
    # twice
    with pytest.raises(wf.UnableToCompleteTask, match=r"已完成|completed"):
        wf.complete_task(actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0)
    [s] = current(inst)
    # not claimed yet; someone outside the org cannot claim
    with pytest.raises(wf.UnableToCompleteTask, match="claim it first"):
        wf.complete_task(actor=a, task_id=s.pk, form={"note": "x"}, at=T0)
    with pytest.raises(wf.UnableToClaimTask):
        wf.claim_task(actor=b, task_id=s.pk, at=T0)
    wf.claim_task(actor=a, task_id=s.pk, at=T0)
    with pytest.raises(wf.UnableToClaimTask):
        wf.claim_task(actor=a2, task_id=s.pk, at=T0)
    # cancelled process
    wf.cancel_process(actor=a, instance_id=inst.pk, reason="客户撤回申请", at=T0)
    with pytest.raises(wf.UnableToCompleteTask, match="cancelled"):
        wf.complete_task(actor=a, task_id=s.pk, form={"note": "x"}, at=T0)
    s.refresh_from_db()
    assert s.state == "cancelled"
    with pytest.raises(NotFound):
        wf.complete_task(actor=a, task_id=999999, form={}, at=T0)


def test_effect_failure_rolls_back_the_whole_completion(wfu):
    u = wfu
    a = u.users["counter_a"]
    inst = wf.start_process(
        actor=a, code="demo", org=u.stations[0], title="x", data={"fail_effect": True}, at=T0
    )
    [t] = current(inst)
    wf.complete_task(actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0)
    [s] = current(inst)
    wf.claim_task(actor=a, task_id=s.pk, at=T0)
    wf.complete_task(actor=a, task_id=s.pk, form={"note": "ok"}, at=T0)
    install = current(inst, "install")[0]
    wf.claim_task(actor=a, task_id=install.pk, at=T0)
    with pytest.raises(InvalidInput, match="effect refused"):
        wf.complete_task(actor=a, task_id=install.pk, form={}, at=T0)
    install.refresh_from_db()
    assert install.state == "claimed"
    assert "installed" not in ProcessInstance.objects.get(pk=inst.pk).data


def test_send_back_returns_to_the_previous_step_and_its_worker(wfu):
    u = wfu
    a, a2 = u.users["counter_a"], u.users["counter_a2"]
    inst = start(u)
    [t] = current(inst)
    wf.complete_task(actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=T0)
    [s] = current(inst)
    wf.claim_task(actor=a2, task_id=s.pk, at=T0)
    with pytest.raises(wf.UnableToSendBackTask, match="reason"):
        wf.send_back_task(actor=a2, task_id=s.pk, reason=" ", at=T0)
    new = wf.send_back_task(actor=a2, task_id=s.pk, reason="容量填写有误", at=T0 + timedelta(hours=1))
    s.refresh_from_db()
    assert s.state == "sent_back"
    assert (new.step_code, new.assignee, new.state) == ("accept", a, "claimed")
    assert Event.objects.filter(instance=inst, action="sent_back", reason="容量填写有误").exists()
    wf.complete_task(actor=a, task_id=new.pk, form={"kind": "small", "kva": "10"}, at=T0 + timedelta(hours=2))
    inst.refresh_from_db()
    assert inst.data["kva"] == "10"


def test_hand_over_needs_a_user_who_may_do_the_task(wfu):
    u = wfu
    a, a2, b = u.users["counter_a"], u.users["counter_a2"], u.users["counter_b"]
    inst = start(u)
    [t] = current(inst)
    with pytest.raises(wf.UnableToHandOverTask) as exc:
        wf.hand_over_task(actor=a, task_id=t.pk, to_user=b, reason="", at=T0)
    assert {e.path for e in exc.value.errors} == {"to_user", "reason"}
    wf.hand_over_task(actor=a, task_id=t.pk, to_user=a2, reason="休假", at=T0)
    t.refresh_from_db()
    assert t.assignee == a2
    with pytest.raises(wf.UnableToHandOverTask):
        wf.hand_over_task(actor=b, task_id=t.pk, to_user=a, reason="x", at=T0)


def test_customer_side_steps_and_suspension_stop_the_clock(wfu):
    u = wfu
    a = u.users["counter_a"]
    inst = start(u)
    [t] = current(inst)
    wf.complete_task(actor=a, task_id=t.pk, form={"kind": "big", "kva": "800"}, at=T0)
    [d] = current(inst)
    assert d.step_code == "design" and d.customer_side
    wf.claim_task(actor=a, task_id=d.pk, at=T0)
    # the customer takes 3 working days (Mon 09:00 → Thu 09:00)
    wf.complete_task(actor=a, task_id=d.pk, form={}, at=T0 + timedelta(days=3))
    inst.refresh_from_db()
    assert inst.due_at == datetime(2026, 12, 3, 9, tzinfo=TZ)  # 30 Nov + 3 working days
    [s] = current(inst)
    due_before = s.due_at
    wf.suspend_process(actor=a, instance_id=inst.pk, reason="等待客户补充资料", at=T0 + timedelta(days=3))
    with pytest.raises(wf.UnableToClaimTask, match="suspended"):
        wf.claim_task(actor=a, task_id=s.pk, at=T0 + timedelta(days=3))
    # a suspended work order raises no alarms
    assert wf.check_deadlines(now=T0 + timedelta(days=20))["overdue"] == 0
    # suspended Thu 09:00 → resumed Mon 09:00: Thu 15 h + Fri 24 h + Mon 9 h = 2 working days
    wf.resume_process(actor=a, instance_id=inst.pk, at=datetime(2026, 11, 30, 9, tzinfo=TZ))
    s.refresh_from_db()
    assert due_before == datetime(2026, 11, 30, 9, tzinfo=TZ)
    assert s.due_at == datetime(2026, 12, 2, 9, tzinfo=TZ)
    with pytest.raises(wf.UnableToChangeProcess):
        wf.resume_process(actor=a, instance_id=inst.pk, at=T0 + timedelta(days=8))


def test_timers_warn_alarm_and_escalate_once_with_an_injected_clock(wfu):
    u = wfu
    a = u.users["counter_a"]
    inst = start(u)
    [t] = current(inst)  # accept: 1 working day, due Tue 09:00, warn Mon 04:12 + ... 80 %
    assert t.warn_at == T0 + timedelta(hours=19.2)
    assert wf.check_deadlines(now=T0 + timedelta(hours=1)) == {
        "warnings": 0,
        "overdue": 0,
        "supervisions": 0,
        "process_warnings": 0,
        "process_overdue": 0,
    }
    c = wf.check_deadlines(now=T0 + timedelta(hours=20))
    assert c["warnings"] == 1 and c["overdue"] == 0
    assert queries.due_status(Task.objects.get(pk=t.pk), T0 + timedelta(hours=20)) == "near"
    c = wf.check_deadlines(now=T0 + timedelta(hours=25))
    assert (c["warnings"], c["overdue"], c["supervisions"]) == (0, 1, 1)
    assert wf.check_deadlines(now=T0 + timedelta(hours=26))["overdue"] == 0  # once only
    sup = Supervision.objects.get(task=t)
    assert sup.org == u.cities[0] and sup.supervised_org == u.counties[0] and sup.state == "open"
    assert Alarm.objects.filter(task=t, kind="overdue").count() == 1
    assert queries.overdue_by_org(u.users["manager"], now=T0 + timedelta(hours=25))[0].overdue == 1
    # whole process exceeds its commitment after 5 working days
    c = wf.check_deadlines(now=datetime(2026, 12, 1, tzinfo=TZ))
    assert c["process_overdue"] == 1
    wf.complete_task(
        actor=a, task_id=t.pk, form={"kind": "small", "kva": "8"}, at=datetime(2026, 12, 1, tzinfo=TZ)
    )
    sup.refresh_from_db()
    assert sup.state == "closed"


def test_new_versions_do_not_touch_running_instances(wfu):
    u = wfu
    a = u.users["counter_a"]
    old = start(u)
    spec = demo_spec()
    spec["steps"][0]["next"] = ["archive"]
    spec["steps"][0]["form"] = spec["steps"][0]["form"][:1]
    v2 = wf.publish_definition(
        actor=u.users["admin"],
        org=u.province,
        code="demo",
        name="演示流程",
        spec=spec,
        effective_from=date(2026, 11, 1),
        at=T0,
    )
    assert v2.version == 2
    new = start(u)
    assert old.definition.version == 1 and new.definition_id == v2.pk
    [t_old] = current(old)
    wf.complete_task(actor=a, task_id=t_old.pk, form={"kind": "small", "kva": "1"}, at=T0)
    assert current(old)[0].step_code == "survey"  # v1 routing
    [t_new] = current(new)
    with pytest.raises(wf.UnableToCompleteTask):  # kva is no field of v2
        wf.complete_task(actor=a, task_id=t_new.pk, form={"kind": "small", "kva": "1"}, at=T0)
    wf.complete_task(actor=a, task_id=t_new.pk, form={"kind": "small"}, at=T0)
    assert current(new)[0].step_code == "archive"


def test_lower_orgs_inherit_and_override_only_when_allowed(wfu):
    u = wfu
    assert wf.resolve_definition(code="demo", org=u.stations[0], on=date(2026, 11, 23)) == u.definition
    with pytest.raises(wf.UnableToPublishDefinition, match="does not allow"):
        wf.publish_definition(
            actor=u.users["admin"],
            org=u.cities[0],
            code="demo",
            name="市流程",
            spec=demo_spec(),
            effective_from=date(2026, 1, 1),
            at=T0,
        )
    u.province.allows_local_override = True
    u.province.save()
    city = type(u.cities[0]).objects.get(pk=u.cities[0].pk)
    local = wf.publish_definition(
        actor=u.users["admin"],
        org=city,
        code="demo",
        name="市流程",
        spec=demo_spec(),
        effective_from=date(2026, 1, 1),
        at=T0,
    )
    assert wf.resolve_definition(code="demo", org=u.stations[0], on=date(2026, 11, 23)) == local
    assert wf.resolve_definition(code="demo", org=u.stations[2], on=date(2026, 11, 23)) == u.definition
    with pytest.raises(NotFound):
        wf.resolve_definition(code="demo", org=u.stations[0], on=date(2025, 1, 1))
    with pytest.raises(wf.UnableToPublishDefinition) as exc:
        wf.publish_definition(
            actor=u.users["admin"],
            org=u.province,
            code="demo",
            name="x",
            spec={"steps": []},
            effective_from=date(2026, 1, 1),
            at=T0,
        )
    assert exc.value.errors[0].path == "spec.steps"
    assert ProcessDefinition.objects.filter(code="demo").count() == 2


def test_scope_of_reads(wfu):
    u = wfu
    inst = start(u)
    assert queries.get_instance(u.users["manager"], inst.pk) == inst
    with pytest.raises(NotFound):
        queries.get_instance(u.users["counter_b"], inst.pk)
