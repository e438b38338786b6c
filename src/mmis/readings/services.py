"""Use cases of meter reading: books and plans, readings (manual, file, AMI, estimate), validation
(VEE), the exceptions queue and remote commands. Each function is one transaction, validates
everything first, writes the audit log and sends its signals after commit.
"""

from __future__ import annotations

import logging
import uuid
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from mmis.assets.models import AssetState, Meter
from mmis.common.errors import FieldError, InvalidInput
from mmis.customers.models import MeteringPoint
from mmis.org import audit
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.readings import queries, rules
from mmis.readings.models import (
    CHECK_RESULTS,
    REGISTERS,
    TOU_REGISTERS,
    BookMembership,
    DailyFrozenReading,
    MeterChange,
    MeterReading,
    ReadingBook,
    ReadingException,
    ReadingMethod,
    ReadingPlan,
    RemoteCommand,
    Terminal,
    TerminalMeter,
    ValidationSettings,
)
from mmis.readings.signals import reading_validated, remote_command_finished, site_check_requested
from mmis.workflow.models import ProcessInstance

log = logging.getLogger(__name__)

AUDITOR_ROLES = ("billing_auditor", "manager", "administrator")
BOOK_ADMIN_ROLES = ("manager", "administrator", "billing_auditor")
READER_ROLES = ("meter_reader", "billing_auditor", "manager", "administrator")
COMMAND_ROLES = ("manager", "administrator", "billing_auditor", "cashier")
VALUE_FIELDS = (*REGISTERS, "reactive", "max_demand")
HISTORY_PERIODS = 3


class UnableToManageBook(InvalidInput):
    pass


class UnableToRecordReading(InvalidInput):
    pass


class UnableToDecide(InvalidInput):
    pass


class UnableToEstimate(InvalidInput):
    pass


class UnableToSendCommand(InvalidInput):
    pass


# --- thresholds ----------------------------------------------------------------------------------
def _setting_value(s: ValidationSettings, name: str) -> Any:
    v = getattr(s, name)
    if name == "seasonal_categories" and v is not None:
        return tuple(c for c in v.split(",") if c)
    return v


def thresholds_for(org: Org) -> rules.Thresholds:
    """The VEE thresholds in force at `org`: each field from the nearest node that sets it."""
    rows = {
        s.org.path: s
        for s in ValidationSettings.objects.filter(org__path__in=org.ancestor_paths()).select_related("org")
    }
    out = rules.DEFAULT_THRESHOLDS
    for path in reversed(org.ancestor_paths()):  # root first, nearest last wins
        s = rows.get(path)
        if s is not None:
            out = out.merged({name: _setting_value(s, name) for name in rules.Thresholds.names()})
    return out


INT_SETTINGS = {"zero_use_periods", "max_consecutive_estimates", "missing_grace_days", "exception_days"}
# who sets VEE thresholds (as billing audit rules: billing auditors and administrators)
SETTINGS_ROLES = ("billing_auditor", "administrator")
SETTING_MAX_INT = 1000
SETTING_MAX_DECIMAL = Decimal(10000)  # DecimalField(6, 2)


def set_thresholds(
    *, actor: User | None, org: Org, values: Mapping[str, Any], at: datetime
) -> ValidationSettings:
    """Set VEE thresholds at an org (a blank value inherits from above). Besides the numbers:
    `seasonal_categories` (usage categories, a list or comma-separated; [] = none) and `auditor`
    (the default owner of the subtree's exceptions: a billing auditor, or None)."""
    from mmis.customers.models import UsageCategory

    errors = []
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name == "auditor":
            if value is not None and not (isinstance(value, User) and value.has_role("billing_auditor")):
                errors.append(FieldError(name, "must be a user with the billing auditor role"))
            elif value is not None and not (value.is_active and DataScope.for_user(value).contains_org(org)):
                errors.append(FieldError(name, f"{value} is not active or cannot see {org.name}"))
            else:
                clean[name] = value
            continue
        if name not in rules.Thresholds.names():
            errors.append(FieldError(name, "is not a validation threshold"))
            continue
        if name == "seasonal_categories":
            if value is None:
                clean[name] = None
                continue
            cats = [c.strip() for c in (value.split(",") if isinstance(value, str) else value) if c.strip()]
            bad = [c for c in cats if c not in UsageCategory.values]
            if bad:
                errors.append(FieldError(name, f"unknown usage categories {bad}"))
            else:
                clean[name] = ",".join(cats)
            continue
        if value in (None, ""):
            clean[name] = None
            continue
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            errors.append(FieldError(name, "must be a number"))
            continue
        if not d.is_finite():
            errors.append(FieldError(name, "must be a number"))
        elif name == "missing_grace_days" and d < 0:
            errors.append(FieldError(name, "must be 0 or more"))
        elif d <= 0 and name != "missing_grace_days":
            errors.append(FieldError(name, "must be greater than 0"))
        elif name in INT_SETTINGS and d != d.to_integral_value():
            errors.append(FieldError(name, "must be a whole number"))
        elif name in INT_SETTINGS and d > SETTING_MAX_INT:
            errors.append(FieldError(name, f"must be at most {SETTING_MAX_INT}"))
        elif name not in INT_SETTINGS and d != d.quantize(Decimal("0.01")):
            errors.append(FieldError(name, "at most 2 decimal places"))
        elif name not in INT_SETTINGS and d >= SETTING_MAX_DECIMAL:
            errors.append(FieldError(name, f"must be less than {SETTING_MAX_DECIMAL}"))
        else:
            clean[name] = int(d) if name in INT_SETTINGS else d
    if actor is not None:
        if not (actor.is_superuser or actor.has_role(*SETTINGS_ROLES)):
            errors.append(FieldError("actor", "only a billing auditor or administrator sets VEE thresholds"))
        elif not DataScope.for_user(actor).contains_org(org):
            errors.append(FieldError("org", f"{org.name} is outside your data scope"))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        row, _ = ValidationSettings.objects.select_for_update().get_or_create(org=org)
        before = audit.snapshot(row)
        for k, v in clean.items():
            setattr(row, k, v)
        row.updated_at = at
        row.save()
        b, a = audit.diff(before, audit.snapshot(row))
        audit.record(actor=actor, action="readings.thresholds", target=row, org=org, before=b, after=a, at=at)
    return row


# --- owners and deadlines of exceptions ----------------------------------------------------------
def default_auditor(org: Org) -> int | None:
    """The default owner of an org's reading exceptions: the auditor set in the VEE settings of
    the org or the nearest org above it, else the first billing auditor of the nearest org up the
    tree that has one (user id, or None)."""
    paths = org.ancestor_paths()
    set_here = dict(
        ValidationSettings.objects.filter(org__path__in=paths, auditor__isnull=False).values_list(
            "org__path", "auditor_id"
        )
    )
    for path in paths:
        if path in set_here:
            return set_here[path]
    users = (
        User.objects.filter(is_active=True, roles__code="billing_auditor", org__path__in=paths)
        .values_list("org__path", "pk")
        .order_by("pk")
    )
    by_path: dict[str, int] = {}
    for path, pk in users:
        by_path.setdefault(path, pk)
    for path in paths:
        if path in by_path:
            return by_path[path]
    return None


def assign_owners(exceptions: Sequence[ReadingException], *, at: datetime) -> None:
    """Give new (unsaved) exceptions an owner and a deadline: the owner is the auditor of the
    point's reading book, else the org's default auditor (`default_auditor`); the deadline is
    `exception_days` working days (default 3) after the day of `at`, counted on the province's
    working-day calendar (the workflow engine's, with its holidays and swapped working days)."""
    todo = [e for e in exceptions if e.owner_id is None or e.due_on is None]
    if not todo:
        return
    from mmis.common.calendar import add_working_days
    from mmis.workflow.services import calendar_for

    book_auditor = dict(
        BookMembership.objects.filter(
            metering_point_id__in={e.metering_point_id for e in todo}, book__auditor__isnull=False
        ).values_list("metering_point_id", "book__auditor_id")
    )
    orgs = {o.pk: o for o in Org.objects.filter(pk__in={e.org_id for e in todo})}
    day = timezone.localtime(at).date() if timezone.is_aware(at) else at.date()
    per_org: dict[int, tuple[int | None, date]] = {}
    calendars: dict[str, Any] = {}
    for e in todo:
        if e.org_id not in per_org:
            org = orgs[e.org_id]
            province = org.path[: Org.steplen]
            if province not in calendars:
                calendars[province] = calendar_for(org)
            days = thresholds_for(org).exception_days
            per_org[e.org_id] = (
                default_auditor(org),
                add_working_days(day, days, calendar=calendars[province]),
            )
        owner, due = per_org[e.org_id]
        if e.owner_id is None:
            e.owner_id = book_auditor.get(e.metering_point_id) or owner
        if e.due_on is None:
            e.due_on = due


