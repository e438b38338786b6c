"""Pages of collection (收费与账务). Thin: parse, call one service or query, render."""

from __future__ import annotations

from datetime import date, timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mmis.accounts import agency, channels, collection, documents, queries, services
from mmis.accounts.models import (
    AgencyFile,
    Approval,
    BankBatch,
    CashierSession,
    CostControlCommand,
    DayLock,
    DisconnectionOrder,
    LedgerEntry,
    Payment,
    PrepaidAccount,
)
from mmis.common.errors import InvalidInput, NotFound
from mmis.org import audit
from mmis.org.models import Org
from mmis.org.scope import DataScope, chosen_org

STAFF = ("cashier", "counter_staff", "manager", "administrator", "billing_auditor")


def staff_only(view):
    @wraps(view)
    @login_required
    def inner(request, *args, **kwargs):
        if not (request.user.is_superuser or request.user.has_role(*STAFF)):
            return render(
                request, "web/forbidden.html", {"message": _("您的角色不能使用收费功能")}, status=403
            )
        try:
            return view(request, *args, **kwargs)
        except NotFound:
            raise Http404(_("不存在或不在您的数据权限范围内")) from None

    return inner


def _errors(request, exc: InvalidInput) -> None:
    for e in exc.errors:
        messages.error(request, f"{e.path}: {e.message}" if e.path else e.message)


def _open_session(user):
    return CashierSession.objects.filter(cashier=user, state=CashierSession.State.OPEN).first()


@staff_only
def home(request):
    """Cashier workbench: session, find the customer, open items, take the payment, print."""
    user = request.user
    q = request.GET.get("q", "").strip()
    hits = queries.find_accounts(user, q) if q else []
    account = None
    if request.GET.get("account"):
        account = queries.get_account(user, request.GET["account"])
    elif len(hits) == 1:
        account = hits[0]
    session = _open_session(user)
    today = timezone.localdate()
    ctx = {"q": q, "hits": hits, "account": account, "session": session}
    if account is not None:
        ctx["balance"] = queries.balance(account)
        ctx["prepayment"] = queries.prepayment(account)
        ctx["items"] = queries.open_items(account, on=today)
        ctx["owed_today"] = sum((i.open + i.accrued_fee for i in ctx["items"]), services.ZERO)
        ctx["recent"] = Payment.objects.filter(account=account).order_by("-paid_at")[:10]
    if session is not None:
        ctx["session_payments"] = (
            Payment.objects.filter(session=session).select_related("account").order_by("-id")[:15]
        )
        ctx["session_totals"] = services.session_totals(session)
    return render(request, "accounts/home.html", ctx)


@require_POST
@staff_only
def session_open(request):
    try:
        services.open_session(
            cashier=request.user, at=timezone.now(), opening_float=request.POST.get("float") or "0"
        )
        messages.success(request, _("已开班"))
    except InvalidInput as exc:
        _errors(request, exc)
    return redirect("accounts:home")


@require_POST
@staff_only
def pay(request, account_id: int):
    account = queries.get_account(request.user, account_id)
    session = _open_session(request.user)
    try:
        p = services.take_payment(
            account=account,
            amount=request.POST.get("amount"),
            channel=request.POST.get("channel", "cash"),
            at=timezone.now(),
            actor=request.user,
            session=session,
            reference=request.POST.get("reference", ""),
            idempotency_key=request.POST.get("form_key") or None,
        )
        messages.success(request, _("收费成功，收据号 %(no)s") % {"no": p.receipt_no})
    except InvalidInput as exc:
        _errors(request, exc)
    return redirect(f"{_url('accounts:home')}?account={account.pk}")


def _url(name, *args):
    from django.urls import reverse

    return reverse(name, args=args)


@staff_only
def receipt(request, payment_id: int):
    p = queries.get_payment(request.user, payment_id)
    resp = HttpResponse(documents.receipt_pdf(p), content_type="application/pdf")
    resp["Content-Disposition"] = f'inline; filename="receipt-{p.receipt_no}.pdf"'
    return resp


def _period(request):
    def d(name):
        try:
            return date.fromisoformat(request.GET.get(name, ""))
        except ValueError:
            return None

    return d("start"), d("end")


@staff_only
def statement(request, account_id: int):
    account = queries.get_account(request.user, account_id)
    start, end = _period(request)
    st = queries.statement(account, start=start, end=end)
    if request.GET.get("format") == "pdf":
        resp = HttpResponse(documents.statement_pdf(st), content_type="application/pdf")
        resp["Content-Disposition"] = f'inline; filename="statement-{account.account_no}.pdf"'
        return resp
    return render(
        request,
        "accounts/statement.html",
        {"st": st, "account": account, "items": queries.open_items(account, on=timezone.localdate())},
    )


