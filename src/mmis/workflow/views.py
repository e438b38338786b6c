"""Workbench pages of the work-order engine: 我的待办, team queue, search, the work-order page
(timeline, current step's form and actions) and the overdue dashboard. Thin: parse, call one
service or query, render. A work order outside the user's scope is a 404."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mmis.common.errors import InvalidInput, NotFound
from mmis.org.models import User
from mmis.org.scope import DataScope
from mmis.workflow import queries, rules, services
from mmis.workflow.models import ProcessDefinition, ProcessInstance, Task

ACTION_LABELS = {
    "started": "受理",
    "task_opened": "到达",
    "claimed": "领取",
    "completed": "完成",
    "handed_over": "转派",
    "sent_back": "回退",
    "suspended": "挂起",
    "resumed": "恢复",
    "cancelled": "撤销",
    "archived": "归档办结",
    "warned": "临期预警",
    "overdue": "超期告警",
    "supervised": "督办",
    "attached": "上传附件",
}


def form_from_post(fields: tuple[rules.FormField, ...], post, prefix: str = "") -> dict[str, Any]:
    """Read a generated form back into the JSON shape the engine validates."""
    out: dict[str, Any] = {}
    for f in fields:
        key = prefix + f.name
        if f.type == "bool":
            out[f.name] = key in post
        elif f.type == "multichoice":
            out[f.name] = post.getlist(key)
        elif key in post:
            out[f.name] = post.get(key, "")
    return out


def split_errors(exc: InvalidInput, prefix: str) -> tuple[dict[str, list[str]], list[str]]:
    """Field errors by field name (paths `form.x` / `data.x`) and the rest."""
    by_field: dict[str, list[str]] = {}
    other = []
    for e in exc.errors:
        if e.path.startswith(prefix + "."):
            by_field.setdefault(e.path[len(prefix) + 1 :].split(".")[0], []).append(e.message)
        else:
            other.append(f"{e.path}: {e.message}" if e.path else e.message)
    return by_field, other


def field_rows(fields, values: dict | None = None, errors: dict | None = None) -> list[dict]:
    values = values or {}
    errors = errors or {}
    return [{"f": f, "value": values.get(f.name, ""), "errors": errors.get(f.name, [])} for f in fields]


def _annotate(tasks, now):
    rows = []
    for t in tasks:
        rows.append({"t": t, "status": queries.due_status(t, now)})
    return rows


@login_required
def my_tasks(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    mine = list(queries.my_tasks(request.user)[:300])
    queue_count = queries.team_queue(request.user).count()
    rows = _annotate(mine, now)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "near", "overdue")}
    return render(
        request,
        "workflow/my_tasks.html",
        {"rows": rows, "counts": counts, "queue_count": queue_count, "now": now},
    )


@login_required
def team_queue(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rows = _annotate(queries.team_queue(request.user)[:300], now)
    return render(request, "workflow/queue.html", {"rows": rows})


@login_required
@require_POST
def claim(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        task = queries.get_task(request.user, pk)
        services.claim_task(actor=request.user, task_id=pk, at=timezone.now())
    except NotFound:
        raise Http404 from None
    except InvalidInput as exc:
        messages.error(request, "; ".join(e.message for e in exc.errors))
        return redirect("workflow:queue")
    messages.success(request, _("已领取：%(n)s %(s)s") % {"n": task.instance.number, "s": task.step_name})
    return redirect("workflow:order", pk=task.instance_id)


@login_required
def search(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    q = request.GET.get("q", "").strip()
    code = request.GET.get("process", "")
    state = request.GET.get("state", "")
    overdue = request.GET.get("overdue") == "1"
    qs = queries.search(request.user, q=q, code=code, state=state, overdue_at=now if overdue else None)
    page = Paginator(qs, 30).get_page(request.GET.get("page"))
    rows = [{"i": i, "status": queries.due_status(i, now) if i.state == "running" else "ok"} for i in page]
    codes = (
        ProcessDefinition.objects.filter(state="published")
        .values_list("code", "name")
        .distinct()
        .order_by("name")
    )
    return render(
        request,
        "workflow/search.html",
        {
            "rows": rows,
            "page": page,
            "q": q,
            "process": code,
            "state": state,
            "overdue": overdue,
            "codes": sorted(set(codes), key=lambda c: c[1]),
            "states": ProcessInstance.State.choices,
        },
    )


def _candidates(task: Task) -> list[User]:
    users = User.objects.filter(is_active=True, roles__code=task.role).distinct().select_related("org")
    return [
        u for u in users[:200] if DataScope.for_user(u).contains_org(task.org) and u.pk != task.assignee_id
    ]


@login_required
def order(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        inst = queries.get_instance(request.user, pk)
    except NotFound:
        raise Http404(_("工单不存在或不在您的数据权限范围内")) from None
    now = timezone.now()
    d = services.parsed(inst.definition)
    current = queries.current_tasks(inst)
    form_errors: dict[str, list[str]] = {}
    other_errors: list[str] = []
    posted: dict[str, Any] = {}
    active_task = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        task_id = int(request.POST.get("task") or 0)
        try:
            if action == "complete":
                task = next((t for t in current if t.pk == task_id), None)
                if task is None:
                    raise InvalidInput("this task is no longer open")
                active_task = task
                posted = form_from_post(d.step(task.step_code).form, request.POST, prefix="f_")
                services.complete_task(
                    actor=request.user,
                    task_id=task_id,
                    form=posted,
                    comment=request.POST.get("comment", ""),
                    step_code=request.POST.get("step") or None,
                    at=now,
                )
                messages.success(request, _("已提交：%(s)s") % {"s": task.step_name})
            elif action == "send_back":
                services.send_back_task(
                    actor=request.user,
                    task_id=task_id,
                    reason=request.POST.get("reason", ""),
                    to_step=request.POST.get("to_step") or None,
                    at=now,
                )
                messages.success(request, _("已回退"))
            elif action == "hand_over":
                to_user = User.objects.filter(pk=request.POST.get("to_user") or 0).first()
                if to_user is None:
                    raise InvalidInput("choose the user to hand over to", path="to_user")
                services.hand_over_task(
                    actor=request.user,
                    task_id=task_id,
                    to_user=to_user,
                    reason=request.POST.get("reason", ""),
                    at=now,
                )
                messages.success(request, _("已转派给 %(u)s") % {"u": to_user})
            elif action == "claim":
                services.claim_task(actor=request.user, task_id=task_id, at=now)
                messages.success(request, _("已领取"))
            elif action == "suspend":
                services.suspend_process(
                    actor=request.user, instance_id=inst.pk, reason=request.POST.get("reason", ""), at=now
                )
                messages.success(request, _("工单已挂起"))
            elif action == "resume":
                services.resume_process(actor=request.user, instance_id=inst.pk, at=now)
                messages.success(request, _("工单已恢复"))
            elif action == "cancel":
                services.cancel_process(
                    actor=request.user, instance_id=inst.pk, reason=request.POST.get("reason", ""), at=now
                )
                messages.success(request, _("工单已撤销"))
            elif action == "attach":
                upload = request.FILES.get("file")
                if upload is None:
                    raise InvalidInput("choose a file", path="file")
                services.add_attachment(
                    actor=request.user,
                    task_id=task_id,
                    kind=request.POST.get("kind", ""),
                    upload=upload,
                    at=now,
                )
                messages.success(request, _("附件已上传"))
            else:
                raise InvalidInput(f"unknown action {action!r}")
            return redirect("workflow:order", pk=inst.pk)
        except NotFound:
            raise Http404 from None
        except InvalidInput as exc:
            form_errors, other_errors = split_errors(exc, "form")
    current_rows = []
    done_codes = list(
        dict.fromkeys(
            inst.tasks.filter(state=Task.State.COMPLETED)
            .order_by("-completed_at")
            .values_list("step_code", flat=True)
        )
    )
    for t in current:
        step = d.step(t.step_code)
        mine = t.assignee_id == request.user.pk and t.state == Task.State.CLAIMED and inst.state == "running"
        values = posted if active_task is not None and active_task.pk == t.pk else {}
        current_rows.append(
            {
                "t": t,
                "step": step,
                "status": queries.due_status(t, now),
                "mine": mine,
                "can_claim": t.state == Task.State.OPEN
                and inst.state == "running"
                and request.user.has_role(t.role)
                and DataScope.for_user(request.user).contains_org(t.org),
                "fields": field_rows(step.form, values, form_errors if values or form_errors else None),
                "back_steps": [(c, d.step(c).name) for c in done_codes if c != t.step_code],
                "candidates": _candidates(t) if mine else [],
            }
        )
    events = [
        {"e": e, "label": ACTION_LABELS.get(e.action, e.action)} for e in inst.events.select_related("task")
    ]
    start_fields = {f.name: f for f in d.start_form}
    data_rows = []
    for k, v in inst.data.items():
        if k.startswith("_") or k in ("id_number", "new_id_number"):
            continue
        f = start_fields.get(k)
        label = f.label if f else k
        if f and f.choices:
            v = dict(f.choices).get(str(v), v)
        data_rows.append((label, v))
    manage = inst.is_open and (
        request.user.has_role("manager", "administrator")
        or inst.initiator_id == request.user.pk
        or any(r["mine"] for r in current_rows)
    )
    return render(
        request,
        "workflow/order.html",
        {
            "inst": inst,
            "status": queries.due_status(inst, now) if inst.state == "running" else "ok",
            "current": current_rows,
            "events": events,
            "data_rows": data_rows,
            "other_errors": other_errors,
            "manage": manage,
            "attachments": inst.attachments.select_related("task", "uploaded_by"),
            "supervisions": inst.supervisions.select_related("org"),
        },
    )


@login_required
def overdue(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rows = queries.overdue_by_org(request.user, now=now)
    chart = {
        "orgs": [r.org.name for r in rows],
        "ok": [r.open - r.near - r.overdue for r in rows],
        "near": [r.near for r in rows],
        "overdue": [r.overdue for r in rows],
    }
    tasks = (
        DataScope.for_user(request.user)
        .filter(
            Task.objects.filter(
                state__in=queries.OPEN_TASK_STATES, instance__state="running", due_at__lte=now
            ),
            "org",
        )
        .select_related("instance", "org", "assignee")
        .order_by("due_at")[:50]
    )
    return render(
        request,
        "workflow/overdue.html",
        {
            "rows": rows,
            "chart": chart,
            "tasks": tasks,
            "supervisions": queries.supervisions(request.user)[:50],
            "alarms": queries.recent_alarms(request.user, 20),
        },
    )