# --- books and plans -----------------------------------------------------------------------------
def _check_book_fields(
    errors: list[FieldError],
    *,
    org: Org | None,
    reading_day: Any,
    reader: User | None,
    method: str,
    auditor: User | None = None,
) -> None:
    if auditor is not None and not auditor.has_role("billing_auditor"):
        errors.append(FieldError("auditor", f"{auditor} is not a billing auditor"))
    if org is not None and org.level != Org.Level.STATION:
        errors.append(FieldError("org", "a reading book belongs to a station (供电所)"))
    if not isinstance(reading_day, int) or isinstance(reading_day, bool) or not 1 <= reading_day <= 28:
        errors.append(FieldError("reading_day", "must be a day of month from 1 to 28"))
    if method not in ReadingMethod.values:
        errors.append(FieldError("method", f"must be one of {', '.join(ReadingMethod.values)}"))
    if reader is not None and not reader.has_role("meter_reader"):
        errors.append(FieldError("reader", f"{reader} is not a meter reader"))


def create_book(
    *,
    actor: User | None,
    org: Org,
    code: str,
    name: str,
    reading_day: int,
    reader: User | None = None,
    method: str = ReadingMethod.MANUAL,
    at: datetime,
    auditor: User | None = None,
) -> ReadingBook:
    errors: list[FieldError] = []
    if not code or len(code) > 20:
        errors.append(FieldError("code", "is required, at most 20 characters"))
    elif ReadingBook.objects.filter(code=code).exists():
        errors.append(FieldError("code", f"reading book {code} already exists"))
    if not name or len(name) > 100:
        errors.append(FieldError("name", "is required, at most 100 characters"))
    _check_book_fields(
        errors, org=org, reading_day=reading_day, reader=reader, method=method, auditor=auditor
    )
    if errors:
        raise UnableToManageBook(errors)
    with transaction.atomic():
        book = ReadingBook.objects.create(
            code=code,
            name=name,
            org=org,
            reading_day=reading_day,
            reader=reader,
            method=method,
            auditor=auditor,
        )
        audit.record(
            actor=actor, action="reading_book.create", target=book, after=audit.snapshot(book), at=at
        )
    return book


def update_book(
    *, actor: User | None, book: ReadingBook, changes: Mapping[str, Any], at: datetime
) -> ReadingBook:
    allowed = {"name", "reading_day", "reader", "method", "active", "auditor"}
    errors = [FieldError(k, "cannot be changed") for k in changes if k not in allowed]
    merged = {
        "reading_day": changes.get("reading_day", book.reading_day),
        "reader": changes.get("reader", book.reader),
        "method": changes.get("method", book.method),
        "auditor": changes.get("auditor", book.auditor),
    }
    _check_book_fields(errors, org=None, **merged)
    if "name" in changes and not (changes["name"] and len(changes["name"]) <= 100):
        errors.append(FieldError("name", "is required, at most 100 characters"))
    if errors:
        raise UnableToManageBook(errors)
    with transaction.atomic():
        book = ReadingBook.objects.select_for_update().get(pk=book.pk)
        before = audit.snapshot(book)
        for k, v in changes.items():
            setattr(book, k, v)
        book.save()
        b, a = audit.diff(before, audit.snapshot(book))
        audit.record(actor=actor, action="reading_book.update", target=book, before=b, after=a, at=at)
    return book


def assign_points(
    *, actor: User | None, book: ReadingBook, points: Sequence[MeteringPoint], at: datetime
) -> int:
    """Append metering points to a book in the given order (moving them from any other book).
    The customer file's `reading_book_code` placeholder follows."""
    errors = []
    book_org_path = book.org.path
    point_orgs = dict(Org.objects.filter(pk__in={p.org_id for p in points}).values_list("pk", "path"))
    for i, p in enumerate(points):
        if not point_orgs[p.org_id].startswith(book_org_path):
            errors.append(FieldError(f"points[{i}]", f"{p.point_no} is not supplied by {book.org.name}"))
        if p.status == MeteringPoint.Status.CLOSED:
            errors.append(FieldError(f"points[{i}]", f"{p.point_no} is closed"))
    if errors:
        raise UnableToManageBook(errors)
    ids = [p.pk for p in points]
    with transaction.atomic():
        book = ReadingBook.objects.select_for_update().get(pk=book.pk)
        moved = list(
            BookMembership.objects.filter(metering_point_id__in=ids)
            .exclude(book=book)
            .values_list("metering_point_id", "book__code")
        )
        BookMembership.objects.filter(metering_point_id__in=ids).delete()
        top = BookMembership.objects.filter(book=book).aggregate(m=Max("sequence"))["m"] or 0
        BookMembership.objects.bulk_create(
            [
                BookMembership(
                    book=book, metering_point_id=pid, sequence=top + 10 * (i + 1), assigned_on=at.date()
                )
                for i, pid in enumerate(ids)
            ],
            batch_size=2000,
        )
        MeteringPoint.objects.filter(pk__in=ids).update(reading_book_code=book.code)
        audit.record(
            actor=actor,
            action="reading_book.assign",
            target=book,
            after={"points": [p.point_no for p in points][:200], "count": len(ids)},
            before={"moved_from": sorted({code for _, code in moved})} if moved else None,
            at=at,
        )
    return len(ids)


def reorder_points(*, actor: User | None, book: ReadingBook, point_ids: Sequence[int], at: datetime) -> None:
    """Set the reading order of a book: `point_ids` first, in that order, the others after."""
    with transaction.atomic():
        members = {
            m.metering_point_id: m for m in BookMembership.objects.select_for_update().filter(book=book)
        }
        unknown = [pid for pid in point_ids if pid not in members]
        if unknown:
            raise UnableToManageBook([FieldError("point_ids", f"not in book {book.code}: {unknown[:10]}")])
        order = list(point_ids) + [
            pid for pid in sorted(members, key=lambda p: members[p].sequence) if pid not in point_ids
        ]
        for i, pid in enumerate(order):
            members[pid].sequence = 10 * (i + 1)
        BookMembership.objects.bulk_update(members.values(), ["sequence"], batch_size=2000)
        audit.record(
            actor=actor,
            action="reading_book.reorder",
            target=book,
            after={"first": list(point_ids)[:50]},
            at=at,
        )


def planned_date(book: ReadingBook, month: date) -> date:
    return month.replace(day=book.reading_day)


def generate_plans(
    *, actor: User | None, month: date, books: Iterable[ReadingBook], at: datetime
) -> list[ReadingPlan]:
    """One plan per active book for the month (idempotent: existing plans are kept, counts refreshed)."""
    month = month.replace(day=1)
    books = [b for b in books if b.active]
    counts = dict(
        BookMembership.objects.filter(book__in=books)
        .values("book")
        .annotate(n=Count("pk"))
        .values_list("book", "n")
    )
    out = []
    with transaction.atomic():
        existing = {p.book_id: p for p in ReadingPlan.objects.filter(book__in=books, month=month)}
        new = []
        for b in books:
            p = existing.get(b.pk)
            if p is None:
                new.append(
                    ReadingPlan(
                        book=b,
                        org_id=b.org_id,
                        month=month,
                        planned_date=planned_date(b, month),
                        reader_id=b.reader_id,
                        point_count=counts.get(b.pk, 0),
                        created_at=at,
                    )
                )
            else:
                p.point_count = counts.get(b.pk, 0)
                out.append(p)
        ReadingPlan.objects.bulk_create(new)
        if out:
            ReadingPlan.objects.bulk_update(out, ["point_count"])
        out.extend(new)
        audit.record(
            actor=actor,
            action="reading_plan.generate",
            target_type="readings.readingplan",
            target_id=month.isoformat(),
            after={"month": month.isoformat(), "new": len(new), "books": len(books)},
            at=at,
        )
    return out


# --- recording readings --------------------------------------------------------------------------
def parse_values(
    data: Mapping[str, Any], *, base: str = ""
) -> tuple[dict[str, Decimal | None], list[FieldError]]:
    """Register values from text or Decimal; negative or non-numeric values are errors."""
    out: dict[str, Decimal | None] = {}
    errors = []
    for name in VALUE_FIELDS:
        raw = data.get(name)
        path = f"{base}{name}"
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            out[name] = None
            continue
        if isinstance(raw, (float, bool)):
            errors.append(FieldError(path, "must be a decimal written as text"))
            continue
        try:
            d = Decimal(str(raw).strip())
        except InvalidOperation:
            errors.append(FieldError(path, f"{raw!r} is not a number"))
            continue
        if not d.is_finite():
            errors.append(FieldError(path, f"{raw!r} is not a number"))
        elif d < 0:
            errors.append(FieldError(path, "must not be negative"))
        elif d.as_tuple().exponent < -4:  # type: ignore[operator]
            errors.append(FieldError(path, "has more than 4 decimals"))
        else:
            out[name] = d
    return out, errors


def current_meter(point_id: int) -> Meter | None:
    return (
        Meter.objects.filter(metering_point_id=point_id, state=AssetState.INSTALLED).order_by("-pk").first()
    )


def _check_values(
    errors: list[FieldError],
    values: Mapping[str, Decimal | None],
    meter: Meter | None,
    point: MeteringPoint,
    base: str = "",
) -> None:
    if values.get("total") is None:
        errors.append(FieldError(f"{base}total", "is required"))
    digits = meter.register_digits if meter else None
    if digits:
        limit = Decimal(10) ** digits
        for name in (*REGISTERS, "reactive"):
            v = values.get(name)
            if v is not None and v >= limit:
                errors.append(
                    FieldError(f"{base}{name}", f"has more than the register's {digits} integer digits")
                )