@require_POST
@staff_only
def reversal_request(request, payment_id: int):
    p = queries.get_payment(request.user, payment_id)
    try:
        services.request_approval(
            kind="reversal",
            account=p.account,
            actor=request.user,
            at=timezone.now(),
            reason=request.POST.get("reason", ""),
            target=p.entry,
        )
        messages.success(request, _("冲正申请已提交，待审批"))
    except InvalidInput as exc:
        _errors(request, exc)
    return redirect(f"{_url('accounts:home')}?account={p.account_id}")


@staff_only
def approvals(request):
    qs = (
        DataScope.for_user(request.user)
        .filter(Approval.objects.all())
        .select_related("account", "requested_by", "decided_by", "target")
    )
    state = request.GET.get("state", "requested")
    if state:
        qs = qs.filter(state=state)
    return render(
        request, "accounts/approvals.html", {"rows": qs.order_by("-requested_at")[:200], "state": state}
    )


@require_POST
@staff_only
def approval_request(request, account_id: int):
    account = queries.get_account(request.user, account_id)
    target = None
    if request.POST.get("target"):
        target = LedgerEntry.objects.filter(account=account, pk=request.POST["target"]).first()
    until = None
    if request.POST.get("valid_until"):
        try:
            until = date.fromisoformat(request.POST["valid_until"])
        except ValueError:
            until = None
    try:
        services.request_approval(
            kind=request.POST.get("kind", ""),
            account=account,
            actor=request.user,
            at=timezone.now(),
            reason=request.POST.get("reason", ""),
            target=target,
            amount=request.POST.get("amount"),
            valid_until=until,
            evidence=request.POST.get("evidence", ""),
        )
        messages.success(request, _("申请已提交，待审批"))
    except InvalidInput as exc:
        _errors(request, exc)
    return redirect(f"{_url('accounts:statement', account.pk)}")


@require_POST
@staff_only
def approval_decide(request, approval_id: int):
    ap = DataScope.for_user(request.user).filter(Approval.objects.all()).filter(pk=approval_id).first()
    if ap is None:
        raise Http404
    try:
        services.decide_approval(
            approval=ap,
            approve=request.POST.get("decision") == "approve",
            actor=request.user,
            at=timezone.now(),
            note=request.POST.get("note", ""),
        )
        messages.success(request, _("已处理"))
    except InvalidInput as exc:
        _errors(request, exc)
    return redirect("accounts:approvals")


ARREARS_PAGE_SIZE = 50


def _arrears_params(request):
    """The arrears page's filters from the query string: (org, filters for the queries, the form's
    values, errors by field). A bad value is named and left out of the filter; an org outside the
    user's scope is 404 (chosen_org)."""
    from decimal import Decimal, InvalidOperation

    from mmis.accounts.rules import AGEING_BUCKETS

    g = request.GET
    orgs = queries.arrears_orgs(request.user)
    org = chosen_org(orgs, g.get("org", "").strip(), home_id=request.user.org_id)
    form = {
        "org": str(org.pk) if org else "",
        "q": g.get("q", "").strip()[:50],
        "min_days": g.get("min_days", "").strip() or "1",
        "min_amount": g.get("min_amount", "").strip(),
        "bucket": g.get("bucket", "").strip(),
        "order": g.get("order", "").strip() or "amount",
    }
    errors: dict[str, str] = {}
    filters = {"org": org, "search": form["q"], "min_days": 1, "min_amount": services.ZERO, "bucket": ""}
    try:
        filters["min_days"] = int(form["min_days"])
        if not 0 <= filters["min_days"] <= 100000:
            raise ValueError
    except ValueError:
        filters["min_days"] = 1
        errors["min_days"] = _("逾期天数须为不小于 0 的整数：%(v)s") % {"v": form["min_days"][:20]}
    if form["min_amount"]:
        try:
            amount = Decimal(form["min_amount"])
            if not amount.is_finite() or amount < 0 or amount > Decimal("1e12"):
                raise InvalidOperation
            filters["min_amount"] = amount
        except InvalidOperation:
            errors["min_amount"] = _("欠费金额须为不小于 0 的数字（如 100 或 100.50）：%(v)s") % {
                "v": form["min_amount"][:20]
            }
    if form["bucket"]:
        if form["bucket"] in AGEING_BUCKETS:
            filters["bucket"] = form["bucket"]
        else:
            errors["bucket"] = _("未知的账龄段：%(b)s") % {"b": form["bucket"][:20]}
    if form["order"] not in queries.ARREARS_ORDERS:
        errors["order"] = _("未知的排序方式：%(o)s") % {"o": form["order"][:20]}
        form["order"] = "amount"
    return org, orgs, filters, form, errors


