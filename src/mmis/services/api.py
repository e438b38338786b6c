"""API of 业扩 and 变更: the process catalogue with acceptance forms, start a process (counter
staff), customer applications and following them, contract PDF and renewal alerts, and the
commitment compliance report."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError

from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.org.models import Org
from mmis.org.scope import DataScope
from mmis.services import contracts, reports
from mmis.services import services as svc
from mmis.services.commitments import COMMITMENTS
from mmis.workflow import queries as wf_queries
from mmis.workflow import services as wf
from mmis.workflow.api import FieldOut, WorkOrderOut, work_order_out
from mmis.workflow.models import ProcessInstance

router = Router(tags=["services"])

STAFF = ("counter_staff", "manager", "administrator")


class ProcessOut(Schema):
    code: str
    name: str
    category: str
    version: int
    commitment: str
    time_limit: dict[str, Any]
    start_form: list[FieldOut]


class StartIn(Schema):
    org_id: int | None = Field(
        None, description="accepting org (new connections); changes use the customer's org"
    )
    data: dict[str, Any] = Field(default_factory=dict, description="the acceptance form")


class ApplicationIn(StartIn):
    process: str


class ApplicationOut(Schema):
    number: str
    process: str
    process_name: str
    state: str
    started_at: datetime
    due_at: datetime | None
    current_step: str
    ended_at: datetime | None
    steps: list[dict[str, Any]]


def _org(org_id: int | None, user) -> Org | None:
    if org_id is None:
        return None
    org = Org.objects.filter(pk=org_id, is_active=True).first()
    if org is None:
        raise NotFound(f"no org {org_id}")
    return org


@router.get("/service-processes", response=list[ProcessOut], summary="processes in force for my org")
def processes(request):
    org = request.user.org or Org.objects.filter(depth=1).first()
    if org is None:
        return []
    out = []
    for d in wf_queries.definitions_in_force(org, timezone.localdate()):
        if d.code not in COMMITMENTS:
            continue
        p = wf.parsed(d)
        out.append(
            {
                "code": d.code,
                "name": d.name,
                "category": d.category,
                "version": d.version,
                "commitment": COMMITMENTS[d.code].source,
                "time_limit": d.spec.get("time_limit", {}),
                "start_form": [
                    {
                        "name": f.name,
                        "label": f.label,
                        "type": f.type,
                        "required": f.required,
                        "choices": [list(c) for c in f.choices],
                    }
                    for f in p.start_form
                ],
            }
        )
    return out


@router.post(
    "/service-processes/{code}/start",
    response={201: WorkOrderOut},
    summary="accept an application at the counter",
)
def start(request, code: str, payload: StartIn):
    if not request.user.has_role(*STAFF):
        raise HttpError(403, "only counter staff and managers accept applications")
    org = _org(payload.org_id, request.user)
    if org is not None and not DataScope.for_user(request.user).contains_org(org):
        raise NotFound(f"no org {payload.org_id}")
    inst = svc.apply(actor=request.user, code=code, org=org, data=payload.data, at=timezone.now())
    return Status(201, work_order_out(inst, request.user, timezone.now()))


def _application_out(inst: ProcessInstance) -> dict:
    current = wf_queries.current_tasks(inst)
    return {
        "number": inst.number,
        "process": inst.definition.code,
        "process_name": inst.definition.name,
        "state": inst.state,
        "started_at": inst.started_at,
        "due_at": inst.due_at,
        "current_step": "、".join(t.step_name for t in current)
        or ("已办结" if inst.state == "completed" else inst.get_state_display()),
        "ended_at": inst.ended_at,
        "steps": [
            {"step": t.step_name, "state": t.state, "arrived_at": t.created_at, "done_at": t.completed_at}
            for t in inst.tasks.order_by("id")
        ],
    }


@router.post(
    "/applications", response={201: ApplicationOut}, summary="a customer applies for a connection or a change"
)
def apply(request, payload: ApplicationIn):
    org = _org(payload.org_id, request.user)
    if org is not None and org.level not in (Org.Level.STATION, Org.Level.COUNTY, Org.Level.SERVICE_HALL):
        raise InvalidInput([FieldError("org_id", "choose a county, a station or a service hall")])
    inst = svc.apply(
        actor=request.user,
        code=payload.process,
        org=org,
        data=payload.data,
        at=timezone.now(),
        applicant=request.user,
    )
    return Status(201, _application_out(inst))


@router.get("/applications", response=list[ApplicationOut], summary="my applications")
def my_applications(request):
    qs = (
        ProcessInstance.objects.filter(applicant=request.user)
        .select_related("definition")
        .order_by("-started_at")
    )
    return [_application_out(i) for i in qs[:100]]


@router.get("/applications/{number}", response=ApplicationOut, summary="follow one application")
def application(request, number: str):
    inst = (
        ProcessInstance.objects.filter(number=number, applicant=request.user)
        .select_related("definition")
        .first()
    )
    if inst is None:
        inst = wf_queries.get_instance_by_number(request.user, number)
    return _application_out(inst)


@router.get("/contract-documents/{contract_id}", summary="the supply contract as PDF")
def contract_pdf(request, contract_id: int):
    c = contracts.contracts(request.user).filter(pk=contract_id).first()
    if c is None:
        raise NotFound(f"no contract {contract_id}")
    pdf = contracts.render_pdf(c, today=timezone.localdate())
    resp = HttpResponse(pdf, content_type="application/pdf")
    resp["Content-Disposition"] = f'inline; filename="{c.contract_no}.pdf"'
    return resp


class ExpiringOut(Schema):
    id: int
    contract_no: str
    customer_no: str
    customer: str
    contract_type: str
    expires_on: date
    days_left: int


@router.get("/contracts-expiring", response=list[ExpiringOut], summary="renewal alerts")
def contracts_expiring(request, days: int = Query(contracts.RENEWAL_WARN_DAYS, ge=1, le=366)):
    today = timezone.localdate()
    return [
        {
            "id": c.pk,
            "contract_no": c.contract_no,
            "customer_no": c.customer.customer_no,
            "customer": c.customer.name,
            "contract_type": c.contract_type,
            "expires_on": c.expires_on,
            "days_left": (c.expires_on - today).days,
        }
        for c in contracts.expiring(request.user, today=today, warn_days=days)
    ]


class CellOut(Schema):
    finished: int
    on_time: int
    late: int
    open_overdue: int
    rate: str | None


class ComplianceOut(Schema):
    org: str
    org_id: int
    total: CellOut
    by_process: dict[str, CellOut]


def _cell(c: reports.ComplianceCell) -> dict:
    return {
        "finished": c.finished,
        "on_time": c.on_time,
        "late": c.late,
        "open_overdue": c.open_overdue,
        "rate": str(c.rate) if c.rate is not None else None,
    }


@router.get(
    "/reports/commitments", response=list[ComplianceOut], summary="commitment compliance per org and month"
)
def commitment_report(request, month: str = Query(..., description="YYYY-MM"), category: str = ""):
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise InvalidInput([FieldError("month", "must be YYYY-MM")])
    year, m = int(month[:4]), int(month[5:])
    rows = reports.compliance(request.user, year=year, month=m, category=category)
    return [
        {
            "org": r.org.name,
            "org_id": r.org.pk,
            "total": _cell(r.total),
            "by_process": {k: _cell(v) for k, v in r.by_process.items()},
        }
        for r in rows
    ]
