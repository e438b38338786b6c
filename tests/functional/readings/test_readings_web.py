"""Reading pages and API through the test client."""

from datetime import UTC, date, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mmis.readings import services as rs
from mmis.readings.models import MeterReading, ReadingException

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def test_every_page_renders_in_chinese(world, login):
    c = login(world.auditor)
    rs.record_reading(
        actor=None, point=world.points[0], reading_date=date(2026, 1, 25), values={"total": "5"}, at=AT
    )
    rs.mark_not_read(
        actor=None, point=world.points[1], reading_date=date(2026, 1, 25), reason="no_access", at=AT
    )
    pages = {
        reverse("readings:home"): "抄表管理",
        reverse("readings:book", args=[world.book.pk]): "城关一段",
        reverse("readings:route", args=[world.book.pk]): "上次示数",
        reverse("readings:bulk", args=[world.book.pk]): "批量录入",
        reverse("readings:import"): "示数文件导入",
        reverse("readings:exceptions"): "无法抄表",
        reverse("readings:terminals"): "采集终端",
        reverse("readings:commands"): "远程命令",
    }
    for url, text in pages.items():
        r = c.get(url)
        assert r.status_code == 200, url
        assert text in r.content.decode(), url


def test_reader_enters_a_reading_on_the_route_page(world, login):
    c = login(world.reader)
    p = world.points[0]
    url = reverse("readings:route_entry", args=[world.book.pk, p.pk])
    r = c.post(
        url,
        {
            "reading_date": "2026-03-25",
            "total": "123.4",
            "action": "save",
            "photo": SimpleUploadedFile("m.jpg", b"\xff\xd8\xff", content_type="image/jpeg"),
        },
    )
    assert r.status_code == 302
    reading = MeterReading.objects.get(metering_point=p)
    assert str(reading.total) == "123.4000" and reading.entered_by == world.reader and reading.photo.name
    r = c.post(url, {"reading_date": "2026-03-25", "total": "-1", "action": "save"}, follow=True)
    assert "must not be negative" in r.content.decode()
    c.post(
        reverse("readings:route_entry", args=[world.book.pk, world.points[2].pk]),
        {"reading_date": "2026-03-25", "action": "no_access", "note": "狗"},
    )
    assert ReadingException.objects.filter(rule="no_access", metering_point=world.points[2]).exists()


def test_other_station_book_is_404_and_reader_cannot_decide(world, login, utility):
    other = rs.create_book(actor=None, org=utility.stations[2], code="B9", name="他站", reading_day=5, at=AT)
    c = login(world.reader)
    assert c.get(reverse("readings:book", args=[other.pk])).status_code == 404
    r = rs.record_reading(
        actor=None,
        point=world.points[0],
        reading_date=date(2026, 1, 25),
        values={"total": "5"},
        at=AT,
        fault_flags=["cover_opened"],
    )
    exc = ReadingException.objects.get(reading=r)
    assert c.post(reverse("readings:decide", args=[exc.pk]), {"decision": "accept"}).status_code == 403


def test_bulk_entry_saves_good_rows_and_shows_bad_ones(world, login):
    c = login(world.reader)
    p1, p2, _ = world.points
    r = c.post(
        reverse("readings:bulk", args=[world.book.pk]),
        {"reading_date": "2026-03-25", f"total_{p1.pk}": "10", f"total_{p2.pk}": "abc"},
    )
    assert r.status_code == 200 and "is not a number" in r.content.decode()
    assert list(MeterReading.objects.values_list("metering_point_id", flat=True)) == [p1.pk]


def test_import_page_shows_the_row_report(world, login):
    c = login(world.auditor)
    data = f"point_no,reading_date,total\n{world.points[0].point_no},2026-03-25,5\nX,2026-03-25,1\n".encode()
    r = c.post(reverse("readings:import"), {"file": SimpleUploadedFile("r.csv", data)})
    body = r.content.decode()
    assert r.status_code == 200 and "unknown metering point" in body and "已导入" in body
    assert MeterReading.objects.count() == 1


def test_exception_decision_on_the_page(world, login, rf):
    p = world.points[0]
    rf.seed_history(world, p, ["100", "400", "700", "1000"])
    r = rs.record_reading(
        actor=None, point=p, reading_date=date(2026, 2, 25), values={"total": "9000"}, at=AT
    )
    exc = ReadingException.objects.get(reading=r)
    c = login(world.auditor)
    resp = c.post(
        reverse("readings:decide", args=[exc.pk]), {"decision": "correct", "total": "1290", "note": "多一位"}
    )
    assert resp.status_code == 302
    r.refresh_from_db()
    assert r.status == "valid" and str(r.total) == "1290.0000"