@dataclass
class _Save:
    point: MeteringPoint
    meter: Meter | None
    reading_date: date
    values: dict[str, Decimal | None]
    source: str
    fault_flags: list[str]
    note: str


def record_reading(
    *,
    actor: User | None,
    point: MeteringPoint,
    reading_date: date,
    values: Mapping[str, Any],
    source: str = MeterReading.Source.MANUAL,
    at: datetime,
    fault_flags: Sequence[str] = (),
    note: str = "",
    photo: Any = None,
) -> MeterReading:
    """Record one register reading and validate it. A point read again on the same date replaces
    a reading that is not yet billable (exception, pending, estimate); a billable actual reading
    cannot be overwritten (correct it through the exceptions queue)."""
    parsed, errors = parse_values(values)
    meter = current_meter(point.pk)
    _check_values(errors, parsed, meter, point)
    bad_flags = [f for f in fault_flags if f not in rules.FAULT_FLAGS]
    if bad_flags:
        errors.append(FieldError("fault_flags", f"unknown flags {bad_flags}"))
    if source not in MeterReading.Source.values:
        errors.append(FieldError("source", "unknown source"))
    if errors:
        raise UnableToRecordReading(errors)
    reading = save_readings(
        actor=actor,
        items=[_Save(point, meter, reading_date, parsed, source, list(fault_flags), note)],
        at=at,
    )[0]
    if photo is not None:
        reading.photo.save(f"{point.point_no}-{reading_date:%Y%m%d}.jpg", photo, save=True)
    return reading


def mark_not_read(
    *, actor: User | None, point: MeteringPoint, reading_date: date, reason: str, at: datetime, note: str = ""
) -> ReadingException:
    """The reader could not read the point (no access, meter fault): an exception for the
    auditor, who may estimate the reading or send a site check."""
    if reason not in ("no_access", "meter_fault"):
        raise UnableToRecordReading([FieldError("reason", "must be no_access or meter_fault")])
    with transaction.atomic():
        exc = ReadingException.objects.filter(
            metering_point=point,
            reading_date=reading_date,
            rule=reason,
            reading=None,
            state=ReadingException.State.OPEN,
        ).first()
        if exc is None:
            exc = ReadingException(
                metering_point=point,
                reading_date=reading_date,
                rule=reason,
                org_id=point.org_id,
                detail=(f"{rules.FAULT_FLAGS[reason]}: {note}" if note else rules.FAULT_FLAGS[reason])[:300],
                created_at=at,
            )
            assign_owners([exc], at=at)
            exc.save()
            audit.record(actor=actor, action=f"reading.{reason}", target=exc, reason=note, at=at)
    return exc


def record_readings_bulk(
    *,
    actor: User | None,
    rows: Sequence[Mapping[str, Any]],
    at: datetime,
    source: str = MeterReading.Source.MANUAL,
) -> tuple[list[MeterReading], list[FieldError]]:
    """Bulk entry: rows of {point (MeteringPoint), reading_date, values, fault_flags?, note?}.
    Good rows are stored and validated; bad rows come back as errors with `[i].field` paths."""
    errors: list[FieldError] = []
    items = []
    meters = {
        m.metering_point_id: m
        for m in Meter.objects.filter(
            metering_point_id__in=[r["point"].pk for r in rows], state=AssetState.INSTALLED
        )
    }
    for i, r in enumerate(rows):
        parsed, errs = parse_values(r.get("values", {}), base=f"[{i}].")
        point = r["point"]
        meter = meters.get(point.pk)
        _check_values(errs, parsed, meter, point, base=f"[{i}].")
        if errs:
            errors.extend(errs)
            continue
        items.append(
            _Save(
                point,
                meter,
                r["reading_date"],
                parsed,
                source,
                list(r.get("fault_flags", [])),
                r.get("note", ""),
            )
        )
    saved = save_readings(actor=actor, items=items, at=at) if items else []
    return saved, errors


def save_readings(*, actor: User | None, items: Sequence[_Save], at: datetime) -> list[MeterReading]:
    """Store readings (replacing non-billable ones of the same point and date) and validate them."""
    keys = {(it.point.pk, it.reading_date) for it in items}
    errors = []
    multipliers = dict(
        MeteringPoint.objects.filter(pk__in={k[0] for k in keys}).values_list("pk", "multiplier")
    )
    with transaction.atomic():
        existing = {
            (r.metering_point_id, r.reading_date): r
            for r in MeterReading.objects.select_for_update().filter(
                metering_point_id__in={k[0] for k in keys}, reading_date__in={k[1] for k in keys}
            )
        }
        out = []
        for i, it in enumerate(items):
            r = existing.get((it.point.pk, it.reading_date))
            if (
                r is not None
                and r.status in (MeterReading.Status.VALID, MeterReading.Status.ACCEPTED)
                and r.source != MeterReading.Source.ESTIMATE
            ):
                errors.append(
                    FieldError(
                        f"[{i}].reading_date" if len(items) > 1 else "reading_date",
                        f"{it.point.point_no} already has a billable reading on {it.reading_date}",
                    )
                )
                continue
            before = audit.snapshot(r, [*list(VALUE_FIELDS), "status", "source"]) if r else None
            if r is None:
                r = MeterReading(
                    metering_point=it.point, reading_date=it.reading_date, org_id=it.point.org_id
                )
            r.meter = it.meter
            r.multiplier = multipliers.get(it.point.pk)
            for name in VALUE_FIELDS:
                setattr(r, name, it.values.get(name))
            r.source = it.source
            r.status = MeterReading.Status.PENDING_VALIDATION
            r.fault_flags = it.fault_flags
            r.note = it.note
            r.entered_by = actor if actor is not None and actor.pk else None
            r.entered_at = at
            r.save()
            if before is not None:
                ReadingException.objects.filter(reading=r, state=ReadingException.State.OPEN).update(
                    state=ReadingException.State.CLOSED,
                    decision=ReadingException.Decision.REREAD,
                    decision_note="replaced by a new reading",
                    decided_at=at,
                )
            month = it.reading_date.replace(day=1)
            ReadingException.objects.filter(
                metering_point_id=it.point.pk,
                reading__isnull=True,
                state=ReadingException.State.OPEN,
                reading_date__gte=month - timedelta(days=1),
                reading_date__lt=month + timedelta(days=40),
            ).update(
                state=ReadingException.State.CLOSED,
                decision=ReadingException.Decision.READ,
                decision_note=f"read on {it.reading_date}",
                decided_at=at,
            )
            audit.record(
                actor=actor,
                action="reading.record" if before is None else "reading.replace",
                target=r,
                before=before,
                after=audit.snapshot(r, [*list(VALUE_FIELDS), "status", "source", "reading_date"]),
                at=at,
            )
            out.append(r)
        if errors:
            raise UnableToRecordReading(errors)
        validate_readings(reading_ids=[r.pk for r in out], at=at)
    for r in out:
        r.refresh_from_db()
    return out


# --- validation (VEE) ----------------------------------------------------------------------------
@dataclass
class _PointCtx:
    multiplier: Decimal
    tou: bool
    active: bool
    capacity: Decimal | None
    org_id: int
    category: str = ""
    customer_id: int | None = None


def _history_for(point_ids: Iterable[int], before: date | None = None) -> dict[int, list[MeterReading]]:
    """Billable readings of the points, oldest first (the previous ones open each period)."""
    qs = MeterReading.objects.filter(metering_point_id__in=list(point_ids), status__in=MeterReading.BILLABLE)
    if before is not None:
        qs = qs.filter(reading_date__lt=before)
    out: dict[int, list[MeterReading]] = defaultdict(list)
    for r in qs.order_by("metering_point_id", "reading_date").only(
        "pk", "metering_point_id", "meter_id", "reading_date", "status", "source", "multiplier", *VALUE_FIELDS
    ):
        out[r.metering_point_id].append(r)
    return out


def _pairs(prior: Sequence[MeterReading]) -> list[tuple[MeterReading, MeterReading]]:
    """The last HISTORY_PERIODS (start, end) pairs of consecutive billable readings."""
    tail = list(prior[-(HISTORY_PERIODS + 1) :])
    return list(pairwise(tail))


def _regs(r: MeterReading) -> dict[str, Decimal | None]:
    return {n: getattr(r, n) for n in (*REGISTERS, "reactive")}


@dataclass
class _Period:
    """How a period between two readings is metered: its segments (None when they cannot be
    built: a meter replaced with no recorded change) and the changes inside it."""

    segs: list[rules.Segment] | None
    changes: list[rules.MeteringChange]
    meter_unexplained: bool = False


