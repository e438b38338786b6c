"""Use cases of the work-order engine. Each is one transaction, checks everything before it
writes (a refused action changes nothing), writes a timeline event and an audit record.

Task states: open (candidates: role + org) → claimed (one assignee) → completed | sent_back |
cancelled. Instance states: running ⇄ suspended → completed (archived) | cancelled.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from mmis.common import calendar as cal
from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.org import audit
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.workflow import effects, rules
from mmis.workflow.models import (
    Alarm,
    Attachment,
    CalendarDay,
    Event,
    ProcessDefinition,
    ProcessInstance,
    Sequence,
    Supervision,
    Task,
)

SUPERVISOR_ROLES = ("manager", "administrator")


class UnableToPublishDefinition(InvalidInput):
    pass


class UnableToStartProcess(InvalidInput):
    pass


class UnableToClaimTask(InvalidInput):
    pass


class UnableToHandOverTask(InvalidInput):
    pass


class UnableToCompleteTask(InvalidInput):
    pass


class UnableToSendBackTask(InvalidInput):
    pass


class UnableToChangeProcess(InvalidInput):
    pass


# --- definitions --------------------------------------------------------------------------------
def publish_definition(
    *,
    actor: User | None,
    org: Org,
    code: str,
    name: str,
    spec: dict,
    effective_from: date,
    at: datetime,
    category: str = "",
    number_prefix: str = "GD",
) -> ProcessDefinition:
    """Publish a new version of process `code` for `org` (a province, or a lower org where the
    province allows local overrides). Earlier versions stay for the instances that use them."""
    errors: list[FieldError] = []
    try:
        rules.parse_definition(spec)
    except rules.InvalidDefinition as exc:
        errors.extend(FieldError(f"spec.{e.path}" if e.path else "spec", e.message) for e in exc.errors)
    if not rules.CODE_RE.match(code or ""):
        errors.append(FieldError("code", "must be a lower-case identifier"))
    if not name:
        errors.append(FieldError("name", "is required"))
    if org.level != Org.Level.PROVINCE and not org.province().allows_local_override:
        errors.append(FieldError("org", "the province does not allow lower orgs to change its processes"))
    for step in (spec.get("steps") or []) if isinstance(spec, dict) else []:
        if isinstance(step, dict) and step.get("effect") and effects.get(step["effect"]) is None:
            errors.append(FieldError("spec", f"no effect handler {step['effect']!r} is installed"))
    if errors:
        raise UnableToPublishDefinition(errors)
    with transaction.atomic():
        last = ProcessDefinition.objects.filter(org=org, code=code).aggregate(v=Max("version"))["v"] or 0
        d = ProcessDefinition.objects.create(
            org=org,
            code=code,
            name=name,
            category=category,
            version=last + 1,
            state=ProcessDefinition.State.PUBLISHED,
            effective_from=effective_from,
            spec=spec,
            number_prefix=number_prefix,
            created_at=at,
            published_at=at,
            published_by=actor,
        )
        audit.record(
            actor=actor,
            action="workflow.definition.publish",
            target=d,
            after={"code": code, "version": d.version, "effective_from": effective_from},
            at=at,
        )
    return d


def resolve_definition(*, code: str, org: Org, on: date) -> ProcessDefinition:
    """The version in force for `org` on `on`: the nearest org up the tree that publishes `code`
    (a province defines, lower orgs inherit), latest effective date, then latest version."""
    for path in org.ancestor_paths():
        d = (
            ProcessDefinition.objects.filter(
                org__path=path, code=code, state=ProcessDefinition.State.PUBLISHED, effective_from__lte=on
            )
            .order_by("-effective_from", "-version")
            .first()
        )
        if d is not None:
            return d
    raise NotFound(f"no process {code!r} is in force for {org.name} on {on}")


def parsed(definition: ProcessDefinition) -> rules.Definition:
    cache = getattr(definition, "_parsed", None)
    if cache is None:
        cache = rules.parse_definition(definition.spec)
        definition._parsed = cache
    return cache


# --- calendar -----------------------------------------------------------------------------------
def calendar_for(org: Org) -> cal.Calendar:
    province_path = org.path[: Org.steplen]
    rows = CalendarDay.objects.filter(province__path=province_path).values_list("day", "is_workday")
    return cal.Calendar(
        holidays=frozenset(d for d, w in rows if not w), workdays=frozenset(d for d, w in rows if w)
    )


def set_calendar_day(
    *, actor: User, province: Org, day: date, is_workday: bool, note: str = ""
) -> CalendarDay:
    if province.level != Org.Level.PROVINCE:
        raise InvalidInput([FieldError("province", "the calendar is kept per province")])
    with transaction.atomic():
        row, _ = CalendarDay.objects.update_or_create(
            province=province, day=day, defaults={"is_workday": is_workday, "note": note}
        )
        audit.record(
            actor=actor,
            action="workflow.calendar.set",
            target=row,
            org=province,
            after={"day": day, "is_workday": is_workday, "note": note},
        )
    return row


def _local(at: datetime) -> datetime:
    return timezone.localtime(at) if timezone.is_aware(at) else at


def _deadline(start: datetime, value: Decimal, unit: str, calendar: cal.Calendar) -> datetime:
    return cal.add_limit(_local(start), value, unit, calendar=calendar)


def _push(moment: datetime | None, delta: timedelta, unit: str, calendar: cal.Calendar) -> datetime | None:
    """Move a deadline later by `delta` of counted time (working time for working-day limits)."""
    if moment is None or delta <= timedelta(0):
        return moment
    if unit == "working_days":
        return cal.add_working_time(_local(moment), delta, calendar=calendar)
    return moment + delta


# --- helpers ------------------------------------------------------------------------------------
def _next_number(prefix: str, at: datetime) -> str:
    day = _local(at).strftime("%Y%m%d")
    name = f"wf{day}"
    seq, _ = Sequence.objects.select_for_update().get_or_create(name=name)
    value = seq.next_value
    Sequence.objects.filter(pk=name).update(next_value=F("next_value") + 1)
    return f"{prefix}{day}{value:05d}"


def _org_for_level(instance: ProcessInstance, level: str) -> Org:
    if level == "initiator":
        return instance.initiator.org or instance.org
    for path in instance.org.ancestor_paths():
        org = Org.objects.get(path=path)
        if org.level == level:
            return org
    return instance.org


def _event(
    instance: ProcessInstance,
    action: str,
    *,
    at: datetime,
    actor: User | None = None,
    task: Task | None = None,
    reason: str = "",
    data: dict | None = None,
) -> Event:
    return Event.objects.create(
        instance=instance,
        task=task,
        at=at,
        actor=actor if actor is not None and actor.pk else None,
        actor_name=str(actor) if actor is not None else "系统",
        action=action,
        step_name=task.step_name if task else "",
        reason=reason[:500],
        data=audit.jsonable(data or {}),
    )


def _is_candidate(user: User, task: Task) -> bool:
    return user.is_active and user.has_role(task.role) and DataScope.for_user(user).contains_org(task.org)


def _open_task(
    instance: ProcessInstance,
    definition: rules.Definition,
    step: rules.StepDef,
    *,
    at: datetime,
    calendar: cal.Calendar,
    assignee: User | None = None,
    actor: User | None = None,
    sent_back_from: Task | None = None,
) -> Task:
    org = _org_for_level(instance, step.org_level)
    due = warn = escalate = None
    unit = ""
    if step.time_limit is not None:
        value = step.time_limit.for_data(instance.data)
        unit = step.time_limit.unit
        due = _deadline(at, value, unit, calendar)
        warn = _deadline(at, value * definition.warn_share, unit, calendar)
        escalate = _deadline(at, value * definition.escalate_share, unit, calendar)
    if assignee is None and step.assign == "initiator" and instance.applicant_id is None:
        assignee = instance.initiator
    task = Task.objects.create(
        instance=instance,
        step_code=step.code,
        step_name=step.name,
        org=org,
        role=step.role,
        assignee=assignee,
        state=Task.State.CLAIMED if assignee else Task.State.OPEN,
        created_at=at,
        claimed_at=at if assignee else None,
        due_at=due,
        warn_at=warn,
        escalate_at=escalate,
        limit_unit=unit,
        customer_side=step.customer_side,
        sent_back_from=sent_back_from,
    )
    _event(
        instance,
        "task_opened",
        at=at,
        actor=actor,
        task=task,
        data={"step": step.code, "org": org.name, "assignee": str(assignee) if assignee else ""},
    )
    return task


def _lock_task(task_id: int) -> Task:
    try:
        task = (
            Task.objects.select_for_update()
            .select_related("instance", "instance__definition")
            .get(pk=task_id)
        )
    except Task.DoesNotExist:
        raise NotFound(f"no task {task_id}") from None
    instance = ProcessInstance.objects.select_for_update().get(pk=task.instance_id)
    task.instance = instance
    return task


def _instance_refusal(instance: ProcessInstance) -> FieldError | None:
    if instance.state == ProcessInstance.State.CANCELLED:
        return FieldError("instance", f"work order {instance.number} was cancelled")
    if instance.state == ProcessInstance.State.COMPLETED:
        return FieldError("instance", f"work order {instance.number} is already archived")
    if instance.state == ProcessInstance.State.SUSPENDED:
        return FieldError("instance", f"work order {instance.number} is suspended; resume it first")
    return None


def _close_supervisions(task: Task, at: datetime) -> None:
    Supervision.objects.filter(task=task, state=Supervision.State.OPEN).update(
        state=Supervision.State.CLOSED, closed_at=at
    )


# --- start --------------------------------------------------------------------------------------
def start_process(
    *,
    actor: User,
    code: str,
    org: Org,
    title: str,
    data: dict[str, Any] | None,
    at: datetime,
    subject_type: str = "",
    subject_id: str = "",
    subject_repr: str = "",
    applicant: User | None = None,
    definition: ProcessDefinition | None = None,
) -> ProcessInstance:
    """Start an instance of the version of `code` in force for `org` today, pinned to it."""
    if definition is None:
        definition = resolve_definition(code=code, org=org, on=_local(at).date())
    d = parsed(definition)
    errors: list[FieldError] = []
    clean: dict[str, Any] = {}
    try:
        clean = (
            rules.clean_form(d.start_form, data or {}, prefix="data") if d.start_form else dict(data or {})
        )
    except InvalidInput as exc:
        errors.extend(exc.errors)
    if not title or len(title) > 200:
        errors.append(FieldError("title", "is required, at most 200 characters"))
    if actor.org is not None and not DataScope.for_user(actor).contains_org(org) and applicant is None:
        errors.append(FieldError("org", "outside your data scope"))
    if errors:
        raise UnableToStartProcess(errors)
    calendar = calendar_for(org)
    with transaction.atomic():
        due = warn = None
        unit = ""
        if d.time_limit is not None:
            value = d.time_limit.for_data(clean)
            unit = d.time_limit.unit
            due = _deadline(at, value, unit, calendar)
            warn = _deadline(at, value * d.warn_share, unit, calendar)
        instance = ProcessInstance.objects.create(
            number=_next_number(definition.number_prefix, at),
            definition=definition,
            org=org,
            title=title,
            subject_type=subject_type,
            subject_id=str(subject_id),
            subject_repr=subject_repr[:200],
            data=audit.jsonable(clean),
            initiator=actor,
            applicant=applicant,
            started_at=at,
            due_at=due,
            warn_at=warn,
            limit_unit=unit,
        )
        _event(
            instance,
            "started",
            at=at,
            actor=actor,
            data={"definition": definition.code, "version": definition.version},
        )
        _open_task(instance, d, d.step(d.start), at=at, calendar=calendar, actor=actor)
        audit.record(
            actor=actor,
            action="workflow.start",
            target=instance,
            after={"number": instance.number, "code": code, "version": definition.version, "data": clean},
            at=at,
        )
    return instance


# --- task transitions ---------------------------------------------------------------------------
def claim_task(*, actor: User, task_id: int, at: datetime) -> Task:
    with transaction.atomic():
        task = _lock_task(task_id)
        errors = []
        if (refusal := _instance_refusal(task.instance)) is not None:
            errors.append(refusal)
        if task.state != Task.State.OPEN:
            errors.append(
                FieldError("task", f"task is {task.get_state_display()}, not waiting to be claimed")
            )
        if not _is_candidate(actor, task):
            errors.append(FieldError("task", f"you are not a {task.role} of {task.org.name}"))
        if errors:
            raise UnableToClaimTask(errors)
        task.state = Task.State.CLAIMED
        task.assignee = actor
        task.claimed_at = at
        task.save(update_fields=["state", "assignee", "claimed_at"])
        _event(task.instance, "claimed", at=at, actor=actor, task=task)
        audit.record(
            actor=actor,
            action="workflow.task.claim",
            target=task,
            org=task.org,
            after={"assignee": actor.pk},
            at=at,
        )
    return task


def hand_over_task(*, actor: User, task_id: int, to_user: User, reason: str, at: datetime) -> Task:
    """Give a task to another user who may do it (role and data scope)."""
    with transaction.atomic():
        task = _lock_task(task_id)
        errors = []
        if (refusal := _instance_refusal(task.instance)) is not None:
            errors.append(refusal)
        if not task.is_open:
            errors.append(FieldError("task", f"task is {task.get_state_display()}"))
        supervisor = actor.has_role(*SUPERVISOR_ROLES) and DataScope.for_user(actor).contains_org(task.org)
        if (
            task.assignee_id != actor.pk
            and not supervisor
            and not (task.assignee_id is None and _is_candidate(actor, task))
        ):
            errors.append(FieldError("task", "only the assignee or a manager may hand over this task"))
        if not _is_candidate(to_user, task):
            errors.append(FieldError("to_user", f"{to_user} is not a {task.role} of {task.org.name}"))
        if to_user.pk == task.assignee_id:
            errors.append(FieldError("to_user", "the task is already assigned to this user"))
        if not reason.strip():
            errors.append(FieldError("reason", "say why the task is handed over"))
        if errors:
            raise UnableToHandOverTask(errors)
        before = task.assignee_id
        task.assignee = to_user
        task.state = Task.State.CLAIMED
        task.claimed_at = at
        task.save(update_fields=["state", "assignee", "claimed_at"])
        _event(
            task.instance,
            "handed_over",
            at=at,
            actor=actor,
            task=task,
            reason=reason,
            data={"to": str(to_user)},
        )
        audit.record(
            actor=actor,
            action="workflow.task.hand_over",
            target=task,
            org=task.org,
            before={"assignee": before},
            after={"assignee": to_user.pk},
            reason=reason,
            at=at,
        )
    return task


def _check_assignee(actor: User, task: Task, errors: list[FieldError]) -> None:
    if task.state == Task.State.OPEN:
        errors.append(FieldError("task", "the task is not claimed yet: claim it first"))
    elif task.state != Task.State.CLAIMED:
        errors.append(
            FieldError("task", f"task {task.step_name} is {task.get_state_display()}; nothing to do")
        )
    elif task.assignee_id != actor.pk:
        errors.append(FieldError("task", f"task {task.step_name} is assigned to {task.assignee}, not to you"))


def complete_task(
    *,
    actor: User,
    task_id: int,
    form: dict[str, Any] | None,
    at: datetime,
    comment: str = "",
    step_code: str | None = None,
) -> Task:
    """Complete a claimed task with its form data: validate, run the step's effect, route on."""
    with transaction.atomic():
        task = _lock_task(task_id)
        instance = task.instance
        d = parsed(instance.definition)
        errors: list[FieldError] = []
        if (refusal := _instance_refusal(instance)) is not None:
            errors.append(refusal)
        _check_assignee(actor, task, errors)
        if step_code is not None and step_code != task.step_code:
            errors.append(
                FieldError(
                    "step", f"the work order is at {task.step_name} ({task.step_code}), not {step_code}"
                )
            )
        if len(comment) > 500:
            errors.append(FieldError("comment", "at most 500 characters"))
        if errors:
            raise UnableToCompleteTask(errors)
        step = d.step(task.step_code)
        try:
            clean = rules.clean_form(step.form, form or {}, prefix="form")
        except InvalidInput as exc:
            raise UnableToCompleteTask(exc.errors) from None
        data = {**instance.data, **clean}
        done_effects = list(data.get("_effects", []))
        if step.effect and step.effect not in done_effects:
            handler = effects.get(step.effect)
            if handler is None:
                raise UnableToCompleteTask(
                    [FieldError("step", f"no effect handler {step.effect!r} is installed")]
                )
            result = handler(
                effects.EffectContext(
                    instance=instance, task=task, step=step, form=clean, data=data, actor=actor, at=at
                )
            )
            data.update(audit.jsonable(result or {}))
            done_effects.append(step.effect)
            data["_effects"] = done_effects
        task.state = Task.State.COMPLETED
        task.completed_at = at
        task.form_data = clean
        task.comment = comment
        task.save(update_fields=["state", "completed_at", "form_data", "comment"])
        _close_supervisions(task, at)
        instance.data = data
        calendar = calendar_for(instance.org)
        if task.customer_side and instance.due_at is not None:
            # the customer's time does not count against the utility's commitment
            paused = cal.elapsed(_local(task.created_at), _local(at), instance.limit_unit, calendar=calendar)
            instance.due_at = _push(instance.due_at, paused, instance.limit_unit, calendar)
            instance.warn_at = _push(instance.warn_at, paused, instance.limit_unit, calendar)
            instance.paused_seconds += int(paused.total_seconds())
        _event(instance, "completed", at=at, actor=actor, task=task, reason=comment, data=clean)
        audit.record(
            actor=actor,
            action="workflow.task.complete",
            target=task,
            org=task.org,
            after={"step": task.step_code, "form": clean},
            at=at,
        )
        _route(instance, d, step, task, at=at, actor=actor, calendar=calendar)
        instance.save()
    return task


