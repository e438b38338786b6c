"""Use cases of the tariff catalog: the only code that writes. Each one validates everything first
(every bad field with its path), writes in one transaction and records the audit trail.

Who: administrators and managers whose data scope holds the publishing org (in practice the
province's). A tariff is published by the province; a lower org may publish a tariff of the same
code (a local override) only when its province allows local overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import transaction

from mmis.common.errors import FieldError, InvalidInput, join_path
from mmis.common.inputs import MISSING, Reader
from mmis.customers.models import UsageCategory, VoltageLevel
from mmis.org import audit
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.tariffs import rules
from mmis.tariffs.models import Tariff, TariffVersion

PUBLISHER_ROLES = ("administrator", "manager")
EXPORT_FORMAT = "mmis.tariffs/1"


class NotAllowed(Exception):
    """The user's roles or data scope do not allow this change (interfaces answer 403)."""


class UnableToCreateTariff(InvalidInput):
    pass


class UnableToCreateVersion(InvalidInput):
    pass


class UnableToUpdateVersion(InvalidInput):
    pass


class UnableToPublishVersion(InvalidInput):
    pass


class UnableToDiscardVersion(InvalidInput):
    pass


class UnableToImportCatalog(InvalidInput):
    pass


def can_publish(user: User, org: Org) -> bool:
    return bool(user and user.is_authenticated and user.has_role(*PUBLISHER_ROLES)) and DataScope.for_user(
        user
    ).contains_org(org)


def _require_publisher(actor: User, org: Org) -> None:
    if not can_publish(actor, org):
        raise NotAllowed(f"only an administrator or manager of {org.name} may change its tariffs")


# --- reading inputs -------------------------------------------------------------------------------
_CODE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _read_tariff_fields(r: Reader, data: dict, base: str = "") -> dict[str, Any]:
    code = r.string(data, "code", base, max_length=30)
    if code is not None:
        code = code.strip().upper()
        if not code or not set(code) <= _CODE_CHARS:
            r.error(join_path(base, "code"), "a tariff code is letters, digits, '-' and '_'")
    name = r.string(data, "name", base, max_length=100)
    if name is not None and not name.strip():
        r.error(join_path(base, "name"), "is required")
    category = r.choice(data, "usage_category", UsageCategory.values, base)
    voltage = r.get(data, "voltage_level")
    if voltage in (MISSING, None, ""):
        voltage = ""
    else:
        voltage = r.choice(data, "voltage_level", VoltageLevel.values, base)
    description = r.string(data, "description", base, required=False, max_length=300) or ""
    return {
        "code": code,
        "name": (name or "").strip(),
        "usage_category": category,
        "voltage_level": voltage,
        "description": description,
    }


def _read_version_fields(r: Reader, data: dict, base: str = "") -> dict[str, Any]:
    effective_from = r.date(data, "effective_from", base)
    label = r.string(data, "label", base, required=False, max_length=40)
    note = r.string(data, "note", base, required=False, max_length=300) or ""
    vdata = rules.read_version_data(r, data, base)
    return {
        "effective_from": effective_from,
        "label": (label or "").strip() or (effective_from.isoformat() if effective_from else ""),
        "note": note,
        "data": vdata,
    }


def _check_org_may_publish(r: Reader, *, org: Org, code: str | None, path: str = "org") -> None:
    """A province publishes; a lower org only overrides a code published above, where allowed."""
    if org.depth == 1 or code is None:
        return
    province = org.province()
    parents = Tariff.objects.filter(code=code, org__path__in=org.ancestor_paths()[1:])
    if not parents.exists():
        r.error(
            path, f"a lower org may only override a tariff published above it; {code} is not published above"
        )
    elif not province.allows_local_override:
        r.error(path, f"{province.name} does not allow local overrides of its tariffs")


def _spans(tariff: Tariff, *, exclude: int | None = None) -> tuple[list[rules.Span], list[rules.Span]]:
    published, others = [], []
    for v in tariff.versions.all():
        if v.pk == exclude:
            continue
        span = rules.Span(v.label, v.effective_from)
        others.append(span)
        if v.is_published:
            published.append(span)
    return published, others


