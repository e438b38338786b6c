"""Reads of the work-order engine, always through the user's data scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet

from mmis.common.errors import NotFound
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.workflow.models import Alarm, ProcessDefinition, ProcessInstance, Supervision, Task

OPEN_TASK_STATES = (Task.State.OPEN, Task.State.CLAIMED)


def due_status(task_or_instance, now: datetime) -> str:
    """'overdue', 'near' (past the warning share) or 'ok' — the colours of the workbench."""
    due = task_or_instance.due_at
    warn = task_or_instance.warn_at
    if due is None:
        return "ok"
    if due <= now:
        return "overdue"
    if warn is not None and warn <= now:
        return "near"
    return "ok"


def instances(user: User) -> QuerySet[ProcessInstance]:
    scope = DataScope.for_user(user)
    qs = ProcessInstance.objects.select_related("definition", "org", "initiator")
    if scope.everything:
        return qs
    return qs.filter(Q(org_id__in=scope.org_ids()) | Q(applicant=user) | Q(tasks__assignee=user)).distinct()


def get_instance(user: User, pk: int) -> ProcessInstance:
    try:
        return instances(user).get(pk=pk)
    except ProcessInstance.DoesNotExist:
        raise NotFound(f"no work order {pk}") from None


def get_instance_by_number(user: User, number: str) -> ProcessInstance:
    try:
        return instances(user).get(number=number)
    except ProcessInstance.DoesNotExist:
        raise NotFound(f"no work order {number}") from None


def my_tasks(user: User) -> QuerySet[Task]:
    return (
        Task.objects.filter(assignee=user, state=Task.State.CLAIMED)
        .exclude(instance__state__in=[ProcessInstance.State.CANCELLED, ProcessInstance.State.COMPLETED])
        .select_related("instance", "instance__definition", "org")
        .order_by("due_at", "id")
    )


def team_queue(user: User) -> QuerySet[Task]:
    scope = DataScope.for_user(user)
    qs = Task.objects.filter(state=Task.State.OPEN, instance__state=ProcessInstance.State.RUNNING)
    if not user.is_superuser:
        qs = qs.filter(role__in=list(user.role_codes()))
    return (
        scope.filter(qs, "org")
        .select_related("instance", "instance__definition", "org")
        .order_by("due_at", "id")
    )


def get_task(user: User, pk: int) -> Task:
    try:
        task = Task.objects.select_related("instance", "instance__definition", "org", "assignee").get(pk=pk)
    except Task.DoesNotExist:
        raise NotFound(f"no task {pk}") from None
    scope = DataScope.for_user(user)
    if task.assignee_id != user.pk and not (
        scope.contains_org(task.org) or scope.contains_org(task.instance.org)
    ):
        raise NotFound(f"no task {pk}")
    return task


def current_tasks(instance: ProcessInstance) -> list[Task]:
    return list(
        instance.tasks.filter(state__in=OPEN_TASK_STATES).select_related("org", "assignee").order_by("id")
    )


def search(
    user: User,
    *,
    q: str = "",
    code: str = "",
    state: str = "",
    org_id: int | None = None,
    overdue_at: datetime | None = None,
) -> QuerySet[ProcessInstance]:
    qs = instances(user)
    if q:
        qs = qs.filter(Q(number__icontains=q) | Q(title__icontains=q) | Q(subject_repr__icontains=q))
    if code:
        qs = qs.filter(definition__code=code)
    if state:
        qs = qs.filter(state=state)
    if org_id:
        org = Org.objects.filter(pk=org_id).first()
        if org is not None:
            qs = qs.filter(org__path__startswith=org.path)
    if overdue_at is not None:
        qs = qs.filter(state=ProcessInstance.State.RUNNING, due_at__lte=overdue_at)
    return qs.order_by("-started_at", "-id")


@dataclass
class OrgDeadlines:
    org: Org
    open: int
    near: int
    overdue: int
    supervised: int


def overdue_by_org(user: User, *, now: datetime, level_of: Org | None = None) -> list[OrgDeadlines]:
    """Open tasks per child org of `level_of` (default: the user's org): total, near due, overdue,
    under supervision."""
    scope = DataScope.for_user(user)
    root = level_of or user.org or Org.get_first_root_node()
    children = list(Org.objects.filter(path__startswith=root.path, depth=root.depth + 1)) or [root]
    base = scope.filter(
        Task.objects.filter(state__in=OPEN_TASK_STATES, instance__state=ProcessInstance.State.RUNNING), "org"
    )
    out = []
    for child in children:
        if not scope.contains_org(child) and not scope.everything:
            continue
        rows = base.filter(org__path__startswith=child.path).aggregate(
            open=Count("id"),
            near=Count("id", filter=Q(warn_at__lte=now, due_at__gt=now)),
            overdue=Count("id", filter=Q(due_at__lte=now)),
        )
        supervised = Supervision.objects.filter(
            state=Supervision.State.OPEN, supervised_org__path__startswith=child.path
        ).count()
        out.append(OrgDeadlines(org=child, supervised=supervised, **rows))
    return out


def recent_alarms(user: User, limit: int = 20) -> QuerySet[Alarm]:
    return DataScope.for_user(user).filter(Alarm.objects.select_related("instance"), "org")[:limit]


def supervisions(user: User) -> QuerySet[Supervision]:
    return DataScope.for_user(user).filter(
        Supervision.objects.filter(state=Supervision.State.OPEN).select_related(
            "task", "instance", "supervised_org"
        ),
        "org",
    )


def definitions_in_force(org: Org, on) -> list[ProcessDefinition]:
    """The version of each process code in force for `org` (nearest publisher wins)."""
    seen: dict[str, ProcessDefinition] = {}
    for path in org.ancestor_paths():
        for d in ProcessDefinition.objects.filter(
            org__path=path, state=ProcessDefinition.State.PUBLISHED, effective_from__lte=on
        ).order_by("code", "-effective_from", "-version"):
            seen.setdefault(d.code, d)
    return sorted(seen.values(), key=lambda d: d.name)
