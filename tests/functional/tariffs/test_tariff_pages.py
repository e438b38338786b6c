"""The catalog pages through the test client: list/filter, detail timeline, version tables and
calendar grid, copy-and-edit with field errors (nothing saved), publish, compare, try-it, export
and import with an error report."""

from __future__ import annotations

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


def test_list_search_and_filter(catalog, login):
    c = login(catalog.users["counter_a"])
    r = c.get("/tariffs/")
    html = r.content.decode()
    assert r.status_code == 200 and "电价目录" in html
    for code in ("RES-TIER", "GCI-TOU", "LI-2P", "AGR"):
        assert code in html
    assert "导入" not in html.split("电价目录")[1].split("<form")[0]  # counter staff cannot import
    r = c.get("/tariffs/", {"category": "agricultural"}, HTTP_HX_REQUEST="true")
    body = r.content.decode()
    assert "AGR" in body and "RES-TIER" not in body and "<html" not in body
    assert "没有符合条件的电价" in c.get("/tariffs/", {"q": "不存在"}).content.decode()


def test_detail_and_version_pages(catalog, login):
    c = login(catalog.users["counter_a"])
    t = Tariff.objects.get(code="GCI-TOU")
    html = c.get(f"/tariffs/{t.pk}/").content.decode()
    assert "版本时间线" in html and "2026年1月" in html and "2025年1月" in html and "执行中" in html
    v = t.versions.get(label="2026年1月")
    html = c.get(f"/tariffs/versions/{v.pk}/").content.decode()
    assert "分时时段" in html and "夏季(7–9月)" in html
    assert html.count('class="mmis-tou-sharp"') == 3  # 11–12 and 15–17 in summer
    assert "0.6589" in html  # agency purchase peak = 0.3876 × 1.7
    assert "可再生能源电价附加" in html and "0.04716875" in html
    assert "复制为新版本" not in html  # readers do not get the button
    assert c.get("/tariffs/999999/").status_code == 404


def test_copy_and_edit_with_field_errors_saves_nothing(catalog, login):
    c = login(catalog.users["admin"])
    t = Tariff.objects.get(code="RES-TIER")
    src = t.versions.order_by("-effective_from").first()
    r = c.get(f"/tariffs/{t.pk}/versions/new/", {"copy_from": src.pk})
    assert r.status_code == 200 and "0.8469" in r.content.decode()
    pricing = json.loads(json.dumps(src.pricing))
    pricing["energy"]["tiers"][1]["up_to"] = "150"
    pricing["energy"]["tiers"][2]["price"] = "-0.8"
    before = (TariffVersion.objects.count(), AuditLog.objects.count())
    r = c.post(
        f"/tariffs/{t.pk}/versions/new/",
        {
            "copy_from": src.pk,
            "label": "2027版",
            "effective_from": "2026-03-01",
            "tier_year_start_month": "1",
            "pricing": json.dumps(pricing),
            "calendar": "",
            "basic_prices": "{}",
        },
    )
    assert r.status_code == 422
    html = r.content.decode()
    assert "未保存" in html
    assert 'data-path="pricing.energy.tiers[1].up_to"' in html
    assert 'data-path="pricing.energy.tiers[2].price"' in html and "must not be negative" in html
    assert 'data-path="effective_from"' in html and "overlaps published version" in html
    assert (TariffVersion.objects.count(), AuditLog.objects.count()) == before
    # broken JSON names the field too
    r = c.post(f"/tariffs/{t.pk}/versions/new/", {"effective_from": "2027-01-01", "pricing": "{oops"})
    assert r.status_code == 422 and 'data-path="pricing"' in r.content.decode()
    # a float price is refused with a reason
    pricing = json.loads(json.dumps(src.pricing))
    text = json.dumps(pricing).replace('"0.5469"', "0.5469")
    r = c.post(f"/tariffs/{t.pk}/versions/new/", {"effective_from": "2027-01-01", "pricing": text})
    assert r.status_code == 422 and "not a JSON number" in r.content.decode()
    # now a good one: saved as draft, then published
    pricing = json.loads(json.dumps(src.pricing))
    pricing["energy"]["tiers"][2]["price"] = "0.8969"
    r = c.post(
        f"/tariffs/{t.pk}/versions/new/",
        {
            "copy_from": src.pk,
            "label": "2027版",
            "effective_from": "2027-01-01",
            "pricing": json.dumps(pricing),
            "tier_year_start_month": "1",
            "basic_prices": "{}",
        },
    )
    assert r.status_code == 302
    v = TariffVersion.objects.get(tariff=t, label="2027版")
    assert v.state == "draft" and v.based_on == src
    edit = {
        "label": "2027版",
        "effective_from": "2027-01-01",
        "pricing": json.dumps(pricing),
        "note": "第三档上调",
    }
    r = c.post(f"/tariffs/versions/{v.pk}/edit/", edit)
    assert r.status_code == 302
    v.refresh_from_db()
    assert v.note == "第三档上调"
    r = c.post(f"/tariffs/versions/{v.pk}/publish/")
    assert r.status_code == 302
    v.refresh_from_db()
    assert v.state == "published"
    r = c.get(f"/tariffs/versions/{v.pk}/edit/")
    assert r.status_code == 302  # published: no editing
    html = c.get(f"/tariffs/compare/?left={src.pk}&right={v.pk}").content.decode()
    assert 'data-path="pricing.energy.tiers[2].price"' in html and "0.8969" in html and "+5.90%" in html


