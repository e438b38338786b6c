"""Drives a service work order from acceptance to the end, as the people who do each step."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mmis.assets import services as asset_services
from mmis.org import services as org_services
from mmis.org.scope import DataScope
from mmis.workflow import services as wf
from mmis.workflow.models import Task

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # Monday
PASSWORD = "Mmis@2026-test"


def add_staff(u):
    mk = org_services.create_user
    county, city = u.counties[0], u.cities[0]
    for name, role, org in [
        ("inspector_a", "inspector", county),
        ("fitter_a", "meter_reader", county),
        ("chief_a", "manager", county),
        ("cashier_a", "cashier", county),
        ("agent_city", "service_agent", city),
        ("clerk_a", "counter_staff", county),
    ]:
        u.users[name] = mk(username=name, password=PASSWORD, org=org, roles=[role], display_name=name)
    return u


def meters(u, count=3, prefix="M"):
    out = []
    for i in range(count):
        m = asset_services.register_meter(
            actor=u.users["admin"], org=u.counties[0], asset_no=f"{prefix}{i:06d}", kind="single_phase"
        )
        out.append(m.asset_no)
    return out


def worker(u, task: Task, *, not_user=None):
    for user in u.users.values():
        if user == not_user:
            continue
        if (
            user.has_role(task.role)
            and not user.is_superuser
            and DataScope.for_user(user).contains_org(task.org)
        ):
            return user
    raise AssertionError(f"nobody can do {task.step_code} ({task.role} at {task.org})")


BASE_FORMS = {
    "accept": {"documents_ok": True},
    "survey": {"survey_result": "ok", "supply_point": "10kV 城关线 #12 台区"},
    "plan": {"supply_plan": "10kV 单电源 专线接入", "metering_position": "boundary"},
    "design_review": {"design_result": "pass"},
    "construction": {"construction_done_on": "2026-12-20"},
    "mid_inspection": {"mid_result": "pass"},
    "final_inspection": {"final_result": "pass"},
    "fees": {"fee_amount": "0", "fee_paid": True},
    "contract": {"signed_on": "2026-11-24", "contract_years": 5},
    "approve": {"approved": "yes"},
    "execute": {"done_on": "2026-12-01"},
    "settle": {"settled": True},
    "archive": {},
    "callback": {"satisfaction": "satisfied"},
}


def open_tasks(inst):
    return list(Task.objects.filter(instance=inst, state__in=["open", "claimed"]).order_by("id"))


def drive(u, inst, forms: dict, *, start: datetime, step_hours: float = 2, send_back_at: str | None = None):
    """Complete every step; at `send_back_at` the worker first sends the order back once.
    Returns (codes done in order, clock at the end)."""
    clock = start
    done = []
    sent_back = False
    for _ in range(60):
        tasks = open_tasks(inst)
        if not tasks:
            break
        t = tasks[0]
        clock += timedelta(hours=step_hours)
        user = t.assignee or worker(u, t)
        if t.state == "open":
            wf.claim_task(actor=user, task_id=t.pk, at=clock)
        if t.step_code == send_back_at and not sent_back:
            wf.send_back_task(actor=user, task_id=t.pk, reason="资料不全, 退回补正", at=clock)
            sent_back = True
            done.append(f"<{t.step_code}")
            continue
        form = {**BASE_FORMS.get(t.step_code, {}), **forms.get(t.step_code, {})}
        wf.complete_task(actor=user, task_id=t.pk, form=form, at=clock, step_code=t.step_code)
        done.append(t.step_code)
    inst.refresh_from_db()
    return done, clock
