"""Billing pages: runs (start, watch, inspect), audit queue, bill with trace, corrections, PDF and
Excel. Thin: parse, call one service or query, render."""

from __future__ import annotations

import threading
from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import close_old_connections
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from mmis.billing import documents, queries, services
from mmis.billing.models import Bill, BillingRun, Correction
from mmis.common.errors import InvalidInput, NotFound
from mmis.common.periods import Period
from mmis.org.models import Org
from mmis.org.scope import DataScope, chosen_org


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "web/forbidden.html", {"message": message}, status=403)


def _guard(request: HttpRequest, *, write: bool = False) -> HttpResponse | None:
    ok = queries.can_write(request.user) if write else queries.can_read(request.user)
    if not ok:
        return _forbidden(request, "您的角色不能执行电费核算操作" if write else "您的角色不能查看电费核算")
    return None


def _errors(request: HttpRequest, exc: InvalidInput) -> None:
    for e in exc.errors:
        messages.error(request, f"{e.path}: {e.message}" if e.path else e.message)


def _run_or_404(request, pk) -> BillingRun:
    try:
        return queries.get_run(request.user, pk)
    except NotFound:
        raise Http404("核算批次不存在或不在您的数据权限范围内") from None


def _bill_or_404(request, pk) -> Bill:
    try:
        return queries.get_bill(request.user, pk)
    except NotFound:
        raise Http404("账单不存在或不在您的数据权限范围内") from None


def _start_in_background(run: BillingRun) -> None:
    if settings.BROKER_URL:
        services.dispatch(run)
        return

    def work() -> None:
        try:
            services.run_in_process(run)
        finally:
            close_old_connections()

    threading.Thread(target=work, name=f"billing-run-{run.pk}", daemon=True).start()


def _audit_in_background(run: BillingRun, *, actor, org: Org | None) -> None:
    """The audit stage of a run (a province's million bills take minutes): Celery tasks per
    partition with a broker, else a thread of this process."""
    if settings.BROKER_URL:
        services.dispatch_audit(run=run, actor=actor, at=timezone.now(), org=org)
        return

    def work() -> None:
        try:
            services.audit_run(run=run, actor=actor, at=timezone.now(), org=org)
        finally:
            close_old_connections()

    threading.Thread(target=work, name=f"billing-audit-{run.pk}", daemon=True).start()


def _default_month(today: date) -> str:
    y, m = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{y}-{m:02d}"


@login_required
def runs(request: HttpRequest) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    orgs = DataScope.for_user(request.user).orgs().exclude(level=Org.Level.SERVICE_HALL).order_by("path")
    form = {"month": _default_month(timezone.localdate()), "org": "", "books": "", "draft": ""}
    if request.method == "POST":
        if (denied := _guard(request, write=True)) is not None:
            return denied
        form = {k: request.POST.get(k, "").strip() for k in ("month", "org", "books", "draft")}
        try:
            y, m = (int(x) for x in form["month"].split("-"))
            month = Period.month(y, m)
        except (ValueError, TypeError):
            messages.error(request, "计费月份格式应为 YYYY-MM")
        else:
            org = orgs.filter(pk=form["org"]).first() if form["org"].isdigit() else None
            if org is None:
                messages.error(request, "请选择您数据权限范围内的单位")
            else:
                books = [b.strip() for b in form["books"].replace(",", ",").split(",") if b.strip()]
                try:
                    run = services.plan_run(
                        org=org,
                        month=month,
                        actor=request.user,
                        at=timezone.now(),
                        book_codes=books or None,
                        mode=BillingRun.Mode.CELERY if settings.BROKER_URL else BillingRun.Mode.IN_PROCESS,
                        audit_inline=not form["draft"],
                    )
                except InvalidInput as exc:
                    _errors(request, exc)
                else:
                    _start_in_background(run)
                    messages.success(
                        request, f"已启动 {run.month_label} 电费核算,共 {run.points_total} 个计量点"
                    )
                    return redirect("billing:run", pk=run.pk)
    page = Paginator(queries.runs(request.user), 25).get_page(request.GET.get("page"))
    for run in page:
        queries.scope_run_figures(request.user, run)
    return render(request, "billing/runs.html", {"page": page, "orgs": orgs, "form": form})


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    run = queries.scope_run_figures(request.user, _run_or_404(request, pk))
    ctx = {
        "run": run,
        "partitions": run.partitions.order_by("key")[:500],
        "exceptions": queries.exceptions(run)[:200],
        "queue": queries.audit_queue(request.user, run_id=run.pk)[:10],
        "lifecycle": queries.lifecycle(run),
        "can_write": queries.can_write(request.user),
    }
    return render(request, "billing/run_detail.html", ctx)