def _route(
    instance: ProcessInstance,
    d: rules.Definition,
    step: rules.StepDef,
    task: Task,
    *,
    at: datetime,
    actor: User,
    calendar: cal.Calendar,
) -> None:
    targets = rules.route(step, instance.data)
    if not step.is_end and not targets:
        raise UnableToCompleteTask([FieldError("form", f"no route out of {step.name} matches the form data")])
    open_tasks = list(
        instance.tasks.filter(state__in=[Task.State.OPEN, Task.State.CLAIMED]).exclude(pk=task.pk)
    )
    for code in targets:
        nxt = d.step(code)
        if nxt.join:
            # wait until no branch leading into the join is still open
            preds = set(d.predecessors(code))
            if any(t.step_code in preds for t in open_tasks) or any(t.step_code == code for t in open_tasks):
                continue
        _open_task(instance, d, nxt, at=at, calendar=calendar, actor=actor)
    if not targets and not open_tasks:
        instance.state = ProcessInstance.State.COMPLETED
        instance.ended_at = at
        instance.on_time = instance.due_at is None or at <= instance.due_at
        _event(instance, "archived", at=at, actor=actor, data={"on_time": instance.on_time})
        audit.record(
            actor=actor,
            action="workflow.archive",
            target=instance,
            after={"state": instance.state, "on_time": instance.on_time},
            at=at,
        )


