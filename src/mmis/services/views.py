"""Counter pages of 业扩 and 变更: the catalogue of processes, the acceptance form of each (the
time limit is told to the customer on success), the commitment compliance report, contract
renewal alerts and contract PDFs."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from mmis.common.errors import InvalidInput, NotFound
from mmis.org.models import Org
from mmis.org.scope import DataScope
from mmis.services import contracts, reports
from mmis.services import services as svc
from mmis.services.commitments import COMMITMENTS
from mmis.workflow import queries as wf_queries
from mmis.workflow import services as wf
from mmis.workflow.views import field_rows, form_from_post, split_errors

STAFF = ("counter_staff", "manager", "administrator")


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "web/forbidden.html", {"message": message}, status=403)


@login_required
def index(request: HttpRequest) -> HttpResponse:
    org = request.user.org or Org.objects.filter(depth=1).first()
    defs = wf_queries.definitions_in_force(org, timezone.localdate()) if org else []
    groups = {"connection": [], "change": []}
    for d in defs:
        if d.code in COMMITMENTS:
            groups[COMMITMENTS[d.code].category].append({"d": d, "c": COMMITMENTS[d.code]})
    return render(
        request, "services/index.html", {"groups": groups, "can_start": request.user.has_role(*STAFF)}
    )


def _orgs_for(user) -> list[Org]:
    scope = DataScope.for_user(user)
    return list(
        scope.orgs()
        .filter(level__in=[Org.Level.COUNTY, Org.Level.STATION, Org.Level.SERVICE_HALL])
        .order_by("path")
    )


@login_required
def start(request: HttpRequest, code: str) -> HttpResponse:
    if code not in COMMITMENTS:
        raise Http404
    if not request.user.has_role(*STAFF):
        return _forbidden(request, _("只有营业受理员和管理人员可以受理业务"))
    org = request.user.org or Org.objects.filter(depth=1).first()
    try:
        definition = wf.resolve_definition(code=code, org=org, on=timezone.localdate())
    except NotFound:
        raise Http404(_("本单位没有该业务流程")) from None
    fields = wf.parsed(definition).start_form
    new = code in svc.NEW_CONNECTIONS
    orgs = _orgs_for(request.user) if new else []
    values: dict = {}
    errors: dict = {}
    other: list[str] = []
    org_id = ""
    if request.method == "POST":
        values = form_from_post(fields, request.POST, prefix="d_")
        org_id = request.POST.get("org", "")
        target = next((o for o in orgs if str(o.pk) == org_id), None) if new else None
        try:
            if new and target is None:
                raise InvalidInput("choose the org that will supply the customer", path="org")
            inst = svc.apply(actor=request.user, code=code, org=target, data=values, at=timezone.now())
        except NotFound:
            other.append(_("户号不存在"))
        except InvalidInput as exc:
            errors, other = split_errors(exc, "data")
        else:
            messages.success(
                request,
                _("已受理 %(n)s，承诺办结时限 %(due)s（供电企业环节 %(limit)s）")
                % {
                    "n": inst.number,
                    "due": timezone.localtime(inst.due_at).strftime("%Y-%m-%d %H:%M") if inst.due_at else "—",
                    "limit": COMMITMENTS[code].source,
                },
            )
            return redirect("workflow:order", pk=inst.pk)
    return render(
        request,
        "services/start.html",
        {
            "definition": definition,
            "commitment": COMMITMENTS[code],
            "fields": field_rows(fields, values, errors),
            "orgs": orgs,
            "org_id": org_id,
            "other_errors": other,
            "new": new,
        },
    )


@login_required
def compliance(request: HttpRequest) -> HttpResponse:
    month = request.GET.get("month") or timezone.localdate().strftime("%Y-%m")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        month = timezone.localdate().strftime("%Y-%m")
    category = request.GET.get("category", "")
    rows = reports.compliance(request.user, year=int(month[:4]), month=int(month[5:]), category=category)
    codes = sorted({c for r in rows for c in r.by_process}, key=lambda c: list(COMMITMENTS).index(c))
    for r in rows:
        r.cells = [r.by_process.get(c) for c in codes]
    chart = {
        "orgs": [r.org.name for r in rows],
        "rate": [float(r.total.rate) if r.total.rate is not None else None for r in rows],
        "finished": [r.total.finished for r in rows],
    }
    return render(
        request,
        "services/compliance.html",
        {
            "rows": rows,
            "codes": [(c, COMMITMENTS[c].name, COMMITMENTS[c].source) for c in codes],
            "month": month,
            "category": category,
            "chart": chart,
            "all_commitments": COMMITMENTS.items(),
        },
    )


@login_required
def contract_list(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    days = int(request.GET.get("days") or contracts.RENEWAL_WARN_DAYS)
    rows = [
        {"c": c, "left": (c.expires_on - today).days}
        for c in contracts.expiring(request.user, today=today, warn_days=days)
    ]
    return render(request, "services/contracts.html", {"rows": rows, "days": days})


@login_required
def contract_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    c = contracts.contracts(request.user).filter(pk=pk).first()
    if c is None:
        raise Http404
    resp = HttpResponse(contracts.render_pdf(c, today=timezone.localdate()), content_type="application/pdf")
    resp["Content-Disposition"] = f'inline; filename="{c.contract_no}.pdf"'
    return resp