@login_required
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    run = queries.scope_run_figures(request.user, _run_or_404(request, pk))
    return render(request, "billing/_run_progress.html", {"run": run})


@login_required
@require_POST
def run_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if (denied := _guard(request, write=True)) is not None:
        return denied
    run = _run_or_404(request, pk)
    now = timezone.now()
    try:
        if action == "audit":
            _audit_in_background(run, actor=request.user, org=queries.action_org(request.user, run))
            messages.success(request, _("审核规则执行中,完成后各账单进入待审核或规则通过"))
        elif action == "approve-clean":
            n = services.approve_clean(
                run=run, actor=request.user, at=now, org=queries.action_org(request.user, run)
            )
            messages.success(request, f"已批量审核通过 {n} 张无异常账单")
        elif action == "release":
            n = services.release_run(
                run=run, actor=request.user, at=now, org=queries.action_org(request.user, run)
            )
            messages.success(request, f"已发行 {n} 张账单")
        elif action == "resume":
            _start_in_background(run)
            messages.success(request, "已继续计算未完成的分区")
        elif action == "retry":
            part = run.partitions.get(pk=request.POST.get("partition"))
            services.retry_partition(partition=part, actor=request.user, at=now)
            messages.success(request, f"分区 {part.key} 已重新计算")
        else:
            raise Http404("unknown action")
    except InvalidInput as exc:
        _errors(request, exc)
    return redirect("billing:run", pk=run.pk)


@login_required
def audit_queue(request: HttpRequest) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    run_id = request.GET.get("run") or request.POST.get("run")
    run_id = int(run_id) if run_id and str(run_id).isdigit() else None
    if request.method == "POST":
        if (denied := _guard(request, write=True)) is not None:
            return denied
        ids = [int(x) for x in request.POST.getlist("bill") if x.isdigit()]
        allowed = list(queries.bills(request.user).filter(pk__in=ids).values_list("pk", flat=True))
        if not allowed:
            messages.error(request, "请勾选要审核通过的账单")
        else:
            try:
                n = services.approve_bills(bill_ids=allowed, actor=request.user, at=timezone.now())
                messages.success(request, f"已审核通过 {n} 张账单")
            except InvalidInput as exc:
                _errors(request, exc)
        return redirect(f"{request.path}?run={run_id}" if run_id else request.path)
    qs = queries.audit_queue(request.user, run_id=run_id).prefetch_related("audit_flags")
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "billing/audit_queue.html", {"page": page, "run_id": run_id})


