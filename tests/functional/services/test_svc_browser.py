"""Browser journey (headless Chromium via Playwright): a new low-voltage residential connection
from the counter to the customer callback, each step done by the person whose role it is, one
send-back on the way; at the end the customer file has the customer, the meter and the contract."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

pytestmark = pytest.mark.browser

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip("/usr/bin/chromium is not installed; this journey runs in CI", allow_module_level=True)


@pytest.fixture
def page():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        yield pg
        context.close()
        browser.close()


def test_new_residential_connection_in_the_browser(transactional_db, live_server, page):
    from django.utils import timezone

    from mmis.assets import services as asset_services
    from mmis.customers.models import Customer
    from mmis.org import services as org_services
    from mmis.services import services as svc
    from mmis.workflow.models import ProcessInstance
    from mmis_testing import PASSWORD, build_small_utility

    u = build_small_utility()
    svc.install_definitions(
        actor=u.users["admin"],
        province=u.province,
        at=timezone.now() - timedelta(days=1),
        effective_from=date(2020, 1, 1),
        codes=["lv_residential_new"],
    )
    for name, role, org in [
        ("inspector_a", "inspector", u.counties[0]),
        ("fitter_a", "meter_reader", u.counties[0]),
        ("agent_city", "service_agent", u.cities[0]),
    ]:
        org_services.create_user(username=name, password=PASSWORD, org=org, roles=[role], display_name=name)
    asset_services.register_meter(
        actor=u.users["admin"], org=u.counties[0], asset_no="B000001", kind="single_phase"
    )
    base = live_server.url

    def sign_in(username):
        page.context.clear_cookies()
        page.goto(f"{base}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()

    def claim_and_open(order_url):
        page.goto(f"{base}/workflow/queue/")
        page.locator("button", has_text="领取").first.click()
        page.wait_for_url(order_url)

    # the counter clerk accepts the application
    sign_in("counter_a")
    page.goto(f"{base}/services/")
    page.click("a[data-process=lv_residential_new]")
    page.select_option("#org", str(u.stations[0].pk))
    page.select_option("#d_customer_kind", "individual")
    page.fill("#d_customer_name", "李娜")
    page.select_option("#d_id_type", "resident_id")
    page.fill("#d_id_number", "11010519491231002X")
    page.fill("#d_phone", "13812345678")
    page.fill("#d_region", "示范省第1市甲县")
    page.fill("#d_detail", "幸福路8号")
    page.select_option("#d_voltage_level", "220V")
    page.click("#submit-application")
    # the capacity is missing: the error stands next to the field, nothing is created
    page.wait_for_selector("[data-field=capacity_kva]")
    assert ProcessInstance.objects.count() == 0
    page.fill("#d_capacity_kva", "8")
    page.fill("#d_tier_persons", "4")
    page.click("#submit-application")
    page.wait_for_selector("[data-task=accept]")
    assert "承诺办结时限" in page.content()
    order_url = page.url
    page.check("#f_documents_ok")
    page.click("[data-task=accept] button[type=submit]")
    page.wait_for_selector("[data-task=survey]")

    # the inspector surveys, but first sends it back once for a missing document
    sign_in("inspector_a")
    claim_and_open(order_url)
    page.click("text=回退 / 转派 / 附件")
    page.fill("input[name=reason]", "缺少产权证明")
    page.click("button:has-text('回退')")
    page.wait_for_selector("[data-action=sent_back]")
    sign_in("counter_a")
    page.goto(order_url)
    page.click("[data-task=accept] button[type=submit]")
    page.wait_for_selector("[data-task=survey]")
    sign_in("inspector_a")
    claim_and_open(order_url)
    page.select_option("#f_survey_result", "ok")
    page.click("[data-task=survey] button[type=submit]")

    # the counter clerk signs the contract
    sign_in("counter_a")
    claim_and_open(order_url)
    page.fill("#f_signed_on", date.today().isoformat())
    page.fill("#f_contract_years", "5")
    page.click("[data-task=contract] button[type=submit]")

    # the fitter installs the meter and energises
    sign_in("fitter_a")
    claim_and_open(order_url)
    page.fill("#f_meter_asset_no", "B000001")
    page.fill("#f_installed_on", date.today().isoformat())
    page.fill("#f_energised_on", date.today().isoformat())
    page.click("[data-task=install] button[type=submit]")
    page.wait_for_selector("[data-task=archive]")

    sign_in("counter_a")
    claim_and_open(order_url)
    page.click("[data-task=archive] button[type=submit]")
    sign_in("agent_city")
    claim_and_open(order_url)
    page.select_option("#f_satisfaction", "satisfied")
    page.click("[data-task=callback] button[type=submit]")
    page.wait_for_selector("[data-state=completed]")
    assert page.locator("[data-action=archived]").count() == 1

    inst = ProcessInstance.objects.get()
    customer = Customer.objects.get(customer_no=inst.data["customer_no"])
    assert customer.name == "李娜"
    point = customer.metering_points.get()
    assert point.meters.get().asset_no == "B000001" and point.tier_persons == 4
    assert customer.contracts.get().state == "effective"
