"""API of the tariff catalog under /api/v1/tariffs. Everyone signed in reads the tariffs published
above and inside their data scope; administrators and managers of the publishing org write.
Bad input answers 422 with every field's path and reason; nothing is saved half."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from ninja import Body, Field, File, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile

from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.org.models import Org
from mmis.org.scope import DataScope
from mmis.tariffs import excel, queries, rules, services
from mmis.tariffs.models import Tariff, TariffVersion

router = Router(tags=["tariffs"])


def _call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except services.NotAllowed as exc:
        raise HttpError(403, str(exc)) from None


def _today() -> date:
    return timezone.localdate()


# --- schemas --------------------------------------------------------------------------------------
class OrgRef(Schema):
    id: int
    code: str
    name: str


class VersionOut(Schema):
    id: int
    label: str
    effective_from: date
    effective_to: date | None = None
    state: str
    in_force: bool = False
    note: str
    based_on_id: int | None
    published_at: Any = None


class VersionDetail(VersionOut):
    tariff_id: int
    code: str
    pricing: dict
    calendar: dict | None
    tier_year_start_month: int
    basic_prices: dict


class TariffOut(Schema):
    id: int
    code: str
    name: str
    usage_category: str
    voltage_level: str
    description: str
    org: OrgRef
    current: VersionOut | None = None


class TariffDetail(TariffOut):
    versions: list[VersionOut]
    overrides: list[OrgRef] = []


class TariffListFilters(Schema):
    q: str = ""
    category: str = Field(
        "", description="usage category: residential | general_ci | large_industry | agricultural"
    )
    voltage: str = ""
    org_id: int | None = None
    on: date | None = Field(None, description="show the version in force on this date (default today)")


class TariffIn(Schema):
    org_id: int | None = Field(None, description="publishing org (default: your own org)")
    code: str
    name: str
    usage_category: str
    voltage_level: str = ""
    description: str = ""
    version: dict | None = Field(
        None, description="first version: label, effective_from, pricing, calendar, …"
    )
    publish: bool = False


class TariffPatch(Schema):
    name: str | None = None
    description: str | None = None


class VersionIn(Schema):
    copy_from: int | None = Field(None, description="version id to copy; the other fields are edits on top")
    label: str | None = None
    effective_from: str | None = None
    note: str | None = None
    pricing: dict | None = None
    calendar: dict | None = None
    tier_year_start_month: int | None = None
    basic_prices: dict | None = None


class ResolvedOut(Schema):
    version_id: int
    tariff_id: int
    code: str
    name: str
    org_id: int
    version_label: str
    effective_from: date
    effective_to: date | None
    pricing: dict
    calendar: dict | None
    tier_year_start_month: int
    basic_prices: dict


class DiffOut(Schema):
    path: str
    left: Any
    right: Any
    change: str
    ratio: str | None


class CompareOut(Schema):
    left: VersionDetail
    right: VersionDetail
    differences: list[DiffOut]


# --- helpers --------------------------------------------------------------------------------------
def _version_out(v: TariffVersion, row: queries.VersionRow | None = None) -> dict[str, Any]:
    return {
        "id": v.pk,
        "label": v.label,
        "effective_from": v.effective_from,
        "effective_to": row.effective_to if row else None,
        "state": v.state,
        "in_force": bool(row and row.in_force),
        "note": v.note,
        "based_on_id": v.based_on_id,
        "published_at": v.published_at,
    }


def _version_detail(v: TariffVersion) -> dict[str, Any]:
    row = next((r for r in queries.timeline(v.tariff, on=_today()) if r.version.pk == v.pk), None)
    return {
        **_version_out(v, row),
        "tariff_id": v.tariff_id,
        "code": v.tariff.code,
        **v.data(),
    }


def _org(o: Org) -> dict[str, Any]:
    return {"id": o.pk, "code": o.code, "name": o.name}


def _tariff_out(t: Tariff, on: date) -> dict[str, Any]:
    current = queries.current_version(t, on=on)
    return {
        "id": t.pk,
        "code": t.code,
        "name": t.name,
        "usage_category": t.usage_category,
        "voltage_level": t.voltage_level,
        "description": t.description,
        "org": _org(t.org),
        "current": _version_out(current) if current else None,
    }


def _body(payload: Schema) -> dict[str, Any]:
    return payload.dict(exclude_unset=True)


# --- read -----------------------------------------------------------------------------------------
@router.get("/tariffs", response=list[TariffOut], summary="List tariffs (filters: q, category, voltage, org)")
def list_tariffs(request, filters: Query[TariffListFilters]):
    on = filters.on or _today()
    qs = queries.search_tariffs(
        request.user, q=filters.q, category=filters.category, voltage=filters.voltage, org_id=filters.org_id
    )
    return [_tariff_out(t, on) for t in qs]


@router.get(
    "/tariffs/resolve", response=ResolvedOut, summary="The version of a code in force at an org on a date"
)
def resolve(request, code: str, on: date, org_id: int | None = None):
    user = request.user
    org = user.org if org_id is None else Org.objects.filter(pk=org_id).first()
    if org is None or (
        org_id is not None and not DataScope.for_user(user).contains_org(org) and org != user.org
    ):
        raise NotFound("no such org")
    r = queries.tariff_for(code=code, org=org, on=on)
    return {
        **{k: getattr(r, k) for k in ("version_id", "tariff_id", "code", "name", "org_id", "version_label")},
        "effective_from": r.effective_from,
        "effective_to": r.effective_to,
        "pricing": r.tariff.to_dict(),
        "calendar": r.calendar.to_dict() if r.calendar else None,
        "tier_year_start_month": r.tier_year_start_month,
        "basic_prices": {k: str(v) for k, v in r.basic_prices.items()},
    }


@router.get("/tariffs/compare", response=CompareOut, summary="Compare two versions field by field")
def compare(request, left: int, right: int):
    a = queries.get_version(request.user, left)
    b = queries.get_version(request.user, right)
    diffs = rules.compare(a.data(), b.data())
    return {
        "left": _version_detail(a),
        "right": _version_detail(b),
        "differences": [
            {
                "path": d.path,
                "left": d.left,
                "right": d.right,
                "change": d.change,
                "ratio": str(d.ratio) if d.ratio is not None else None,
            }
            for d in diffs
        ],
    }


@router.get("/tariffs/export", summary="The catalog as JSON (published versions; drafts=true adds drafts)")
def export_json(request, drafts: bool = False):
    tariffs = list(queries.visible_tariffs(request.user).order_by("code", "org__path"))
    return services.export_catalog(tariffs, include_drafts=drafts)


@router.get("/tariffs/export.xlsx", summary="The price table as an Excel workbook")
def export_xlsx(request, on: date | None = None):
    tariffs = list(queries.visible_tariffs(request.user).order_by("code", "org__path"))
    content = excel.price_table(tariffs, on=on or _today())
    resp = HttpResponse(
        content, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    resp["Content-Disposition"] = 'attachment; filename="tariffs.xlsx"'
    return resp


@router.get("/tariffs/versions/{int:version_id}", response=VersionDetail)
def get_version(request, version_id: int):
    return _version_detail(queries.get_version(request.user, version_id))


@router.get("/tariffs/{int:tariff_id}", response=TariffDetail)
def get_tariff(request, tariff_id: int):
    t = queries.get_tariff(request.user, tariff_id)
    on = _today()
    rows = queries.timeline(t, on=on)
    visible = queries.visible_tariffs(request.user)
    return {
        **_tariff_out(t, on),
        "versions": [_version_out(r.version, r) for r in rows],
        "overrides": [_org(o.org) for o in visible.filter(pk__in=queries.overrides_of(t).values("pk"))],
    }


@router.get("/tariffs/{int:tariff_id}/history", summary="Audit trail of the tariff and its versions")
def tariff_history(request, tariff_id: int):
    t = queries.get_tariff(request.user, tariff_id)
    return [
        {
            "at": log.at,
            "actor": log.actor_name,
            "action": log.action,
            "target": log.target_repr,
            "before": log.before,
            "after": log.after,
            "reason": log.reason,
        }
        for log in queries.history(t)
    ]


# --- write ----------------------------------------------------------------------------------------
@router.post(
    "/tariffs", response={201: TariffDetail}, summary="Create a tariff (optionally with a first version)"
)
def create_tariff(request, payload: TariffIn):
    user = request.user
    data = _body(payload)
    org_id = data.pop("org_id", None)
    org = user.org if org_id is None else Org.objects.filter(pk=org_id).first()
    if org is None:
        raise InvalidInput([FieldError("org_id", "no such org")])
    t = _call(services.create_tariff, actor=user, org=org, data=data, at=timezone.now())
    return Status(201, get_tariff(request, t.pk))


@router.patch("/tariffs/{int:tariff_id}", response=TariffOut)
def update_tariff(request, tariff_id: int, payload: TariffPatch):
    t = queries.get_tariff(request.user, tariff_id)
    t = _call(services.update_tariff, actor=request.user, tariff=t, data=_body(payload), at=timezone.now())
    return _tariff_out(t, _today())


@router.post(
    "/tariffs/{int:tariff_id}/versions",
    response={201: VersionDetail},
    summary="New draft version (copy_from = copy and edit)",
)
def create_version(request, tariff_id: int, payload: VersionIn):
    t = queries.get_tariff(request.user, tariff_id)
    data = _body(payload)
    copy_id = data.pop("copy_from", None)
    source = queries.get_version(request.user, copy_id) if copy_id else None
    v = _call(
        services.create_version, actor=request.user, tariff=t, data=data, copy_from=source, at=timezone.now()
    )
    return Status(201, _version_detail(v))


@router.put("/tariffs/versions/{int:version_id}", response=VersionDetail, summary="Edit a draft version")
def update_version(request, version_id: int, payload: VersionIn):
    v = queries.get_version(request.user, version_id)
    data = _body(payload)
    data.pop("copy_from", None)
    v = _call(services.update_version, actor=request.user, version=v, data=data, at=timezone.now())
    return _version_detail(v)


@router.post("/tariffs/versions/{int:version_id}/publish", response=VersionDetail)
def publish_version(request, version_id: int):
    v = queries.get_version(request.user, version_id)
    v = _call(services.publish_version, actor=request.user, version=v, at=timezone.now())
    return _version_detail(v)


@router.delete("/tariffs/versions/{int:version_id}", response={204: None}, summary="Discard a draft version")
def discard_version(request, version_id: int):
    v = queries.get_version(request.user, version_id)
    _call(services.discard_version, actor=request.user, version=v, at=timezone.now())
    return Status(204, None)


@router.post("/tariffs/versions/{int:version_id}/rate", summary="Try it: rate a usage with this version")
def rate_version(request, version_id: int, payload: Body[dict]):
    v = queries.get_version(request.user, version_id)
    result, _tariff = queries.try_rate(v, payload)
    return result.to_dict()


@router.post("/tariffs/import", summary="Import a catalog exported as JSON (all or nothing)")
def import_json(request, payload: Body[dict]):
    report = _call(services.import_catalog, actor=request.user, payload=payload, at=timezone.now())
    return report.as_dict()


@router.post("/tariffs/import/file", summary="Import a catalog JSON file (multipart upload)")
def import_file(request, file: File[UploadedFile]):
    import json

    try:
        payload = json.loads(file.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput([FieldError("file", f"is not a JSON file: {exc}")]) from None
    report = _call(services.import_catalog, actor=request.user, payload=payload, at=timezone.now())
    return report.as_dict()
