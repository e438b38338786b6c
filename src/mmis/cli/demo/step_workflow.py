"""Step: the province's process definitions (业扩 and 变更 with the §8.2 commitments) and a few
dozen work orders at different steps: some finished (on time and late, for the compliance
report), most open — some fresh, some near their limit, some overdue and under supervision (督办).

Which orders, customers and steps are chosen is deterministic (seeded). The demo's customer file
is left as the customers step made it: open orders stop before the step that changes the file,
and the finished ones are meter relocations (which only record the new meter position). The times
are relative to the moment the demo is built, so that "near due" and "overdue" mean something when
you open the workbench right after `make run`.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from mmis.cli.demo.context import DemoContext

ORDERS = 40
FINISHED = 8

ROLE_USER = {
    "counter_staff": "counter",
    "inspector": "inspector",
    "meter_reader": "reader",
    "manager": "manager",
    "cashier": "cashier",
    "service_agent": "agent",
}

FORMS = {
    "accept": {"documents_ok": True},
    "survey": {"survey_result": "ok", "supply_point": "10kV 城关线 #3 台区"},
    "plan": {"supply_plan": "10kV 专线接入", "metering_position": "boundary"},
    "design_review": {"design_result": "pass"},
    "construction": {"construction_done_on": "2026-11-10"},
    "mid_inspection": {"mid_result": "pass"},
    "final_inspection": {"final_result": "pass"},
    "fees": {"fee_amount": "0", "fee_paid": True},
    "approve": {"approved": "yes"},
    "settle": {"settled": True},
    "archive": {},
    "callback": {"satisfaction": "satisfied"},
}
NEW_CODES = ["lv_residential_new", "lv_nonresidential_new", "hv_new", "temporary_supply"]
CHANGE_CODES = [
    "name_change",
    "meter_relocation",
    "address_move",
    "transfer",
    "category_change",
    "account_closure",
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
]


def _resident_id(rnd: random.Random) -> str:
    from mmis.customers.rules import resident_id_check_digit

    born = f"{rnd.randint(1960, 2000)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"
    first17 = f"370102{born}{rnd.randint(100, 999)}"
    return first17 + resident_id_check_digit(first17)


def _new_data(code: str, rnd: random.Random, station) -> dict:
    name = rnd.choice(SURNAMES) + rnd.choice(GIVEN)
    base = {
        "customer_kind": "individual",
        "customer_name": name,
        "id_type": "resident_id",
        "id_number": _resident_id(rnd),
        "phone": f"139{rnd.randint(10000000, 99999999)}",
        "region": station.region,
        "street": station.street,
        "detail": f"{station.stem}路{rnd.randint(1, 300)}号",
    }
    if code == "lv_residential_new":
        return {**base, "voltage_level": "220V", "capacity_kva": "8", "tier_persons": rnd.randint(1, 6)}
    org = {
        **base,
        "customer_kind": "organisation",
        "customer_name": f"{station.stem}{rnd.choice(['宏达', '鑫源', '华泰', '金诚'])}商贸有限公司",
        "id_type": "credit_code",
        "id_number": "91350100M000100Y43",
    }
    if code == "hv_new":
        return {
            **org,
            "usage_category": "large_industry",
            "voltage_level": "10kV",
            "capacity_kva": "1250",
            "supply_mode": rnd.choice(["single", "dual"]),
            "basic_charge_mode": "capacity",
            "pf_standard": "0.90",
        }
    if code == "temporary_supply":
        return {
            **org,
            "usage_category": "general_ci",
            "voltage_level": "380V",
            "capacity_kva": "100",
            "purpose": "建筑施工",
            "supply_until": "2027-03-31",
        }
    return {**org, "usage_category": "general_ci", "voltage_level": "380V", "capacity_kva": "50"}


def _change_data(code: str, rnd: random.Random, customer) -> dict:
    base = {"customer_no": customer.customer_no}
    if code == "name_change":
        return {
            **base,
            "new_name": customer.name + "(更名)" if len(customer.name) < 90 else customer.name[:80],
        }
    if code == "meter_relocation":
        return {**base, "new_location": "楼道东侧集中表箱"}
    if code == "address_move":
        return {**base, "new_region": "示范省", "new_detail": f"新区{rnd.randint(1, 99)}号"}
    if code == "transfer":
        return {
            **base,
            "new_customer_kind": "individual",
            "new_name": rnd.choice(SURNAMES) + rnd.choice(GIVEN),
            "new_id_type": "resident_id",
            "new_id_number": _resident_id(rnd),
            "new_phone": f"137{rnd.randint(10000000, 99999999)}",
            "tier_year": "continue",
        }
    if code == "category_change":
        return {**base, "new_usage_category": "agricultural"}
    return {**base, "reason": "房屋拆迁"}


def _working_days_before(end, days: float):
    """The moment `days` of working time before `end` (bisection on the calendar)."""
    from django.utils import timezone

    from mmis.common import calendar as cal

    end = timezone.localtime(end)
    lo, hi = end - timedelta(days=15), end
    target = timedelta(days=days)
    for _ in range(50):
        mid = lo + (hi - lo) / 2
        if cal.working_time_between(mid, end) > target:
            lo = mid
        else:
            hi = mid
    return hi


def build_workflow(ctx: DemoContext) -> None:
    from django.utils import timezone

    from mmis.common.errors import InvalidInput
    from mmis.customers.models import Customer
    from mmis.org.scope import DataScope
    from mmis.services import services as svc
    from mmis.workflow import services as wf
    from mmis.workflow.models import ProcessInstance, Task

    report = ctx.report("workflow")
    if ProcessInstance.objects.exists():
        return
    admin = ctx.users["admin"]
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    defs = svc.install_definitions(
        actor=admin, province=ctx.province, at=now - timedelta(days=60), effective_from=date(2020, 1, 1)
    )
    rnd = random.Random(ctx.seed + 7)
    county = ctx.counties[0]
    stations = [s for s in ctx.stations if s.county.pk == county.pk] or ctx.stations[:1]
    home = stations[0]
    customers = list(
        Customer.objects.filter(org__path__startswith=county.path, status="active").order_by("pk")[:ORDERS]
    )
    customers.sort(key=lambda c: c.org_id != home.org.pk)  # the meter reader works the home station
    users = {role: ctx.users[name] for role, name in ROLE_USER.items() if name in ctx.users}

    def work(inst, *, upto: int, clock, hours: float, effects: bool) -> int:
        """Advance `inst` through `upto` steps from `clock`, `hours` apart; returns steps done."""
        done = 0
        while done < upto:
            tasks = list(Task.objects.filter(instance=inst, state__in=["open", "claimed"]).order_by("id"))
            if not tasks:
                break
            t = tasks[0]
            user = t.assignee or users.get(t.role)
            if user is None or not DataScope.for_user(user).contains_org(t.org):
                break
            clock += timedelta(hours=hours)
            if clock >= now:
                break
            form = dict(FORMS.get(t.step_code, {}))
            day = timezone.localtime(clock).date().isoformat()
            if t.step_code == "contract":
                form = {"signed_on": day, "contract_years": 5}
            elif t.step_code == "execute":
                form = {"done_on": day, "sealed": True, "seal_removed": True}
            step = wf.parsed(inst.definition).step(t.step_code)
            if step.effect and not effects:
                break
            names = {f.name for f in step.form}
            form = {k: v for k, v in form.items() if k in names}
            try:
                if t.state == "open":
                    wf.claim_task(actor=user, task_id=t.pk, at=clock)
                wf.complete_task(actor=user, task_id=t.pk, form=form, at=clock)
            except InvalidInput:
                break
            done += 1
        return done

    made = finished = 0
    for i in range(ORDERS):
        if i < FINISHED:
            code = "meter_relocation"
        elif i % 3 == 0 or not customers:
            code = NEW_CODES[i % len(NEW_CODES)]
        else:
            code = CHANGE_CODES[i % len(CHANGE_CODES)]
        station = home if i % 2 == 0 else stations[i % len(stations)]
        # open ones started between a few hours and ~3 weeks ago, finished ones a month or more ago
        started = now - timedelta(hours=rnd.choice([3, 20, 30, 50, 80, 120, 170, 260, 400, 500]))
        near = i >= FINISHED and i % 5 == 1  # left at acceptance, 85–95 % into its 1-day limit
        if i < FINISHED:
            started = now - timedelta(days=30 + 2 * i)
        elif near:
            started = _working_days_before(now, 0.85 + 0.02 * (i % 6))
        if code in NEW_CODES:
            data, org = _new_data(code, rnd, station), station.org
        else:
            customer = customers.pop(0)
            data, org = _change_data(code, rnd, customer), None
        counter = ctx.users["counter"]
        try:
            inst = svc.apply(actor=counter, code=code, org=org, data=data, at=started)
        except InvalidInput as exc:
            ctx.log(f"workflow demo: skipped {code}: {exc}")
            continue
        made += 1
        if i < FINISHED:
            hours = 3 if i % 4 < 2 else 45  # the slow ones finish late
            steps = work(inst, upto=20, clock=started, hours=hours, effects=True)
            inst.refresh_from_db()
            finished += inst.state == "completed"
            report.rows["steps_done"] = report.rows.get("steps_done", 0) + steps
        else:
            upto = 0 if near else rnd.randint(0, 4)
            work(inst, upto=upto, clock=started, hours=rnd.choice([2, 6, 20]), effects=False)
    counts = wf.check_deadlines(now=now)
    report.rows["workflow_processdefinition"] = len(defs)
    report.rows["workflow_processinstance"] = made
    report.rows["workflow_finished"] = finished
    report.rows["workflow_alarm"] = counts["warnings"] + counts["overdue"] + counts["process_overdue"]
    report.rows["workflow_supervision"] = counts["supervisions"]
