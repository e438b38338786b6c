"""API of meter reading: /api/v1/reading-books…, /api/v1/readings…, /api/v1/terminals….
Thin: parse, call one service or query, render. Rows outside the caller's scope answer 404."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.utils import timezone
from ninja import Field, File, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile

from mmis.assets.models import Meter
from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.common.periods import Period
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.readings import imports, queries, services, workorders
from mmis.readings.models import MeterReading, ReadingBook, ReadingException, RemoteCommand, Terminal

router = Router(tags=["readings"])


def _require(request, roles: tuple[str, ...], what: str) -> None:
    if not request.user.has_role(*roles):
        raise HttpError(403, f"your roles do not allow {what}")


def _now() -> datetime:
    return timezone.now()


# --- schemas --------------------------------------------------------------------------------------
class BookIn(Schema):
    org_id: int
    code: str = Field(..., max_length=20)
    name: str = Field(..., max_length=100)
    reading_day: int
    reader_id: int | None = None
    method: str = "manual"
    auditor_id: int | None = None


class BookPatch(Schema):
    name: str | None = None
    reading_day: int | None = None
    reader_id: int | None = None
    method: str | None = None
    active: bool | None = None
    auditor_id: int | None = None


class BookOut(Schema):
    id: int
    code: str
    name: str
    org_id: int
    org_name: str
    reading_day: int
    reader_id: int | None
    reader_name: str
    auditor_id: int | None = None
    auditor_name: str = ""
    method: str
    active: bool
    points: int = 0
    read: int = 0
    percent: int = 0


class AssignIn(Schema):
    point_ids: list[int]


class PlansIn(Schema):
    month: date
    book_ids: list[int] | None = None


class PlanOut(Schema):
    id: int
    book_id: int
    month: date
    planned_date: date
    point_count: int
    status: str


class ReadingIn(Schema):
    point_id: int
    reading_date: date
    total: str
    sharp: str | None = None
    peak: str | None = None
    flat: str | None = None
    valley: str | None = None
    reactive: str | None = None
    max_demand: str | None = None
    fault_flags: list[str] = []
    note: str = Field("", max_length=200)


class ReadingOut(Schema):
    id: int
    point_id: int
    point_no: str
    reading_date: date
    total: str
    sharp: str | None
    peak: str | None
    flat: str | None
    valley: str | None
    reactive: str | None
    max_demand: str | None
    source: str
    status: str
    estimated: bool
    fault_flags: list[str]
    note: str


class ReadingPage(Schema):
    count: int
    items: list[ReadingOut]


class EstimateIn(Schema):
    point_id: int
    reading_date: date
    reason: str = ""


class ExceptionOut(Schema):
    id: int
    point_id: int
    point_no: str
    reading_id: int | None
    reading_date: date
    rule: str
    detail: str
    state: str
    decision: str
    decision_note: str
    owner_id: int | None = None
    owner_name: str = ""
    due_on: date | None = None
    overdue: bool = False
    work_order: str = ""
    check_result: str = ""


class OwnerIn(Schema):
    owner_id: int


class DecisionIn(Schema):
    decision: str
    note: str = ""
    values: dict[str, str] | None = None


class ImportOut(Schema):
    filename: str
    rows: int
    imported: int
    rejected: int
    validation: dict[str, int]
    errors: list[dict[str, Any]]


class BillingSegmentOut(Schema):
    start_date: date | None
    end_date: date | None
    meter_id: int | None
    multiplier: str
    kwh: str
    basis: str
    kwh_by_rate: dict[str, str] | None = None
    kvarh: str | None = None


class BillingReadingOut(Schema):
    point_id: int
    billable: bool
    reason: str | None
    detail: str
    start_date: date | None
    end_date: date | None
    multiplier: str
    kwh: str | None
    kwh_by_rate: dict[str, str] | None
    rollover: bool
    kvarh: str | None
    max_demand_kw: str | None
    estimated: bool
    meter_changed: bool = False
    multiplier_changed: bool = False
    segments: list[BillingSegmentOut] = []


class TerminalIn(Schema):
    org_id: int
    code: str = Field(..., max_length=32)
    kind: str
    name: str = ""
    concentrator: bool = False
    meter_asset_nos: list[str] = []


class TerminalOut(Schema):
    id: int
    code: str
    name: str
    org_id: int
    kind: str
    concentrator: bool
    meters: int
    last_seen_at: datetime | None
    active: bool


class CommandIn(Schema):
    meter_asset_no: str
    command: str
    reason: str = ""


class CommandOut(Schema):
    id: int
    request_id: str
    terminal: str
    meter: str
    command: str
    state: str
    attempts: int
    requested_at: datetime
    finished_at: datetime | None
    result: dict


# --- helpers --------------------------------------------------------------------------------------
def _s(v) -> str | None:
    return None if v is None else format(v, "f")


def _book_out(b: ReadingBook, prog: queries.Progress | None = None) -> dict:
    return {
        "id": b.pk,
        "code": b.code,
        "name": b.name,
        "org_id": b.org_id,
        "org_name": b.org.name,
        "reading_day": b.reading_day,
        "reader_id": b.reader_id,
        "reader_name": str(b.reader) if b.reader else "",
        "auditor_id": b.auditor_id,
        "auditor_name": str(b.auditor) if b.auditor_id else "",
        "method": b.method,
        "active": b.active,
        "points": prog.total if prog else 0,
        "read": prog.read if prog else 0,
        "percent": prog.percent if prog else 0,
    }


def _reading_out(r: MeterReading) -> dict:
    return {
        "id": r.pk,
        "point_id": r.metering_point_id,
        "point_no": r.metering_point.point_no,
        "reading_date": r.reading_date,
        **{
            n: _s(getattr(r, n))
            for n in ("total", "sharp", "peak", "flat", "valley", "reactive", "max_demand")
        },
        "source": r.source,
        "status": r.status,
        "estimated": r.estimated,
        "fault_flags": r.fault_flags or [],
        "note": r.note,
    }


def _exception_out(e: ReadingException) -> dict:
    return {
        "id": e.pk,
        "point_id": e.metering_point_id,
        "point_no": e.metering_point.point_no,
        "reading_id": e.reading_id,
        "reading_date": e.reading_date,
        "rule": e.rule,
        "detail": e.detail,
        "state": e.state,
        "decision": e.decision,
        "decision_note": e.decision_note,
        "owner_id": e.owner_id,
        "owner_name": str(e.owner) if e.owner_id else "",
        "due_on": e.due_on,
        "overdue": e.state == "open" and e.due_on is not None and e.due_on < timezone.localdate(),
        "work_order": e.work_order.number if e.work_order_id else "",
        "check_result": e.check_result,
    }


def _org(request, org_id: int) -> Org:
    org = Org.objects.filter(pk=org_id).first()
    if org is None or not DataScope.for_user(request.user).contains_org(org):
        raise InvalidInput([FieldError("org_id", "no such org in your scope")])
    return org


def _point(request, point_id: int, path: str = "point_id"):
    p = queries.points_in_scope(request.user).filter(pk=point_id).first()
    if p is None:
        raise NotFound(f"metering point {point_id} not found")
    return p


def _reader(reader_id: int | None, path: str = "reader_id") -> User | None:
    if reader_id is None:
        return None
    u = User.objects.filter(pk=reader_id, is_active=True).first()
    if u is None:
        raise InvalidInput([FieldError(path, "no such user")])
    return u


# --- reading books and plans ------------------------------------------------------------------------
@router.get(
    "/reading-books", response=list[BookOut], summary="Reading books in my scope with this month's progress"
)
def list_books(request, month: date | None = None):
    books = list(queries.books(request.user))
    prog = queries.book_progress([b.pk for b in books], month or timezone.localdate())
    return [_book_out(b, prog[b.pk]) for b in books]


@router.post("/reading-books", response={201: BookOut}, summary="Create a reading book (抄表段)")
def create_book(request, payload: BookIn):
    _require(request, services.BOOK_ADMIN_ROLES, "managing reading books")
    book = services.create_book(
        actor=request.user,
        org=_org(request, payload.org_id),
        code=payload.code,
        name=payload.name,
        reading_day=payload.reading_day,
        reader=_reader(payload.reader_id),
        method=payload.method,
        auditor=_reader(payload.auditor_id, "auditor_id"),
        at=_now(),
    )
    return Status(201, _book_out(book))


@router.get("/reading-books/{book_id}", response=BookOut)
def get_book(request, book_id: int, month: date | None = None):
    book = queries.get_book(request.user, book_id)
    return _book_out(book, queries.book_progress([book.pk], month or timezone.localdate())[book.pk])


@router.patch("/reading-books/{book_id}", response=BookOut)
def update_book(request, book_id: int, payload: BookPatch):
    _require(request, services.BOOK_ADMIN_ROLES, "managing reading books")
    book = queries.get_book(request.user, book_id)
    changes = payload.dict(exclude_unset=True)
    if "reader_id" in changes:
        changes["reader"] = _reader(changes.pop("reader_id"))
    if "auditor_id" in changes:
        changes["auditor"] = _reader(changes.pop("auditor_id"), "auditor_id")
    return _book_out(services.update_book(actor=request.user, book=book, changes=changes, at=_now()))


@router.post("/reading-books/{book_id}/points", response=dict, summary="Append metering points to a book")
def assign_points(request, book_id: int, payload: AssignIn):
    _require(request, services.BOOK_ADMIN_ROLES, "managing reading books")
    book = queries.get_book(request.user, book_id)
    points = {p.pk: p for p in queries.points_in_scope(request.user).filter(pk__in=payload.point_ids)}
    missing = [f"point_ids[{i}]" for i, pid in enumerate(payload.point_ids) if pid not in points]
    if missing:
        raise InvalidInput([FieldError(path, "no such metering point in your scope") for path in missing])
    n = services.assign_points(
        actor=request.user, book=book, points=[points[pid] for pid in payload.point_ids], at=_now()
    )
    return {"assigned": n}


@router.post(
    "/reading-books/plans/generate", response=list[PlanOut], summary="Generate the month's reading plans"
)
def generate_plans(request, payload: PlansIn):
    _require(request, services.BOOK_ADMIN_ROLES, "generating reading plans")
    books = queries.books(request.user)
    if payload.book_ids:
        books = books.filter(pk__in=payload.book_ids)
    plans = services.generate_plans(actor=request.user, month=payload.month, books=list(books), at=_now())
    return [
        {
            "id": p.pk,
            "book_id": p.book_id,
            "month": p.month,
            "planned_date": p.planned_date,
            "point_count": p.point_count,
            "status": p.status,
        }
        for p in plans
    ]


# --- readings ----------------------------------------------------------------------------------------
@router.get("/readings", response=ReadingPage, summary="Readings in my scope")
def list_readings(
    request,
    point_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    status: str = "",
    limit: int = Query(100, le=1000, ge=1),
    offset: int = Query(0, ge=0),
):
    qs = queries.readings(request.user, point_id=point_id, since=since, until=until, status=status)
    return {"count": qs.count(), "items": [_reading_out(r) for r in qs[offset : offset + limit]]}


@router.post("/readings", response={201: ReadingOut}, summary="Record one register reading (validated)")
def record_reading(request, payload: ReadingIn):
    _require(request, services.READER_ROLES, "recording readings")
    point = _point(request, payload.point_id)
    values = payload.dict(include={"total", "sharp", "peak", "flat", "valley", "reactive", "max_demand"})
    r = services.record_reading(
        actor=request.user,
        point=point,
        reading_date=payload.reading_date,
        values=values,
        source=MeterReading.Source.MANUAL,
        fault_flags=payload.fault_flags,
        note=payload.note,
        at=_now(),
    )
    return Status(201, _reading_out(queries.get_reading(request.user, r.pk)))


@router.post("/readings/estimates", response={201: ReadingOut}, summary="Estimate a reading (估抄)")
def estimate(request, payload: EstimateIn):
    _require(request, services.AUDITOR_ROLES, "estimating readings")
    point = _point(request, payload.point_id)
    r = services.estimate_reading(
        actor=request.user, point=point, reading_date=payload.reading_date, reason=payload.reason, at=_now()
    )
    return Status(201, _reading_out(queries.get_reading(request.user, r.pk)))


@router.post("/readings/import", response=ImportOut, summary="Import a CSV or Excel file of readings")
def import_file(request, file: UploadedFile = File(...)):
    _require(request, services.READER_ROLES, "importing readings")
    report = imports.import_readings(
        actor=request.user, data=file.read(), filename=file.name or "upload.csv", at=_now()
    )
    return report.as_dict()


@router.get("/readings/exceptions", response=list[ExceptionOut], summary="The exceptions queue")
def list_exceptions(
    request,
    state: str = "open",
    rule: str = "",
    mine: bool = False,
    overdue: bool = False,
    limit: int = Query(200, le=1000, ge=1),
):
    qs = queries.exceptions(
        request.user,
        state=state,
        rule=rule,
        owner=request.user if mine else None,
        overdue_on=timezone.localdate() if overdue else None,
    )
    return [_exception_out(e) for e in qs[:limit]]


@router.post("/readings/exceptions/{exception_id}/owner", response=ExceptionOut)
def assign_owner(request, exception_id: int, payload: OwnerIn):
    """Hand an open exception to another auditor."""
    exc = queries.get_exception(request.user, exception_id)
    owner = User.objects.filter(pk=payload.owner_id).first()
    if owner is None:
        raise InvalidInput([FieldError("owner_id", "no such user")])
    services.assign_exception(actor=request.user, exception=exc, owner=owner, at=_now())
    return _exception_out(queries.get_exception(request.user, exception_id))


@router.post("/readings/exceptions/{exception_id}/decision", response=ExceptionOut)
def decide(request, exception_id: int, payload: DecisionIn):
    _require(request, services.AUDITOR_ROLES, "deciding reading exceptions")
    exc = queries.get_exception(request.user, exception_id)
    services.decide_exception(
        actor=request.user,
        exception=exc,
        decision=payload.decision,
        note=payload.note,
        values=payload.values,
        at=_now(),
    )
    return _exception_out(queries.get_exception(request.user, exception_id))


@router.get("/readings/billing-inputs", response=list[BillingReadingOut], summary="Billing inputs of points")
def billing_inputs(request, start: date, end: date, point_ids: list[int] = Query(...)):
    scoped = list(queries.points_in_scope(request.user).filter(pk__in=point_ids).values_list("pk", flat=True))
    out = queries.billing_inputs(point_ids=scoped, period=Period(start, end))
    return [
        {
            "point_id": b.point_id,
            "billable": b.billable,
            "reason": b.reason,
            "detail": b.detail,
            "start_date": b.start_date,
            "end_date": b.end_date,
            "multiplier": _s(b.multiplier),
            "kwh": _s(b.kwh),
            "kwh_by_rate": {k: _s(v) for k, v in b.kwh_by_rate.items()} if b.kwh_by_rate else None,
            "rollover": b.rollover,
            "kvarh": _s(b.kvarh),
            "max_demand_kw": _s(b.max_demand_kw),
            "estimated": b.estimated,
            "meter_changed": b.meter_changed,
            "multiplier_changed": b.multiplier_changed,
            "segments": [
                {
                    "start_date": s.start_date,
                    "end_date": s.end_date,
                    "meter_id": s.meter_id,
                    "multiplier": _s(s.multiplier),
                    "kwh": _s(s.kwh),
                    "basis": s.basis,
                    "kwh_by_rate": {k: _s(v) for k, v in s.kwh_by_rate.items()} if s.kwh_by_rate else None,
                    "kvarh": _s(s.kvarh),
                }
                for s in b.segments
            ],
        }
        for b in out.values()
    ]


# --- metering changes --------------------------------------------------------------------------------
class MeterChangeOrderIn(Schema):
    point_id: int
    reason: str = Field(..., description="fault | rotation | upgrade | ratio | other")
    note: str = ""


class MeterChangeOut(Schema):
    id: int
    point_id: int
    changed_on: date
    old_meter: str | None
    new_meter: str | None
    old_multiplier: str
    new_multiplier: str
    old_final: dict[str, str]
    new_initial: dict[str, str]
    work_order: str
    work_order_state: str


@router.post(
    "/readings/meter-changes/orders",
    response={201: dict},
    summary="Open a metering work order (换表 / CT-PT) for a point; its field step records the change",
)
def open_meter_change(request, payload: MeterChangeOrderIn):
    _require(request, services.BOOK_ADMIN_ROLES, "opening metering work orders")
    point = _point(request, payload.point_id)
    order = workorders.open_meter_change(
        actor=request.user, point=point, reason=payload.reason, note=payload.note, at=_now()
    )
    return Status(201, {"id": order.pk, "number": order.number})


@router.get(
    "/readings/meter-changes", response=list[MeterChangeOut], summary="Recorded meter and multiplier changes"
)
def list_meter_changes(request, point_id: int):
    point = _point(request, point_id)
    return [
        {
            "id": c.pk,
            "point_id": c.metering_point_id,
            "changed_on": c.changed_on,
            "old_meter": c.old_meter.asset_no if c.old_meter_id else None,
            "new_meter": c.new_meter.asset_no if c.new_meter_id else None,
            "old_multiplier": _s(c.old_multiplier),
            "new_multiplier": _s(c.new_multiplier),
            "old_final": c.old_final,
            "new_initial": c.new_initial,
            "work_order": c.work_order.number if c.work_order_id else "",
            "work_order_state": c.work_order.state if c.work_order_id else "",
        }
        for c in queries.meter_changes(point)
    ]


# --- terminals and commands ----------------------------------------------------------------------------
def _terminal_out(t: Terminal) -> dict:
    return {
        "id": t.pk,
        "code": t.code,
        "name": t.name,
        "org_id": t.org_id,
        "kind": t.kind,
        "concentrator": t.concentrator,
        "meters": getattr(t, "meter_count", None) or t.links.count(),
        "last_seen_at": t.last_seen_at,
        "active": t.active,
    }


def _command_out(c: RemoteCommand) -> dict:
    return {
        "id": c.pk,
        "request_id": c.request_id,
        "terminal": c.terminal.code,
        "meter": c.meter.asset_no,
        "command": c.command,
        "state": c.state,
        "attempts": c.attempts,
        "requested_at": c.requested_at,
        "finished_at": c.finished_at,
        "result": c.result or {},
    }


@router.get("/terminals", response=list[TerminalOut], summary="AMI terminals in my scope")
def list_terminals(request, limit: int = Query(200, le=2000, ge=1), offset: int = Query(0, ge=0)):
    return [_terminal_out(t) for t in queries.terminals(request.user)[offset : offset + limit]]


@router.post("/terminals", response={201: TerminalOut}, summary="Register a terminal and its meters")
def create_terminal(request, payload: TerminalIn):
    _require(request, ("administrator", "manager"), "registering terminals")
    org = _org(request, payload.org_id)
    meters = list(
        DataScope.for_user(request.user).filter(Meter.objects.filter(asset_no__in=payload.meter_asset_nos))
    )
    found = {m.asset_no for m in meters}
    errs = [
        FieldError(f"meter_asset_nos[{i}]", "no such meter in your scope")
        for i, a in enumerate(payload.meter_asset_nos)
        if a not in found
    ]
    if errs:
        raise InvalidInput(errs)
    t = services.register_terminal(
        actor=request.user,
        org=org,
        code=payload.code,
        kind=payload.kind,
        name=payload.name,
        concentrator=payload.concentrator,
        meters=meters,
        at=_now(),
    )
    return Status(201, _terminal_out(t))


@router.get("/terminals/commands", response=list[CommandOut], summary="Remote commands")
def list_commands(request, state: str = "", limit: int = Query(200, le=1000, ge=1)):
    return [_command_out(c) for c in queries.commands(request.user, state=state)[:limit]]


@router.post("/terminals/commands", response={201: CommandOut}, summary="Send a remote command to a meter")
def send_command(request, payload: CommandIn):
    _require(request, services.COMMAND_ROLES, "sending remote commands")
    meter = (
        DataScope.for_user(request.user).filter(Meter.objects.filter(asset_no=payload.meter_asset_no)).first()
    )
    if meter is None:
        raise InvalidInput([FieldError("meter_asset_no", "no such meter in your scope")])
    cmd = services.send_remote_command(
        meter=meter, command=payload.command, requested_by=request.user, reason=payload.reason, at=_now()
    )
    return Status(201, _command_out(cmd))


@router.get("/terminals/commands/{command_id}", response=CommandOut)
def get_command(request, command_id: int):
    c = queries.commands(request.user).filter(pk=command_id).first()
    if c is None:
        raise NotFound(f"command {command_id} not found")
    return _command_out(c)
