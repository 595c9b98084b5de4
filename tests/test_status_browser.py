"""The status page of a real agent in a real browser: Debian's Chromium driven by Playwright (nothing is downloaded).

One agent (`upwatch serve`) probes a healthy endpoint and a failing one whose name is hostile
(markup, quotes, right-to-left text), with a hostile announcement. Each test loads `/` and checks
what a visitor gets; each keeps a screenshot in test-artifacts/ (not committed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from browsing import chromium, visit
from helpers import Served, free_port, serve_upwatch, wait_for
from playwright.sync_api import Browser
from pytest_httpserver import HTTPServer

HOSTILE = "<script>alert('x')</script> \"quoted\" & שלום"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("browser")
    web = HTTPServer(host="127.0.0.1", port=free_port())
    web.expect_request("/health").respond_with_data("ok")
    web.start()
    config = tmp / "upwatch.yml"
    closed = free_port()
    config.write_text(
        "host: {enabled: false}\n"
        "status_page:\n"
        "  title: Acme status\n"
        "  announcements:\n"
        f"    - {{title: '{HOSTILE.replace(chr(39), chr(39) * 2)}', message: '<img src=x onerror=alert(1)>'}}\n"
        "endpoints:\n"
        f"  - {{name: checkout, url: '{web.url_for('/health')}', interval: 500ms, timeout: 400ms}}\n"
        f"  - name: '{HOSTILE.replace(chr(39), chr(39) * 2)}'\n"
        f"    url: 'http://127.0.0.1:{closed}/'\n"
        "    interval: 500ms\n    timeout: 400ms\n    failure_threshold: 1\n"
    )
    try:
        with serve_upwatch(tmp, config) as served:

            def both_known() -> bool:
                page = httpx.get(f"{served.base}/", timeout=5).text
                return 'class="state s-up"' in page and 'class="state s-down"' in page

            wait_for("both endpoints on the page with their states", both_known, 30)
            yield served
    finally:
        web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_the_page_on_a_phone_has_no_horizontal_scroll_no_error_and_no_foreign_request(
    agent: Served, browser: Browser
) -> None:
    page, errors, requests = visit(browser, f"{agent.base}/", "phone", viewport={"width": 375, "height": 800})
    assert errors == []
    assert requests and all(r.startswith(agent.base + "/") for r in requests), requests
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("document.scripts.length") == 0
    assert page.locator("section[role=status]").inner_text().strip() == "Partial outage"
    page.context.close()


def test_hostile_names_and_announcements_render_as_text(agent: Served, browser: Browser) -> None:
    page, errors, _ = visit(browser, f"{agent.base}/", "hostile", viewport={"width": 1200, "height": 900})
    assert errors == []
    assert page.locator("h3", has_text=HOSTILE).count() == 2  # the endpoint and the announcement
    assert page.get_by_text("<img src=x onerror=alert(1)>").count() == 1
    assert page.evaluate("document.querySelectorAll('img, script, iframe').length") == 0
    page.context.close()


def test_dark_and_light_follow_the_reader_and_javascript_is_not_needed(agent: Served, browser: Browser) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        page, errors, _ = visit(browser, f"{agent.base}/", scheme, color_scheme=scheme, java_script_enabled=False)
        assert errors == []
        assert page.locator("h1").inner_text() == "Acme status"
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.context.close()
    rgb = {k: [int(n) for n in re.findall(r"\d+", v)[:3]] for k, v in backgrounds.items()}
    assert sum(rgb["light"]) > 600 and sum(rgb["dark"]) < 150, backgrounds


def test_every_chart_has_a_text_alternative(agent: Served, browser: Browser) -> None:
    page, _, _ = visit(browser, f"{agent.base}/", "charts", viewport={"width": 1200, "height": 900})
    charts = page.locator("svg[role=img]")
    assert charts.count() >= 2
    for i in range(charts.count()):
        label = charts.nth(i).get_attribute("aria-label") or ""
        assert label.startswith(("Uptime of", "Response time of")), label
    page.context.close()