# --- tariffs --------------------------------------------------------------------------------------
def create_tariff(*, actor: User, org: Org, data: dict, at: datetime) -> Tariff:
    """A new tariff at `org`, optionally with its first version (`data["version"]`, a draft unless
    `data["publish"]` is true)."""
    _require_publisher(actor, org)
    r = Reader()
    d = r.obj(data, "") or {}
    fields = _read_tariff_fields(r, d)
    _check_org_may_publish(r, org=org, code=fields["code"])
    if fields["code"] and Tariff.objects.filter(org=org, code=fields["code"]).exists():
        r.error("code", f"{org.name} already publishes a tariff {fields['code']}")
    raw_version = r.get(d, "version")
    version_fields = None
    if raw_version not in (MISSING, None):
        v = r.obj(raw_version, "version")
        if v is not None:
            version_fields = _read_version_fields(r, v, "version")
    publish = r.get(d, "publish") is True
    if r.errors:
        raise UnableToCreateTariff(r.errors)
    with transaction.atomic():
        tariff = Tariff.objects.create(org=org, created_at=at, created_by=actor, **fields)
        audit.record(actor=actor, action="tariff.create", target=tariff, after=audit.snapshot(tariff), at=at)
        if version_fields is not None:
            version = _insert_version(actor=actor, tariff=tariff, fields=version_fields, based_on=None, at=at)
            if publish:
                _publish(actor=actor, version=version, at=at)
    return tariff


def update_tariff(*, actor: User, tariff: Tariff, data: dict, at: datetime) -> Tariff:
    """Name, description (code, category and voltage level stay: they are what customers point at)."""
    _require_publisher(actor, tariff.org)
    r = Reader()
    d = r.obj(data, "") or {}
    name = r.string(d, "name", required=False, max_length=100)
    description = r.string(d, "description", required=False, max_length=300)
    for key in ("code", "usage_category", "voltage_level"):
        if key in d and d[key] != getattr(tariff, key):
            r.error(key, "cannot be changed: create a new tariff")
    if name is not None and not name.strip():
        r.error("name", "is required")
    r.raise_if_errors()
    with transaction.atomic():
        t = Tariff.objects.select_for_update().get(pk=tariff.pk)
        before = audit.snapshot(t, ["name", "description"])
        if name is not None:
            t.name = name.strip()
        if description is not None:
            t.description = description
        t.save(update_fields=["name", "description"])
        b, a = audit.diff(before, audit.snapshot(t, ["name", "description"]))
        if a:
            audit.record(actor=actor, action="tariff.update", target=t, before=b, after=a, at=at)
    return t


# --- versions -------------------------------------------------------------------------------------
def _version_after(version: TariffVersion) -> dict[str, Any]:
    return {
        "label": version.label,
        "effective_from": version.effective_from,
        "state": version.state,
        "note": version.note,
        **version.data(),
    }


def _insert_version(
    *, actor: User, tariff: Tariff, fields: dict[str, Any], based_on: TariffVersion | None, at: datetime
) -> TariffVersion:
    vdata: rules.VersionData = fields["data"]
    stored = vdata.to_dict()
    version = TariffVersion.objects.create(
        tariff=tariff,
        label=fields["label"],
        effective_from=fields["effective_from"],
        state=TariffVersion.State.DRAFT,
        pricing=stored["pricing"],
        calendar=stored["calendar"],
        tier_year_start_month=stored["tier_year_start_month"],
        basic_prices=stored["basic_prices"],
        note=fields["note"],
        based_on=based_on,
        created_at=at,
        created_by=actor,
    )
    audit.record(
        actor=actor,
        action="tariff.version.create",
        target=version,
        org=tariff.org,
        after=_version_after(version),
        reason=f"copy of {based_on.label}" if based_on else "",
        at=at,
    )
    return version


def create_version(
    *, actor: User, tariff: Tariff, data: dict, at: datetime, copy_from: TariffVersion | None = None
) -> TariffVersion:
    """A new draft version. With `copy_from`, its data is the copied version's with `data` on top
    (copy-and-edit); otherwise `data` holds everything."""
    _require_publisher(actor, tariff.org)
    r = Reader()
    d = r.obj(data, "") or {}
    if copy_from is not None:
        if copy_from.tariff.code != tariff.code:
            r.error(
                "copy_from",
                f"version {copy_from.pk} belongs to tariff {copy_from.tariff.code}, not {tariff.code}",
            )
        merged = {**copy_from.data(), **{k: v for k, v in d.items() if k != "copy_from"}}
    else:
        merged = d
    fields = _read_version_fields(r, merged)
    if fields["effective_from"] is not None:
        published, others = _spans(tariff)
        why = rules.overlap_error(published=published, others=others, effective_from=fields["effective_from"])
        if why:
            r.error("effective_from", why)
    if r.errors:
        raise UnableToCreateVersion(r.errors)
    with transaction.atomic():
        Tariff.objects.select_for_update().get(pk=tariff.pk)  # one version change per tariff at a time
        published, others = _spans(tariff)
        why = rules.overlap_error(published=published, others=others, effective_from=fields["effective_from"])
        if why:
            raise UnableToCreateVersion([FieldError("effective_from", why)])
        return _insert_version(actor=actor, tariff=tariff, fields=fields, based_on=copy_from, at=at)


