"""API of the work-order engine: my tasks, the team queue, complete a task with its form data,
send back, hand over, claim; read a work order with its history; suspend, resume, cancel.
A task or work order outside the caller's scope answers 404."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError

from mmis.common.errors import NotFound
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.workflow import queries, services
from mmis.workflow.models import ProcessDefinition, ProcessInstance, Task

router = Router(tags=["workflow"])


class TaskOut(Schema):
    id: int
    work_order_id: int
    work_order_no: str
    title: str
    process: str
    step: str
    step_name: str
    state: str
    org: str
    role: str
    assignee: str | None
    created_at: datetime
    due_at: datetime | None
    due_status: str


class FieldOut(Schema):
    name: str
    label: str
    type: str
    required: bool
    choices: list[list[str]]


class EventOut(Schema):
    at: datetime
    action: str
    actor: str
    step_name: str
    reason: str
    data: dict[str, Any]


class WorkOrderOut(Schema):
    id: int
    number: str
    title: str
    process: str
    process_name: str
    version: int
    state: str
    org: str
    subject: str
    started_at: datetime
    due_at: datetime | None
    due_status: str
    ended_at: datetime | None
    on_time: bool | None
    data: dict[str, Any]
    current: list[TaskOut]
    current_form: dict[str, list[FieldOut]]
    history: list[EventOut]


class WorkOrderRow(Schema):
    id: int
    number: str
    title: str
    process: str
    state: str
    org: str
    started_at: datetime
    due_at: datetime | None
    due_status: str


class CompleteIn(Schema):
    form: dict[str, Any] = Field(default_factory=dict, description="the step's form data")
    comment: str = Field("", max_length=500)
    step: str | None = Field(None, description="the step you believe the order is at (refused if not)")


class ReasonIn(Schema):
    reason: str = Field(..., max_length=500)


class SendBackIn(Schema):
    reason: str = Field(..., max_length=500)
    to_step: str | None = None


class HandOverIn(Schema):
    to_user_id: int
    reason: str = Field(..., max_length=200)


def task_out(t: Task, now: datetime) -> dict:
    return {
        "id": t.pk,
        "work_order_id": t.instance_id,
        "work_order_no": t.instance.number,
        "title": t.instance.title,
        "process": t.instance.definition.code,
        "step": t.step_code,
        "step_name": t.step_name,
        "state": t.state,
        "org": t.org.name,
        "role": t.role,
        "assignee": str(t.assignee) if t.assignee_id else None,
        "created_at": t.created_at,
        "due_at": t.due_at,
        "due_status": queries.due_status(t, now) if t.is_open else "ok",
    }


def work_order_out(inst: ProcessInstance, user: User, now: datetime) -> dict:
    d = services.parsed(inst.definition)
    current = queries.current_tasks(inst)
    forms = {}
    for t in current:
        if t.assignee_id == user.pk:
            forms[str(t.pk)] = [
                {
                    "name": f.name,
                    "label": f.label,
                    "type": f.type,
                    "required": f.required,
                    "choices": [list(c) for c in f.choices],
                }
                for f in d.step(t.step_code).form
            ]
    return {
        "id": inst.pk,
        "number": inst.number,
        "title": inst.title,
        "process": inst.definition.code,
        "process_name": inst.definition.name,
        "version": inst.definition.version,
        "state": inst.state,
        "org": inst.org.name,
        "subject": inst.subject_repr,
        "started_at": inst.started_at,
        "due_at": inst.due_at,
        "due_status": queries.due_status(inst, now) if inst.state == "running" else "ok",
        "ended_at": inst.ended_at,
        "on_time": inst.on_time,
        "data": {k: v for k, v in inst.data.items() if not k.startswith("_") and k not in SECRET_KEYS},
        "current": [task_out(t, now) for t in current],
        "current_form": forms,
        "history": [
            {
                "at": e.at,
                "action": e.action,
                "actor": e.actor_name,
                "step_name": e.step_name,
                "reason": e.reason,
                "data": e.data,
            }
            for e in inst.events.all()
        ],
    }


SECRET_KEYS = {"id_number", "new_id_number"}


@router.get(
    "/tasks/mine", response=list[TaskOut], summary="我的待办: tasks assigned to me, soonest due first"
)
def my_tasks(request):
    now = timezone.now()
    return [task_out(t, now) for t in queries.my_tasks(request.user)[:500]]


@router.get("/tasks/queue", response=list[TaskOut], summary="team queue: open tasks I may claim")
def team_queue(request):
    now = timezone.now()
    return [task_out(t, now) for t in queries.team_queue(request.user)[:500]]


@router.post("/tasks/{task_id}/claim", response=TaskOut)
def claim(request, task_id: int):
    queries.get_task(request.user, task_id)
    t = services.claim_task(actor=request.user, task_id=task_id, at=timezone.now())
    return task_out(
        Task.objects.select_related("instance__definition", "org", "assignee").get(pk=t.pk), timezone.now()
    )


@router.post("/tasks/{task_id}/complete", response=WorkOrderOut, summary="complete a task with its form data")
def complete(request, task_id: int, payload: CompleteIn):
    t = queries.get_task(request.user, task_id)
    services.complete_task(
        actor=request.user,
        task_id=task_id,
        form=payload.form,
        comment=payload.comment,
        step_code=payload.step,
        at=timezone.now(),
    )
    return work_order_out(ProcessInstance.objects.get(pk=t.instance_id), request.user, timezone.now())


@router.post("/tasks/{task_id}/send-back", response=WorkOrderOut)
def send_back(request, task_id: int, payload: SendBackIn):
    t = queries.get_task(request.user, task_id)
    services.send_back_task(
        actor=request.user, task_id=task_id, reason=payload.reason, to_step=payload.to_step, at=timezone.now()
    )
    return work_order_out(ProcessInstance.objects.get(pk=t.instance_id), request.user, timezone.now())


@router.post("/tasks/{task_id}/hand-over", response=TaskOut)
def hand_over(request, task_id: int, payload: HandOverIn):
    queries.get_task(request.user, task_id)
    to_user = User.objects.filter(pk=payload.to_user_id, is_active=True).first()
    if to_user is None:
        raise NotFound(f"no user {payload.to_user_id}")
    t = services.hand_over_task(
        actor=request.user, task_id=task_id, to_user=to_user, reason=payload.reason, at=timezone.now()
    )
    return task_out(
        Task.objects.select_related("instance__definition", "org", "assignee").get(pk=t.pk), timezone.now()
    )


class SearchIn(Schema):
    q: str = ""
    process: str = ""
    state: str = ""
    overdue: bool = False
    limit: int = Field(50, ge=1, le=500)


@router.get("/work-orders", response=list[WorkOrderRow], summary="search work orders in my scope")
def search(request, filters: Query[SearchIn]):
    now = timezone.now()
    qs = queries.search(
        request.user,
        q=filters.q,
        code=filters.process,
        state=filters.state,
        overdue_at=now if filters.overdue else None,
    )[: filters.limit]
    return [
        {
            "id": i.pk,
            "number": i.number,
            "title": i.title,
            "process": i.definition.code,
            "state": i.state,
            "org": i.org.name,
            "started_at": i.started_at,
            "due_at": i.due_at,
            "due_status": queries.due_status(i, now) if i.state == "running" else "ok",
        }
        for i in qs
    ]


@router.get("/work-orders/{instance_id}", response=WorkOrderOut, summary="a work order with its history")
def read(request, instance_id: int):
    return work_order_out(queries.get_instance(request.user, instance_id), request.user, timezone.now())


@router.post("/work-orders/{instance_id}/suspend", response=WorkOrderOut)
def suspend(request, instance_id: int, payload: ReasonIn):
    queries.get_instance(request.user, instance_id)
    services.suspend_process(
        actor=request.user, instance_id=instance_id, reason=payload.reason, at=timezone.now()
    )
    return work_order_out(queries.get_instance(request.user, instance_id), request.user, timezone.now())


@router.post("/work-orders/{instance_id}/resume", response=WorkOrderOut)
def resume(request, instance_id: int):
    queries.get_instance(request.user, instance_id)
    services.resume_process(actor=request.user, instance_id=instance_id, at=timezone.now())
    return work_order_out(queries.get_instance(request.user, instance_id), request.user, timezone.now())


@router.post("/work-orders/{instance_id}/cancel", response=WorkOrderOut)
def cancel(request, instance_id: int, payload: ReasonIn):
    queries.get_instance(request.user, instance_id)
    services.cancel_process(
        actor=request.user, instance_id=instance_id, reason=payload.reason, at=timezone.now()
    )
    return work_order_out(queries.get_instance(request.user, instance_id), request.user, timezone.now())


# --- definitions and calendar (provincial administrator) --------------------------------------
ADMIN = ("administrator",)


class DefinitionOut(Schema):
    id: int
    org: str
    code: str
    name: str
    category: str
    version: int
    state: str
    effective_from: date
    spec: dict[str, Any]


class DefinitionIn(Schema):
    org_id: int
    code: str = Field(..., max_length=40)
    name: str = Field(..., max_length=100)
    category: str = Field("", max_length=40)
    number_prefix: str = Field("GD", min_length=1, max_length=4)
    effective_from: date
    spec: dict[str, Any]


class CalendarDayIn(Schema):
    day: date
    is_workday: bool
    note: str = Field("", max_length=100)


def _definition_out(d: ProcessDefinition) -> dict:
    return {
        "id": d.pk,
        "org": d.org.name,
        "code": d.code,
        "name": d.name,
        "category": d.category,
        "version": d.version,
        "state": d.state,
        "effective_from": d.effective_from,
        "spec": d.spec,
    }


@router.get("/process-definitions", response=list[DefinitionOut], summary="the versions in force for my org")
def definitions(request):
    org = request.user.org or Org.objects.filter(depth=1).first()
    if org is None:
        return []
    return [_definition_out(d) for d in queries.definitions_in_force(org, timezone.localdate())]


@router.post(
    "/process-definitions", response={201: DefinitionOut}, summary="publish a new version of a process"
)
def publish(request, payload: DefinitionIn):
    if not request.user.has_role(*ADMIN):
        raise HttpError(403, "only an administrator publishes process definitions")
    org = Org.objects.filter(pk=payload.org_id).first()
    if org is None or not DataScope.for_user(request.user).contains_org(org):
        raise NotFound(f"no org {payload.org_id}")
    d = services.publish_definition(
        actor=request.user,
        org=org,
        code=payload.code,
        name=payload.name,
        spec=payload.spec,
        effective_from=payload.effective_from,
        at=timezone.now(),
        category=payload.category,
        number_prefix=payload.number_prefix,
    )
    return Status(201, _definition_out(d))


@router.post("/calendar-days", summary="correct the province's working-day calendar")
def calendar_day(request, payload: CalendarDayIn):
    if not request.user.has_role(*ADMIN) or request.user.org is None:
        raise HttpError(403, "only a provincial administrator keeps the calendar")
    province = Org.objects.get(path=request.user.org.path[: Org.steplen])
    services.set_calendar_day(
        actor=request.user,
        province=province,
        day=payload.day,
        is_workday=payload.is_workday,
        note=payload.note,
    )
    return {"day": payload.day, "is_workday": payload.is_workday}
