"""File import with a row-by-row report: good rows kept, bad rows listed with reasons."""

import io
from datetime import UTC, date, datetime

import pytest
from openpyxl import Workbook

from mmis.common.errors import InvalidInput
from mmis.readings import imports
from mmis.readings import services as rs
from mmis.readings.models import MeterReading

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def test_csv_import_keeps_good_rows_and_reports_bad_ones(world, rf):
    p1, p2, p3 = world.points
    other, _ = rf.add_point(world.utility, world.utility.customers["b"], n=77)  # another county
    rs.record_reading(actor=None, point=p3, reading_date=date(2026, 3, 25), values={"total": "1"}, at=AT)
    csv = (
        "计量点编号,抄表日期,总示数,峰,谷\n"
        f"{p1.point_no},2026-03-25,120.5,,\n"
        f"{p2.point_no},2026-03-25,300,150,150\n"
        f"{p1.point_no},2026-03-25,121,,\n"
        "NOPE,2026-03-25,1,,\n"
        f"{p2.point_no},2026-02-30,5,,\n"
        f"{p2.point_no},2026-01-25,-5,,\n"
        f"{p2.point_no},2026-01-24,1234567,,\n"
        f"{p3.point_no},2026-03-25,2,,\n"
        f"{other.point_no},2026-03-25,2,,\n"
        f"{p2.point_no},2026-04-25,2,,\n"
        "\n"
    ).encode()
    report = imports.import_readings(actor=world.auditor, data=csv, filename="march.csv", at=AT)
    assert (report.rows, report.imported, report.rejected) == (10, 2, 8)
    by_row = {(e.row, e.column): e.message for e in report.errors}
    assert "appears twice" in by_row[(4, "reading_date")]
    assert "unknown metering point" in by_row[(5, "point_no")]
    assert "not a date" in by_row[(6, "reading_date")]
    assert "cannot be negative" in by_row[(7, "total")]
    assert "6 integer digits" in by_row[(8, "total")]
    assert "already has a reading" in by_row[(9, "reading_date")]
    assert "unknown metering point" in by_row[(10, "point_no")]  # outside the auditor's scope
    assert "future" in by_row[(11, "reading_date")]
    got = {r.metering_point_id: r for r in MeterReading.objects.filter(source="file")}
    assert set(got) == {p1.pk, p2.pk}
    assert got[p2.pk].peak == 150 and got[p1.pk].status == "valid"
    assert report.validation == {"valid": 2, "exception": 0}


def test_wrong_columns_reject_the_file():
    with pytest.raises(InvalidInput) as exc:
        imports.import_readings(actor=None, data=b"point,date,kwh\n1,2,3\n", filename="x.csv", at=AT)
    msgs = " ".join(e.message for e in exc.value.errors)
    assert (
        "missing columns: point_no, reading_date, total" in msgs
        and "unknown columns: point, date, kwh" in msgs
    )


def test_excel_import(world):
    wb = Workbook()
    ws = wb.active
    ws.append(["point_no", "reading_date", "total", "note"])
    ws.append([world.points[0].point_no, date(2026, 3, 25), 88.25, "门口"])
    ws.append([world.points[1].point_no, "2026-3-25", 10, ""])
    buf = io.BytesIO()
    wb.save(buf)
    report = imports.import_readings(actor=world.auditor, data=buf.getvalue(), filename="m.xlsx", at=AT)
    assert report.imported == 1 and report.errors[0].row == 3 and report.errors[0].column == "reading_date"
    r = MeterReading.objects.get()
    assert str(r.total) == "88.2500" and r.note == "门口"
