"""Pages of the site shell and the customer file. Thin: parse, call one service or query, render.

A customer outside the user's data scope does not exist for that user: 404, never 403.
"""

from __future__ import annotations

from datetime import date, datetime, time

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from mmis.common.errors import InvalidInput
from mmis.customers import history as customer_history
from mmis.customers import queries
from mmis.customers import services as customer_services
from mmis.customers.models import Customer
from mmis.org.models import AuditLog, Org, User
from mmis.org.scope import DataScope
from mmis.web.errors import add_errors, translate_message
from mmis.web.forms import CustomerCreateForm, CustomerEditForm, RevealForm
from mmis.web.overview import COLLECT_ROLES, customer_overview

EDITOR_ROLES = ("counter_staff", "administrator", "manager")
SEARCH_LIMIT = 50
AUDIT_PAGE_SIZE = 50


class LoginView(auth_views.LoginView):
    template_name = "web/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "web/forbidden.html", {"message": message}, status=403)


def _org_path_text(org: Org) -> str:
    names = Org.objects.filter(path__in=org.ancestor_paths()).order_by("depth").values_list("name", flat=True)
    return " / ".join(names)


def _customer_or_404(user: User, pk: int) -> Customer:
    try:
        return queries.get_customer(user, pk)
    except queries.NotFound:
        raise Http404(_("客户不存在或不在您的数据权限范围内")) from None


# --- workbench ----------------------------------------------------------------------------------
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    scope = DataScope.for_user(user)
    context = {
        "customer_count": queries.customers(user).count(),
        "active_count": queries.customers(user).filter(status=Customer.Status.ACTIVE).count(),
        "org_count": scope.orgs().count(),
        "recent_actions": AuditLog.objects.filter(actor=user).order_by("-at", "-id")[:10],
        "role_names": [str(label) for code, label in _role_choices() if code in user.role_codes()],
        "is_editor": user.has_role(*EDITOR_ROLES),
        "roles": user.role_codes(),
        "user_org_path": _org_path_text(user.org) if user.org else "",
    }
    return render(request, "web/home.html", context)


def _role_choices():
    from mmis.org.models import Role

    return Role.Code.choices