def update_version(*, actor: User, version: TariffVersion, data: dict, at: datetime) -> TariffVersion:
    """Edit a draft (published versions are immutable: make a new version instead)."""
    tariff = version.tariff
    _require_publisher(actor, tariff.org)
    if version.is_published:
        raise UnableToUpdateVersion(
            [
                FieldError(
                    "state", "a published version cannot be changed; create a new version (copy and edit)"
                )
            ]
        )
    r = Reader()
    d = r.obj(data, "") or {}
    merged = {
        "label": version.label,
        "effective_from": version.effective_from.isoformat(),
        "note": version.note,
        **version.data(),
        **d,
    }
    fields = _read_version_fields(r, merged)
    if fields["effective_from"] is not None:
        published, others = _spans(tariff, exclude=version.pk)
        why = rules.overlap_error(published=published, others=others, effective_from=fields["effective_from"])
        if why:
            r.error("effective_from", why)
    if r.errors:
        raise UnableToUpdateVersion(r.errors)
    with transaction.atomic():
        v = TariffVersion.objects.select_for_update().get(pk=version.pk)
        if v.is_published:
            raise UnableToUpdateVersion([FieldError("state", "a published version cannot be changed")])
        before = _version_after(v)
        stored = fields["data"].to_dict()
        v.label = fields["label"]
        v.effective_from = fields["effective_from"]
        v.note = fields["note"]
        v.pricing = stored["pricing"]
        v.calendar = stored["calendar"]
        v.tier_year_start_month = stored["tier_year_start_month"]
        v.basic_prices = stored["basic_prices"]
        v.save()
        b, a = audit.diff(audit.jsonable(before), audit.jsonable(_version_after(v)))
        audit.record(
            actor=actor, action="tariff.version.update", target=v, org=tariff.org, before=b, after=a, at=at
        )
    return v


def _publish(*, actor: User, version: TariffVersion, at: datetime) -> TariffVersion:
    published, _others = _spans(version.tariff, exclude=version.pk)
    why = rules.overlap_error(published=published, others=[], effective_from=version.effective_from)
    errors = [FieldError("effective_from", why)] if why else []
    try:
        rules.parse_version_data(version.data())
    except InvalidInput as exc:
        errors.extend(exc.errors)
    if errors:
        raise UnableToPublishVersion(errors)
    version.state = TariffVersion.State.PUBLISHED
    version.published_at = at
    version.published_by = actor
    version.save(update_fields=["state", "published_at", "published_by"])
    audit.record(
        actor=actor,
        action="tariff.version.publish",
        target=version,
        org=version.tariff.org,
        before={"state": TariffVersion.State.DRAFT},
        after={"state": version.state, "effective_from": version.effective_from},
        at=at,
    )
    return version


def publish_version(*, actor: User, version: TariffVersion, at: datetime) -> TariffVersion:
    """Draft → published. From then on the version is immutable and in force from its date."""
    _require_publisher(actor, version.tariff.org)
    with transaction.atomic():
        Tariff.objects.select_for_update().get(pk=version.tariff_id)
        v = TariffVersion.objects.select_related("tariff", "tariff__org").get(pk=version.pk)
        if v.is_published:
            raise UnableToPublishVersion([FieldError("state", "the version is already published")])
        return _publish(actor=actor, version=v, at=at)


def discard_version(*, actor: User, version: TariffVersion, at: datetime) -> None:
    """Delete a draft (a published version is history and stays)."""
    _require_publisher(actor, version.tariff.org)
    if version.is_published:
        raise UnableToDiscardVersion([FieldError("state", "a published version cannot be discarded")])
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="tariff.version.discard",
            target=version,
            org=version.tariff.org,
            before=_version_after(version),
            at=at,
        )
        TariffVersion.objects.filter(pk=version.pk, state=TariffVersion.State.DRAFT).delete()


# --- export / import ------------------------------------------------------------------------------
def export_catalog(tariffs: list[Tariff], *, include_drafts: bool = False) -> dict[str, Any]:
    """The catalog as JSON: tariffs with their org code and every (published) version."""
    out = []
    for t in tariffs:
        versions = t.versions.order_by("effective_from")
        if not include_drafts:
            versions = versions.filter(state=TariffVersion.State.PUBLISHED)
        out.append(
            {
                "org": t.org.code,
                "code": t.code,
                "name": t.name,
                "usage_category": t.usage_category,
                "voltage_level": t.voltage_level,
                "description": t.description,
                "versions": [
                    {
                        "label": v.label,
                        "effective_from": v.effective_from.isoformat(),
                        "state": v.state,
                        "note": v.note,
                        **v.data(),
                    }
                    for v in versions
                ],
            }
        )
    return {"format": EXPORT_FORMAT, "tariffs": out}