def _period(
    prev: MeterReading,
    cur: MeterReading,
    *,
    multiplier: Decimal,
    digits: Mapping[int, int | None],
    changes: Sequence[rules.MeteringChange],
) -> _Period:
    """`multiplier`: the point's (used when the readings do not carry theirs)."""
    inside = rules.changes_in_period(
        changes,
        start_date=prev.reading_date,
        end_date=cur.reading_date,
        start_meter=prev.meter_id,
        end_meter=cur.meter_id,
    )
    replaced_to = [c.new_meter for c in inside if c.meter_replaced]
    if (
        prev.meter_id is not None
        and cur.meter_id is not None
        and prev.meter_id != cur.meter_id
        and cur.meter_id not in replaced_to
    ):
        return _Period(None, inside, meter_unexplained=True)
    start_mult = inside[0].old_multiplier if inside else (cur.multiplier or multiplier)
    d0 = digits.get(prev.meter_id) if prev.meter_id else digits.get(cur.meter_id) if cur.meter_id else None
    try:
        segs = rules.segments(
            start=_regs(prev),
            end=_regs(cur),
            start_date=prev.reading_date,
            end_date=cur.reading_date,
            multiplier=start_mult,
            register_digits=d0,
            changes=inside,
            meter=prev.meter_id,
        )
    except InvalidInput:
        return _Period(None, inside, meter_unexplained=True)
    return _Period(segs, inside)


def _pair_kwh(p: _Period) -> Decimal | None:
    if p.segs is None:
        return None
    try:
        e = rules.period_energy(p.segs, "total")
    except InvalidInput:
        return None
    return e.kwh if e is not None else None


def _last_year(prior: Sequence[MeterReading], on: date) -> tuple[MeterReading, MeterReading] | None:
    """The billed period of the same month last year: the one whose end reading falls in it."""
    for a, b in pairwise(prior):
        if b.reading_date.year == on.year - 1 and b.reading_date.month == on.month:
            return a, b
    return None


def _meter_change_order(meter_asset_no: str) -> ProcessInstance | None:
    """The work order that installed a meter, by the asset number its form recorded (the 业扩 and
    变更 processes record `meter_asset_no`)."""
    return ProcessInstance.objects.filter(data__meter_asset_no=meter_asset_no).order_by("-started_at").first()


def _unexplained_meter_finding(
    prev: MeterReading, cur: MeterReading, names: Mapping[int, str]
) -> rules.Finding:
    old, new = names.get(prev.meter_id, "—"), names.get(cur.meter_id, "—")
    order = _meter_change_order(new) if new != "—" else None
    if order is None:
        why = "无换表工单"
    elif order.state != ProcessInstance.State.COMPLETED:
        why = f"工单 {order.number} 未归档"
    else:
        why = f"工单 {order.number} 未记录拆表/装表示数, 补录后重新审核"
    return rules.Finding("file_change", f"档案变更未闭环: 电能表 {old} → {new} {why}"[:300])


def validate_readings(
    *, reading_ids: Sequence[int], at: datetime, closed_orders: Collection[int] = ()
) -> dict[str, int]:
    """Run the VEE rules over pending readings (set-based loading, in date order per point).

    Valid readings become `valid`; failures become `exception` with one ReadingException per
    failed rule, each with its owner and deadline. `reading_validated` is sent after commit for
    every reading that became billable. `closed_orders`: work orders (ids) that count as archived
    although their archive step is still completing (the archive effect revalidates in it).
    """
    counts = {"valid": 0, "exception": 0}
    if not reading_ids:
        return counts
    with transaction.atomic():
        pending = list(
            MeterReading.objects.filter(
                pk__in=list(reading_ids), status=MeterReading.Status.PENDING_VALIDATION
            ).order_by("metering_point_id", "reading_date")
        )
        if not pending:
            return counts
        point_ids = {r.metering_point_id for r in pending}
        points = {
            p["pk"]: _PointCtx(
                p["multiplier"],
                p["tou"],
                p["status"] == MeteringPoint.Status.ACTIVE,
                p["contract_capacity_kva"],
                p["org_id"],
                p["usage_category"],
                p["customer_id"],
            )
            for p in MeteringPoint.objects.filter(pk__in=point_ids).values(
                "pk",
                "multiplier",
                "tou",
                "status",
                "contract_capacity_kva",
                "org_id",
                "usage_category",
                "customer_id",
            )
        }
        history = _history_for(point_ids, before=max(r.reading_date for r in pending))
        meter_ids = {r.meter_id for r in pending if r.meter_id} | {
            h.meter_id for rows in history.values() for h in rows if h.meter_id
        }
        meters = {
            m["pk"]: m
            for m in Meter.objects.filter(pk__in=meter_ids).values(
                "pk", "register_digits", "register_decimals", "asset_no"
            )
        }
        digits = {pk: m["register_digits"] for pk, m in meters.items()}
        names = {pk: m["asset_no"] for pk, m in meters.items()}
        changes = queries.metering_changes(point_ids, closed_orders=closed_orders)
        # tariff changes since the earliest start of a period checked here (the previous billable
        # reading, or a pending one of the batch)
        starts = [
            rows[i - 1].reading_date
            for r in pending
            if (rows := history.get(r.metering_point_id))
            and (i := bisect_left([h.reading_date for h in rows], r.reading_date)) > 0
        ]
        since = min([*starts, *(r.reading_date for r in pending)])
        tariffs = queries.tariff_changes(point_ids, since=since, closed_orders=closed_orders)
        thresholds: dict[int, rules.Thresholds] = {}
        orgs = {o.pk: o for o in Org.objects.filter(pk__in={p.org_id for p in points.values()})}
        zero_runs = _zero_runs(point_ids)
        exceptions = []
        became_billable = []
        for r in pending:
            ctx = points[r.metering_point_id]
            th = thresholds.get(ctx.org_id)
            if th is None:
                th = thresholds[ctx.org_id] = thresholds_for(orgs[ctx.org_id])
            m = meters.get(r.meter_id) or {"register_digits": None, "register_decimals": 2}
            point_changes = changes.get(r.metering_point_id, [])
            prior = [h for h in history.get(r.metering_point_id, []) if h.reading_date < r.reading_date]
            prev = prior[-1] if prior else None
            hist_kwh, hist_days = [], 0
            for a, b in _pairs(prior):
                k = _pair_kwh(_period(a, b, multiplier=ctx.multiplier, digits=digits, changes=point_changes))
                if k is not None:
                    hist_kwh.append(k)
                    hist_days += (b.reading_date - a.reading_date).days
            last_kwh, last_days = None, 0
            seasonal = ctx.category in th.seasonal_categories
            if seasonal and (ly := _last_year(prior, r.reading_date)) is not None:
                last_kwh = _pair_kwh(
                    _period(ly[0], ly[1], multiplier=ctx.multiplier, digits=digits, changes=point_changes)
                )
                last_days = (ly[1].reading_date - ly[0].reading_date).days if last_kwh is not None else 0
            extra: list[rules.Finding] = []
            period = None
            if prev is not None:
                period = _period(prev, r, multiplier=ctx.multiplier, digits=digits, changes=point_changes)
                checked = list(period.changes) + [
                    c for c in point_changes if c.day == prev.reading_date and c not in period.changes
                ]
                if period.meter_unexplained:
                    extra.append(_unexplained_meter_finding(prev, r, names))
                else:
                    extra += rules.file_change_findings(
                        start_meter=prev.meter_id,
                        start_multiplier=prev.multiplier,
                        end_meter=r.meter_id,
                        end_multiplier=r.multiplier,
                        changes=checked,
                        end_date=r.reading_date,
                        meter_names=names,
                        tariff_changes=[
                            t
                            for t in tariffs.get(r.metering_point_id, ())
                            if prev.reading_date <= t.day <= r.reading_date
                        ],
                    )
            end_mult = r.multiplier or ctx.multiplier
            v = rules.validate(
                start=_regs(prev) if prev is not None and period is not None and period.segs else None,
                end=_regs(r),
                multiplier=end_mult,
                register_digits=m["register_digits"],
                register_decimals=m["register_decimals"],
                days=(r.reading_date - prev.reading_date).days if prev else None,
                history_kwh=hist_kwh,
                history_days=hist_days,
                last_year_kwh=last_kwh,
                last_year_days=last_days,
                seasonal=seasonal,
                tou=ctx.tou,
                fault_flags=r.fault_flags or [],
                active=ctx.active,
                previous_zero_periods=zero_runs.get(r.metering_point_id, 0),
                max_demand=r.max_demand,
                contract_capacity_kva=ctx.capacity,
                thresholds=th,
                segs=period.segs if period is not None else None,
            )
            findings = v.findings + extra
            if not findings:
                r.status = MeterReading.Status.VALID
                counts["valid"] += 1
                became_billable.append(r)
                history.setdefault(r.metering_point_id, []).append(r)
                history[r.metering_point_id].sort(key=lambda x: x.reading_date)
            else:
                r.status = MeterReading.Status.EXCEPTION
                counts["exception"] += 1
                for f in findings:
                    exceptions.append(
                        ReadingException(
                            org_id=r.org_id,
                            metering_point_id=r.metering_point_id,
                            reading=r,
                            reading_date=r.reading_date,
                            rule=f.rule,
                            detail=f.detail[:300],
                            created_at=at,
                        )
                    )
        for status in (MeterReading.Status.VALID, MeterReading.Status.EXCEPTION):
            ids = [r.pk for r in pending if r.status == status]
            for i in range(0, len(ids), 20000):
                MeterReading.objects.filter(pk__in=ids[i : i + 20000]).update(status=status)
        assign_owners(exceptions, at=at)
        ReadingException.objects.bulk_create(exceptions, batch_size=2000)
        _notify_billable(became_billable)
    return counts


