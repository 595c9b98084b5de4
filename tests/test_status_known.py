"""Known histories on the status page of a real agent (its in-memory history), read in Debian's Chromium.

One agent (`upwatch serve`) probes three local endpoints every second: `steady` always answers 200;
`flaky` answers 500 while the test says so, long enough to open an incident (failure_threshold 2),
then recovers (success_threshold 2); the third, with a hostile name, points at a port nobody
listens on. The test holds `flaky` down, reads the page, lets it recover, and reads it again.

Each reading is of one view of the page: the test polls /api/v1/endpoints until the agent builds
a new view (at most every 5 seconds, each with a new `generated_at`), so the view's clock lies
between the wall-clock times around that request; /metrics is read just before and just after,
and the reading counts only if no probe result arrived in between. The page is then loaded in
Chromium at 375 px wide and the API read again: the same `generated_at` means the same view.

What is compared with what (the figures are defined in exporter/history/__init__.py):
  - the page's banner, with the states in /metrics (README, "Status page");
  - every uptime the page and the API show, with ``1 - down / known`` from the agent's counters:
    down is ``upwatch_endpoint_downtime_seconds_total``, known runs from the first probe's start;
  - the day bars' probes, failures and down seconds, the incidents and their durations, with
    ``upwatch_probes_total``, ``upwatch_endpoint_incidents_total`` and the downtime counter: equal
    to the millisecond once an incident is closed. While one is open the history counts it up to
    the view's clock, and the counter up to the start of the last probe (it stands still between
    results): they differ by exactly that time, which the test takes from /metrics;
  - today's bar's colour and tooltip, and the incident tables, with the same view's API figures
    and the incidents' start and end from ``upwatch_endpoint_state_since_timestamp_seconds``.

A screenshot of each reading lands in test-artifacts/ (not committed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from browsing import chromium, visit
from helpers import Samples, Served, endpoint_yaml, free_port, serve_upwatch, value, wait_for
from playwright.sync_api import Browser
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

STEADY, FLAKY, GONE = "steady", "flaky", 'gone <i>v1</i> & "old"'
NAMES = (STEADY, FLAKY, GONE)
BANNERS = {
    "operational": "All systems operational",
    "degraded": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "no_data": "No data yet",
}
WINDOWS = {"24h": "24 h", "7d": "7 days", "30d": "30 days", "90d": "90 days"}
# Seconds: the history keeps times to the millisecond, the counters as floats.
MS = 0.0015
# The families that change with every result: equal before and after a request, no result arrived between.
COUNTERS = (
    "upwatch_probes_total",
    "upwatch_endpoint_downtime_seconds_total",
    "upwatch_endpoint_incidents_total",
    "upwatch_endpoint_state",
    "upwatch_probe_last_run_timestamp_seconds",
)
_READ_PAGE = """() => {
  const text = (el) => (el ? el.textContent.trim() : null);
  const endpoints = {};
  for (const li of document.querySelectorAll("li.ep")) {
    const uptimes = {};
    for (const div of li.querySelectorAll("dl.up > div"))
      uptimes[text(div.querySelector("dt"))] = text(div.querySelector("dd"));
    const shapes = li.querySelector("svg").querySelectorAll("path, rect");
    const today = shapes[shapes.length - 1];
    endpoints[text(li.querySelector("h3"))] = {
      state: text(li.querySelector(".state")),
      uptimes,
      today: { cls: today.getAttribute("class"), title: text(today.querySelector("title")) },
    };
  }
  const incidents = {};
  let heading = null;
  for (const el of document.querySelector("section[aria-labelledby=incidents]").children) {
    if (el.tagName === "H3") incidents[(heading = text(el))] = [];
    else if (heading && el.querySelector("table"))
      incidents[heading] = [...el.querySelectorAll("tbody tr")].map((tr) => [...tr.cells].map(text));
  }
  return {
    banner: text(document.querySelector("section[role=status]")),
    scrollWidth: document.documentElement.scrollWidth,
    endpoints,
    incidents,
  };
}"""


@dataclass(frozen=True)
class Reading:
    """One view of the page: the window its clock lies in, /metrics around it, its API and what Chromium shows."""

    name: str
    t0: float
    t1: float
    samples: Samples
    api: dict[str, Any]
    page: dict[str, Any]
    errors: list[str]
    foreign: list[str]  # requests that left the agent

    def endpoint(self, name: str) -> dict[str, Any]:
        """The API's record of an endpoint."""
        return next(ep for ep in self.api["endpoints"] if ep["name"] == name)

    def metric(self, family: str, name: str, **labels: str) -> float:
        """A sample of /metrics for the endpoint."""
        return value(self.samples, family, endpoint=name, **labels)

    def state(self, name: str) -> str:
        """The endpoint's state in /metrics."""
        return _state(self.samples, name)