def send_back_task(
    *, actor: User, task_id: int, reason: str, at: datetime, to_step: str | None = None
) -> Task:
    """Return the work order to an earlier step (default: the step done just before), with a
    reason; the new task goes back to whoever did that step."""
    with transaction.atomic():
        task = _lock_task(task_id)
        instance = task.instance
        d = parsed(instance.definition)
        errors: list[FieldError] = []
        if (refusal := _instance_refusal(instance)) is not None:
            errors.append(refusal)
        _check_assignee(actor, task, errors)
        if not reason.strip():
            errors.append(FieldError("reason", "say why the work order is sent back"))
        step = d.step(task.step_code)
        if not step.can_send_back:
            errors.append(FieldError("task", f"{step.name} cannot be sent back"))
        done = list(instance.tasks.filter(state=Task.State.COMPLETED).order_by("-completed_at", "-id"))
        target: Task | None = None
        if to_step:
            target = next((t for t in done if t.step_code == to_step), None)
            if target is None:
                errors.append(FieldError("to_step", f"step {to_step!r} has not been done in this work order"))
        else:
            preds = set(d.predecessors(task.step_code))
            target = next((t for t in done if t.step_code in preds), None) or (done[0] if done else None)
            if target is None:
                errors.append(FieldError("task", "there is no earlier step to send back to"))
        if errors:
            raise UnableToSendBackTask(errors)
        task.state = Task.State.SENT_BACK
        task.completed_at = at
        task.comment = reason[:500]
        task.save(update_fields=["state", "completed_at", "comment"])
        _close_supervisions(task, at)
        for other in instance.tasks.filter(state__in=[Task.State.OPEN, Task.State.CLAIMED]):
            other.state = Task.State.CANCELLED
            other.completed_at = at
            other.save(update_fields=["state", "completed_at"])
            _close_supervisions(other, at)
        _event(
            instance, "sent_back", at=at, actor=actor, task=task, reason=reason, data={"to": target.step_code}
        )
        back_to = target.assignee if target.assignee and target.assignee.is_active else None
        new = _open_task(
            instance,
            d,
            d.step(target.step_code),
            at=at,
            calendar=calendar_for(instance.org),
            assignee=back_to,
            actor=actor,
            sent_back_from=task,
        )
        audit.record(
            actor=actor,
            action="workflow.task.send_back",
            target=task,
            org=task.org,
            after={"to_step": target.step_code, "new_task": new.pk},
            reason=reason,
            at=at,
        )
    return new