# --- customer search ----------------------------------------------------------------------------
@login_required
def customer_search(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    hits = queries.search(request.user, q, limit=SEARCH_LIMIT + 1) if q else []
    context = {
        "q": q,
        "hits": hits[:SEARCH_LIMIT],
        "truncated": len(hits) > SEARCH_LIMIT,
        "limit": SEARCH_LIMIT,
    }
    if request.headers.get("HX-Request") == "true":
        return render(request, "web/_search_results.html", context)
    return render(request, "web/customer_search.html", context)


# --- customer 360° ------------------------------------------------------------------------------
def _parse_as_of(text: str) -> datetime | None:
    """`YYYY-MM-DD` is the end of that day; `YYYY-MM-DDTHH:MM` is that moment (local time)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text)
        else:
            moment = datetime.combine(date.fromisoformat(text), time.max)
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _detail_context(request: HttpRequest, customer: Customer, *, revealed=None, reveal_form=None) -> dict:
    user = request.user
    as_of_text = request.GET.get("as_of", "")
    as_of = _parse_as_of(as_of_text)
    not_yet = False
    if as_of_text and as_of is None:
        messages.warning(request, _("日期格式不正确，应为 YYYY-MM-DD"))
    try:
        cfile = queries.customer_file(user, customer.pk, as_of=as_of)
    except queries.NotFound:
        # the customer exists in scope but did not exist yet at that moment
        not_yet = True
        cfile = queries.customer_file(user, customer.pk)
    today = timezone.localdate()
    contracts = [
        {"c": c, "state": customer_services.contract_display_state(c, today=today)} for c in cfile.contracts
    ]
    points = [
        {"p": p, "meters": cfile.meters.get(p.pk, []), "transformers": cfile.transformers.get(p.pk, [])}
        for p in cfile.points
    ]
    return {
        "overview": (
            customer_overview(customer, today=today, can_collect=user.has_role(*COLLECT_ROLES))
            if not as_of
            else None
        ),
        "customer": customer,
        "file": cfile,
        "shown": cfile.customer,
        "points": points,
        "contracts": contracts,
        "timeline": customer_history.timeline(customer),
        "org_path": _org_path_text(customer.org),
        "as_of": as_of if not not_yet else None,
        "as_of_text": as_of_text,
        "not_yet": not_yet,
        "today": today,
        "can_edit": user.has_role(*EDITOR_ROLES) and customer.status == Customer.Status.ACTIVE,
        "revealed": revealed,
        "reveal_form": reveal_form or RevealForm(),
    }


@login_required
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = _customer_or_404(request.user, pk)
    return render(request, "web/customer_detail.html", _detail_context(request, customer))


@login_required
@require_POST
def customer_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    customer = _customer_or_404(request.user, pk)
    form = RevealForm(request.POST)
    revealed = None
    error = ""
    if form.is_valid():
        try:
            revealed = customer_services.reveal_identity(
                actor=request.user, customer=customer, reason=form.cleaned_data["reason"]
            )
        except InvalidInput as exc:
            error = "; ".join(translate_message(e.message) for e in exc.errors)
    context = {"customer": customer, "revealed": revealed, "reveal_error": error, "reveal_form": form}
    if request.headers.get("HX-Request") == "true":
        return render(request, "web/_identity.html", context)
    full = _detail_context(request, customer, revealed=revealed, reveal_form=form)
    full["reveal_error"] = error
    return render(request, "web/customer_detail.html", full)


# --- create / edit ------------------------------------------------------------------------------
def _org_choices(user: User) -> tuple[list[tuple[str, str]], dict[str, Org]]:
    orgs = list(
        DataScope.for_user(user)
        .orgs()
        .filter(level__in=[Org.Level.COUNTY, Org.Level.STATION], is_active=True)
        .order_by("path")
    )
    return [(str(o.pk), f"{o.name}（{o.get_level_display()}）") for o in orgs], {str(o.pk): o for o in orgs}


@login_required
@require_http_methods(["GET", "POST"])
def customer_create(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.has_role(*EDITOR_ROLES):
        return _forbidden(request, _("您没有新建客户的权限。请联系营业厅受理员或管理员。"))
    choices, by_pk = _org_choices(user)
    if request.method == "POST":
        form = CustomerCreateForm(request.POST, org_choices=choices)
        if form.is_valid():
            org = by_pk.get(form.cleaned_data["org"])
            if org is None:
                form.add_error("org", _("请选择供电单位"))
            else:
                try:
                    customer = customer_services.create_customer(
                        actor=user, org=org, data=form.payload(), opened_on=form.cleaned_data["opened_on"]
                    )
                except InvalidInput as exc:
                    add_errors(form, exc.errors)
                else:
                    done = _("客户 %(no)s %(name)s 已建档")
                    messages.success(request, done % {"no": customer.customer_no, "name": customer.name})
                    return redirect("web:customer_detail", pk=customer.pk)
    else:
        initial = {}
        if user.org_id and str(user.org_id) in by_pk:
            initial["org"] = str(user.org_id)
        elif len(choices) == 1:
            initial["org"] = choices[0][0]
        form = CustomerCreateForm(initial=initial, org_choices=choices)
    return render(request, "web/customer_form.html", {"form": form, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def customer_edit(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    customer = _customer_or_404(user, pk)
    if not user.has_role(*EDITOR_ROLES):
        return _forbidden(request, _("您没有修改客户档案的权限。"))
    if request.method == "POST":
        form = CustomerEditForm(request.POST, customer=customer)
        if form.is_valid():
            changes = form.changes()
            if not changes:
                messages.info(request, _("没有需要保存的修改"))
                return redirect("web:customer_detail", pk=customer.pk)
            try:
                customer_services.update_customer(
                    actor=user, customer=customer, changes=changes, reason=form.cleaned_data["reason"].strip()
                )
            except InvalidInput as exc:
                add_errors(form, exc.errors)
            else:
                messages.success(request, _("客户档案已更新"))
                return redirect("web:customer_detail", pk=customer.pk)
    else:
        form = CustomerEditForm(customer=customer)
    return render(request, "web/customer_form.html", {"form": form, "creating": False, "customer": customer})


# --- org tree -----------------------------------------------------------------------------------
@login_required
def org_tree(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.has_role("administrator", "manager"):
        return _forbidden(request, _("组织机构页面仅供管理人员和系统管理员使用。"))
    orgs = list(DataScope.for_user(user).orgs().order_by("path"))
    own = dict(queries.customers(user).values("org").annotate(n=Count("pk")).values_list("org", "n"))
    rows = []
    min_depth = min((o.depth for o in orgs), default=1)
    for o in orgs:
        subtree = sum(n for other in orgs if other.path.startswith(o.path) for n in [own.get(other.pk, 0)])
        rows.append({"org": o, "indent": o.depth - min_depth, "own": own.get(o.pk, 0), "total": subtree})
    return render(request, "web/org_tree.html", {"rows": rows})


# --- audit log ----------------------------------------------------------------------------------
@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.has_role("administrator"):
        return _forbidden(request, _("审计日志仅供系统管理员查看。"))
    scope = DataScope.for_user(user)
    qs = AuditLog.objects.all()
    if not scope.everything:
        qs = qs.filter(Q(org_id__in=scope.org_ids()) | Q(org__isnull=True))
    action = request.GET.get("action", "").strip()
    actor = request.GET.get("actor", "").strip()
    date_from = request.GET.get("date_from", "").strip()
    date_to = request.GET.get("date_to", "").strip()
    if action:
        qs = qs.filter(action__startswith=action)
    if actor:
        qs = qs.filter(Q(actor__username=actor) | Q(actor_name__contains=actor))
    for text, lookup, edge in ((date_from, "at__gte", time.min), (date_to, "at__lte", time.max)):
        if text:
            try:
                moment = timezone.make_aware(datetime.combine(date.fromisoformat(text), edge))
            except ValueError:
                messages.warning(request, _("日期格式不正确，应为 YYYY-MM-DD"))
                continue
            qs = qs.filter(**{lookup: moment})
    page = Paginator(qs.select_related("actor").order_by("-at", "-id"), AUDIT_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    actions = AuditLog.objects.order_by("action").values_list("action", flat=True).distinct()
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "page": page,
        "actions": list(actions),
        "filters": {"action": action, "actor": actor, "date_from": date_from, "date_to": date_to},
        "query": params.urlencode(),
    }
    return render(request, "web/audit_log.html", context)