@dataclass(frozen=True)
class Story:
    """What the test did and saw: when each endpoint's history began, the incident of `flaky`, and the readings."""

    first_probe: Mapping[str, float]  # start of each endpoint's first probe (its history's `known_since`)
    outage: tuple[float, float]  # start and end of flaky's incident, from /metrics
    readings: Mapping[str, Reading]  # "incident" (flaky held down) and "recovered"


def _state(samples: Samples, name: str) -> str:
    """An endpoint's state, from the one-hot upwatch_endpoint_state."""
    states = ("unknown", "up", "degraded", "down")
    return next(s for s in states if value(samples, "upwatch_endpoint_state", endpoint=name, state=s))


def _counters(samples: Samples) -> list[Any]:
    return [samples.get(family) for family in COUNTERS]


def _read(agent: Served, browser: Browser, name: str) -> Reading:
    """A reading of a view built while the test looked, with no result arriving meanwhile (see the module's doc)."""
    api_url = f"{agent.base}/api/v1/endpoints"
    seen = [httpx.get(api_url, timeout=10).json()["generated_at"]]
    got: list[Reading] = []

    def fresh_view_read() -> bool:
        before = agent.metrics()
        t0 = time.time()
        api = httpx.get(api_url, timeout=10).json()
        t1 = time.time()
        after = agent.metrics()
        if api["generated_at"] == seen[-1]:
            return False  # an older view, built before t0
        seen.append(api["generated_at"])
        if _counters(before) != _counters(after):
            return False
        page, errors, requests = visit(
            browser, f"{agent.base}/", f"known-{name}", viewport={"width": 375, "height": 800}
        )
        try:
            shown = page.evaluate(_READ_PAGE)
        finally:
            page.context.close()
        latest = httpx.get(api_url, timeout=10).json()["generated_at"]
        if latest != api["generated_at"]:
            seen.append(latest)  # built for the page, not in a request of ours that t0 and t1 bracket
            return False  # the page was of a later view
        foreign = [r for r in requests if not r.startswith(agent.base + "/")]
        got.append(Reading(name, t0, t1, after, api, shown, errors, foreign))
        return True

    wait_for(f"a view of the page built while no result arrived ({name})", fresh_view_read, 40)
    return got[0]


def _since(agent: Served, name: str) -> float:
    return value(agent.metrics(), "upwatch_endpoint_state_since_timestamp_seconds", endpoint=name)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The agent's story, told once for the module's tests: flaky held down, read; recovered, read."""
    tmp = tmp_path_factory.mktemp("known")
    failing = threading.Event()

    def flaky(request: Request) -> Response:
        return Response("broken", status=500) if failing.is_set() else Response("ok")

    web = HTTPServer(host="127.0.0.1", port=free_port())
    web.expect_request("/steady").respond_with_data("ok")
    web.expect_request("/flaky").respond_with_handler(flaky)
    web.start()
    config = tmp / "upwatch.yml"
    thresholds = {"failure_threshold": "2", "success_threshold": "2"}
    config.write_text(
        "host: {enabled: false}\nstatus_page: {title: Known history}\nendpoints:\n"
        + endpoint_yaml(STEADY, web.url_for("/steady"), **thresholds)
        + endpoint_yaml(FLAKY, web.url_for("/flaky"), **thresholds)
        + endpoint_yaml(f"'{GONE}'", f"http://127.0.0.1:{free_port()}/", **thresholds)
    )
    try:
        with serve_upwatch(tmp, config) as agent, chromium() as browser:
            first = _first_probes(agent)
            failing.set()
            wait_for("flaky down", lambda: _state(agent.metrics(), FLAKY) == "down", 30)
            start = _since(agent, FLAKY)
            during = _read(agent, browser, "incident")
            failing.clear()
            wait_for("flaky up again", lambda: _state(agent.metrics(), FLAKY) == "up", 30)
            end = _since(agent, FLAKY)
            after = _read(agent, browser, "recovered")
            yield Story(first, (start, end), {"incident": during, "recovered": after})
    finally:
        web.stop()


def _first_probes(agent: Served) -> dict[str, float]:
    """The start of each endpoint's first probe: the `since` of its first state, read before it changes."""

    def settled() -> bool:
        samples = agent.metrics()
        return [_state(samples, n) for n in NAMES] == ["up", "up", "down"]

    wait_for("steady and flaky up, the third down", settled, 30)
    samples = agent.metrics()
    for name in (STEADY, FLAKY):  # up since their first probe: none failed before it
        assert value(samples, "upwatch_probes_total", endpoint=name, result="failure") == 0
    # Down since its first failed probe, which was its first probe.
    assert value(samples, "upwatch_probes_total", endpoint=GONE, result="success") == 0
    return {name: value(samples, "upwatch_endpoint_state_since_timestamp_seconds", endpoint=name) for name in NAMES}


