"""/api/v1/tariffs through the test client: reads for everyone, writes for provincial publishers,
422 with field paths for bad input and nothing saved."""

from __future__ import annotations

import copy
import io
import json
from datetime import datetime

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from mmis.cli.demo.step_tariffs import demo_catalog
from mmis.org.models import AuditLog
from mmis.tariffs import services
from mmis.tariffs.models import Tariff, TariffVersion

AT = timezone.make_aware(datetime(2026, 1, 5, 10, 0))


@pytest.fixture
def catalog(utility):
    services.import_catalog(actor=utility.users["admin"], payload=demo_catalog(utility.province.code), at=AT)
    return utility


def _post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_list_filter_and_detail(catalog, login):
    c = login(catalog.users["counter_a"])
    r = c.get("/api/v1/tariffs")
    assert r.status_code == 200 and len(r.json()) == 6
    r = c.get("/api/v1/tariffs", {"category": "residential"})
    assert sorted(t["code"] for t in r.json()) == ["RES-TIER", "RES-TIER-Y"]
    r = c.get("/api/v1/tariffs", {"q": "两部制"})
    assert [t["code"] for t in r.json()] == ["LI-2P"]
    tid = r.json()[0]["id"]
    d = c.get(f"/api/v1/tariffs/{tid}").json()
    assert [v["label"] for v in d["versions"]] == ["2026年1月", "2025年1月"]
    assert d["versions"][1]["effective_to"] == "2026-01-01"
    r = c.get("/api/v1/tariffs/resolve", {"code": "LI-2P", "on": "2025-03-01"})
    assert r.status_code == 200 and r.json()["version_label"] == "2025年1月"
    assert r.json()["basic_prices"]["capacity"] == "25"
    assert c.get("/api/v1/tariffs/resolve", {"code": "LI-2P", "on": "2024-03-01"}).status_code == 404
    assert c.get("/api/v1/tariffs/999999").status_code == 404