def _zero_runs(point_ids: Iterable[int]) -> dict[int, int]:
    """Consecutive zero-use exceptions so far per point (for the 3-periods → inspection rule)."""
    out: dict[int, int] = defaultdict(int)
    for pid in ReadingException.objects.filter(
        metering_point_id__in=list(point_ids), rule=ReadingException.Rule.ZERO_USE
    ).values_list("metering_point_id", flat=True):
        out[pid] += 1
    return out


def _notify_billable(readings: Sequence[MeterReading]) -> None:
    if not readings:
        return
    items = list(readings)

    def send() -> None:
        for r in items:
            reading_validated.send(sender=MeterReading, point=r.metering_point_id, reading=r)

    transaction.on_commit(send)


# --- estimates -----------------------------------------------------------------------------------
def estimate_reading(
    *, actor: User | None, point: MeteringPoint, reading_date: date, at: datetime, reason: str = ""
) -> MeterReading:
    """估抄: estimate the point's reading for `reading_date` from its billed history."""
    errors = []
    meter = current_meter(point.pk)
    th = thresholds_for(point.org)
    with transaction.atomic():
        existing = (
            MeterReading.objects.select_for_update()
            .filter(metering_point=point, reading_date=reading_date)
            .first()
        )
        if existing is not None and existing.status in MeterReading.BILLABLE:
            errors.append(
                FieldError(
                    "reading_date", f"{point.point_no} already has a billable reading on {reading_date}"
                )
            )
        prior = _history_for([point.pk], before=reading_date).get(point.pk, [])
        if not prior:
            errors.append(FieldError("history", "no billable reading to start the estimate from"))
        consecutive = 0
        for r in reversed(prior):
            if r.source != MeterReading.Source.ESTIMATE:
                break
            consecutive += 1
        if consecutive >= th.max_consecutive_estimates:
            errors.append(
                FieldError(
                    "reading_date", f"{consecutive} consecutive estimates already: a field visit is required"
                )
            )
        digits = meter.register_digits if meter else None
        decimals = meter.register_decimals if meter else 2
        changes = queries.metering_changes([point.pk]).get(point.pk, [])
        meter_digits = dict(
            Meter.objects.filter(pk__in={h.meter_id for h in prior if h.meter_id}).values_list(
                "pk", "register_digits"
            )
        )
        if prior and any(
            c.meter_replaced and prior[-1].reading_date <= c.day <= reading_date for c in changes
        ):
            errors.append(
                FieldError(
                    "reading_date", "the meter was replaced since the last reading: read the new meter"
                )
            )

        def kwh_of(a: MeterReading, b: MeterReading) -> Decimal | None:
            return _pair_kwh(_period(a, b, multiplier=point.multiplier, digits=meter_digits, changes=changes))

        hist_kwh, hist_days, last_pair = [], 0, None
        for a, b in _pairs(prior):
            k = kwh_of(a, b)
            if k is not None:
                hist_kwh.append(k)
                hist_days += (b.reading_date - a.reading_date).days
                last_pair = (a, b)
        basis = "近3期日均"
        if point.usage_category in th.seasonal_categories and (ly := _last_year(prior, reading_date)):
            k = kwh_of(*ly)
            if k is not None:  # DOMAIN.md §2.4: same period last year for seasonal users
                hist_kwh, basis = [k], "去年同期日均"
                hist_days = (ly[1].reading_date - ly[0].reading_date).days
        if not hist_kwh and not errors:
            errors.append(FieldError("history", "no billed period to average"))
        if errors:
            raise UnableToEstimate(errors)
        prev = prior[-1]
        split, ratio = None, None
        if last_pair is not None:
            a, b = last_pair
            dt = b.total - a.total
            if (
                dt > 0
                and point.tou
                and all(getattr(a, n) is not None and getattr(b, n) is not None for n in TOU_REGISTERS)
            ):
                split = {n: (getattr(b, n) - getattr(a, n)) / dt for n in TOU_REGISTERS}
            if dt > 0 and a.reactive is not None and b.reactive is not None:
                ratio = (b.reactive - a.reactive) / dt
        est = rules.estimate(
            start=_regs(prev),
            history_kwh=hist_kwh,
            history_days=hist_days,
            days=(reading_date - prev.reading_date).days,
            multiplier=point.multiplier,
            register_digits=digits,
            register_decimals=decimals,
            tou_split=split,
            reactive_ratio=ratio,
        )
        r = existing or MeterReading(metering_point=point, reading_date=reading_date, org_id=point.org_id)
        r.meter = meter
        for n in VALUE_FIELDS:
            setattr(r, n, est.registers.get(n))
        r.source = MeterReading.Source.ESTIMATE
        r.status = MeterReading.Status.ESTIMATED
        r.note = (reason or f"估抄 {est.kwh} kWh ({basis})")[:200]
        r.multiplier = MeteringPoint.objects.filter(pk=point.pk).values_list("multiplier", flat=True)[0]
        r.entered_by = actor if actor is not None and actor.pk else None
        r.entered_at = at
        r.save()
        ReadingException.objects.filter(
            Q(reading=r) | Q(reading__isnull=True, metering_point=point, reading_date=reading_date),
            state=ReadingException.State.OPEN,
        ).update(
            state=ReadingException.State.CLOSED,
            decision=ReadingException.Decision.ESTIMATE,
            decided_by=actor if actor is not None and actor.pk else None,
            decision_note=(reason or "估抄")[:300],
            decided_at=at,
        )
        audit.record(
            actor=actor,
            action="reading.estimate",
            target=r,
            after={"kwh": str(est.kwh), **{n: est.registers.get(n) for n in REGISTERS}},
            reason=reason,
            at=at,
        )
        _notify_billable([r])
    return r


def flag_missing(*, on: date, at: datetime, plans: Iterable[ReadingPlan] | None = None) -> int:
    """漏抄: after the cut-off (planned date + grace days), every point of a plan with no reading
    for the month gets a `missing` exception (once)."""
    if plans is None:
        plans = ReadingPlan.objects.filter(planned_date__lt=on).exclude(status=ReadingPlan.Status.DONE)
    created = 0
    with transaction.atomic():
        for plan in plans:
            th = thresholds_for(plan.book.org)
            if plan.planned_date + timedelta(days=th.missing_grace_days) >= on:
                continue
            month_end = (plan.month.replace(day=28) + timedelta(days=4)).replace(day=1)
            members = set(
                BookMembership.objects.filter(book_id=plan.book_id).values_list(
                    "metering_point_id", flat=True
                )
            )
            read = set(
                MeterReading.objects.filter(
                    metering_point_id__in=members, reading_date__gte=plan.month, reading_date__lt=month_end
                ).values_list("metering_point_id", flat=True)
            )
            flagged = set(
                ReadingException.objects.filter(
                    metering_point_id__in=members,
                    rule=ReadingException.Rule.MISSING,
                    reading_date=plan.planned_date,
                ).values_list("metering_point_id", flat=True)
            )
            todo = sorted(members - read - flagged)
            orgs = dict(MeteringPoint.objects.filter(pk__in=todo).values_list("pk", "org_id"))
            rows = [
                ReadingException(
                    org_id=orgs[pid],
                    metering_point_id=pid,
                    reading_date=plan.planned_date,
                    rule=ReadingException.Rule.MISSING,
                    detail=f"抄表段 {plan.book.code} {plan.month:%Y-%m} 截止 {on} 未抄",
                    created_at=at,
                )
                for pid in todo
            ]
            assign_owners(rows, at=at)
            ReadingException.objects.bulk_create(rows, batch_size=2000)
            created += len(todo)
    return created


# --- exceptions queue ----------------------------------------------------------------------------
# what an auditor decides ("revalidate" is the system's, when a metering work order is archived)
USER_DECISIONS = tuple(
    d for d in ReadingException.Decision.values if d != ReadingException.Decision.REVALIDATE
)