# --- instance transitions -----------------------------------------------------------------------
def _lock_instance(instance_id: int) -> ProcessInstance:
    try:
        return ProcessInstance.objects.select_for_update().get(pk=instance_id)
    except ProcessInstance.DoesNotExist:
        raise NotFound(f"no work order {instance_id}") from None


def _may_manage(actor: User, instance: ProcessInstance) -> bool:
    if not DataScope.for_user(actor).contains_org(instance.org) and actor.pk != instance.initiator_id:
        return False
    return (
        actor.has_role(*SUPERVISOR_ROLES)
        or actor.pk == instance.initiator_id
        or instance.tasks.filter(assignee=actor, state=Task.State.CLAIMED).exists()
    )


def suspend_process(*, actor: User, instance_id: int, reason: str, at: datetime) -> ProcessInstance:
    """挂起: the clock stops until the work order is resumed (e.g. waiting for documents)."""
    with transaction.atomic():
        instance = _lock_instance(instance_id)
        errors = []
        if instance.state != ProcessInstance.State.RUNNING:
            errors.append(
                FieldError("instance", f"work order is {instance.get_state_display()}, not running")
            )
        if not reason.strip():
            errors.append(FieldError("reason", "say why the work order is suspended"))
        if not _may_manage(actor, instance):
            errors.append(FieldError("instance", "only the initiator, the assignee or a manager may suspend"))
        if errors:
            raise UnableToChangeProcess(errors)
        instance.state = ProcessInstance.State.SUSPENDED
        instance.suspended_at = at
        instance.save(update_fields=["state", "suspended_at"])
        _event(instance, "suspended", at=at, actor=actor, reason=reason)
        audit.record(
            actor=actor,
            action="workflow.suspend",
            target=instance,
            before={"state": "running"},
            after={"state": "suspended"},
            reason=reason,
            at=at,
        )
    return instance