def _query_string(form: dict, **override) -> str:
    from urllib.parse import urlencode

    data = {**form, **override}
    return urlencode({k: v for k, v in data.items() if v not in ("", None)})


@staff_only
def arrears(request):
    on = timezone.localdate()
    org, orgs, filters, form, errors = _arrears_params(request)
    ctx: dict = {"on": on, "form": form, "errors": errors, "org": org}
    if org is not None:
        totals = queries.arrears_totals(request.user, on=on, **filters)
        listing = queries.ArrearsList(request.user, totals=totals, on=on, order=form["order"], **filters)
        page = Paginator(listing, ARREARS_PAGE_SIZE).get_page(request.GET.get("page"))
        by_org, by_org_totals = queries.ageing_by_org(request.user, on=on, **filters)
        base = min((o.depth for o in orgs), default=1)
        ctx.update(
            page=page,
            page_range=page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
            rows=page.object_list,
            count=totals.accounts,
            total=totals.total,
            ageing={b: v for b, v in totals.ageing.items() if b != "current"},
            by_org=by_org,
            by_org_totals=by_org_totals,
            org_choices=[(o.pk, "\u3000" * (o.depth - base) + o.name) for o in orgs],
            query=_query_string(form),
            query_no_org=_query_string(form, org=""),
        )
    else:
        messages.error(request, _("您的数据权限范围内没有单位"))
    from mmis.accounts.rules import AGEING_BUCKETS

    ctx.update(
        buckets=[b for b in AGEING_BUCKETS if b != "current"],
        orders=[("amount", _("欠费金额")), ("days", _("逾期天数")), ("account_no", _("户号"))],
        orders_list=DataScope.for_user(request.user)
        .filter(DisconnectionOrder.objects.all())
        .select_related("account")
        .order_by("-created_at")[:50],
    )
    return render(request, "accounts/arrears.html", ctx)