@dataclass
class ImportReport:
    tariffs_created: int = 0
    versions_created: int = 0
    versions_unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "tariffs_created": self.tariffs_created,
            "versions_created": self.versions_created,
            "versions_unchanged": self.versions_unchanged,
        }


def import_catalog(*, actor: User, payload: Any, at: datetime) -> ImportReport:
    """Load an exported catalog: new tariffs and new versions are added (with the state they carry),
    a version already there with the same data is left alone, and a different version on the same
    date is an error. All or nothing: the whole file is checked before anything is written."""
    r = Reader()
    root = r.obj(payload, "")
    if root is not None and root.get("format") != EXPORT_FORMAT:
        r.error("format", f"must be {EXPORT_FORMAT!r}")
    items = r.get(root, "tariffs")
    if root is not None and not isinstance(items, list):
        r.error("tariffs", "must be a list")
        items = []
    plan: list[tuple[Org, dict, Tariff | None, list[tuple[dict, bool]]]] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(items or []):
        base = f"tariffs[{i}]"
        t = r.obj(raw, base)
        if t is None:
            continue
        org_code = r.string(t, "org", base, max_length=20)
        org = Org.objects.filter(code=org_code).first() if org_code else None
        if org_code and org is None:
            r.error(f"{base}.org", f"no org with code {org_code}")
        fields = _read_tariff_fields(r, t, base)
        if org is None or fields["code"] is None:
            continue
        if (org.code, fields["code"]) in seen:
            r.error(f"{base}.code", f"tariff {fields['code']} of {org.code} is listed twice")
            continue
        seen.add((org.code, fields["code"]))
        if not can_publish(actor, org):
            r.error(f"{base}.org", f"you may not change the tariffs of {org.name}")
            continue
        existing = Tariff.objects.filter(org=org, code=fields["code"]).first()
        if existing is None:
            _check_org_may_publish(r, org=org, code=fields["code"], path=f"{base}.org")
        vlist = r.get(t, "versions")
        if not isinstance(vlist, list):
            r.error(f"{base}.versions", "must be a list")
            continue
        planned: list[tuple[dict, bool]] = []
        dates: set[date] = set()
        old = {v.effective_from: v for v in existing.versions.all()} if existing else {}
        latest_published = max((d for d, v in old.items() if v.is_published), default=None)
        for j, vraw in enumerate(vlist):
            vbase = f"{base}.versions[{j}]"
            v = r.obj(vraw, vbase)
            if v is None:
                continue
            vf = _read_version_fields(r, v, vbase)
            state = r.choice(
                v, "state", TariffVersion.State.values, vbase, required=False, default="published"
            )
            start = vf["effective_from"]
            if start is None or vf["data"] is None:
                continue
            if start in dates:
                r.error(f"{vbase}.effective_from", f"two versions start on {start.isoformat()}")
                continue
            dates.add(start)
            if start in old:
                same = old[start].data() == vf["data"].to_dict() and old[start].state == state
                if not same:
                    r.error(
                        f"{vbase}.effective_from",
                        f"overlaps version {old[start].label} which also starts on {start.isoformat()} "
                        "with other data",
                    )
                planned.append((vf, False))
                continue
            if latest_published is not None and start <= latest_published:
                r.error(
                    f"{vbase}.effective_from",
                    f"overlaps published version in force from {latest_published.isoformat()}: "
                    "a new version must start after it",
                )
                continue
            planned.append(({**vf, "state": state}, True))
        plan.append((org, fields, existing, planned))
    if r.errors:
        raise UnableToImportCatalog(r.errors)
    report = ImportReport()
    with transaction.atomic():
        for org, fields, existing, planned in plan:
            tariff = existing
            if tariff is None:
                tariff = Tariff.objects.create(org=org, created_at=at, created_by=actor, **fields)
                audit.record(
                    actor=actor,
                    action="tariff.create",
                    target=tariff,
                    after=audit.snapshot(tariff),
                    reason="import",
                    at=at,
                )
                report.tariffs_created += 1
            for vf, new in sorted(planned, key=lambda p: p[0]["effective_from"]):
                if not new:
                    report.versions_unchanged += 1
                    continue
                version = _insert_version(actor=actor, tariff=tariff, fields=vf, based_on=None, at=at)
                if vf["state"] == TariffVersion.State.PUBLISHED:
                    _publish(actor=actor, version=version, at=at)
                report.versions_created += 1
        audit.record(
            actor=actor,
            action="tariff.import",
            target_type="tariffs.catalog",
            target_id="import",
            org=actor.org,
            after=report.as_dict(),
            at=at,
        )
    return report
