"""The search page in headless Chromium against a real `souk serve` process: type, facet, page."""
from __future__ import annotations

import subprocess
import sys

import pytest

from support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, browser_or_skip, free_port, start_server


@pytest.fixture(scope="module")
def server(served_index):
    port = free_port()
    proc = start_server(served_index, port)
    url = f"http://127.0.0.1:{port}"
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_shopper_types_filters_and_pages(server):
    sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(server + "/")
            page.fill("#q", "chocolate")
            page.wait_for_function("document.querySelector('#summary').textContent.includes('results')")
            page.wait_for_selector("#results li.hit mark")
            total = int(page.text_content("#summary").split()[0].replace(",", ""))
            assert total > 10
            page.wait_for_selector("#suggestions li")
            page.screenshot(path=str(ARTIFACTS / "page-english.png"), full_page=True)
            assert "choc" in page.text_content("#suggestions li").lower(), "autocomplete under the box"
            page.press("#q", "Escape")
            assert page.is_hidden("#suggestions")

            brand = page.locator("[data-facet=brand] button").first
            value, count = brand.get_attribute("data-value"), int(brand.locator(".count").text_content())
            brand.click()
            try:
                page.wait_for_function(f"document.querySelector('#summary').textContent.startsWith('{count} ')",
                                       timeout=15000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "page-facet-fail.png"), full_page=True)
                raise AssertionError(f"{value} {count}: {page.text_content('#summary')} {page.input_value('#q')} "
                                     f"{page.text_content('#active-filters')}")
            assert page.locator("#active-filters .chip").count() == 1
            assert all(value in t for t in page.locator("#results .hit .meta").all_text_contents())
            page.locator("#active-filters .chip").click()
            try:
                page.wait_for_function(f"document.querySelector('#summary').textContent.startsWith('{total:,} ')",
                                       timeout=15000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "page-chip-fail.png"), full_page=True)
                raise AssertionError(f"{total}: {page.text_content('#summary')} {page.input_value('#q')} "
                                     f"{page.text_content('#active-filters')}")

            first_page = page.locator("#results .hit h2").all_text_contents()
            page.click("#next")
            page.wait_for_function("document.querySelector('#page-label').textContent.startsWith('Page 2')")
            page.wait_for_function(f"document.querySelector('#results .hit h2').textContent !== {first_page[0]!r}")
            assert not set(page.locator("#results .hit h2").all_text_contents()) & set(first_page)

            page.fill("#q", "蛋糕")
            page.wait_for_function("document.querySelector('#page-label').textContent.startsWith('Page 1')")
            page.wait_for_selector("#results li.hit mark")
            assert "蛋糕" in page.text_content("#results")
            page.wait_for_timeout(400)  # let the completions for 蛋糕 arrive, then close them
            page.press("#q", "Escape")
            page.locator("#results .why").first.click()
            assert "recall" in page.text_content("#why-body")
            page.screenshot(path=str(ARTIFACTS / "page-chinese.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
            assert width <= 390, "the page must fit a phone-width screen"
            assert all(u.startswith(server) for u in requests), "everything is served by souk, no CDN"
        finally:
            browser.close()


@pytest.mark.slow
def test_search_waits_for_input_method_composition(server):
    sync_api = browser_or_skip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            searches = []
            page.on("request", lambda r: "/search?" in r.url and searches.append(r.url))
            page.goto(server + "/")
            page.wait_for_selector("#results li.hit")
            searches.clear()
            page.dispatch_event("#q", "compositionstart")
            for partial in ("d", "da", "dan"):
                page.fill("#q", partial)
            page.wait_for_timeout(500)
            assert searches == [], "no search while the input method composes"
            page.fill("#q", "蛋糕")
            page.dispatch_event("#q", "compositionend")
            page.wait_for_timeout(600)
            assert len(searches) == 1 and "%E8%9B%8B%E7%B3%95" in searches[0]
        finally:
            browser.close()


# ---- a shop's own catalog: its currency and a category drill-down (inferred schema) ----------------
SHOP_ROWS = [("J1", "兰蔻 小黑瓶 精华 Lancome serum", "¥1,299", "美妆 | 护肤 | 精华"),
             ("J2", "雅诗兰黛 面霜 Estee Lauder cream", "¥630", "美妆 | 护肤 | 面霜"),
             ("J3", "SK-II 神仙水 facial essence", "¥1,540.50", "美妆 | 护肤 | 精华"),
             ("J4", "阿玛尼 粉底液 Armani foundation", "¥560", "美妆 | 彩妆 | 粉底"),
             ("J5", "迪奥 口红 Dior lipstick", "¥350", "美妆 | 彩妆 | 口红"),
             ("J6", "完美日记 口红 礼盒 lipstick gift set", "¥129.90", "美妆 | 彩妆 | 口红"),
             ("J7", "乐高 积木 LEGO bricks", "¥899", "玩具 | 积木"),
             ("J8", "拼图 1000片 jigsaw puzzle", "¥89", "玩具 | 拼图")]


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory):
    import csv

    work = tmp_path_factory.mktemp("shop")
    with open(work / "shop.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Sku", "商品名称 title", "Price", "Category Path"])
        writer.writerows(SHOP_ROWS)
    subprocess.run([sys.executable, "-m", "souk", "index", str(work / "shop.csv"), "--index", str(work / "index")],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    port = free_port()
    proc = start_server(work / "index", port)
    url = f"http://127.0.0.1:{port}"
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_page_shows_the_catalogs_currency_and_a_category_drill_down(shop_server):
    sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(shop_server + "/")
            page.wait_for_selector("#results li.hit .price")
            prices = page.locator("#results .hit .price").all_text_contents()
            assert "¥1,299.00" in prices and "¥129.90" in prices and not any("$" in x for x in prices)

            facet = "[data-facet=Category_Path]"
            assert page.locator(f"{facet} button").all_text_contents() == ["美妆6", "玩具2"]
            assert page.get_attribute(facet, "data-level") == "1"
            page.locator(f"{facet} button[data-value='美妆']").click()
            page.wait_for_selector(f"{facet}[data-level='2']")
            assert page.text_content("#summary").startswith("6 ")
            assert sorted(page.locator(f"{facet} button").all_text_contents()) == ["彩妆3", "护肤3"]
            page.locator(f"{facet} button[data-value='美妆 > 护肤']").click()
            page.wait_for_selector(f"{facet}[data-level='3']")
            assert page.text_content("#summary").startswith("3 ")
            assert page.locator("[data-crumbs=Category_Path] button").all_text_contents() == ["All", "美妆", "护肤"]
            page.screenshot(path=str(ARTIFACTS / "page-drill-down.png"), full_page=True)

            page.fill("#q", "口红")  # the drill-down stays while the query changes
            page.wait_for_function("document.querySelector('#summary').textContent.startsWith('0 ')")
            page.locator("[data-crumbs=Category_Path] button[data-path='美妆']").click()
            page.wait_for_function("document.querySelector('#summary').textContent.startsWith('2 ')")
            assert sorted(page.locator(f"{facet} button").all_text_contents()) == ["彩妆2"]
            page.locator("[data-crumbs=Category_Path] button[data-path='']").click()
            page.wait_for_selector(f"{facet}[data-level='1']")
            assert page.locator("#active-filters .chip").count() == 0
        finally:
            browser.close()


@pytest.mark.slow
def test_relaxed_results_say_which_words_they_may_lack(server):
    sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(server + "/")
            page.fill("#q", "chocolate shampoo")  # no product holds both words (nor a synonym of one)
            page.wait_for_selector("#relaxed:not([hidden])", timeout=90_000)  # a loaded machine answers late
            notice = page.text_content("#relaxed")
            assert "without" in notice and "chocolate" in notice
            assert all("shampoo" in t.lower() for t in page.locator("#results .hit h2").all_text_contents())
            page.press("#q", "Escape")
            page.screenshot(path=str(ARTIFACTS / "page-relaxed.png"), full_page=True)
            page.fill("#q", "chocolate biscuit")  # products hold both: no notice
            page.wait_for_selector("#relaxed", state="hidden")
        finally:
            browser.close()