def decide_exception(
    *,
    actor: User,
    exception: ReadingException,
    decision: str,
    at: datetime,
    note: str = "",
    values: Mapping[str, Any] | None = None,
) -> ReadingException:
    """An auditor's decision on an open exception: accept the reading as it is, correct its
    values (re-validated), send it back for re-reading, or send a site check. Audited."""
    errors = []
    if not actor.has_role(*AUDITOR_ROLES):
        errors.append(FieldError("actor", "only a billing auditor or manager decides reading exceptions"))
    if decision not in USER_DECISIONS:
        errors.append(FieldError("decision", f"must be one of {', '.join(USER_DECISIONS)}"))
    parsed: dict[str, Decimal | None] = {}
    if decision == ReadingException.Decision.CORRECT:
        if exception.reading_id is None:
            errors.append(FieldError("decision", "there is no reading to correct: record or estimate one"))
        else:
            parsed, errs = parse_values(values or {})
            errors.extend(errs)
            if parsed.get("total") is None and not errs:
                errors.append(FieldError("total", "is required"))
    if (
        decision
        in (
            ReadingException.Decision.CORRECT,
            ReadingException.Decision.SITE_CHECK,
            ReadingException.Decision.REREAD,
        )
        and not note.strip()
    ):
        errors.append(FieldError("note", "give a reason"))
    if errors:
        raise UnableToDecide(errors)
    with transaction.atomic():
        exc = ReadingException.objects.select_for_update().get(pk=exception.pk)
        if exc.state != ReadingException.State.OPEN:
            raise UnableToDecide([FieldError("exception", "this exception is already decided")])
        exc.state = ReadingException.State.CLOSED
        exc.decision = decision
        exc.decided_by = actor
        exc.decided_at = at
        exc.decision_note = note[:300]
        exc.save()
        reading = MeterReading.objects.select_for_update().get(pk=exc.reading_id) if exc.reading_id else None
        before = audit.snapshot(reading, [*list(VALUE_FIELDS), "status"]) if reading else None
        if reading is not None and decision == ReadingException.Decision.ACCEPT:
            still_open = ReadingException.objects.filter(
                reading=reading, state=ReadingException.State.OPEN
            ).exists()
            if not still_open and reading.status == MeterReading.Status.EXCEPTION:
                blocked = (
                    ReadingException.objects.filter(reading=reading)
                    .exclude(decision=ReadingException.Decision.ACCEPT)
                    .exclude(state=ReadingException.State.OPEN)
                    .filter(
                        Q(decision=ReadingException.Decision.REREAD)
                        | Q(decision=ReadingException.Decision.SITE_CHECK, check_result="")
                    )
                    .exists()
                )
                if not blocked:
                    reading.status = MeterReading.Status.ACCEPTED
                    reading.save(update_fields=["status"])
                    _notify_billable([reading])
        elif reading is not None and decision == ReadingException.Decision.CORRECT:
            meter = reading.meter
            errs: list[FieldError] = []
            _check_values(errs, parsed, meter, reading.metering_point)
            if errs:
                raise UnableToDecide(errs)
            for n in VALUE_FIELDS:
                if n in (values or {}):
                    setattr(reading, n, parsed.get(n))
            reading.status = MeterReading.Status.PENDING_VALIDATION
            reading.save()
            ReadingException.objects.filter(reading=reading, state=ReadingException.State.OPEN).update(
                state=ReadingException.State.CLOSED,
                decision=ReadingException.Decision.CORRECT,
                decided_by=actor,
                decided_at=at,
                decision_note=note[:300],
            )
            validate_readings(reading_ids=[reading.pk], at=at)
            reading.refresh_from_db()
        elif decision == ReadingException.Decision.SITE_CHECK:
            orders = [
                r
                for _, r in site_check_requested.send(
                    sender=ReadingException, exception=exc, actor=actor, at=at, note=note
                )
                if r is not None
            ]
            if not orders:
                raise UnableToDecide([FieldError("decision", "no site-check work order can be opened")])
            exc.work_order = orders[0]
            exc.save(update_fields=["work_order"])
        audit.record(
            actor=actor,
            action=f"reading_exception.{decision}",
            target=exc,
            before=before,
            after={
                "rule": exc.rule,
                "decision": decision,
                **({"work_order": exc.work_order.number} if exc.work_order_id else {}),
                **(audit.snapshot(reading, [*list(VALUE_FIELDS), "status"]) if reading else {}),
            },
            reason=note,
            at=at,
        )
    return exc


SITE_CHECK_RESULTS = CHECK_RESULTS


def record_site_check_result(
    *,
    actor: User | None,
    exception_id: int,
    result: str,
    at: datetime,
    actual_total: Any = None,
    findings: str = "",
) -> ReadingException:
    """The outcome of the site-check work order sent for an exception (called when that order's
    check step completes): `confirmed` accepts the held reading, `wrong_reading` corrects its total
    to `actual_total` and validates it again; any other finding opens a follow-up exception (rule
    site_check, with its owner and deadline) for the auditor to estimate or correct. Idempotent."""
    errors = []
    if result not in SITE_CHECK_RESULTS:
        errors.append(FieldError("result", f"must be one of {', '.join(SITE_CHECK_RESULTS)}"))
    total = None
    if result == "wrong_reading":
        parsed, errs = parse_values({"total": actual_total}, base="actual_")
        errors += errs
        total = parsed.get("total")
        if total is None and not errs:
            errors.append(FieldError("actual_total", "the reading found on site is required"))
    if errors:
        raise UnableToDecide(errors)
    with transaction.atomic():
        exc = (
            ReadingException.objects.select_for_update(of=("self",))
            .select_related("work_order")
            .get(pk=exception_id)
        )
        if exc.decision != ReadingException.Decision.SITE_CHECK or exc.work_order_id is None:
            raise UnableToDecide([FieldError("exception", "no site check was sent for this exception")])
        if exc.check_result:
            return exc
        exc.check_result = result
        exc.save(update_fields=["check_result"])
        reading = MeterReading.objects.select_for_update().get(pk=exc.reading_id) if exc.reading_id else None
        before = audit.snapshot(reading, [*list(VALUE_FIELDS), "status"]) if reading else None
        held = reading is not None and reading.status == MeterReading.Status.EXCEPTION
        label = f"现场核查 {exc.work_order.number}: {SITE_CHECK_RESULTS[result]}"
        if held and result == "confirmed":
            if not ReadingException.objects.filter(
                reading=reading, state=ReadingException.State.OPEN
            ).exists():
                reading.status = MeterReading.Status.ACCEPTED
                reading.save(update_fields=["status"])
                _notify_billable([reading])
        elif held and result == "wrong_reading":
            reading.total = total
            reading.status = MeterReading.Status.PENDING_VALIDATION
            reading.note = label[:200]
            reading.save(update_fields=["total", "status", "note"])
            ReadingException.objects.filter(reading=reading, state=ReadingException.State.OPEN).update(
                state=ReadingException.State.CLOSED,
                decision=ReadingException.Decision.CORRECT,
                decided_at=at,
                decision_note=label[:300],
            )
            validate_readings(reading_ids=[reading.pk], at=at)
        elif result != "confirmed":
            follow = ReadingException(
                org_id=exc.org_id,
                metering_point_id=exc.metering_point_id,
                reading=reading,
                reading_date=exc.reading_date,
                rule=ReadingException.Rule.SITE_CHECK,
                detail=(f"{label}; {findings}" if findings else label)[:300],
                created_at=at,
                owner_id=exc.owner_id,
            )
            assign_owners([follow], at=at)
            follow.save()
        if reading is not None:
            reading.refresh_from_db()
        audit.record(
            actor=actor,
            action="reading_exception.site_check_result",
            target=exc,
            before=before,
            after={
                "result": result,
                "findings": findings[:200],
                "work_order": exc.work_order.number,
                **(audit.snapshot(reading, [*list(VALUE_FIELDS), "status"]) if reading else {}),
            },
            at=at,
        )
    return exc


def assign_exception(
    *, actor: User, exception: ReadingException, owner: User, at: datetime
) -> ReadingException:
    """Hand an open exception to another auditor (audited)."""
    errors = []
    if not actor.has_role("manager", "administrator", "billing_auditor"):
        errors.append(FieldError("actor", "only an auditor or manager hands exceptions over"))
    if not owner.is_active or not owner.has_role(*AUDITOR_ROLES):
        errors.append(FieldError("owner", f"{owner} is not an active billing auditor or manager"))
    elif not DataScope.for_user(owner).contains_org(exception.org):
        errors.append(FieldError("owner", f"{owner} cannot see {exception.org.name}"))
    if errors:
        raise UnableToDecide(errors)
    with transaction.atomic():
        exc = ReadingException.objects.select_for_update().get(pk=exception.pk)
        if exc.state != ReadingException.State.OPEN:
            raise UnableToDecide([FieldError("exception", "this exception is already decided")])
        before = {"owner": str(exc.owner) if exc.owner_id else None}
        exc.owner = owner
        exc.save(update_fields=["owner"])
        audit.record(
            actor=actor,
            action="reading_exception.assign",
            target=exc,
            before=before,
            after={"owner": str(owner)},
            at=at,
        )
    return exc