def _down_bounds(reading: Reading, name: str) -> tuple[float, float]:
    """The seconds the endpoint was down by the view's clock, from the counters: to the ms but for an open incident.

    While it is down, the counter stands at the start of its last probe (a failure: no recovery is
    being confirmed, when the counter would stop at the first good probe); the history counts on to
    the view's clock, which lies between t0 and t1.
    """
    counter = reading.metric("upwatch_endpoint_downtime_seconds_total", name)
    tolerance = MS * max(1.0, reading.metric("upwatch_endpoint_incidents_total", name))
    if reading.state(name) != "down":
        return counter - tolerance, counter + tolerance
    assert reading.metric("probe_success", name) == 0
    last_start = reading.metric("upwatch_probe_last_run_timestamp_seconds", name) - reading.metric(
        "probe_duration_seconds", name
    )
    return counter + reading.t0 - last_start - tolerance, counter + reading.t1 - last_start + tolerance


def _uptime_bounds(story: Story, reading: Reading, name: str) -> tuple[float, float]:
    """``1 - down / known`` from the counters, known since the first probe's start: every window began before it."""
    low_down, high_down = _down_bounds(reading, name)
    first = story.first_probe[name]
    low, high = 1 - high_down / (reading.t0 - first), 1 - low_down / (reading.t1 - first)
    return min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0)


def _percent_fits(text: str, low: float, high: float) -> bool:
    """Whether the page's text is an uptime in [low, high], written with two decimals rounded down (README)."""
    if text == "100%":
        return high >= 1.0
    shown = float(text.removesuffix("%"))
    return math.floor(low * 10_000) / 100 - 0.005 <= shown <= math.floor(min(high, 0.99999999) * 10_000) / 100 + 0.005


def _band(uptime: float | None, incidents: int) -> str:
    """A day bar's colour class (README): grey no data, green all up and no incident, amber >= 99 %, orange >= 95 %."""
    if uptime is None:
        return "d-none"
    if uptime >= 1.0 and not incidents:
        return "d-ok"
    return "d-minor" if uptime >= 0.99 else "d-partial" if uptime >= 0.95 else "d-major"


def _banner(states: list[str]) -> str:
    """The banner the README promises for these states, as the API's `status`."""
    known = [s for s in states if s != "unknown"]
    down = known.count("down")
    if not known:
        return "no_data"
    if down * 2 > len(known):
        return "major_outage"
    if down:
        return "partial_outage"
    return "degraded" if "degraded" in known else "operational"


def _minute(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(round(ts, 3)))


def _durations(low: float, high: float) -> set[str]:
    """How the page may write a duration known to lie in [low, high] (under an hour)."""
    words = set()
    for seconds in (low, high):
        s = round(seconds)
        assert s < 3600
        words.add(f"{s} s" if s < 60 else f"{s // 60} min")
    return words


def _reason(reading: Reading, name: str) -> str:
    """The one reason the endpoint's probes failed for, by upwatch_probe_failures_total."""
    reasons = {
        dict(labels)["reason"]
        for labels, count in reading.samples["upwatch_probe_failures_total"].items()
        if ("endpoint", name) in labels and count > 0
    }
    assert len(reasons) == 1, reasons
    return reasons.pop()