def test_api_books_readings_exceptions_and_commands(world, login, rf):
    c = login(world.auditor)
    books = c.get("/api/v1/reading-books").json()
    assert [b["code"] for b in books] == ["B0001"] and books[0]["points"] == 3
    r = c.post(
        "/api/v1/readings",
        {"point_id": world.points[0].pk, "reading_date": "2026-03-25", "total": "12.5"},
        content_type="application/json",
    )
    assert r.status_code == 201 and r.json()["status"] == "valid"
    r = c.post(
        "/api/v1/readings",
        {"point_id": world.points[0].pk, "reading_date": "2026-04-25", "total": "-1"},
        content_type="application/json",
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "total"
    assert c.get(f"/api/v1/readings?point_id={world.points[0].pk}").json()["count"] == 1
    r = c.post(
        "/api/v1/reading-books/plans/generate", {"month": "2026-03-01"}, content_type="application/json"
    )
    assert r.status_code == 200 and r.json()[0]["point_count"] == 3
    r = rs.record_reading(
        actor=None,
        point=world.points[1],
        reading_date=date(2026, 3, 25),
        values={"total": "1"},
        at=AT,
        fault_flags=["voltage_loss"],
    )
    exc = c.get("/api/v1/readings/exceptions").json()
    assert exc[0]["rule"] == "meter_fault"
    d = c.post(
        f"/api/v1/readings/exceptions/{exc[0]['id']}/decision",
        {"decision": "accept", "note": "已换表"},
        content_type="application/json",
    )
    assert d.status_code == 200 and d.json()["state"] == "closed"
    # terminals and a remote command (publishing after commit is not run inside the test transaction)
    t = c.post(
        "/api/v1/terminals",
        {
            "org_id": world.utility.stations[0].pk,
            "code": "T1",
            "kind": "public_transformer",
            "meter_asset_nos": [world.meters[0].asset_no],
        },
        content_type="application/json",
    )
    assert t.status_code == 403
    admin = login(world.utility.users["admin"])
    t = admin.post(
        "/api/v1/terminals",
        {
            "org_id": world.utility.stations[0].pk,
            "code": "T1",
            "kind": "public_transformer",
            "meter_asset_nos": [world.meters[0].asset_no],
        },
        content_type="application/json",
    )
    assert t.status_code == 201 and t.json()["meters"] == 1
    cmd = admin.post(
        "/api/v1/terminals/commands",
        {"meter_asset_no": world.meters[0].asset_no, "command": "disconnect"},
        content_type="application/json",
    )
    assert cmd.status_code == 422 and cmd.json()["errors"][0]["path"] == "reason"
    cmd = admin.post(
        "/api/v1/terminals/commands",
        {"meter_asset_no": world.meters[0].asset_no, "command": "read_now"},
        content_type="application/json",
    )
    assert cmd.status_code == 201 and cmd.json()["state"] == "pending"
    assert admin.get("/api/v1/terminals").json()[0]["code"] == "T1"
    bi = admin.get(
        f"/api/v1/readings/billing-inputs?start=2026-03-01&end=2026-04-01&point_ids={world.points[0].pk}"
    )
    assert bi.status_code == 200 and bi.json()[0]["reason"] == "no_start_reading"
    assert bi.json()[0]["segments"] == [] and bi.json()[0]["meter_changed"] is False


def test_queue_shows_owner_deadline_and_overdue(world, login):
    c = login(world.auditor)
    long_ago = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    rs.record_reading(
        actor=None,
        point=world.points[0],
        reading_date=date(2026, 2, 25),
        values={"total": "5"},
        fault_flags=["voltage_loss"],
        at=long_ago,
    )
    page = c.get(reverse("readings:exceptions") + "?overdue=1").content.decode()
    assert "李核算" in page and "2026-03-05" in page and "超期" in page
    assert "没有异常" in c.get(reverse("readings:exceptions") + "?who=mine&rule=jump").content.decode()
    api = c.get("/api/v1/readings/exceptions?mine=true&overdue=true").json()
    assert api[0]["owner_name"] == "李核算" and api[0]["due_on"] == "2026-03-05" and api[0]["overdue"]
    r = c.post(
        f"/api/v1/readings/exceptions/{api[0]['id']}/owner",
        {"owner_id": world.reader.pk},
        content_type="application/json",
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "owner"


def test_api_opens_a_metering_work_order_and_lists_recorded_changes(world, login):
    from mmis.readings import workorders
    from mmis.workflow import services as wf
    from mmis.workflow.models import Task

    c = login(world.auditor)
    p = world.points[0]
    r = c.post(
        "/api/v1/readings/meter-changes/orders",
        {"point_id": p.pk, "reason": "fault"},
        content_type="application/json",
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "process"
    workorders.install_definitions(
        actor=None, province=world.utility.province, at=AT, effective_from=date(2025, 1, 1)
    )
    r = c.post(
        "/api/v1/readings/meter-changes/orders",
        {"point_id": p.pk, "reason": "fault"},
        content_type="application/json",
    )
    assert r.status_code == 201 and r.json()["number"].startswith("JL")
    task = Task.objects.get(instance_id=r.json()["id"], step_code="field")
    rs.record_reading(actor=None, point=p, reading_date=date(2026, 1, 25), values={"total": "100"}, at=AT)
    from mmis.assets import services as assets

    assets.register_meter(actor=None, org=p.org, asset_no="MNEW0009", kind="single_phase")
    wf.claim_task(actor=world.reader, task_id=task.pk, at=AT)
    wf.complete_task(
        actor=world.reader,
        task_id=task.pk,
        form={
            "done_on": "2026-02-01",
            "old_total": "130",
            "new_meter_asset_no": "MNEW0009",
            "new_total": "0",
        },
        at=AT,
    )
    listed = c.get(f"/api/v1/readings/meter-changes?point_id={p.pk}").json()
    assert [(x["old_meter"], x["new_meter"], x["old_final"], x["work_order_state"]) for x in listed] == [
        ("M00000001", "MNEW0009", {"total": "130"}, "running")
    ]
