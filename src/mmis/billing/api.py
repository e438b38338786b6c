"""API of billing: /api/v1/billing-runs and /api/v1/bills (data scope: outside it, 404)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError

from mmis.billing import queries, services
from mmis.billing.models import Bill, BillingRun
from mmis.common.errors import FieldError, InvalidInput
from mmis.common.periods import Period
from mmis.org.scope import DataScope

router = Router(tags=["billing"])


def _read(request) -> None:
    if not queries.can_read(request.user):
        raise HttpError(403, "your roles do not allow reading billing")


def _write(request) -> None:
    if not queries.can_write(request.user):
        raise HttpError(403, "your roles do not allow billing operations")


class RunIn(Schema):
    month: str = Field(..., description="billing month YYYY-MM", pattern=r"^\d{4}-\d{2}$")
    org_id: int
    book_codes: list[str] = Field(default_factory=list)
    start: bool = Field(True, description="start calculating at once (in-process or on Celery workers)")
    audit_inline: bool = Field(
        True,
        description="run the audit stage with the calculation; false: the run writes drafts and "
        "POST /billing-runs/{id}/audit runs the audit stage",
    )


class RunOut(Schema):
    id: int
    month: str
    org_id: int
    org_name: str
    book_codes: list[str]
    state: str
    mode: str
    audit_inline: bool
    points_total: int
    partitions_total: int
    partitions_done: int
    partitions_failed: int
    bills: int
    exceptions: int
    flagged: int
    released_bills: int
    energy_kwh: Decimal
    amount: Decimal
    progress_pct: int


class RunPage(Schema):
    items: list[RunOut]
    count: int


class ExceptionOut(Schema):
    point_id: int
    point_no: str
    partition: str
    reason: str
    message: str


class LineOut(Schema):
    seq: int
    segment: int
    code: str
    label: str
    quantity: Decimal
    price: Decimal
    amount: Decimal


class BillOut(Schema):
    id: int
    number: str
    run_id: int
    customer_no: str
    customer_name: str
    point_id: int
    period_start: date
    period_end: date
    tariff_code: str
    tariff_version_id: int
    state: str
    energy_kwh: Decimal
    amount: Decimal
    estimated: bool
    prorated: bool
    risk: int
    flags: list[str]
    due_date: date | None


class BillDetail(BillOut):
    lines: list[LineOut]
    trace: dict[str, Any]


class BillPage(Schema):
    items: list[BillOut]
    count: int


class BillFilters(Schema):
    run: int | None = None
    state: str | None = None
    page: int = Field(1, ge=1)
    page_size: int = Field(50, ge=1, le=500)


class BillIds(Schema):
    bill_ids: list[int]


class ReasonIn(Schema):
    reason: str = Field(..., min_length=1, max_length=200)


class CorrectionIn(Schema):
    reason: str = Field(
        ..., description="reading_error | meter_error | multiplier_error | tariff_error | file_error"
    )
    usage: dict[str, Any] = Field(..., description='corrected inputs, e.g. {"kwh": "420"}')
    note: str = ""


class CorrectionOut(Schema):
    id: int
    number: str
    bill_id: int
    kind: str
    reason: str
    state: str
    original_amount: Decimal
    corrected_amount: Decimal
    amount: Decimal
    lines: list[dict[str, Any]]


def _run_out(r: BillingRun) -> dict:
    return {
        **{k: getattr(r, k) for k in RunOut.model_fields if hasattr(r, k) and k not in ("month", "org_name")},
        "month": r.month_label,
        "org_name": r.org.name,
    }


def _bill_out(b: Bill) -> dict:
    return {
        **{k: getattr(b, k) for k in BillOut.model_fields if hasattr(b, k)},
        "customer_no": b.customer.customer_no,
        "customer_name": b.customer.name,
    }


@router.get("/billing-runs", response=RunPage, summary="Billing runs in my scope, latest first")
def list_runs(request, page: int = 1, page_size: int = 50):
    _read(request)
    qs = queries.runs(request.user)
    start = (max(page, 1) - 1) * page_size
    items = [_run_out(queries.scope_run_figures(request.user, r)) for r in qs[start : start + page_size]]
    return {"items": items, "count": qs.count()}


@router.post("/billing-runs", response={201: RunOut}, summary="Plan (and start) a billing run")
def create_run(request, payload: RunIn):
    _write(request)
    org = DataScope.for_user(request.user).orgs().filter(pk=payload.org_id).first()
    if org is None:
        raise InvalidInput(
            [FieldError("org_id", f"org {payload.org_id} does not exist or is outside your scope")]
        )
    y, m = (int(x) for x in payload.month.split("-"))
    if not 1 <= m <= 12:
        raise InvalidInput([FieldError("month", "month must be 01–12")])
    run = services.plan_run(
        org=org,
        month=Period.month(y, m),
        actor=request.user,
        at=timezone.now(),
        book_codes=payload.book_codes or None,
        mode=BillingRun.Mode.CELERY if settings.BROKER_URL else BillingRun.Mode.IN_PROCESS,
        audit_inline=payload.audit_inline,
    )
    if payload.start:
        from mmis.billing.views import _start_in_background

        _start_in_background(run)
    run.refresh_from_db()
    return Status(201, _run_out(run))


@router.get("/billing-runs/{run_id}", response=RunOut, summary="One run with its counters")
def get_run(request, run_id: int):
    _read(request)
    return _run_out(queries.scope_run_figures(request.user, queries.get_run(request.user, run_id)))


@router.get("/billing-runs/{run_id}/exceptions", response=list[ExceptionOut], summary="Points set aside")
def run_exceptions(request, run_id: int):
    _read(request)
    run = queries.get_run(request.user, run_id)
    return [
        {
            "point_id": e.point_id,
            "point_no": e.point.point_no,
            "partition": e.partition.key,
            "reason": e.reason,
            "message": e.message,
        }
        for e in queries.exceptions(run)[:5000]
    ]


@router.post(
    "/billing-runs/{run_id}/audit",
    response={202: dict},
    summary="Start the audit stage: the audit rules over the run's drafts (or its bills not approved yet)",
)
def audit_run(request, run_id: int):
    _write(request)
    run = queries.get_run(request.user, run_id)
    from mmis.billing.views import _audit_in_background

    _audit_in_background(run, actor=request.user, org=queries.action_org(request.user, run))
    return Status(202, {"started": True, "partitions": run.partitions.filter(state="done").count()})


@router.post("/billing-runs/{run_id}/approve-clean", summary="Approve every bill of the run the rules passed")
def approve_clean(request, run_id: int):
    _write(request)
    run = queries.get_run(request.user, run_id)
    return {"approved": services.approve_clean(run=run, actor=request.user, at=timezone.now())}


@router.post("/billing-runs/{run_id}/release", summary="Release every audited bill of the run")
def release_run(request, run_id: int):
    _write(request)
    run = queries.get_run(request.user, run_id)
    return {"released": services.release_run(run=run, actor=request.user, at=timezone.now())}


@router.post("/billing-runs/{run_id}/resume", summary="Calculate the partitions not done yet")
def resume_run(request, run_id: int):
    _write(request)
    run = queries.get_run(request.user, run_id)
    from mmis.billing.views import _start_in_background

    _start_in_background(run)
    return {"pending": len(services.pending_partitions(run))}


@router.get("/bills", response=BillPage, summary="Bills in my scope (audit queue: state=flagged)")
def list_bills(request, filters: Query[BillFilters]):
    _read(request)
    qs = queries.bills(request.user)
    if filters.run:
        qs = qs.filter(run_id=filters.run)
    if filters.state:
        qs = qs.filter(state=filters.state)
    qs = qs.order_by("-risk", "-amount", "pk") if filters.state == Bill.State.FLAGGED else qs.order_by("pk")
    start = (filters.page - 1) * filters.page_size
    return {"items": [_bill_out(b) for b in qs[start : start + filters.page_size]], "count": qs.count()}


@router.get("/bills/{bill_id}", response=BillDetail, summary="A bill with its lines and trace")
def get_bill(request, bill_id: int):
    _read(request)
    b = queries.get_bill(request.user, bill_id)
    lines = [
        {
            "seq": ln.seq,
            "segment": ln.segment,
            "code": ln.code,
            "label": queries.line_label(ln.code),
            "quantity": ln.quantity,
            "price": ln.price,
            "amount": ln.amount,
        }
        for ln in b.lines.all()
    ]
    return {**_bill_out(b), "lines": lines, "trace": b.full_trace}


@router.post("/bill-approvals", summary="Approve bills (all or nothing)")
def approve_bills(request, payload: BillIds):
    _write(request)
    allowed = set(queries.bills(request.user).filter(pk__in=payload.bill_ids).values_list("pk", flat=True))
    missing = [i for i in payload.bill_ids if i not in allowed]
    if missing:
        raise InvalidInput([FieldError("bill_ids", f"no such bills: {missing[:10]}")])
    return {
        "approved": services.approve_bills(bill_ids=payload.bill_ids, actor=request.user, at=timezone.now())
    }


@router.post("/bills/{bill_id}/return", response=BillOut, summary="Send a bill back for re-reading")
def return_bill(request, bill_id: int, payload: ReasonIn):
    _write(request)
    b = queries.get_bill(request.user, bill_id)
    services.return_bill(bill=b, actor=request.user, at=timezone.now(), reason=payload.reason)
    return _bill_out(queries.get_bill(request.user, bill_id))


@router.post("/bills/{bill_id}/release", response=BillOut, summary="Release (issue) an audited bill")
def release_bill(request, bill_id: int):
    _write(request)
    b = queries.get_bill(request.user, bill_id)
    services.release_bill(bill_id=b.pk, actor=request.user, at=timezone.now())
    return _bill_out(queries.get_bill(request.user, bill_id))


@router.post(
    "/bills/{bill_id}/corrections", response={201: CorrectionOut}, summary="Request a correction (退补)"
)
def request_correction(request, bill_id: int, payload: CorrectionIn):
    _write(request)
    b = queries.get_bill(request.user, bill_id)
    c = services.request_correction(
        bill=b,
        reason=payload.reason,
        usage=payload.usage,
        actor=request.user,
        at=timezone.now(),
        note=payload.note,
    )
    return Status(201, {**{k: getattr(c, k) for k in CorrectionOut.model_fields}})
