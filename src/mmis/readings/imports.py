"""File readings (CSV or Excel) with a row-by-row report: good rows are stored, bad rows are
listed with their reasons. Built for volume: lookups are set-based, rows are checked with plain
string operations, and the good rows go to PostgreSQL with COPY (batched inserts on SQLite).

Columns (English or Chinese header, any order): `point_no` 计量点编号, `reading_date` 抄表日期
(YYYY-MM-DD), `total` 总示数; optional `sharp` 尖, `peak` 峰, `flat` 平, `valley` 谷, `reactive`
无功, `max_demand` 需量, `note` 备注.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction

from mmis.assets.models import AssetState, Meter
from mmis.common.errors import FieldError, InvalidInput
from mmis.customers.models import MeteringPoint
from mmis.org import audit
from mmis.org.models import User
from mmis.org.scope import DataScope
from mmis.readings.models import MeterReading

HEADERS = {
    "point_no": "point_no",
    "计量点编号": "point_no",
    "reading_date": "reading_date",
    "抄表日期": "reading_date",
    "total": "total",
    "总示数": "total",
    "总": "total",
    "sharp": "sharp",
    "尖": "sharp",
    "peak": "peak",
    "峰": "peak",
    "flat": "flat",
    "平": "flat",
    "valley": "valley",
    "谷": "valley",
    "reactive": "reactive",
    "无功": "reactive",
    "max_demand": "max_demand",
    "需量": "max_demand",
    "note": "note",
    "备注": "note",
}
REQUIRED = ("point_no", "reading_date", "total")
VALUES = ("total", "sharp", "peak", "flat", "valley", "reactive", "max_demand")
NUMBER = re.compile(r"\d{1,12}(?:\.\d{1,4})?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_REPORTED = 5000
COPY_COLUMNS = (
    "org_id",
    "metering_point_id",
    "meter_id",
    "reading_date",
    *VALUES,
    "source",
    "status",
    "fault_flags",
    "note",
    "photo",
    "entered_by_id",
    "entered_at",
    "multiplier",
)


class UnableToImport(InvalidInput):
    pass


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1 = the header; data rows start at 2, as a spreadsheet shows them
    column: str
    message: str


@dataclass
class ImportReport:
    filename: str
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    validation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, row: int, column: str, message: str) -> None:
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(RowError(row, column, message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "rows": self.rows,
            "imported": self.imported,
            "rejected": self.rejected,
            "validation": self.validation,
            "errors": [{"row": e.row, "column": e.column, "message": e.message} for e in self.errors],
        }


def read_rows(data: bytes, filename: str) -> Iterator[Sequence[Any]]:
    """Rows of a CSV (UTF-8, with or without BOM, or GB18030) or an .xlsx file, header first."""
    if filename.lower().endswith((".xlsx", ".xlsm")):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:
            raise UnableToImport(f"not a readable Excel file: {exc}", "file") from None
        ws = wb.worksheets[0]
        for row in ws.iter_rows(values_only=True):
            yield ["" if v is None else _cell_text(v) for v in row]
        wb.close()
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gb18030", errors="replace")
    yield from csv.reader(io.StringIO(text))


def _cell_text(v: Any) -> str:
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v) if v != int(v) else str(int(v))
    return str(v).strip()


def import_readings(
    *,
    actor: User,
    data: bytes,
    filename: str,
    at: datetime,
    validate: bool = True,
    source: str = MeterReading.Source.FILE,
    progress: Any = None,
) -> ImportReport:
    """Import a readings file. Rows with wrong values, bad dates, negative readings, unknown
    metering points (or points outside the user's scope), too many register digits, duplicates
    in the file or a reading already stored for that point and date are rejected with their
    reason; the good rows are stored and (with `validate`) run through VEE."""
    report = ImportReport(filename)
    rows = read_rows(data, filename)
    header = next(rows, None)
    if header is None:
        raise UnableToImport("the file is empty", "file")
    cols: dict[str, int] = {}
    unknown = []
    for i, h in enumerate(header):
        name = HEADERS.get(_cell_text(h).lower()) or HEADERS.get(_cell_text(h))
        if name is None:
            if _cell_text(h):
                unknown.append(_cell_text(h))
            continue
        if name in cols:
            raise UnableToImport(f"column {name} appears twice", "file")
        cols[name] = i
    missing = [c for c in REQUIRED if c not in cols]
    if missing or unknown:
        errs = []
        if missing:
            errs.append(FieldError("file", f"missing columns: {', '.join(missing)}"))
        if unknown:
            errs.append(FieldError("file", f"unknown columns: {', '.join(unknown)}"))
        raise UnableToImport(errs)
    body = list(rows)
    report.rows = len(body)
    ip, idate = cols["point_no"], cols["reading_date"]
    width = max(cols.values()) + 1
    # set-based lookups: points in scope, their meters, readings already stored
    point_nos = {r[ip].strip() for r in body if len(r) > ip}
    points = _points(actor, point_nos)
    meters = _meters([p[0] for p in points.values()])
    dates: dict[str, date | None] = {}
    for r in body:
        if len(r) > idate:
            d = r[idate].strip()
            if d not in dates:
                dates[d] = _parse_date(d)
    existing = _existing([p[0] for p in points.values()], {d for d in dates.values() if d})
    value_cols = [(name, cols[name]) for name in VALUES if name in cols]
    inote = cols.get("note")
    seen: set[tuple[int, date]] = set()
    out_rows: list[tuple] = []
    entered_by = actor.pk if actor is not None and actor.pk else None
    at_value = MeterReading._meta.get_field("entered_at").get_db_prep_value(at, connection)
    at_text = str(at_value)
    for n, r in enumerate(body, start=2):
        if len(r) < width:
            if not any(x.strip() for x in r):
                report.rows -= 1
                continue
            report.rejected += 1
            report.add(n, "", f"the row has {len(r)} cells, {width} expected")
            continue
        bad = False
        pno = r[ip].strip()
        p = points.get(pno)
        if p is None:
            report.add(n, "point_no", f"unknown metering point {pno!r}" if pno else "is required")
            bad = True
        ds = r[idate].strip()
        d = dates.get(ds)
        if d is None:
            report.add(n, "reading_date", f"{ds!r} is not a date written YYYY-MM-DD" if ds else "is required")
            bad = True
        elif d > at.date():
            report.add(n, "reading_date", f"{ds} is in the future")
            bad = True
        m = meters.get(p[0]) if p else None
        limit = m[1] if m else 12
        vals = []
        for name, i in value_cols:
            v = r[i].strip()
            if not v:
                if name == "total":
                    report.add(n, name, "is required")
                    bad = True
                vals.append(None)
                continue
            if NUMBER.fullmatch(v) is None:
                if v.startswith("-") and NUMBER.fullmatch(v[1:]):
                    report.add(n, name, f"{v}: a register reading cannot be negative")
                else:
                    report.add(n, name, f"{v!r} is not a number (at most 4 decimals)")
                bad = True
            elif name != "max_demand" and len(v.partition(".")[0].lstrip("0") or "0") > limit:
                report.add(n, name, f"{v} has more than the register's {limit} integer digits")
                bad = True
            vals.append(v)
        if p is not None and d is not None and not bad:
            key = (p[0], d)
            if key in seen:
                report.add(n, "reading_date", f"{pno} appears twice for {ds} in this file")
                bad = True
            elif key in existing:
                report.add(n, "reading_date", f"{pno} already has a reading on {ds}")
                bad = True
            seen.add(key)
        if bad:
            report.rejected += 1
            continue
        values = dict.fromkeys(VALUES)
        for (name, _), v in zip(value_cols, vals, strict=True):
            values[name] = v
        note = r[inote].strip()[:200] if inote is not None else ""
        out_rows.append(
            (
                p[1],
                p[0],
                m[0] if m else None,
                d.isoformat(),
                *(values[name] for name in VALUES),
                source,
                MeterReading.Status.PENDING_VALIDATION,
                "[]",
                note,
                "",
                entered_by,
                at_text,
                p[2],
            )
        )
        if progress is not None and n % 100_000 == 0:
            progress(n)
    with transaction.atomic():
        write_rows(out_rows)
        report.imported = len(out_rows)
        audit.record(
            actor=actor,
            action="readings.import",
            target_type="readings.meterreading",
            target_id=filename[:60],
            after={"rows": report.rows, "imported": report.imported, "rejected": report.rejected},
            at=at,
        )
    if validate and out_rows:
        from mmis.readings import services

        ids = list(
            MeterReading.objects.filter(
                entered_at=at,
                source=source,
                status=MeterReading.Status.PENDING_VALIDATION,
                metering_point_id__in={row[1] for row in out_rows},
            ).values_list("pk", flat=True)
        )
        report.validation = services.validate_readings(reading_ids=ids, at=at)
    return report


def _parse_date(text: str) -> date | None:
    if DATE.fullmatch(text) is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _chunks(items: Sequence, size: int = 20000) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _points(actor: User, point_nos: Iterable[str]) -> dict[str, tuple[int, int, str]]:
    """point_no → (id, org id, multiplier as text) of the points inside the actor's scope."""
    qs = DataScope.for_user(actor).filter(MeteringPoint.objects.all())
    out = {}
    for chunk in _chunks(sorted(point_nos)):
        out.update(
            {
                no: (pk, org, str(mult))
                for no, pk, org, mult in qs.filter(point_no__in=chunk).values_list(
                    "point_no", "pk", "org_id", "multiplier"
                )
            }
        )
    return out


def _meters(point_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """point id → (installed meter id, register digits)."""
    out = {}
    for chunk in _chunks(sorted(point_ids)):
        for pid, mid, digits in Meter.objects.filter(
            metering_point_id__in=chunk, state=AssetState.INSTALLED
        ).values_list("metering_point_id", "pk", "register_digits"):
            out[pid] = (mid, digits)
    return out


def _existing(point_ids: Sequence[int], dates: set[date]) -> set[tuple[int, date]]:
    if not dates or not point_ids:
        return set()
    out = set()
    for chunk in _chunks(sorted(point_ids)):
        out.update(
            MeterReading.objects.filter(metering_point_id__in=chunk, reading_date__in=dates).values_list(
                "metering_point_id", "reading_date"
            )
        )
    return out


def _copy_text(rows: Sequence[tuple]) -> Iterator[bytes]:
    esc = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
    buf = []
    for row in rows:
        buf.append(
            "\t".join(
                "\\N" if v is None else (v.translate(esc) if isinstance(v, str) else str(v)) for v in row
            )
        )
        if len(buf) >= 50_000:
            yield ("\n".join(buf) + "\n").encode()
            buf = []
    if buf:
        yield ("\n".join(buf) + "\n").encode()


def write_rows(rows: Sequence[tuple], *, table: str | None = None) -> None:
    """Write prepared reading rows (COPY_COLUMNS order): COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    table = table or MeterReading._meta.db_table
    cols = ", ".join(f'"{c}"' for c in COPY_COLUMNS)
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.connection.cursor() as cur, cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as cp:
            for chunk in _copy_text(rows):
                cp.write(chunk)
        return
    marks = ", ".join(["%s"] * len(COPY_COLUMNS))
    with connection.cursor() as cur:
        for chunk in _chunks(rows, 5000):
            cur.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', chunk)