@login_required
def bill_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    bill = _bill_or_404(request, pk)
    if request.method == "POST":
        if (denied := _guard(request, write=True)) is not None:
            return denied
        action = request.POST.get("action")
        now = timezone.now()
        try:
            if action == "approve":
                services.approve_bills(bill_ids=[bill.pk], actor=request.user, at=now)
                messages.success(request, "账单已审核通过")
            elif action == "return":
                services.return_bill(
                    bill=bill, actor=request.user, at=now, reason=request.POST.get("reason", "")
                )
                messages.success(request, "账单已退回重抄")
            elif action == "recalculate":
                services.recalculate_bill(
                    bill=bill,
                    usage=_usage(request),
                    actor=request.user,
                    at=now,
                    reason=request.POST.get("reason", ""),
                )
                messages.success(request, "账单已按更正电量重新计算")
            elif action == "release":
                services.release_bill(bill_id=bill.pk, actor=request.user, at=now)
                messages.success(request, "账单已发行")
            elif action == "correct":
                c = services.request_correction(
                    bill=bill,
                    reason=request.POST.get("reason_code", ""),
                    usage=_usage(request),
                    actor=request.user,
                    at=now,
                    note=request.POST.get("reason", ""),
                )
                messages.success(
                    request, f"退补单 {c.number} 已提交审批:{c.get_kind_display()} {abs(c.amount)} 元"
                )
                return redirect("billing:corrections")
        except InvalidInput as exc:
            _errors(request, exc)
        return redirect("billing:bill", pk=bill.pk)
    lines = list(bill.lines.all())
    for ln in lines:
        ln.label = queries.line_label(ln.code)
    ctx = {
        "bill": bill,
        "lines": lines,
        "flags": bill.audit_flags.all(),
        "steps": queries.trace_steps(bill),
        "history": queries.usage_history(bill),
        "corrections": bill.corrections.all(),
        "reasons": Correction.Reason.choices,
        "can_write": queries.can_write(request.user),
    }
    return render(request, "billing/bill_detail.html", ctx)


def _usage(request: HttpRequest) -> dict:
    out = {}
    for key in ("kwh", "kvarh", "max_demand_kw"):
        v = request.POST.get(key, "").strip()
        if v:
            out[key] = v
    tou = {p: request.POST.get(f"tou_{p}", "").strip() for p in ("sharp", "peak", "flat", "valley")}
    if any(tou.values()):
        out["tou"] = {k: v for k, v in tou.items() if v}
    return out


@login_required
def bill_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    bill = _bill_or_404(request, pk)
    resp = HttpResponse(documents.bill_pdf(bill), content_type="application/pdf")
    resp["Content-Disposition"] = f'inline; filename="{bill.number}.pdf"'
    return resp


