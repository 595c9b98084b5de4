"""The README's screenshot of the status page: a demo history rendered by the real code, shot in Chromium.

A config of seven endpoints in three groups with an announcement, and a History and ResultStore fed
90 days of results through their public API on an injected clock (one result every 5 minutes per
endpoint, a handful of outages, one endpoint down right now and one slow), are rendered by
`render_page` exactly as the agent serves them. Playwright drives Debian's Chromium
(`/usr/bin/chromium`, nothing downloaded) with JavaScript off and writes the PNGs.

    .venv/bin/python bench/status_screenshot.py                 # docs/status-page.png, docs/status-page-phone-dark.png
    .venv/bin/python bench/status_screenshot.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from exporter.config import parse_config
from exporter.history import History
from exporter.results import FailureReason, ProbeResult
from exporter.status.build import build_page
from exporter.status.page import render_page
from exporter.store import ResultStore

DAY = 86_400
EVERY = 300.0

CONFIG = """
status_page:
  title: Acme status
  description: Live state of Acme's public services, probed every 5 minutes.
  groups:
    - name: Public API
      endpoints: [api, auth, search]
    - name: Website
      endpoints: [www, docs]
    - name: Payments
      endpoints: [checkout, webhooks]
  announcements:
    - title: Database maintenance on Saturday 02:00-03:00 UTC
      message: Writes to the API may be refused for up to 5 minutes during the switch-over.
      level: maintenance
endpoints:
  - {name: api, url: 'https://api.example.com/health'}
  - {name: auth, url: 'https://auth.example.com/health'}
  - {name: search, url: 'https://search.example.com/health'}
  - {name: www, url: 'https://www.example.com/'}
  - {name: docs, url: 'https://docs.example.com/'}
  - {name: checkout, url: 'https://pay.example.com/health'}
  - {name: webhooks, url: 'https://hooks.example.com/health'}
"""

# (endpoint, days ago, hour of the day it started, minutes down, reason, message)
OUTAGES = [
    ("api", 61, 14.2, 38, FailureReason.HTTP_STATUS, "status 503, expected 200-299"),
    ("api", 12, 3.5, 7, FailureReason.TIMEOUT, "timed out after 10s"),
    ("auth", 33, 9.0, 95, FailureReason.CONNECT, "connection refused"),
    ("search", 47, 20.0, 16, FailureReason.HTTP_STATUS, "status 502, expected 200-299"),
    ("www", 5, 11.5, 18, FailureReason.TLS, "certificate has expired"),
    ("checkout", 80, 1.0, 240, FailureReason.DNS, "name does not resolve"),
    ("checkout", 20, 16.0, 22, FailureReason.TIMEOUT, "timed out after 10s"),
    ("webhooks", 2, 8.0, 24, FailureReason.BODY, "body does not match 'ok'"),
]
DOWN_NOW = ("checkout", 25, FailureReason.HTTP_STATUS, "status 500, expected 200-299")  # minutes down until now
SLOW = "search"  # slower than degraded_after (2 s) in the last half hour


def page_html() -> str:
    """The demo page as the agent would serve it now."""
    config = parse_config(CONFIG)
    now = time.time()
    clock = [now - 90 * DAY]
    store = ResultStore(clock=lambda: clock[0])
    store.sync(config.probed)
    history = History(clock=lambda: clock[0], buckets=store.buckets)
    rng = random.Random(7)
    midnight = now // DAY * DAY
    for ep in config.probed:
        spans = [
            (midnight - ago * DAY + hour * 3600, midnight - ago * DAY + hour * 3600 + minutes * 60, reason, message)
            for name, ago, hour, minutes, reason, message in OUTAGES
            if name == ep.name
        ]
        if ep.name == DOWN_NOW[0]:
            spans.append((now - DOWN_NOW[1] * 60, now + 1, DOWN_NOW[2], DOWN_NOW[3]))
        typical = rng.uniform(0.03, 0.18)
        t = now - 90 * DAY + rng.uniform(0, EVERY)
        while t < now:
            failing = next(((reason, message) for a, b, reason, message in spans if a <= t < b), None)
            if failing is not None:
                result = ProbeResult(ep.name, False, t, 10.0, failing[0], failing[1])
            else:
                slow = ep.name == SLOW and t > now - 1800
                duration = rng.uniform(2.2, 3.0) if slow else rng.lognormvariate(0, 0.35) * typical
                result = ProbeResult(ep.name, True, t, duration, status_code=200)
            clock[0] = t + result.duration_seconds
            history.record(result, store.record(result))
            t += EVERY
    clock[0] = now
    view = build_page(config, store.snapshot(), history.summaries(), now, history_limit=len(config.probed))
    return render_page(view)


def main() -> None:
    """Render the demo page and shoot it: desktop light, phone dark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    html = page_html()
    args.out.mkdir(parents=True, exist_ok=True)
    shots = (
        ("status-page.png", {"width": 1100, "height": 1500}, "light"),
        ("status-page-phone-dark.png", {"width": 375, "height": 1500}, "dark"),
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        try:
            for name, viewport, scheme in shots:
                context = browser.new_context(
                    viewport=viewport, color_scheme=scheme, java_script_enabled=False, device_scale_factor=1
                )
                page = context.new_page()
                page.set_content(html)
                page.screenshot(path=str(args.out / name))
                context.close()
                print(f"{args.out / name}: {viewport['width']} px wide, {scheme}")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
