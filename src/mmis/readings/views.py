"""Reading pages: home (books and plan progress), book detail, the reader's route (phone first),
bulk entry, file import with its report, the exceptions queue, terminals and remote commands.
Thin: parse, call one service or query, render."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from mmis.assets.models import Meter
from mmis.common.errors import InvalidInput, NotFound
from mmis.customers.models import UsageCategory
from mmis.org.scope import DataScope, chosen_org
from mmis.readings import imports, queries, services, workorders
from mmis.readings.models import ReadingException, RemoteCommand, Terminal

VALUE_NAMES = ("total", "sharp", "peak", "flat", "valley", "reactive", "max_demand")
METER_CHANGE_REASONS = {
    "fault": gettext_lazy("故障换表"),
    "rotation": gettext_lazy("周期轮换"),
    "upgrade": gettext_lazy("改造升级"),
    "ratio": gettext_lazy("互感器变比变更"),
    "other": gettext_lazy("其他"),
}


def _month(request: HttpRequest) -> date:
    text = request.GET.get("month") or request.POST.get("month") or ""
    try:
        y, m = (int(x) for x in text.split("-")[:2])
        return date(y, m, 1)
    except (ValueError, TypeError):
        return timezone.localdate().replace(day=1)


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "web/forbidden.html", {"message": message}, status=403)


def _book(request: HttpRequest, pk: int):
    try:
        return queries.get_book(request.user, pk)
    except NotFound:
        raise Http404 from None


def _errors(exc: InvalidInput) -> list[str]:
    return [f"{e.path}: {e.message}" if e.path else e.message for e in exc.errors]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    month = _month(request)
    books = list(queries.books(request.user))
    prog = queries.book_progress([b.pk for b in books], month)
    rows = [{"book": b, "p": prog[b.pk]} for b in books]
    totals = queries.Progress()
    for r in rows:
        totals.total += r["p"].total
        totals.read += r["p"].read
        totals.valid += r["p"].valid
        totals.exception += r["p"].exception
        totals.estimated += r["p"].estimated
    counts = queries.open_exception_counts(request.user)
    ctx = {
        "month": month,
        "rows": rows,
        "totals": totals,
        "readers": queries.reader_progress(books, month),
        "exception_total": sum(counts.values()),
        "exception_labels": [
            (label, counts[v]) for v, label in ReadingException.Rule.choices if counts.get(v)
        ],
        "can_plan": request.user.has_role(*services.BOOK_ADMIN_ROLES),
        "plans": {p.book_id: p for p in queries.plans(request.user, month)},
    }
    return render(request, "readings/home.html", ctx)


@login_required
@require_POST
def generate_plans(request: HttpRequest) -> HttpResponse:
    if not request.user.has_role(*services.BOOK_ADMIN_ROLES):
        return _forbidden(request, _("只有核算员或管理人员可以生成抄表计划"))
    month = _month(request)
    plans = services.generate_plans(
        actor=request.user, month=month, books=list(queries.books(request.user)), at=timezone.now()
    )
    messages.success(request, _("已生成 %(n)s 个抄表计划") % {"n": len(plans)})
    return redirect(f"{reverse('readings:home')}?month={month:%Y-%m}")


@login_required
def book_detail(request: HttpRequest, pk: int) -> HttpResponse:
    book = _book(request, pk)
    month = _month(request)
    if request.method == "POST":
        if not request.user.has_role(*services.BOOK_ADMIN_ROLES):
            return _forbidden(request, _("只有核算员或管理人员可以调整抄表段"))
        nos = [
            x.strip() for x in request.POST.get("point_nos", "").replace(",", "\n").splitlines() if x.strip()
        ]
        found = {p.point_no: p for p in queries.points_in_scope(request.user).filter(point_no__in=nos)}
        unknown = [n for n in nos if n not in found]
        if unknown:
            messages.error(request, _("未找到计量点: %(nos)s") % {"nos": ", ".join(unknown[:20])})
        elif nos:
            try:
                n = services.assign_points(
                    actor=request.user, book=book, points=[found[x] for x in nos], at=timezone.now()
                )
                messages.success(request, _("已加入 %(n)s 个计量点") % {"n": n})
            except InvalidInput as exc:
                for m in _errors(exc):
                    messages.error(request, m)
        return redirect(request.path)
    stops = queries.route(book, month)
    p = queries.book_progress([book.pk], month)[book.pk]
    page = Paginator(stops, 100).get_page(request.GET.get("page"))
    return render(request, "readings/book_detail.html", {"book": book, "month": month, "page": page, "p": p})


@login_required
def route(request: HttpRequest, pk: int) -> HttpResponse:
    """The reader's phone page: the day's book, one point after another."""
    book = _book(request, pk)
    month = _month(request)
    stops = queries.route(book, month)
    left = [s for s in stops if not s.done]
    show_all = request.GET.get("all") == "1"
    return render(
        request,
        "readings/route.html",
        {
            "book": book,
            "month": month,
            "stops": stops if show_all else left,
            "left": len(left),
            "total": len(stops),
            "show_all": show_all,
            "today": timezone.localdate(),
        },
    )


@login_required
@require_POST
def route_entry(request: HttpRequest, pk: int, point_id: int) -> HttpResponse:
    book = _book(request, pk)
    if not request.user.has_role(*services.READER_ROLES):
        return _forbidden(request, _("只有抄表员可以录入示数"))
    point = queries.points_in_scope(request.user).filter(pk=point_id, book_membership__book=book).first()
    if point is None:
        raise Http404
    today = timezone.localdate()
    reading_date = today
    if request.POST.get("reading_date"):
        try:
            reading_date = date.fromisoformat(request.POST["reading_date"])
        except ValueError:
            messages.error(request, _("抄表日期格式应为 YYYY-MM-DD"))
            return redirect("readings:route", pk=book.pk)
    errors: list[str] = []
    try:
        if request.POST.get("action") in ("no_access", "meter_fault"):
            services.mark_not_read(
                actor=request.user,
                point=point,
                reading_date=reading_date,
                reason=request.POST["action"],
                note=request.POST.get("note", ""),
                at=timezone.now(),
            )
            messages.info(request, _("%(no)s 已登记为无法抄表") % {"no": point.point_no})
        else:
            flags = request.POST.getlist("fault_flags")
            r = services.record_reading(
                actor=request.user,
                point=point,
                reading_date=reading_date,
                values={n: request.POST.get(n, "") for n in VALUE_NAMES},
                fault_flags=flags,
                note=request.POST.get("note", ""),
                photo=request.FILES.get("photo"),
                at=timezone.now(),
            )
            if r.status == "exception":
                details = "; ".join(e.detail for e in r.exceptions.filter(state="open"))
                messages.warning(
                    request, _("%(no)s 已保存, 但需复核: %(d)s") % {"no": point.point_no, "d": details}
                )
            else:
                messages.success(request, _("%(no)s 已保存") % {"no": point.point_no})
    except InvalidInput as exc:
        errors = _errors(exc)
        for m in errors:
            messages.error(request, f"{point.point_no} {m}")
    return redirect(f"{reverse('readings:route', args=[book.pk])}?month={reading_date:%Y-%m}#p{point.pk}")


@login_required
def bulk_entry(request: HttpRequest, pk: int) -> HttpResponse:
    book = _book(request, pk)
    month = _month(request)
    stops = queries.route(book, month)
    errors: dict[int, list[str]] = {}
    if request.method == "POST":
        if not request.user.has_role(*services.READER_ROLES):
            return _forbidden(request, _("只有抄表员可以录入示数"))
        try:
            reading_date = date.fromisoformat(request.POST.get("reading_date", ""))
        except ValueError:
            messages.error(request, _("抄表日期格式应为 YYYY-MM-DD"))
            return redirect(request.path)
        rows, index = [], []
        for s in stops:
            values = {n: request.POST.get(f"{n}_{s.point.pk}", "").strip() for n in VALUE_NAMES}
            if not any(values.values()):
                continue
            rows.append({"point": s.point, "reading_date": reading_date, "values": values})
            index.append(s.point.pk)
        try:
            saved, errs = services.record_readings_bulk(actor=request.user, rows=rows, at=timezone.now())
        except InvalidInput as exc:
            saved, errs = [], exc.errors
        for e in errs:
            i = int(e.path.split("]")[0].lstrip("[")) if e.path.startswith("[") else 0
            errors.setdefault(index[i] if index else 0, []).append(f"{e.path.split('.', 1)[-1]}: {e.message}")
        if saved:
            held = sum(1 for r in saved if r.status == "exception")
            messages.success(
                request, _("已保存 %(n)s 条, 其中 %(h)s 条需复核") % {"n": len(saved), "h": held}
            )
        if not errors:
            return redirect(f"{request.path}?month={month:%Y-%m}")
        stops = queries.route(book, month)
    return render(
        request,
        "readings/bulk.html",
        {
            "book": book,
            "month": month,
            "stops": stops,
            "errors": errors,
            "post": request.POST,
            "reading_date": request.POST.get("reading_date")
            or services.planned_date(book, month).isoformat(),
        },
    )


@login_required
def import_page(request: HttpRequest) -> HttpResponse:
    report = None
    if request.method == "POST":
        if not request.user.has_role(*services.READER_ROLES):
            return _forbidden(request, _("只有抄表员或核算员可以导入示数"))
        f = request.FILES.get("file")
        if f is None:
            messages.error(request, _("请选择 CSV 或 Excel 文件"))
        else:
            try:
                report = imports.import_readings(
                    actor=request.user, data=f.read(), filename=f.name, at=timezone.now()
                )
            except InvalidInput as exc:
                for m in _errors(exc):
                    messages.error(request, m)
    return render(request, "readings/import.html", {"report": report})


@login_required
def exceptions_queue(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "open")
    rule = request.GET.get("rule", "")
    mine = request.GET.get("who") == "mine"
    overdue = request.GET.get("overdue") == "1"
    today = timezone.localdate()
    qs = queries.exceptions(
        request.user,
        state=state,
        rule=rule,
        owner=request.user if mine else None,
        overdue_on=today if overdue else None,
    )
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    can_decide = request.user.has_role(*services.AUDITOR_ROLES)
    if can_decide and state == "open":
        by_org: dict[int, list] = {}
        for e in page:  # the page's rows become a list: the choices stay on them
            if e.org_id not in by_org:
                by_org[e.org_id] = list(queries.assignable_owners(e, services.AUDITOR_ROLES))
            e.owner_choices = [u for u in by_org[e.org_id] if u.pk != e.owner_id]
    query = urlencode(
        {"state": state, "rule": rule, "who": "mine" if mine else "", "overdue": "1" if overdue else ""}
    )
    return render(
        request,
        "readings/exceptions.html",
        {
            "page": page,
            "state": state,
            "rule": rule,
            "mine": mine,
            "overdue": overdue,
            "today": today,
            "query": query,
            "rules": ReadingException.Rule.choices,
            "decisions": ReadingException.Decision.choices,
            "counts": queries.open_exception_counts(request.user),
            "overdue_total": queries.overdue_count(request.user, today=today),
            "can_decide": can_decide,
        },
    )


@login_required
@require_POST
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_role(*services.AUDITOR_ROLES):
        return _forbidden(request, _("只有核算员可以处理抄表异常"))
    try:
        exc = queries.get_exception(request.user, pk)
    except NotFound:
        raise Http404 from None
    decision = request.POST.get("decision", "")
    try:
        if decision == "estimate":
            services.estimate_reading(
                actor=request.user,
                point=exc.metering_point,
                reading_date=exc.reading_date,
                reason=request.POST.get("note", ""),
                at=timezone.now(),
            )
        else:
            values = {n: request.POST[n] for n in VALUE_NAMES if request.POST.get(n)}
            services.decide_exception(
                actor=request.user,
                exception=exc,
                decision=decision,
                note=request.POST.get("note", ""),
                values=values or None,
                at=timezone.now(),
            )
        messages.success(request, _("%(no)s 已处理") % {"no": exc.metering_point.point_no})
    except InvalidInput as e:
        for m in _errors(e):
            messages.error(request, f"{exc.metering_point.point_no} {m}")
    return redirect(request.POST.get("next") or "readings:exceptions")


@login_required
def terminals(request: HttpRequest) -> HttpResponse:
    qs = queries.terminals(request.user)
    kind = request.GET.get("kind", "")
    if kind:
        qs = qs.filter(kind=kind)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(
        request, "readings/terminals.html", {"page": page, "kinds": Terminal.Kind.choices, "kind": kind}
    )


@login_required
def commands(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_role(*services.COMMAND_ROLES):
            return _forbidden(request, _("你的角色不能下发远程命令"))
        meter = (
            DataScope.for_user(request.user)
            .filter(Meter.objects.filter(asset_no=request.POST.get("meter", "").strip()))
            .first()
        )
        if meter is None:
            messages.error(request, _("未找到电能表"))
        else:
            try:
                services.send_remote_command(
                    meter=meter,
                    command=request.POST.get("command", ""),
                    requested_by=request.user,
                    reason=request.POST.get("reason", ""),
                    at=timezone.now(),
                )
                messages.success(request, _("命令已提交"))
            except InvalidInput as exc:
                for m in _errors(exc):
                    messages.error(request, m)
        return redirect("readings:commands")
    state = request.GET.get("state", "")
    page = Paginator(queries.commands(request.user, state=state), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "readings/commands.html",
        {
            "page": page,
            "state": state,
            "states": RemoteCommand.State.choices,
            "commands": RemoteCommand.Command.choices,
            "can_send": request.user.has_role(*services.COMMAND_ROLES),
        },
    )


# --- VEE settings per org ----------------------------------------------------------------------
NUMBER_SETTINGS = (
    "jump_factor",
    "zero_use_periods",
    "imbalance_units",
    "rollover_max_factor",
    "max_consecutive_estimates",
    "missing_grace_days",
    "demand_capacity_factor",
    "exception_days",
)
SETTING_HELP = {
    "jump_factor": gettext_lazy("本期电量大于基准的 k 倍或小于基准的 1/k 时挂起"),
    "zero_use_periods": gettext_lazy("连续零电量达到该期数转用电检查"),
    "imbalance_units": gettext_lazy("总示数与各时段示数之和的允许差(按末位计)"),
    "rollover_max_factor": gettext_lazy("示数倒走时按满码翻转处理的最大电量倍数"),
    "max_consecutive_estimates": gettext_lazy("超过后需现场抄表"),
    "missing_grace_days": gettext_lazy("抄表例日后多少天仍未抄视为漏抄"),
    "demand_capacity_factor": gettext_lazy("最大需量超过合同容量乘以该系数时提示"),
    "exception_days": gettext_lazy("从异常产生起按工作日计"),
    "seasonal_categories": gettext_lazy("这些用电类别以去年同月电量为基准"),
    "auditor": gettext_lazy("抄表段未指定审核员时的异常责任人"),
}
MESSAGE_TEXT = {
    "must be a number": gettext_lazy("请输入数字"),
    "must be 0 or more": gettext_lazy("不能小于 0"),
    "must be greater than 0": gettext_lazy("必须大于 0"),
    "must be a whole number": gettext_lazy("请输入整数"),
    "at most 2 decimal places": gettext_lazy("最多两位小数"),
    "must be a user with the billing auditor role": gettext_lazy("请选择核算员"),
}


def _setting_message(message: str) -> str:
    if message in MESSAGE_TEXT:
        return str(MESSAGE_TEXT[message])
    if message.startswith("must be at most") or message.startswith("must be less than"):
        return _("超出允许范围: %(m)s") % {"m": message.rsplit(" ", 1)[-1]}
    if message.startswith("unknown usage categories"):
        return _("未知的用电类别")
    return message


def _can_set_vee(user) -> bool:
    return user.is_superuser or user.has_role(*services.SETTINGS_ROLES)


@login_required
def vee_settings(request: HttpRequest) -> HttpResponse:
    """The VEE settings in force at an org of the user's subtree (and where each is inherited
    from); billing auditors and administrators edit the org's own values (blank: inherit)."""
    if not (request.user.is_superuser or request.user.has_role(*services.AUDITOR_ROLES)):
        return _forbidden(request, _("您的角色不能查看抄表审核设置"))
    data = request.POST if request.method == "POST" else request.GET
    orgs = queries.settings_orgs(request.user)
    org = chosen_org(orgs, data.get("org", ""), home_id=request.user.org_id)
    if org is None:
        return _forbidden(request, _("您的数据权限范围内没有单位"))
    can_write = _can_set_vee(request.user)
    auditors = list(queries.auditor_choices(org))
    errors: dict[str, str] = {}
    posted = None
    status = 200
    if request.method == "POST":
        if not can_write:
            return _forbidden(request, _("只有核算员或系统管理员可以修改抄表审核设置"))
        posted = request.POST
        values: dict[str, object] = {n: posted.get(n, "").strip() or None for n in NUMBER_SETTINGS}
        values["seasonal_categories"] = (
            posted.getlist("seasonal_categories") if posted.get("own_seasonal") else None
        )
        auditor_id = posted.get("auditor", "")
        if auditor_id:
            chosen = next((u for u in auditors if str(u.pk) == auditor_id), None)
            if chosen is None:
                errors["auditor"] = _("请从列表中选择审核员")
            values["auditor"] = chosen
        else:
            values["auditor"] = None
        if not errors:
            try:
                services.set_thresholds(actor=request.user, org=org, values=values, at=timezone.now())
            except InvalidInput as exc:
                errors = {e.path: _setting_message(e.message) for e in exc.errors}
            else:
                messages.success(request, _("%(org)s 的抄表审核设置已保存") % {"org": org.name})
                return redirect(f"{request.path}?org={org.pk}")
        status = 422
    rows = queries.validation_settings(org)
    categories = UsageCategory.choices
    category_names = dict(categories)
    fields = []
    for r in rows:
        f = {
            "name": r.name,
            "label": r.label,
            "help": SETTING_HELP.get(r.name, ""),
            "source": r.source,
            "error": errors.get(r.name),
            "own_set": r.own is not None,
        }
        if r.name == "seasonal_categories":
            f["in_force"] = "、".join(str(category_names.get(c, c)) for c in r.value) or _("无")
            own = [c for c in (r.own or "").split(",") if c]
            f["checked"] = posted.getlist("seasonal_categories") if posted is not None else own
            f["own_on"] = bool(posted.get("own_seasonal")) if posted is not None else r.own is not None
        elif r.name == "auditor":
            f["in_force"] = r.value or _("本单位或上级单位的第一位核算员")
            f["input"] = posted.get("auditor", "") if posted is not None else (str(r.own.pk) if r.own else "")
        else:
            f["in_force"] = r.value.normalize() if isinstance(r.value, Decimal) else r.value
            own = r.own.normalize() if isinstance(r.own, Decimal) else r.own
            f["input"] = posted.get(r.name, "") if posted is not None else ("" if own is None else own)
            f["default"] = r.default
        fields.append(f)
    ctx = {
        "org": org,
        "orgs": orgs,
        "fields": fields,
        "errors": errors,
        "categories": categories,
        "auditors": auditors,
        "can_write": can_write,
        "general_error": errors.get("actor") or errors.get("org"),
    }
    return render(request, "readings/settings.html", ctx, status=status)