def test_copy_edit_publish_compare_over_api(catalog, login):
    c = login(catalog.users["admin"])
    t = Tariff.objects.get(code="GCI-TOU")
    cur = t.versions.get(label="2026年1月")
    pricing = copy.deepcopy(cur.pricing)
    pricing["components"][0]["price"] = "0.3999"
    r = _post(
        c,
        f"/api/v1/tariffs/{t.pk}/versions",
        {"copy_from": cur.pk, "label": "2026年12月", "effective_from": "2026-12-01", "pricing": pricing},
    )
    assert r.status_code == 201, r.content
    new = r.json()
    assert new["state"] == "draft" and new["calendar"] == cur.calendar and new["based_on_id"] == cur.pk
    r = c.get("/api/v1/tariffs/compare", {"left": cur.pk, "right": new["id"]})
    diffs = {d["path"]: d for d in r.json()["differences"]}
    assert diffs["pricing.components[agency_purchase].price"]["right"] == "0.3999"
    assert diffs["pricing.components[agency_purchase].price"]["ratio"] == "0.0317"
    r = c.post(f"/api/v1/tariffs/versions/{new['id']}/publish")
    assert r.status_code == 200 and r.json()["state"] == "published"
    r = c.put(
        f"/api/v1/tariffs/versions/{new['id']}",
        data=json.dumps({"note": "x"}),
        content_type="application/json",
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "state"
    hist = c.get(f"/api/v1/tariffs/{t.pk}/history").json()
    assert hist[0]["action"] == "tariff.version.publish" and hist[0]["actor"] == "省管理员"


def test_bad_input_is_422_with_paths_and_saves_nothing(catalog, login):
    c = login(catalog.users["admin"])
    t = Tariff.objects.get(code="RES-TIER")
    cur = t.versions.order_by("-effective_from").first()
    before = (TariffVersion.objects.count(), AuditLog.objects.count())
    pricing = copy.deepcopy(cur.pricing)
    pricing["energy"]["tiers"][1]["up_to"] = "100"
    pricing["funds"][0]["price"] = "-0.01"
    r = _post(
        c,
        f"/api/v1/tariffs/{t.pk}/versions",
        {"copy_from": cur.pk, "effective_from": "2026-01-01", "pricing": pricing},
    )
    assert r.status_code == 422
    errs = {e["path"]: e["message"] for e in r.json()["errors"]}
    assert "increasing order" in errs["pricing.energy.tiers[1].up_to"]
    assert errs["pricing.funds[0].price"] == "must not be negative"
    assert "overlaps published version" in errs["effective_from"]
    # unknown PF standard and a missing TOU period on a new tariff
    tou = copy.deepcopy(Tariff.objects.get(code="GCI-TOU").versions.first().data())
    tou["pricing"]["power_factor"] = {"standard": "0.88"}
    del tou["pricing"]["energy"]["prices"]["valley"]
    del tou["pricing"]["components"][0]["tou_ratios"]["valley"]
    r = _post(
        c,
        "/api/v1/tariffs",
        {
            "code": "GCI-TOU2",
            "name": "x",
            "usage_category": "general_ci",
            "version": {**tou, "effective_from": "2026-01-01"},
        },
    )
    assert r.status_code == 422
    errs = {e["path"]: e["message"] for e in r.json()["errors"]}
    assert "unknown value '0.88'" in errs["version.pricing.power_factor.standard"]
    assert "missing TOU period" in errs["version.pricing.energy.prices.valley"]
    assert not Tariff.objects.filter(code="GCI-TOU2").exists()
    assert (TariffVersion.objects.count(), AuditLog.objects.count()) == before


def test_writes_need_a_provincial_publisher(catalog, login):
    t = Tariff.objects.get(code="AGR")
    v = t.versions.first()
    for name in ("counter_a", "manager"):
        c = login(catalog.users[name])
        r = _post(c, f"/api/v1/tariffs/{t.pk}/versions", {"copy_from": v.pk, "effective_from": "2027-01-01"})
        assert r.status_code == 403
    assert t.versions.count() == 1


def test_create_tariff_with_first_version(catalog, login):
    c = login(catalog.users["admin"])
    first = copy.deepcopy(Tariff.objects.get(code="AGR").versions.first().data())
    r = _post(
        c,
        "/api/v1/tariffs",
        {
            "code": "agr-irr",
            "name": "农业排灌",
            "usage_category": "agricultural",
            "voltage_level": "380V",
            "version": {**first, "label": "2026版", "effective_from": "2026-01-01"},
            "publish": True,
        },
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["code"] == "AGR-IRR" and body["versions"][0]["state"] == "published"
    r = _post(c, "/api/v1/tariffs", {"code": "AGR-IRR", "name": "dup", "usage_category": "agricultural"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "code"


def test_try_it_rates_through_the_engine(catalog, login):
    c = login(catalog.users["counter_a"])
    v = Tariff.objects.get(code="RES-TIER").versions.get(label="2025版")
    r = _post(c, f"/api/v1/tariffs/versions/{v.pk}/rate", {"usage": {"kwh": "450", "persons": 5}})
    assert r.status_code == 200
    lines = {x["code"]: x["amount"] for x in r.json()["lines"]}
    assert (lines["energy.tier1"], lines["energy.tier2"], lines["energy.tier3"]) == (
        "169.54",
        "53.72",
        "42.35",
    )
    li = Tariff.objects.get(code="LI-2P").versions.get(label="2025年1月")
    usage = {
        "tou_kwh": {"sharp": "20000", "peak": "100000", "flat": "120000", "valley": "160000"},
        "kvarh": "250000",
        "max_demand_kw": "1200",
    }
    r = _post(
        c,
        f"/api/v1/tariffs/versions/{li.pk}/rate",
        {"usage": usage, "point": {"basic_mode": "demand_contract", "contract_demand_kw": "1000"}},
    )
    assert r.status_code == 200, r.content
    body = r.json()
    lines = {x["code"]: x["amount"] for x in body["lines"]}
    assert lines["basic.demand"] == "29400.00" and lines["basic.demand_excess"] == "8400.00"
    assert body["power_factor"] == "0.85" and body["pf_adjustment_rate"] == "0.025"
    r = _post(
        c,
        f"/api/v1/tariffs/versions/{li.pk}/rate",
        {"usage": {"kwh": 5}, "point": {"basic_mode": "capacity"}},
    )
    assert r.status_code == 422
    paths = {e["path"] for e in r.json()["errors"]}
    assert "point.capacity_kva" in paths


def test_export_json_excel_and_import(catalog, login):
    c = login(catalog.users["admin"])
    exported = c.get("/api/v1/tariffs/export").json()
    assert exported["format"] == "mmis.tariffs/1" and len(exported["tariffs"]) == 6
    r = _post(c, "/api/v1/tariffs/import", exported)
    assert r.json() == {"tariffs_created": 0, "versions_created": 0, "versions_unchanged": 11}
    bad = copy.deepcopy(exported)
    bad["tariffs"][0]["versions"].append(
        {**bad["tariffs"][0]["versions"][-1], "effective_from": "2027-01-01"}
    )
    bad["tariffs"][0]["versions"][-1]["pricing"]["energy"]["price"] = "-1"
    r = _post(c, "/api/v1/tariffs/import", bad)
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"].startswith("tariffs[0].versions[")
    assert TariffVersion.objects.count() == 11
    x = c.get("/api/v1/tariffs/export.xlsx")
    assert x.status_code == 200
    wb = load_workbook(io.BytesIO(x.content))
    ws = wb.active
    header = [cell.value for cell in ws[1]]
    assert header[:3] == ["电价码", "名称", "发布单位"]
    rows = [[cell.value for cell in row] for row in ws.iter_rows(min_row=2)]
    assert len(rows) == 11
    res = next(r for r in rows if r[0] == "RES-TIER" and r[5] == "2025版")
    assert res[header.index("第一档上限")] == 210 and float(res[header.index("第三档")]) == pytest.approx(
        0.8469
    )
    up = c.post(
        "/api/v1/tariffs/import/file",
        {"file": io.BytesIO(b"not json")},
    )
    assert up.status_code == 422 and up.json()["errors"][0]["path"] == "file"