def resume_process(*, actor: User, instance_id: int, at: datetime, reason: str = "") -> ProcessInstance:
    """Resume: every open deadline moves later by the time spent suspended."""
    with transaction.atomic():
        instance = _lock_instance(instance_id)
        errors = []
        if instance.state != ProcessInstance.State.SUSPENDED:
            errors.append(
                FieldError("instance", f"work order is {instance.get_state_display()}, not suspended")
            )
        if not _may_manage(actor, instance):
            errors.append(FieldError("instance", "only the initiator, the assignee or a manager may resume"))
        if errors:
            raise UnableToChangeProcess(errors)
        calendar = calendar_for(instance.org)
        start = _local(instance.suspended_at)
        end = _local(at)
        paused_instance = cal.elapsed(start, end, instance.limit_unit or "hours", calendar=calendar)
        instance.due_at = _push(instance.due_at, paused_instance, instance.limit_unit, calendar)
        instance.warn_at = _push(instance.warn_at, paused_instance, instance.limit_unit, calendar)
        instance.paused_seconds += int(paused_instance.total_seconds())
        for t in instance.tasks.select_for_update().filter(state__in=[Task.State.OPEN, Task.State.CLAIMED]):
            paused = cal.elapsed(start, end, t.limit_unit or "hours", calendar=calendar)
            t.due_at = _push(t.due_at, paused, t.limit_unit, calendar)
            t.warn_at = _push(t.warn_at, paused, t.limit_unit, calendar)
            t.escalate_at = _push(t.escalate_at, paused, t.limit_unit, calendar)
            t.save(update_fields=["due_at", "warn_at", "escalate_at"])
        instance.state = ProcessInstance.State.RUNNING
        instance.suspended_at = None
        instance.save()
        _event(instance, "resumed", at=at, actor=actor, reason=reason)
        audit.record(
            actor=actor,
            action="workflow.resume",
            target=instance,
            before={"state": "suspended"},
            after={"state": "running", "paused_seconds": int(paused_instance.total_seconds())},
            reason=reason,
            at=at,
        )
    return instance