# --- hand an exception over ----------------------------------------------------------------------
@login_required
@require_POST
def assign(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_role(*services.AUDITOR_ROLES):
        return _forbidden(request, _("只有核算员或管理人员可以转派抄表异常"))
    try:
        exc = queries.get_exception(request.user, pk)
    except NotFound:
        raise Http404 from None
    owner_id = request.POST.get("owner", "")
    owner = (
        queries.assignable_owners(exc, services.AUDITOR_ROLES).filter(pk=int(owner_id)).first()
        if owner_id.isdigit()
        else None
    )
    if owner is None:
        messages.error(request, _("%(no)s 请选择接收人") % {"no": exc.metering_point.point_no})
    else:
        try:
            services.assign_exception(actor=request.user, exception=exc, owner=owner, at=timezone.now())
            messages.success(
                request,
                _("%(no)s 已转派给 %(who)s") % {"no": exc.metering_point.point_no, "who": owner},
            )
        except InvalidInput as e:
            for m in _errors(e):
                messages.error(request, f"{exc.metering_point.point_no} {m}")
    return redirect(_safe_next(request) or "readings:exceptions")


def _safe_next(request: HttpRequest) -> str:
    nxt = request.POST.get("next", "")
    return nxt if url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}) else ""


# --- a metering point: its recent readings, metering changes and metering work orders ------------
@login_required
def point_detail(request: HttpRequest, pk: int) -> HttpResponse:
    point = queries.points_in_scope(request.user).select_related("org", "customer").filter(pk=pk).first()
    if point is None:
        raise Http404
    can_open = request.user.has_role(*services.BOOK_ADMIN_ROLES)
    errors: dict[str, str] = {}
    if request.method == "POST":
        if not can_open:
            return _forbidden(request, _("只有核算员或管理人员可以发起计量装拆工单"))
        reason = request.POST.get("reason", "")
        if reason not in METER_CHANGE_REASONS:
            errors["reason"] = _("请选择变更原因")
        note = request.POST.get("note", "").strip()
        if len(note) > 200:
            errors["note"] = _("说明最多 200 字")
        if not errors:
            try:
                order = workorders.open_meter_change(
                    actor=request.user, point=point, reason=reason, note=note, at=timezone.now()
                )
            except InvalidInput as exc:
                errors = {
                    e.path: _("%(org)s 尚未发布计量装拆工单流程") % {"org": point.org.name}
                    if e.path == "process"
                    else e.message
                    for e in exc.errors
                }
            else:
                messages.success(request, _("已发起计量装拆工单 %(no)s") % {"no": order.number})
                return redirect("readings:point", pk=point.pk)
    changes = list(queries.meter_changes(point))
    orders = list(queries.metering_orders(point))
    recent = list(queries.readings(request.user, point_id=point.pk)[:12])
    return render(
        request,
        "readings/point.html",
        {
            "point": point,
            "meter": services.current_meter(point.pk),
            "changes": changes,
            "orders": orders,
            "readings": recent,
            "can_open": can_open,
            "reasons": [(k, METER_CHANGE_REASONS[k]) for k in METER_CHANGE_REASONS],
            "errors": errors,
            "post": request.POST if request.method == "POST" else {},
        },
        status=422 if errors else 200,
    )
