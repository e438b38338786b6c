"""Billing pages and API through the test client: start a run, watch it, audit, release, correct,
PDF and Excel; role refusals and data scope."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from django.utils import timezone

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "billing"))

from billing_support import FakeSource, add_point, new_customer, reading

from mmis.billing import inputs, services, views
from mmis.billing.models import Bill, BillingRun, Correction


@pytest.fixture
def setup(utility, monkeypatch):
    from mmis.org import services as org_services

    fake = FakeSource()
    st = utility.stations[0]
    points = []
    for i, kwh in enumerate(["450", "380", "0"]):
        p = add_point(new_customer(st, 500 + i), tariff_code="RES", book="F01")
        fake.readings[p.pk] = reading(p.pk, kwh)
        points.append(p)
    p = add_point(new_customer(st, 510), tariff_code="RES", book="F01")  # no reading
    auditor = org_services.create_user(
        username="auditor", password="Mmis@2026-test", org=utility.province, roles=["billing_auditor"]
    )
    outsider = org_services.create_user(
        username="auditor2", password="Mmis@2026-test", org=utility.counties[3], roles=["billing_auditor"]
    )
    monkeypatch.setattr(views, "_start_in_background", lambda run: services.run_in_process(run))
    monkeypatch.setattr(
        views,
        "_audit_in_background",
        lambda run, *, actor, org: services.audit_run(run=run, actor=actor, at=timezone.now(), org=org),
    )
    with inputs.use(fake):
        yield {"fake": fake, "points": points, "auditor": auditor, "outsider": outsider, "utility": utility}


def _renders(pdf: bytes, tmp_path) -> None:
    """The PDF rasterises (pdftoppm) to a page that is not blank; MMIS_KEEP_PDF=dir keeps it."""
    import os
    import shutil
    import subprocess

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    src = tmp_path / "bill.pdf"
    src.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-singlefile", str(src), str(tmp_path / "bill")], check=True
    )
    png = (tmp_path / "bill.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    if os.environ.get("MMIS_KEEP_PDF"):
        shutil.copy(src, os.environ["MMIS_KEEP_PDF"])
        shutil.copy(tmp_path / "bill.png", os.environ["MMIS_KEEP_PDF"])


def test_start_watch_audit_release_and_documents(setup, login, tmp_path):
    client = login(setup["auditor"])
    page = client.get("/billing/")
    assert page.status_code == 200 and "电费核算" in page.content.decode()
    r = client.post("/billing/", {"month": "2026-03", "org": setup["utility"].province.pk, "books": ""})
    run = BillingRun.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/billing/runs/{run.pk}/"
    detail = client.get(r["Location"]).content.decode()
    assert "F01" in detail and "no_reading" in detail and "已计算已审核" in detail
    assert "账单生命周期" in detail and "重新执行审核规则" in detail
    progress = client.get(f"/billing/runs/{run.pk}/progress/").content.decode()
    assert "100%" in progress and "hx-get" not in progress  # finished: polling stops
    queue = client.get(f"/billing/audit/?run={run.pk}").content.decode()
    zero = Bill.objects.get(point=setup["points"][2])
    assert zero.number in queue and "运行计量点电费为零" in queue
    bill = Bill.objects.get(point=setup["points"][0])
    html = client.get(f"/billing/bills/{bill.pk}/").content.decode()
    assert "计算过程" in html and "第一档电费" in html and "270.61" in html
    r = client.post("/billing/audit/", {"run": run.pk, "bill": [b.pk for b in Bill.objects.all()]})
    assert r.status_code == 302 and set(Bill.objects.values_list("state", flat=True)) == {"audited"}
    r = client.post(f"/billing/runs/{run.pk}/release/")
    run.refresh_from_db()
    assert run.state == "released" and run.released_bills == 3
    pdf = client.get(f"/billing/bills/{bill.pk}/pdf/")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    xlsx = client.get(f"/billing/runs/{run.pk}/export.xlsx")
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(xlsx.content))
    rows = list(wb["账单 Bills"].values)
    assert len(rows) == 4 and rows[0][0] == "账单号"
    assert list(wb["异常 Exceptions"].values)[1][3] == "no_reading"
    # correction from the bill page, approved by a manager
    r = client.post(
        f"/billing/bills/{Bill.objects.get(point=setup['points'][1]).pk}/",
        {"action": "correct", "reason_code": "reading_error", "reason": "抄错", "kwh": "420"},
    )
    c = Correction.objects.get()
    assert r.status_code == 302 and str(c.amount) == "28.88"
    manager = login(setup["utility"].users["manager"])
    assert manager.get("/billing/corrections/").status_code == 200
    # an auditor of another county sees the province's run, and exports none of its bills
    other = login(setup["outsider"])
    wb = load_workbook(io.BytesIO(other.get(f"/billing/runs/{run.pk}/export.xlsx").content))
    assert len(list(wb["账单 Bills"].values)) == 1 and len(list(wb["异常 Exceptions"].values)) == 1
    _renders(pdf.content, tmp_path)  # last: skipped where poppler is not installed


def test_api_runs_bills_and_refusals(setup, login):
    client = login(setup["auditor"])
    r = client.post(
        "/api/v1/billing-runs",
        {"month": "2026-03", "org_id": setup["utility"].province.pk},
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    run_id = r.json()["id"]
    got = client.get(f"/api/v1/billing-runs/{run_id}").json()
    assert got["state"] == "calculated" and got["bills"] == 3 and got["exceptions"] == 1
    assert client.get(f"/api/v1/billing-runs/{run_id}/exceptions").json()[0]["reason"] == "no_reading"
    bills = client.get(f"/api/v1/bills?run={run_id}&state=flagged").json()
    assert bills["count"] == 3
    first = next(b for b in bills["items"] if float(b["amount"]) > 0)
    detail = client.get(f"/api/v1/bills/{first['id']}").json()
    assert detail["lines"] and "seg" in detail["trace"]
    r = client.post(
        "/api/v1/bill-approvals",
        {"bill_ids": [b["id"] for b in bills["items"]]},
        content_type="application/json",
    )
    assert r.json() == {"approved": 3}
    assert client.post(f"/api/v1/billing-runs/{run_id}/release").json() == {"released": 3}
    bad = client.post(
        "/api/v1/billing-runs",
        {"month": "2026-13", "org_id": setup["utility"].province.pk},
        content_type="application/json",
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "month"
    # outside the data scope: 404; without the role: 403
    other = login(setup["outsider"])
    assert other.get(f"/api/v1/bills/{first['id']}").status_code == 404
    assert other.get(f"/billing/bills/{first['id']}/").status_code == 404
    clerk = login(setup["utility"].users["counter_a"])
    assert clerk.get("/api/v1/billing-runs").status_code == 403
    assert clerk.get("/billing/").status_code == 403


def test_a_run_of_drafts_and_its_audit_stage_through_the_api_and_the_run_page(setup, login):
    client = login(setup["auditor"])
    r = client.post(
        "/api/v1/billing-runs",
        {"month": "2026-03", "org_id": setup["utility"].province.pk, "audit_inline": False},
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    run_id = r.json()["id"]
    got = client.get(f"/api/v1/billing-runs/{run_id}").json()
    assert got["state"] == "drafted" and got["audit_inline"] is False and got["flagged"] == 0
    page = client.get(f"/billing/runs/{run_id}/").content.decode()
    assert "账单生命周期" in page and "执行审核规则" in page
    assert '<li class="d-flex align-items-center gap-1" data-state="draft">' in page
    r = client.post(f"/api/v1/billing-runs/{run_id}/audit")
    assert r.status_code == 202 and r.json()["partitions"] == 1
    got = client.get(f"/api/v1/billing-runs/{run_id}").json()
    assert got["state"] == "calculated" and got["flagged"] == 3
    states = {b.state for b in Bill.objects.filter(run_id=run_id)}
    assert states == {"flagged"}  # first bills
    r = client.post(f"/billing/runs/{run_id}/audit/")  # again from the page: nothing changes
    assert r.status_code == 302 and {b.state for b in Bill.objects.filter(run_id=run_id)} == {"flagged"}


def test_a_province_run_shows_each_auditor_only_their_part(setup, login):
    client = login(setup["auditor"])
    client.post("/billing/", {"month": "2026-03", "org": setup["utility"].province.pk, "books": ""})
    run = BillingRun.objects.get()
    assert (run.bills, run.exceptions) == (3, 1) and run.amount > 0
    mine = client.get("/billing/").content.decode()
    assert f'<td class="text-end">{run.amount}</td>' in mine
    # an auditor of another county sees the run, with its figures for their county only: none
    other = login(setup["outsider"]).get("/billing/").content.decode()
    assert f"/billing/runs/{run.pk}/" in other
    assert f'<td class="text-end">{run.amount}</td>' not in other
    assert '<td class="text-end">0</td><td class="text-end">0</td><td class="text-end">0</td>' in other
