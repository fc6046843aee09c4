"""The admin analytics page in headless Chromium: clicks from the search page show up in its tables and plots."""
from __future__ import annotations

import shutil

import pytest

from souk.events.log import EventLog
from support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_or_skip, free_port, start_server

ADMIN, SEARCH = "A" * 24, "S" * 24


@pytest.fixture(scope="module")
def server(demo_index, tmp_path_factory):
    index = tmp_path_factory.mktemp("analytics") / "index"
    shutil.copytree(demo_index, index, ignore=shutil.ignore_patterns("events"))
    port = free_port()
    proc = start_server(index, port, ADMIN, SEARCH)
    url = f"http://127.0.0.1:{port}"
    yield url, index
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_page_clicks_reach_the_log_and_the_analytics_view(server):
    url, index = server
    sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{url}/?key={SEARCH}")
            page.fill("#q", "chocolate")
            page.wait_for_selector("#results li.hit mark")
            page.locator("#results li.hit h2").nth(1).click()  # the shopper clicks the second result
            page.wait_for_function("window.soukClicks.sent.length === 1")
            clicks = [r for r in EventLog(index).read() if r["kind"] == "click"]
            assert len(clicks) == 1 and clicks[0]["position"] == 2 and clicks[0]["session"].startswith("p-")

            page.goto(f"{url}/analytics?key={SEARCH}")  # a search key may not read analytics
            page.wait_for_selector("#totals.error")
            assert "admin" in page.text_content("#totals")

            page.goto(f"{url}/analytics?key={ADMIN}")
            page.wait_for_selector("#top_queries td")
            assert "chocolate" in page.text_content("#top_queries")
            assert page.locator("#plots svg rect").count() >= 2
            rows = page.locator("#by_position tbody tr")
            cells = [rows.nth(1).locator("td").nth(i).text_content() for i in range(3)]
            assert cells[0] == "2" and float(cells[2]) > 0  # position 2 was clicked (CTR over its impressions)
            assert float(rows.nth(0).locator("td").nth(2).text_content()) == 0
            page.screenshot(path=str(ARTIFACTS / "analytics.png"), full_page=True)
        finally:
            browser.close()