@login_required
def run_excel(request: HttpRequest, pk: int) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    run = _run_or_404(request, pk)
    from mmis.org import audit

    audit.record(actor=request.user, action="billing.run.export", target=run, at=timezone.now())
    resp = HttpResponse(
        documents.run_excel(run, request.user),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    resp["Content-Disposition"] = f'attachment; filename="billing-run-{run.pk}-{run.month_label}.xlsx"'
    return resp


@login_required
def corrections(request: HttpRequest) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    if request.method == "POST":
        if (denied := _guard(request, write=True)) is not None and not request.user.has_role("manager"):
            return denied
        try:
            c = queries.get_correction(request.user, request.POST.get("correction", ""))
        except NotFound:
            raise Http404("退补单不存在") from None
        try:
            if request.POST.get("action") == "approve":
                services.approve_correction(
                    correction=c, actor=request.user, at=timezone.now(), note=request.POST.get("note", "")
                )
                messages.success(request, f"退补单 {c.number} 已审批并入账")
            else:
                services.reject_correction(
                    correction=c, actor=request.user, at=timezone.now(), note=request.POST.get("note", "")
                )
                messages.success(request, f"退补单 {c.number} 已驳回")
        except InvalidInput as exc:
            _errors(request, exc)
        return redirect("billing:corrections")
    page = Paginator(queries.corrections(request.user), 50).get_page(request.GET.get("page"))
    return render(request, "billing/corrections.html", {"page": page})


RULE_TITLES = {
    "change_last_month": gettext_lazy("电费环比变化超限"),
    "change_last_year": gettext_lazy("电费同比变化超限"),
    "large_bill": gettext_lazy("大额电费"),
    "zero_bill": gettext_lazy("零电费"),
    "negative": gettext_lazy("负电费或负明细"),
    "estimated": gettext_lazy("估抄电量"),
    "new_customer": gettext_lazy("新装首次计费"),
    "tariff_change": gettext_lazy("电价/倍率/容量本期变更"),
    "low_pf": gettext_lazy("功率因数偏低"),
    "demand_over": gettext_lazy("最大需量超合同"),
    "basic_no_energy": gettext_lazy("有基本电费无电量"),
}
PARAM_TITLES = {
    "residential_pct": gettext_lazy("居民变化幅度(%)"),
    "other_pct": gettext_lazy("非居民变化幅度(%)"),
    "residential": gettext_lazy("居民(元)"),
    "general_ci": gettext_lazy("一般工商业(元)"),
    "large_industry": gettext_lazy("大工业(元)"),
    "agricultural": gettext_lazy("农业(元)"),
    "below": gettext_lazy("低于"),
    "ratio": gettext_lazy("超过合同需量的倍数"),
}


@login_required
def audit_rules(request: HttpRequest) -> HttpResponse:
    """The audit rules of an org in the user's subtree: what applies (and from where), and the
    org's own settings, edited from a date (billing auditors and administrators)."""
    from mmis.billing import rules

    if (denied := _guard(request)) is not None:
        return denied
    data = request.POST if request.method == "POST" else request.GET
    orgs = queries.audit_rule_orgs(request.user)
    org = chosen_org(orgs, data.get("org", ""), home_id=request.user.org_id)
    if org is None:
        return _forbidden(request, _("您的数据权限范围内没有单位"))
    today = timezone.localdate()
    try:
        on = date.fromisoformat(data.get("on", "") or today.isoformat())
    except ValueError:
        on = today
    errors: dict[str, str] = {}
    posted = None
    status = 200
    if request.method == "POST":
        if (denied := _guard(request, write=True)) is not None:
            return denied
        posted = request.POST
        settings_: dict[str, dict | None] = {}
        for code, params in rules.RULE_PARAMS.items():
            if posted.get(f"own_{code}"):
                settings_[code] = {
                    "enabled": bool(posted.get(f"enabled_{code}")),
                    "params": {name: posted.get(f"{code}.{name}", "") for name, _kind in params},
                }
            elif posted.get(f"had_own_{code}"):
                settings_[code] = None  # the org's own setting unticked: inherit again
        try:
            effective_from: date | None = date.fromisoformat(posted.get("effective_from", ""))
        except ValueError:
            effective_from = None
        try:
            changed = services.set_audit_rules(
                org=org,
                settings=settings_,
                effective_from=effective_from,
                actor=request.user,
                at=timezone.now(),
            )
        except InvalidInput as exc:
            errors = {e.path: e.message for e in exc.errors}
            status = 422
        else:
            if changed:
                messages.success(
                    request,
                    _("已保存 %(n)s 条审核规则;未审核通过的账单需“重新执行审核规则”后按新规则审核")
                    % {"n": len(changed)},
                )
            else:
                messages.info(request, _("审核规则没有变化"))
            return redirect(f"{request.path}?org={org.pk}&on={effective_from}")
    rows = queries.audit_rule_settings(org, on)
    for r in rows:
        r["title"] = RULE_TITLES.get(r["code"], r["code"])
        own = r["own"]
        fields = []
        for name, _kind, value in r["params"]:
            path = f"{r['code']}.{name}"
            shown = (
                posted.get(path, "")
                if posted is not None
                else ((own.params or {}).get(name, value) if own else value)
            )
            fields.append(
                {
                    "name": path,
                    "label": PARAM_TITLES.get(name, name),
                    "value": shown,
                    "error": errors.get(path),
                }
            )
        r["fields"] = fields
        r["own_checked"] = bool(posted.get(f"own_{r['code']}")) if posted is not None else own is not None
        r["enabled_checked"] = (
            bool(posted.get(f"enabled_{r['code']}"))
            if posted is not None
            else (own.enabled if own else r["enabled"])
        )
    ctx = {
        "org": org,
        "orgs": orgs,
        "on": on,
        "rows": rows,
        "errors": errors,
        "effective_from": posted.get("effective_from", "")
        if posted is not None
        else on.replace(day=1).isoformat(),
        "can_write": queries.can_write(request.user),
    }
    return render(request, "billing/audit_rules.html", ctx, status=status)
