"""One end-to-end journey in headless Chromium (Debian's chromium driven by Playwright):
a counter clerk signs in, finds a customer by typing in the live search, opens the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.browser

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip(
        "/usr/bin/chromium is not installed (apt-get install chromium); this journey runs in CI",
        allow_module_level=True,
    )


@pytest.fixture
def page():
    # Playwright's sync API runs an event loop in this thread; Django's ORM must be allowed to run here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()


def test_counter_clerk_finds_a_customer_and_opens_the_file(transactional_db, live_server, page):
    from mmis_testing import PASSWORD, build_small_utility

    utility = build_small_utility()
    customer = utility.customers["a"]

    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.fill("#id_username", "counter_a")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=我的工作台")

    page.goto(f"{live_server.url}/customers/")
    page.locator("input[name=q]").last.type("张伟", delay=30)
    link = page.locator("#search-results a", has_text=customer.customer_no)
    link.wait_for()
    # the other county's customer is never offered
    assert utility.customers["b"].customer_no not in page.inner_text("#search-results")
    link.click()

    page.wait_for_selector("#customer-name")
    assert page.inner_text("#customer-name") == "张伟"
    assert customer.customer_no in page.inner_text("h1")
    assert "人民路12号" in page.content()
