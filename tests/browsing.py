"""The status page in a real browser: Debian's Chromium driven by Playwright (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from helpers import REPO, program
from playwright.sync_api import Browser, Page, sync_playwright

ARTIFACTS = REPO / "test-artifacts"  # screenshots, one per case (not committed)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, until the block ends."""
    executable = program("chromium")
    with sync_playwright() as p:
        # --no-sandbox: the tests may run as root (CI), where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def visit(browser: Browser, url: str, name: str, **context: object) -> tuple[Page, list[str], list[str]]:
    """Open the page in a new context; the console errors and the URLs of every request it made; a screenshot kept.

    The caller closes `page.context`.
    """
    ctx = browser.new_context(**context)  # type: ignore[arg-type]
    page = ctx.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"status-{name}.png"), full_page=True)
    return page, errors, requests