# --- AMI: frozen readings → billing readings -----------------------------------------------------
def readings_from_frozen(*, on: date, at: datetime, books: Iterable[ReadingBook] | None = None) -> int:
    """With AMI the billing reading is the daily frozen value at 00:00 of the reading day
    (DOMAIN.md §2.2): for automated/mixed books whose reading day is `on.day`, make `ami`
    readings of the points not yet read that day, and validate them."""
    qs = (
        books
        if books is not None
        else ReadingBook.objects.filter(
            active=True, reading_day=on.day, method__in=[ReadingMethod.AUTOMATED, ReadingMethod.MIXED]
        )
    )
    point_ids = list(
        BookMembership.objects.filter(book__in=list(qs)).values_list("metering_point_id", flat=True)
    )
    if not point_ids:
        return 0
    with transaction.atomic():
        # one writer at a time per book (listeners sharing a subscription reach the same day)
        list(ReadingBook.objects.select_for_update().filter(pk__in=[b.pk for b in qs]).values_list("pk"))
        done = set(
            MeterReading.objects.filter(metering_point_id__in=point_ids, reading_date=on).values_list(
                "metering_point_id", flat=True
            )
        )
        frozen = list(
            DailyFrozenReading.objects.filter(metering_point_id__in=point_ids, day=on).exclude(
                metering_point_id__in=done
            )
        )
        orgs = {
            pk: (org, mult)
            for pk, org, mult in MeteringPoint.objects.filter(
                pk__in={f.metering_point_id for f in frozen}
            ).values_list("pk", "org_id", "multiplier")
        }
        rows = [
            MeterReading(
                org_id=orgs[f.metering_point_id][0],
                multiplier=orgs[f.metering_point_id][1],
                metering_point_id=f.metering_point_id,
                meter_id=f.meter_id,
                reading_date=on,
                total=f.total,
                sharp=f.sharp,
                peak=f.peak,
                flat=f.flat,
                valley=f.valley,
                reactive=f.reactive,
                source=MeterReading.Source.AMI,
                fault_flags=[x for x in f.flags.split(",") if x],
                entered_at=at,
            )
            for f in frozen
        ]
        MeterReading.objects.bulk_create(rows, batch_size=2000)
        ids = list(
            MeterReading.objects.filter(
                metering_point_id__in=[r.metering_point_id for r in rows],
                reading_date=on,
                source=MeterReading.Source.AMI,
            ).values_list("pk", flat=True)
        )
        validate_readings(reading_ids=ids, at=at)
    return len(rows)


# --- terminals and remote commands ---------------------------------------------------------------
def register_terminal(
    *,
    actor: User | None,
    org: Org,
    code: str,
    kind: str,
    name: str = "",
    concentrator: bool = False,
    meters: Sequence[Meter] = (),
    at: datetime,
) -> Terminal:
    errors = []
    if not code or len(code) > 32 or "/" in code or "+" in code or "#" in code:
        errors.append(FieldError("code", "is required: up to 32 characters, no / + #"))
    elif Terminal.objects.filter(code=code).exists():
        errors.append(FieldError("code", f"terminal {code} already exists"))
    if kind not in Terminal.Kind.values:
        errors.append(FieldError("kind", f"must be one of {', '.join(Terminal.Kind.values)}"))
    taken = list(
        TerminalMeter.objects.filter(meter__in=list(meters)).values_list("meter__asset_no", flat=True)
    )
    if taken:
        errors.append(FieldError("meters", f"already behind another terminal: {taken[:10]}"))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        t = Terminal.objects.create(
            org=org, code=code, kind=kind, name=name or code, concentrator=concentrator
        )
        TerminalMeter.objects.bulk_create([TerminalMeter(terminal=t, meter=m) for m in meters])
        audit.record(
            actor=actor,
            action="terminal.register",
            target=t,
            after={"meters": len(meters), "kind": kind},
            at=at,
        )
    return t


def attach_meters(*, actor: User | None, terminal: Terminal, meters: Sequence[Meter], at: datetime) -> int:
    with transaction.atomic():
        TerminalMeter.objects.filter(meter__in=list(meters)).delete()
        TerminalMeter.objects.bulk_create([TerminalMeter(terminal=terminal, meter=m) for m in meters])
        audit.record(
            actor=actor,
            action="terminal.attach",
            target=terminal,
            after={"meters": [m.asset_no for m in meters][:100]},
            at=at,
        )
    return len(meters)


def command_topic(terminal_code: str) -> str:
    return f"mmis/ami/{terminal_code}/down"


def command_payload(cmd: RemoteCommand, meter_address: str) -> dict[str, Any]:
    return {
        "type": "command",
        "command_id": cmd.request_id,
        "command": cmd.command,
        "meter": meter_address,
        "attempt": cmd.attempts,
    }


def send_remote_command(
    *,
    meter: Meter,
    command: str,
    requested_by: User | None,
    at: datetime,
    reason: str = "",
    max_attempts: int = 3,
    retry_seconds: int = 30,
) -> RemoteCommand:
    """Queue a remote command for a meter; it is published on mmis/ami/<terminal>/down after
    commit, retried every `retry_seconds` up to `max_attempts`, then timed out. When it ends,
    `remote_command_finished` is sent."""
    errors = []
    if command not in RemoteCommand.Command.values:
        errors.append(FieldError("command", f"must be one of {', '.join(RemoteCommand.Command.values)}"))
    link = TerminalMeter.objects.select_related("terminal").filter(meter=meter).first()
    if link is None:
        errors.append(FieldError("meter", f"meter {meter.asset_no} is not behind any terminal"))
    elif not link.terminal.active:
        errors.append(FieldError("meter", f"terminal {link.terminal.code} is not active"))
    if not meter.comm_address:
        errors.append(FieldError("meter", f"meter {meter.asset_no} has no communication address"))
    if command in ("disconnect", "reconnect") and not reason.strip():
        errors.append(FieldError("reason", "is required for disconnection and reconnection"))
    if not 1 <= max_attempts <= 10:
        errors.append(FieldError("max_attempts", "must be 1 to 10"))
    if errors:
        raise UnableToSendCommand(errors)
    with transaction.atomic():
        cmd = RemoteCommand.objects.create(
            org_id=link.terminal.org_id,
            request_id=uuid.uuid4().hex,
            terminal=link.terminal,
            meter=meter,
            command=command,
            reason=reason[:200],
            requested_by=requested_by if requested_by is not None and requested_by.pk else None,
            requested_at=at,
            max_attempts=max_attempts,
            retry_seconds=retry_seconds,
            next_attempt_at=at,
        )
        audit.record(
            actor=requested_by,
            action=f"remote_command.{command}",
            target=cmd,
            reason=reason,
            at=at,
            after={"meter": meter.asset_no, "terminal": link.terminal.code},
        )
        pk = cmd.pk
        transaction.on_commit(lambda: _publish_after_commit(pk, at))
    return cmd


def _publish_after_commit(pk: int, at: datetime) -> None:
    from mmis.readings import mqtt

    try:
        dispatch_commands(at=at, publish=mqtt.publish_once, only=[pk])
    except Exception:  # the listener's tick sends it later
        log.warning("remote command %s not published now; the listener will retry", pk, exc_info=True)


def dispatch_commands(*, at: datetime, publish, only: Sequence[int] | None = None) -> dict[str, int]:
    """Send due commands (new ones and retries) with `publish(topic, payload_dict)`, and time out
    those whose attempts are spent. Called after commit and by the listener every second."""
    counts = {"sent": 0, "timed_out": 0}
    finished = []
    with transaction.atomic():
        qs = (
            RemoteCommand.objects.select_for_update()
            .filter(
                state__in=[RemoteCommand.State.PENDING, RemoteCommand.State.SENT], next_attempt_at__lte=at
            )
            .select_related("terminal", "meter")
        )
        if only is not None:
            qs = qs.filter(pk__in=list(only))
        for cmd in qs:
            if cmd.attempts >= cmd.max_attempts:
                cmd.state = RemoteCommand.State.TIMED_OUT
                cmd.finished_at = at
                cmd.next_attempt_at = None
                cmd.result = {"error": f"no answer after {cmd.attempts} attempts"}
                cmd.save()
                audit.record(actor=None, action="remote_command.timed_out", target=cmd, at=at)
                finished.append(cmd)
                counts["timed_out"] += 1
                continue
            cmd.attempts += 1
            publish(command_topic(cmd.terminal.code), command_payload(cmd, cmd.meter.comm_address))
            cmd.state = RemoteCommand.State.SENT
            cmd.sent_at = at
            cmd.next_attempt_at = at + timedelta(seconds=cmd.retry_seconds)
            cmd.save()
            counts["sent"] += 1
        _notify_finished(finished)
    return counts


def finish_command(
    *, request_id: str, ok: bool, result: Mapping[str, Any], at: datetime
) -> RemoteCommand | None:
    """A terminal's answer to a command: acknowledged or failed. Late or repeated answers to a
    finished command are ignored (returns None)."""
    with transaction.atomic():
        cmd = RemoteCommand.objects.select_for_update().filter(request_id=request_id).first()
        if cmd is None or cmd.finished:
            return None
        cmd.state = RemoteCommand.State.ACKNOWLEDGED if ok else RemoteCommand.State.FAILED
        cmd.finished_at = at
        cmd.next_attempt_at = None
        cmd.result = dict(result)
        cmd.save()
        audit.record(actor=None, action=f"remote_command.{cmd.state}", target=cmd, after=cmd.result, at=at)
        _notify_finished([cmd])
    return cmd


def _notify_finished(cmds: Sequence[RemoteCommand]) -> None:
    if not cmds:
        return
    items = list(cmds)
    transaction.on_commit(
        lambda: [remote_command_finished.send(sender=RemoteCommand, command=c) for c in items]
    )


