"""Reading pages: home (books and plan progress), book detail, the reader's route (phone first),
bulk entry, file import with its report, the exceptions queue, terminals and remote commands.
Thin: parse, call one service or query, render."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mmis.assets.models import Meter
from mmis.common.errors import InvalidInput, NotFound
from mmis.org.scope import DataScope
from mmis.readings import imports, queries, services
from mmis.readings.models import ReadingException, RemoteCommand, Terminal

VALUE_NAMES = ("total", "sharp", "peak", "flat", "valley", "reactive", "max_demand")


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
            "can_decide": request.user.has_role(*services.AUDITOR_ROLES),
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