def test_readers_cannot_write(catalog, login):
    c = login(catalog.users["counter_a"])
    t = Tariff.objects.get(code="AGR")
    assert c.get(f"/tariffs/{t.pk}/versions/new/").status_code == 403
    assert c.post(f"/tariffs/versions/{t.versions.first().pk}/publish/").status_code == 403
    assert c.get("/tariffs/import/").status_code == 403


def test_try_it(catalog, login):
    c = login(catalog.users["counter_a"])
    v = Tariff.objects.get(code="RES-TIER").versions.get(label="2025版")
    r = c.post(f"/tariffs/versions/{v.pk}/try/", {"kwh": "450", "persons": "5"}, HTTP_HX_REQUEST="true")
    html = r.content.decode()
    assert "169.54" in html and "53.72" in html and "42.35" in html and 'id="try-total"' in html
    r = c.post(f"/tariffs/versions/{v.pk}/try/", {"kwh": "-3"}, HTTP_HX_REQUEST="true")
    assert 'data-path="usage.kwh"' in r.content.decode()
    li = Tariff.objects.get(code="LI-2P").versions.get(label="2025年1月")
    r = c.post(
        f"/tariffs/versions/{li.pk}/try/",
        {"sharp": "20000", "peak": "100000", "flat": "120000", "valley": "160000", "kvarh": "250000",
         "basic_mode": "demand_contract", "contract_demand_kw": "1000", "max_demand_kw": "1200"},
        HTTP_HX_REQUEST="true",
    )  # fmt: skip
    html = r.content.decode()
    assert "29400.00" in html and "8400.00" in html and "功率因数调整电费" in html


def test_export_and_import_pages(catalog, login):
    c = login(catalog.users["admin"])
    r = c.get("/tariffs/export.json")
    data = json.loads(r.content)
    assert len(data["tariffs"]) == 6
    r = c.get("/tariffs/export.xlsx")
    assert load_workbook(io.BytesIO(r.content)).active.max_row == 12
    bad = json.loads(json.dumps(data))
    bad["tariffs"][2]["versions"][0]["pricing"]["power_factor"] = {"standard": "0.99"}
    f = io.BytesIO(json.dumps(bad).encode())
    f.name = "bad.json"
    r = c.post("/tariffs/import/", {"file": f})
    html = r.content.decode()
    assert (
        r.status_code == 422
        and "未导入任何数据" in html
        and "tariffs[2].versions[0].pricing.power_factor.standard" in html
    )
    f = io.BytesIO(json.dumps(data).encode())
    f.name = "ok.json"
    r = c.post("/tariffs/import/", {"file": f})
    assert r.status_code == 200 and "未变化版本 11 个" in r.content.decode()