def cancel_process(*, actor: User, instance_id: int, reason: str, at: datetime) -> ProcessInstance:
    with transaction.atomic():
        instance = _lock_instance(instance_id)
        errors = []
        if not instance.is_open:
            errors.append(FieldError("instance", f"work order is {instance.get_state_display()}"))
        if not reason.strip():
            errors.append(FieldError("reason", "say why the work order is cancelled"))
        if not _may_manage(actor, instance):
            errors.append(FieldError("instance", "only the initiator, the assignee or a manager may cancel"))
        if errors:
            raise UnableToChangeProcess(errors)
        before = instance.state
        for t in instance.tasks.select_for_update().filter(state__in=[Task.State.OPEN, Task.State.CLAIMED]):
            t.state = Task.State.CANCELLED
            t.completed_at = at
            t.save(update_fields=["state", "completed_at"])
            _close_supervisions(t, at)
        instance.state = ProcessInstance.State.CANCELLED
        instance.ended_at = at
        instance.cancel_reason = reason[:200]
        instance.save(update_fields=["state", "ended_at", "cancel_reason"])
        _event(instance, "cancelled", at=at, actor=actor, reason=reason)
        audit.record(
            actor=actor,
            action="workflow.cancel",
            target=instance,
            before={"state": before},
            after={"state": "cancelled"},
            reason=reason,
            at=at,
        )
    return instance


MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


def add_attachment(*, actor: User, task_id: int, kind: str, upload: Any, at: datetime) -> Attachment:
    """Attach a document to a task (only its assignee, while the task is open)."""
    with transaction.atomic():
        task = _lock_task(task_id)
        errors: list[FieldError] = []
        if (refusal := _instance_refusal(task.instance)) is not None:
            errors.append(refusal)
        _check_assignee(actor, task, errors)
        size = getattr(upload, "size", 0) or 0
        if size <= 0:
            errors.append(FieldError("file", "the file is empty"))
        elif size > MAX_ATTACHMENT_BYTES:
            errors.append(FieldError("file", "at most 10 MB"))
        if errors:
            raise InvalidInput(errors)
        name = str(getattr(upload, "name", "file"))[-200:]
        att = Attachment(
            instance=task.instance,
            task=task,
            kind=kind[:60],
            name=name,
            size=size,
            uploaded_by=actor,
            uploaded_at=at,
        )
        att.file.save(name, upload, save=False)
        att.save()
        _event(task.instance, "attached", at=at, actor=actor, task=task, data={"name": name, "kind": kind})
        audit.record(
            actor=actor, action="workflow.attach", target=task, org=task.org, after={"name": name}, at=at
        )
    return att


# --- timers -------------------------------------------------------------------------------------
def check_deadlines(*, now: datetime) -> dict[str, int]:
    """Warn at the warning share of a limit, alarm when it is exceeded, escalate to the upper
    org (督办). Idempotent: each alarm is raised once. Suspended work orders and customer-side
    steps are not timed. Called by the Celery beat task / `python -m mmis workflow-timers`."""
    counts = {"warnings": 0, "overdue": 0, "supervisions": 0, "process_warnings": 0, "process_overdue": 0}
    running = ProcessInstance.State.RUNNING
    open_states = [Task.State.OPEN, Task.State.CLAIMED]
    base = Task.objects.filter(
        state__in=open_states, instance__state=running, customer_side=False
    ).select_related("instance", "org")
    with transaction.atomic():
        for t in base.filter(warn_at__lte=now, warned_at__isnull=True, due_at__gt=now).select_for_update(
            of=("self",)
        ):
            t.warned_at = now
            t.save(update_fields=["warned_at"])
            msg = f"{t.instance.number} {t.step_name} 将于 {_local(t.due_at):%Y-%m-%d %H:%M} 到期"
            Alarm.objects.create(
                instance=t.instance, task=t, org=t.org, kind=Alarm.Kind.WARNING, at=now, message=msg
            )
            _event(t.instance, "warned", at=now, task=t, reason=msg)
            counts["warnings"] += 1
        for t in base.filter(due_at__lte=now, alarmed_at__isnull=True).select_for_update(of=("self",)):
            t.alarmed_at = now
            if t.warned_at is None:
                t.warned_at = now
            t.save(update_fields=["alarmed_at", "warned_at"])
            msg = f"{t.instance.number} {t.step_name} 已超期 (时限 {_local(t.due_at):%Y-%m-%d %H:%M})"
            Alarm.objects.create(
                instance=t.instance, task=t, org=t.org, kind=Alarm.Kind.OVERDUE, at=now, message=msg
            )
            _event(t.instance, "overdue", at=now, task=t, reason=msg)
            counts["overdue"] += 1
        for t in base.filter(escalate_at__lte=now, escalated_at__isnull=True).select_for_update(of=("self",)):
            t.escalated_at = now
            t.save(update_fields=["escalated_at"])
            upper = Org.objects.filter(path=t.org.path[: -Org.steplen]).first() or t.org
            msg = f"督办: {t.instance.number} {t.step_name} ({t.org.name}) 超期未办结"
            sup = Supervision.objects.create(
                task=t, instance=t.instance, org=upper, supervised_org=t.org, opened_at=now, message=msg
            )
            _event(t.instance, "supervised", at=now, task=t, reason=msg, data={"by": upper.name})
            audit.record(
                actor=None, action="workflow.supervise", target=sup, org=upper, after={"task": t.pk}, at=now
            )
            counts["supervisions"] += 1
        inst = ProcessInstance.objects.filter(state=running)
        for i in inst.filter(warn_at__lte=now, warned_at__isnull=True, due_at__gt=now).select_for_update():
            i.warned_at = now
            i.save(update_fields=["warned_at"])
            msg = f"{i.number} 承诺时限将于 {_local(i.due_at):%Y-%m-%d %H:%M} 到期"
            Alarm.objects.create(instance=i, org=i.org, kind=Alarm.Kind.WARNING, at=now, message=msg)
            _event(i, "warned", at=now, reason=msg)
            counts["process_warnings"] += 1
        for i in inst.filter(due_at__lte=now, alarmed_at__isnull=True).select_for_update():
            i.alarmed_at = now
            i.warned_at = i.warned_at or now
            i.save(update_fields=["alarmed_at", "warned_at"])
            msg = f"{i.number} 已超出承诺时限"
            Alarm.objects.create(instance=i, org=i.org, kind=Alarm.Kind.OVERDUE, at=now, message=msg)
            _event(i, "overdue", at=now, reason=msg)
            counts["process_overdue"] += 1
    return counts