@staff_only
def arrears_export(request):
    """Every account of the filtered list (not one page) and the ageing report by org, as Excel;
    the export is audited."""
    on = timezone.localdate()
    org, _orgs, filters, form, errors = _arrears_params(request)
    if org is None:
        raise Http404
    if errors:
        return redirect(reverse("accounts:arrears") + "?" + _query_string(form))
    rows = queries.arrears(request.user, on=on, order=form["order"], **filters)
    totals = queries.arrears_totals(request.user, on=on, **filters)
    by_org, by_org_totals = queries.ageing_by_org(request.user, on=on, **filters)
    names = dict(Org.objects.filter(pk__in={r.org_id for r in rows}).values_list("pk", "name"))
    data = documents.arrears_xlsx(
        rows=rows,
        names=names,
        by_org=by_org,
        by_org_totals=by_org_totals,
        totals=totals,
        title=_("%(org)s 欠费清单（%(on)s）") % {"org": org.name, "on": on},
    )
    audit.record(
        actor=request.user,
        action="accounts.arrears.export",
        target_type="org.org",
        target_id=str(org.pk),
        org=org,
        after={"filters": {k: v for k, v in form.items() if v}, "accounts": totals.accounts},
        at=timezone.now(),
    )
    resp = HttpResponse(
        data, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    resp["Content-Disposition"] = f'attachment; filename="arrears-{org.code}-{on}.xlsx"'
    return resp


@require_POST
@staff_only
def dunning(request):
    ids = [int(x) for x in request.POST.getlist("account") if x.isdigit()]
    allowed = set(queries.accounts(request.user).filter(pk__in=ids).values_list("pk", flat=True))
    counts = collection.run_dunning(
        on=timezone.localdate(), at=timezone.now(), account_ids=sorted(allowed), actor=request.user
    )
    messages.success(request, _("催费已执行：%(c)s") % {"c": counts})
    back = request.POST.get("query", "").replace("\r", "").replace("\n", "")
    return redirect(reverse("accounts:arrears") + ("?" + back if back else ""))


@staff_only
def bank(request):
    batches = DataScope.for_user(request.user).filter(BankBatch.objects.all()).order_by("-created_at")[:50]
    return render(request, "accounts/bank.html", {"batches": batches})


@require_POST
@staff_only
def bank_export(request):
    org = request.user.org
    if org is None:
        raise Http404
    b = channels.export_batch(org=org, actor=request.user, at=timezone.now())
    messages.success(request, _("已生成代扣批次 %(no)s，%(n)s 笔") % {"no": b.batch_no, "n": b.line_count})
    return redirect("accounts:bank")


@staff_only
def bank_file(request, batch_id: int):
    b = DataScope.for_user(request.user).filter(BankBatch.objects.all()).filter(pk=batch_id).first()
    if b is None:
        raise Http404
    resp = HttpResponse(channels.batch_file(b), content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="{b.batch_no}.csv"'
    return resp


@staff_only
def bank_batch(request, batch_id: int):
    b = DataScope.for_user(request.user).filter(BankBatch.objects.all()).filter(pk=batch_id).first()
    if b is None:
        raise Http404
    if request.method == "POST":
        f = request.FILES.get("file")
        content = f.read().decode("utf-8-sig") if f else request.POST.get("content", "")
        try:
            channels.import_results(batch=b, content=content, actor=request.user, at=timezone.now())
            messages.success(request, _("回盘已入账"))
        except InvalidInput as exc:
            _errors(request, exc)
        return redirect("accounts:bank_batch", batch_id=b.pk)
    return render(request, "accounts/bank_batch.html", channels.reconciliation(b))


LOCK_ROLES = ("manager", "administrator")


def _halls(scope: DataScope):
    """The service halls a user may lock the day of: orgs in the scope that are service halls
    or where cashier sessions were opened (a session lives in its cashier's org)."""
    with_sessions = CashierSession.objects.values("org_id")
    return scope.orgs().filter(Q(level=Org.Level.SERVICE_HALL) | Q(pk__in=with_sessions)).order_by("path")


def _hall_days(scope: DataScope, limit: int = 30) -> list[dict]:
    """Per hall and business day in the scope (latest first): sessions, the open ones that still
    block the lock (by cashier), and whether the day is locked."""
    sessions = scope.filter(CashierSession.objects.all())
    rows = list(
        sessions.values("org_id", "org__name", "business_date")
        .annotate(n=Count("id"), open=Count("id", filter=Q(state=CashierSession.State.OPEN)))
        .order_by("-business_date", "org__path")[:limit]
    )
    if not rows:
        return rows
    dates = {r["business_date"] for r in rows}
    org_ids = {r["org_id"] for r in rows}
    locked = set(
        DayLock.objects.filter(org_id__in=org_ids, business_date__in=dates).values_list(
            "org_id", "business_date"
        )
    )
    blocking: dict[tuple, list[str]] = {}
    for s in (
        sessions.filter(state=CashierSession.State.OPEN, org_id__in=org_ids, business_date__in=dates)
        .select_related("cashier")
        .order_by("opened_at")
    ):
        blocking.setdefault((s.org_id, s.business_date), []).append(str(s.cashier))
    for r in rows:
        key = (r["org_id"], r["business_date"])
        r["locked"] = key in locked
        r["open_cashiers"] = blocking.get(key, [])
    return rows


def _lock_day(request, scope: DataScope) -> None:
    """A manager locks a service hall's day; the hall is chosen among those in the user's scope."""
    user = request.user
    if not (user.is_superuser or user.has_role(*LOCK_ROLES)):
        messages.error(request, _("只有管理人员或系统管理员可以锁定营业日"))
        return
    halls = _halls(scope)
    org_id = request.POST.get("org", "").strip()
    if org_id:
        org = chosen_org(scope.orgs(), org_id, home_id=None)  # outside the scope: 404
        hall = halls.filter(pk=org.pk).first()
        if hall is None:
            messages.error(request, "org: " + _("该单位不是营业厅，没有收费班次"))
            return
    else:  # no hall chosen: the user's own org, when it is a hall
        hall = halls.filter(pk=user.org_id).first()
        if hall is None:
            messages.error(request, "org: " + _("请选择营业厅"))
            return
    try:
        day = date.fromisoformat(request.POST.get("business_date", ""))
    except ValueError:
        messages.error(request, "business_date: " + _("日期格式错误"))
        return
    try:
        services.lock_day(org=hall, business_date=day, actor=user, at=timezone.now())
    except InvalidInput as exc:
        _errors(request, exc)
        return
    messages.success(request, _("%(org)s %(day)s 营业日已锁定") % {"org": hall.name, "day": day.isoformat()})


@staff_only
def close(request):
    """Daily close (日结): the cashier counts the till; a manager locks a service hall's day."""
    user = request.user
    session = _open_session(user)
    scope = DataScope.for_user(user)
    if request.method == "POST":
        if request.POST.get("action") == "lock":
            _lock_day(request, scope)
        elif session is not None:
            try:
                services.close_session(
                    session=session,
                    counted_cash=request.POST.get("counted_cash"),
                    actor=user,
                    at=timezone.now(),
                    note=request.POST.get("note", ""),
                )
                messages.success(request, _("日结完成"))
            except InvalidInput as exc:
                _errors(request, exc)
        return redirect("accounts:close")
    can_lock = user.is_superuser or user.has_role(*LOCK_ROLES)
    halls = list(_halls(scope)) if can_lock else []
    default_hall = next((h for h in halls if h.pk == user.org_id), halls[0] if halls else None)
    return render(
        request,
        "accounts/close.html",
        {
            "session": session,
            "totals": services.session_totals(session) if session else None,
            "sessions": scope.filter(CashierSession.objects.all())
            .select_related("cashier", "org")
            .order_by("-opened_at")[:50],
            "locks": scope.filter(DayLock.objects.all())
            .select_related("org", "locked_by")
            .order_by("-business_date")[:30],
            "hall_days": _hall_days(scope),
            "can_lock": can_lock,
            "halls": halls,
            "default_hall_id": default_hall.pk if default_hall else None,
            "today": timezone.localdate(),
        },
    )


@staff_only
def ledger_report(request):
    start, end = _period(request)
    end = end or timezone.localdate() + timedelta(days=1)
    start = start or end - timedelta(days=31)
    data = documents.ledger_report_xlsx(orgs_qs=DataScope.for_user(request.user).orgs(), start=start, end=end)
    resp = HttpResponse(
        data, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    resp["Content-Disposition"] = f'attachment; filename="ledger-{start}-{end}.xlsx"'
    return resp


@staff_only
def prepaid(request):
    scope = DataScope.for_user(request.user)
    rows = list(
        scope.filter(PrepaidAccount.objects.all())
        .select_related("account")
        .order_by("state", "account_id")[:200]
    )
    for r in rows:
        r.available = collection.available(r)
    return render(
        request,
        "accounts/prepaid.html",
        {
            "rows": rows,
            "commands": scope.filter(CostControlCommand.objects.all())
            .select_related("account")
            .order_by("-requested_at")[:50],
        },
    )


AGENCY_ROLES = ("cashier", "manager", "administrator")


@staff_only
def agency_files(request):
    """Agency collection files (代收对账): import a day's file of an agency, see what was posted."""
    scope = DataScope.for_user(request.user)
    orgs = scope.orgs().order_by("path")
    if request.method == "POST":
        if not (request.user.is_superuser or request.user.has_role(*AGENCY_ROLES)):
            messages.error(request, _("您的角色不能导入代收文件"))
            return redirect("accounts:agency")
        org = chosen_org(orgs, request.POST.get("org", ""), home_id=request.user.org_id)
        f = request.FILES.get("file")
        try:
            content = f.read().decode("utf-8-sig") if f else request.POST.get("content", "")
        except UnicodeDecodeError:
            messages.error(request, "file: " + _("文件不是 UTF-8 编码的文本"))
            return redirect("accounts:agency")
        try:
            report = agency.import_file(
                org=org,
                agency=request.POST.get("agency", ""),
                content=content,
                actor=request.user,
                at=timezone.now(),
            )
        except InvalidInput as exc:
            _errors(request, exc)
            return redirect("accounts:agency")
        if report.get("already_imported"):
            messages.warning(request, _("该文件已导入过，未重复入账"))
        else:
            messages.success(
                request,
                _("代收文件已入账：%(n)s 笔，%(amount)s 元，已入账跳过 %(skipped)s 笔")
                % {
                    "n": report["posted"],
                    "amount": report["posted_amount"],
                    "skipped": report["already_posted"],
                },
            )
        return redirect("accounts:agency")
    files = (
        scope.filter(AgencyFile.objects.all())
        .select_related("org", "imported_by")
        .order_by("-imported_at", "-pk")
    )
    page = Paginator(files, 30).get_page(request.GET.get("page"))
    return render(
        request,
        "accounts/agency.html",
        {
            "page": page,
            "orgs": orgs,
            "home_org_id": request.user.org_id,
            "may_import": request.user.is_superuser or request.user.has_role(*AGENCY_ROLES),
        },
    )