# --- metering changes (换表, CT/PT ratio) ---------------------------------------------------------
def revalidate_file_change_holds(
    *, point_ids: Collection[int], order: ProcessInstance, at: datetime
) -> dict[str, int]:
    """A metering work order is being archived: validate again the points' readings held by the
    file-change rule (their period holds a metering change whose order was not archived). Each
    such reading's open exceptions are closed as `revalidate` and the reading runs through VEE
    again, with `order` counted as archived: it becomes valid, or is flagged again for what still
    fails (the exceptions of a rule that fails again keep their owner and deadline). Readings sent
    back for re-reading or waiting for a site check are left to that. A system action (no user),
    audited per reading; runs inside the caller's transaction (the archive step's)."""
    out = {"revalidated": 0, "valid": 0, "exception": 0}
    with transaction.atomic():
        ids = ReadingException.objects.filter(
            metering_point_id__in=list(point_ids),
            state=ReadingException.State.OPEN,
            rule=ReadingException.Rule.FILE_CHANGE,
            reading__isnull=False,
        ).values_list("reading_id", flat=True)
        held = list(
            MeterReading.objects.select_for_update()
            .filter(pk__in=set(ids), status=MeterReading.Status.EXCEPTION)
            .order_by("metering_point_id", "reading_date")
        )
        blocked = set(
            ReadingException.objects.filter(reading__in=held, state=ReadingException.State.CLOSED)
            .filter(
                Q(decision=ReadingException.Decision.REREAD)
                | Q(decision=ReadingException.Decision.SITE_CHECK, check_result="")
            )
            .values_list("reading_id", flat=True)
        )
        held = [r for r in held if r.pk not in blocked]
        if not held:
            return out
        note = f"工单 {order.number} 已归档, 重新审核"
        kept: dict[int, dict[str, tuple[int | None, date | None]]] = defaultdict(dict)
        before: dict[int, list[str]] = defaultdict(list)
        for e in ReadingException.objects.filter(reading__in=held, state=ReadingException.State.OPEN):
            kept[e.reading_id][e.rule] = (e.owner_id, e.due_on)
            before[e.reading_id].append(e.rule)
        ReadingException.objects.filter(reading__in=held, state=ReadingException.State.OPEN).update(
            state=ReadingException.State.CLOSED,
            decision=ReadingException.Decision.REVALIDATE,
            decided_by=None,
            decided_at=at,
            decision_note=note,
        )
        MeterReading.objects.filter(pk__in=[r.pk for r in held]).update(
            status=MeterReading.Status.PENDING_VALIDATION
        )
        validate_readings(reading_ids=[r.pk for r in held], at=at, closed_orders={order.pk})
        after_rules: dict[int, list[str]] = defaultdict(list)
        for e in ReadingException.objects.filter(reading__in=held, state=ReadingException.State.OPEN):
            after_rules[e.reading_id].append(e.rule)
            if e.rule in kept[e.reading_id]:
                owner_id, due_on = kept[e.reading_id][e.rule]
                if (e.owner_id, e.due_on) != (owner_id, due_on):
                    ReadingException.objects.filter(pk=e.pk).update(owner_id=owner_id, due_on=due_on)
        status = dict(MeterReading.objects.filter(pk__in=[r.pk for r in held]).values_list("pk", "status"))
        for r in held:
            out["revalidated"] += 1
            out["valid" if status[r.pk] == MeterReading.Status.VALID else "exception"] += 1
            audit.record(
                actor=None,
                action="reading.revalidate",
                target=r,
                before={"status": MeterReading.Status.EXCEPTION, "open": sorted(before[r.pk])},
                after={"status": status[r.pk], "open": sorted(after_rules[r.pk]), "work_order": order.number},
                reason=note,
                at=at,
            )
    return out


class UnableToRecordMeterChange(InvalidInput):
    pass


REGISTER_VALUES = (*REGISTERS, "reactive")


def _register_values(data: Mapping[str, Any] | None, base: str, errors: list[FieldError]) -> dict[str, str]:
    parsed, errs = parse_values({k: v for k, v in (data or {}).items() if k in REGISTER_VALUES}, base=base)
    errors.extend(errs)
    unknown = [k for k in (data or {}) if k not in REGISTER_VALUES]
    if unknown:
        errors.append(FieldError(base.rstrip("."), f"unknown registers {unknown}"))
    return {k: str(v) for k, v in parsed.items() if v is not None and k in REGISTER_VALUES}


def record_meter_change(
    *,
    actor: User | None,
    point: MeteringPoint,
    changed_on: date,
    old_meter: Meter | None,
    new_meter: Meter | None,
    old_multiplier: Decimal,
    new_multiplier: Decimal,
    old_final: Mapping[str, Any] | None,
    new_initial: Mapping[str, Any] | None,
    at: datetime,
    work_order: ProcessInstance | None = None,
    note: str = "",
) -> MeterChange:
    """Record a change of a point's meter and/or multiplier with the registers read at the change
    (the old meter's final, the new meter's initial; for a multiplier change on the same meter the
    one reading at the change, or none: the period is then split by the day's frozen registers or
    pro rata by days). Billing splits the period at it; VEE holds the period's reading until
    `work_order` is archived. A change inside a period that already has a billable reading after
    it is refused (correct that reading through the exceptions queue)."""
    errors: list[FieldError] = []
    replaced = (old_meter.pk if old_meter else None) != (new_meter.pk if new_meter else None)
    final = _register_values(old_final, "old_final.", errors)
    initial = _register_values(new_initial, "new_initial.", errors)
    if replaced:
        if "total" not in final:
            errors.append(FieldError("old_final.total", "the old meter's final reading is required"))
        if "total" not in initial:
            errors.append(FieldError("new_initial.total", "the new meter's initial reading is required"))
    elif initial and final and initial != final:
        errors.append(FieldError("new_initial", "the same meter has one reading at a multiplier change"))
    for name, value in (("old_multiplier", old_multiplier), ("new_multiplier", new_multiplier)):
        if value is None or value <= 0:
            errors.append(FieldError(name, "must be greater than 0"))
    if not replaced and old_multiplier == new_multiplier:
        errors.append(FieldError("new_meter", "neither the meter nor the multiplier changes"))
    today = timezone.localtime(at).date() if timezone.is_aware(at) else at.date()
    if changed_on > today:
        errors.append(FieldError("changed_on", f"{changed_on} is in the future"))
    if new_meter is not None and new_meter.register_digits:
        limit = Decimal(10) ** new_meter.register_digits
        errors += [
            FieldError(f"new_initial.{k}", f"has more than the register's {new_meter.register_digits} digits")
            for k, v in initial.items()
            if Decimal(v) >= limit
        ]
    later = (
        MeterReading.objects.filter(
            metering_point=point, reading_date__gt=changed_on, status__in=MeterReading.BILLABLE
        )
        .order_by("reading_date")
        .values_list("reading_date", flat=True)
        .first()
    )
    if later is not None:
        errors.append(
            FieldError(
                "changed_on",
                f"{point.point_no} has a billable reading on {later}, after the change: "
                "correct that reading through the exceptions queue first",
            )
        )
    if errors:
        raise UnableToRecordMeterChange(errors)
    with transaction.atomic():
        mc = MeterChange.objects.create(
            org_id=point.org_id,
            metering_point=point,
            changed_on=changed_on,
            old_meter=old_meter,
            new_meter=new_meter,
            old_multiplier=old_multiplier,
            new_multiplier=new_multiplier,
            old_final=final,
            new_initial=initial if replaced else (initial or final),
            work_order=work_order,
            note=note[:200],
            recorded_by=actor if actor is not None and actor.pk else None,
            recorded_at=at,
        )
        audit.record(
            actor=actor,
            action="meter_change.record",
            target=mc,
            after={
                "point": point.point_no,
                "changed_on": changed_on,
                "old_meter": old_meter.asset_no if old_meter else None,
                "new_meter": new_meter.asset_no if new_meter else None,
                "old_multiplier": old_multiplier,
                "new_multiplier": new_multiplier,
                "old_final": final,
                "new_initial": mc.new_initial,
                "work_order": work_order.number if work_order else None,
            },
            reason=note,
            at=at,
        )
    return mc


def record_install_reading(
    *,
    actor: User | None,
    point: MeteringPoint,
    meter: Meter,
    on: date,
    total: Decimal,
    at: datetime,
    note: str = "装表底数",
) -> MeterReading:
    """The new meter's registers at installation (装表底数) as the point's first billable reading, so
    that the first period is billed from it (DOMAIN.md §2.2: a period runs from one reading to the
    next). It is a recorded fact of the installation work order, not a read to validate."""
    values, errors = parse_values({"total": total})
    _check_values(errors, values, meter, point)
    if errors:  # the work order's form calls it 表码底数 (initial_reading)
        raise UnableToRecordReading([FieldError("initial_reading", e.message) for e in errors])
    with transaction.atomic():
        if MeterReading.objects.filter(metering_point=point, reading_date__gte=on).exists():
            raise UnableToRecordReading(
                [FieldError("installed_on", f"{point.point_no} already has readings on or after {on}")]
            )
        r = MeterReading.objects.create(
            org_id=point.org_id,
            metering_point=point,
            meter=meter,
            reading_date=on,
            total=total,
            multiplier=point.multiplier,
            source=MeterReading.Source.MANUAL,
            status=MeterReading.Status.VALID,
            note=note[:200],
            entered_by=actor if actor is not None and actor.pk else None,
            entered_at=at,
        )
        audit.record(
            actor=actor,
            action="reading.install",
            target=r,
            after=audit.snapshot(r, ["total", "status", "source", "reading_date"]),
            at=at,
        )
    return r