@pytest.mark.parametrize("when", ["incident", "recovered"])
def test_every_figure_equals_the_agents_counters(story: Story, when: str) -> None:
    r = story.readings[when]
    assert r.api["status"] == _banner([r.state(n) for n in NAMES])
    for name in NAMES:
        ep = r.endpoint(name)
        assert ep["state"] == r.state(name)
        days = ep["days"]
        good = r.metric("upwatch_probes_total", name, result="success")
        bad = r.metric("upwatch_probes_total", name, result="failure")
        assert sum(d["probes"] for d in days) == good + bad
        assert sum(d["failures"] for d in days) == bad
        incidents = [i for i in r.api["incidents"] if i["endpoint"] == name]
        assert len(incidents) == r.metric("upwatch_endpoint_incidents_total", name)
        low, high = _down_bounds(r, name)
        assert low <= sum(d["down_seconds"] for d in days) <= high, name
        assert low <= sum(i["duration_seconds"] for i in incidents) <= high, name
        low, high = _uptime_bounds(story, r, name)
        for window in WINDOWS:
            assert low - 1e-9 <= ep["uptime"][window] <= high + 1e-9, (name, window, ep["uptime"][window], low, high)
        if math.floor(story.first_probe[name] / 86_400) == math.floor(r.t0 / 86_400):  # all its history is today's
            assert low - 1e-9 <= days[-1]["uptime"] <= high + 1e-9, name
    start, end = story.outage
    if when == "recovered":  # closed: down from its first failed probe to its first good one
        assert r.metric("upwatch_endpoint_downtime_seconds_total", FLAKY) == pytest.approx(end - start, abs=1e-6)
    shown = {(i["endpoint"], i["start"], i["end"], i["reason"]) for i in r.api["incidents"]}
    iso = lambda ts: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(round(ts, 3)))  # noqa: E731
    gone = (GONE, iso(story.first_probe[GONE]), None, _reason(r, GONE))
    flaky = (FLAKY, iso(start), iso(end) if when == "recovered" else None, _reason(r, FLAKY))
    assert shown == {gone, flaky}


@pytest.mark.parametrize("when", ["incident", "recovered"])
def test_the_page_shows_the_known_history(story: Story, when: str) -> None:
    r = story.readings[when]
    assert r.errors == []
    assert r.foreign == []
    assert r.page["scrollWidth"] <= 375
    assert r.page["banner"] == BANNERS[_banner([r.state(n) for n in NAMES])]
    assert r.page["banner"] == {"incident": "Major outage", "recovered": "Partial outage"}[when]
    assert sorted(r.page["endpoints"]) == sorted(NAMES)  # the hostile name as text
    for name in NAMES:
        shown, api = r.page["endpoints"][name], r.endpoint(name)
        since = r.metric("upwatch_endpoint_state_since_timestamp_seconds", name)
        assert shown["state"] == f"{r.state(name).capitalize()} since {_minute(since)}"
        low, high = _uptime_bounds(story, r, name)
        for window, label in WINDOWS.items():
            assert _percent_fits(shown["uptimes"][label], low, high), (name, window, shown["uptimes"][label], low, high)
        today = api["days"][-1]
        assert shown["today"]["cls"] == _band(today["uptime"], today["incidents"]), (name, today)
        if shown["today"]["cls"] == "d-ok":
            assert shown["today"]["title"].endswith(f"{today['date']}: 100% up, no incident")
        else:
            assert shown["today"]["title"].startswith(f"{today['date']}: ")
            assert f"{today['probes']} probes, {today['failures']} failed" in shown["today"]["title"]
    assert r.page["endpoints"][STEADY]["today"]["cls"] == "d-ok"
    assert r.page["endpoints"][STEADY]["uptimes"]["24 h"] == "100%"
    assert r.page["endpoints"][GONE]["today"]["cls"] == "d-major"
    assert r.page["endpoints"][GONE]["uptimes"]["24 h"] == "0.00%"
    assert r.page["endpoints"][FLAKY]["today"]["cls"] != "d-ok"

    start, end = story.outage
    gone_start = story.first_probe[GONE]
    gone = [GONE, _minute(gone_start), "ongoing", None, _reason(r, GONE)]
    gone_for = _durations(r.t0 - gone_start - MS, r.t1 - gone_start + MS)
    if when == "incident":
        flaky = [FLAKY, _minute(start), "ongoing", None, _reason(r, FLAKY)]
        flaky_for = _durations(r.t0 - start - MS, r.t1 - start + MS)
        current, past = [(flaky, flaky_for), (gone, gone_for)], []
    else:
        flaky = [FLAKY, _minute(start), _minute(end), None, _reason(r, FLAKY)]
        flaky_for = _durations(end - start - 2 * MS, end - start + 2 * MS)
        current, past = [(gone, gone_for)], [(flaky, flaky_for)]
    for heading, expected in (("Current", current), ("History", past)):
        rows = r.page["incidents"][heading]
        assert len(rows) == len(expected), (heading, rows)
        for row, (cells, durations) in zip(rows, expected, strict=True):
            assert row[3] in durations, (row, durations)
            assert row[:3] + row[4:] == cells[:3] + cells[4:]
