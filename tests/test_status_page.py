"""The status page's rendering (exporter/status): the banner, figures, bars, chart, escaping and the CSP.

These test the HTML from known views; the page served by a real agent and seen in a real browser is
tested elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from exporter.history import DayBar, Incident, ResponseSlot
from exporter.state import State
from exporter.status.feeds import FEED_ENTRIES, Badge, api_json, atom_feed, badge, badge_json, badge_svg
from exporter.status.page import (
    CONTENT_SECURITY_POLICY,
    INCIDENTS_SHOWN,
    bars_svg,
    day_class,
    latency_svg,
    percent,
    render_page,
)
from exporter.status.view import (
    DAY_SECONDS,
    AnnouncementView,
    Banner,
    EndpointDetails,
    EndpointView,
    GroupView,
    IncidentView,
    PageView,
    banner,
)

NOW = 1_764_547_200.0 + 12 * 3600  # 2025-12-01 12:00 UTC
TODAY = NOW - NOW % DAY_SECONDS
U, D, G, X = State.UP, State.DOWN, State.DEGRADED, State.UNKNOWN


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], Banner.NO_DATA),
        ([X, X], Banner.NO_DATA),
        ([U, U, X], Banner.OPERATIONAL),
        ([U, G], Banner.DEGRADED),
        ([U, U, D], Banner.PARTIAL_OUTAGE),
        ([U, D], Banner.PARTIAL_OUTAGE),  # half down is not more than half
        ([U, D, D], Banner.MAJOR_OUTAGE),
        ([D, X, X, X], Banner.MAJOR_OUTAGE),  # unknown endpoints count neither way
        ([G, D, U, U, U], Banner.PARTIAL_OUTAGE),  # an outage outranks degradation
    ],
)
def test_banner(states: list[State], expected: Banner) -> None:
    assert banner(states) is expected


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (None, "no data"),
        (1.0, "100%"),
        (0.99999, "99.99%"),  # rounded down: never 100 % while anything was down
        (0.9995, "99.95%"),
        (0.5, "50.00%"),
        (0.0, "0.00%"),
        (float("nan"), "no data"),
    ],
)
def test_percent(ratio: float | None, text: str) -> None:
    assert percent(ratio) == text


def day(offset: int, uptime: float | None, incidents: int = 0, probes: int = 5760, failures: int = 0) -> DayBar:
    start = TODAY - offset * DAY_SECONDS
    down = 0.0 if uptime is None else (1 - uptime) * DAY_SECONDS
    outage = Incident(start, start + 60, 60.0, None, "down")
    return DayBar(start, probes, failures, down, uptime, (outage,) * incidents)


@pytest.mark.parametrize(
    ("d", "cls"),
    [
        (day(0, None), "d-none"),
        (day(0, 1.0), "d-ok"),
        (day(0, 1.0, incidents=1), "d-minor"),  # an incident shorter than the rounding still shows
        (day(0, 0.995), "d-minor"),
        (day(0, 0.97), "d-partial"),
        (day(0, 0.5), "d-major"),
    ],
)
def test_day_colours(d: DayBar, cls: str) -> None:
    assert day_class(d) == cls


def test_bars_join_quiet_days_and_give_each_bad_day_its_own_tooltip() -> None:
    days = [day(89 - i, 1.0) for i in range(90)]
    days[40] = day(49, 0.9, incidents=2, failures=576)
    svg = bars_svg("api", days)
    assert svg.count("<rect") == 1 and svg.count("<path") == 2
    first_run = re.search(r'<path class="d-ok" d="([^"]*)"><title>([^<]*)</title>', svg)
    assert first_run is not None and first_run.group(1).count("M") == 40
    assert "to" in first_run.group(2) and "100% up, no incident" in first_run.group(2)
    assert 'x="200"' in svg  # day 40 at 5 px a day
    assert "90.00% up, 5760 probes, 576 failed, down 2 h 24 min, 2 incidents" in svg
    assert 'aria-label="Uptime of api, one bar per day for 90 days: 1 day with downtime' in svg


def test_bars_of_a_young_endpoint_start_on_the_right() -> None:
    svg = bars_svg("new", [day(1, 1.0), day(0, 0.999, incidents=1)])
    assert 'd="M440 0h4v24h-4z"' in svg and 'x="445"' in svg


def test_latency_chart_breaks_at_gaps_and_names_its_figures() -> None:
    slots = [
        ResponseSlot(NOW - 86400 + i * 1800, 1, 0.02 if i != 3 else None, 0.08 if i != 3 else None) for i in range(48)
    ]
    svg = latency_svg("api", slots)
    p50 = re.search(r'class="l50" d="([^"]*)"', svg)
    assert p50 is not None and p50.group(1).count("M") == 2  # one gap, two pieces
    assert "median p50 20 ms, highest p95 80 ms" in svg
    assert "top: 100 ms" in svg
    assert "No response times" in latency_svg("api", [ResponseSlot(NOW, 1, None, None)])


HOSTILE = "<script>alert(1)</script>\"'&\u202eevil"


def page(**changes: object) -> PageView:
    endpoint = EndpointView(
        name=HOSTILE,
        state=State.DOWN,
        since=NOW - 600,
        uptime={"24h": 0.99, "7d": 0.999, "30d": 1.0, "90d": None},
        days=[day(1, 1.0), day(0, 0.99, incidents=1)],
        latency=[ResponseSlot(NOW - 1800, 1, 0.01, 0.05), ResponseSlot(NOW, 1, 0.02, 0.06)],
        details=EndpointDetails(url="https://internal.example/health", method="GET", last_message="HTTP 503"),
    )
    base = {
        "title": "Acme <status>",
        "now": NOW,
        "groups": [GroupView("APIs & more", [endpoint, EndpointView("web", State.UP)])],
        "incidents": [
            IncidentView(HOSTILE, NOW - 600, None, "http_status", "HTTP 503 from 10.0.0.7", vantage="eu-west"),
            IncidentView("web", NOW - 7200, NOW - 6900, "timeout"),
        ],
        "announcements": [AnnouncementView(HOSTILE, "Maintenance <b>tonight</b>", "maintenance", NOW, NOW + 3600)],
    }
    base.update(changes)
    return PageView(**base)  # type: ignore[arg-type]


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def parse(html: str) -> _Texts:
    parser = _Texts()
    parser.feed(html)
    return parser


def test_hostile_text_renders_as_text_and_no_script_exists() -> None:
    html = render_page(page())
    parsed = parse(html)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    text = "".join(parsed.text)
    assert HOSTILE in text and "Maintenance <b>tonight</b>" in text and "Acme <status>" in text


def test_the_page_has_landmarks_a_banner_and_the_figures() -> None:
    html = render_page(page())
    parsed = parse(html)
    for tag in ("header", "main", "footer", "section", "h1", "h2", "h3", "svg", "table"):
        assert tag in parsed.tags, tag
    text = " ".join(parsed.text)
    assert "Partial outage" in text  # one of two known endpoints down
    assert re.search(r"24 h\s*99.00%", text) and re.search(r"7 days\s*99.90%", text)
    assert re.search(r"30 days\s*100%", text) and re.search(r"90 days\s*no data", text)
    assert "ongoing" in text and "eu-west" in text and "5 min" in text  # the closed incident lasted 300 s
    assert 'role="img" aria-label="Uptime of' in html and 'aria-label="Response time of' in html


def test_details_only_when_the_config_allows() -> None:
    private = render_page(page())
    assert "internal.example" not in private and "10.0.0.7" not in private and "/metrics" not in private
    public = render_page(page(show_details=True))
    assert "GET https://internal.example/health" in public and "HTTP 503 from 10.0.0.7" in public
    assert 'href="/metrics"' in public


def test_the_content_security_policy_allows_exactly_the_one_style_block() -> None:
    html = render_page(page())
    parsed = parse(html)
    digest = base64.b64encode(hashlib.sha256(parsed.style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src" not in CONTENT_SECURITY_POLICY
    assert ' style="' not in html  # no inline style attribute: the policy would block it
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from another site


def test_history_note_and_empty_page() -> None:
    html = render_page(page(history_note="History unavailable: Prometheus did not answer in 2 s."))
    assert "History unavailable: Prometheus did not answer in 2 s." in html
    empty = render_page(PageView(title="Status", now=NOW, groups=[]))
    assert "No data yet" in empty and "No endpoints on this page." in empty and "No current incident." in empty


# -- badges, API, feed -------------------------------------------------------------------------


def endpoint_with(**changes: object) -> EndpointView:
    base: dict[str, object] = {
        "name": "api",
        "state": State.UP,
        "since": NOW - 3600,
        "uptime": {"24h": 0.9999, "7d": 0.995, "30d": 0.92, "90d": None},
        "response": 0.1234,
        "group": "core",
    }
    base.update(changes)
    return EndpointView(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "kind", "expected"),
    [
        ({}, "status", Badge("api", "up", "brightgreen")),
        ({"state": State.DOWN}, "status", Badge("api", "down", "red")),
        ({"state": State.DEGRADED}, "status", Badge("api", "degraded", "yellow")),
        ({"state": State.UNKNOWN}, "status", Badge("api", "no data", "lightgrey")),
        ({}, "uptime-24h", Badge("uptime 24h", "99.99%", "brightgreen")),
        ({}, "uptime-7d", Badge("uptime 7d", "99.50%", "green")),
        ({}, "uptime-30d", Badge("uptime 30d", "92.00%", "orange")),
        ({}, "response", Badge("response time", "123 ms", "brightgreen")),
        ({"response": None}, "response", Badge("response time", "no data", "lightgrey")),
        ({"response": 2.0}, "response", Badge("response time", "2000 ms", "red")),
    ],
)
def test_badges(changes: dict[str, object], kind: str, expected: Badge) -> None:
    assert badge(endpoint_with(**changes), kind) == expected


def test_badge_svg_and_shields_json_say_the_same() -> None:
    b = badge(endpoint_with(name='<a href="x">'), "status")
    svg = badge_svg(b)
    assert svg.startswith("<svg") and 'aria-label="&lt;a href=&quot;x&quot;&gt;: up"' in svg and "<a " not in svg
    assert ET.fromstring(svg).tag.endswith("svg")  # well-formed XML, as an <img> source must be
    shields = {"schemaVersion": 1, "label": '<a href="x">', "message": "up", "color": "brightgreen"}
    assert json.loads(badge_json(b)) == shields
    with pytest.raises(ValueError, match="unknown badge"):
        badge(endpoint_with(), "uptime-1y")


def test_api_is_as_public_as_the_page() -> None:
    private = json.loads(api_json(page()))
    assert private["status"] == "partial_outage" and private["generated_at"] == "2025-12-01T12:00:00Z"
    first = private["endpoints"][0]
    assert first["name"] == HOSTILE and first["state"] == "down" and first["uptime"]["7d"] == 0.999
    assert first["days"][-1] == {
        "date": "2025-12-01",
        "uptime": 0.99,
        "probes": 5760,
        "failures": 0,
        "down_seconds": 864.0,
        "incidents": 1,
    }
    assert "url" not in first and "message" not in private["incidents"][0]
    assert private["incidents"][0]["vantage"] == "eu-west" and private["incidents"][1]["duration_seconds"] == 300
    detailed = json.loads(api_json(page(show_details=True)))
    assert detailed["endpoints"][0]["url"] == "https://internal.example/health"
    assert detailed["incidents"][0]["message"] == "HTTP 503 from 10.0.0.7"


def test_atom_feed_is_well_formed_and_lists_incidents_newest_first() -> None:
    hostile = IncidentView("bad\x07name<&>", NOW - 60, None, "timeout")
    body = atom_feed(page(incidents=[hostile, *page().incidents]))
    root = ET.fromstring(body)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [e.findtext("a:title", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert titles[0] == "badname<&> is down" and titles[2] == "web was down (resolved)"
    assert titles[1] == f"{HOSTILE} is down from eu-west"
    ids = [e.findtext("a:id", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert len(set(ids)) == 3
    assert root.find("a:updated", ns) is not None and b"10.0.0.7" not in body


def test_incident_history_shows_the_newest_and_points_to_the_api_for_the_rest() -> None:
    older = [
        IncidentView("api", NOW - 3600 * (i + 2), NOW - 3600 * (i + 1), "timeout") for i in range(INCIDENTS_SHOWN + 2)
    ]
    html = render_page(page(incidents=tuple(older)))
    history = html[html.index("<h3>History</h3>") :]
    assert history.count('<td data-label="Endpoint">api</td>') == INCIDENTS_SHOWN
    assert "2 older incidents in the" in history
    assert "2 older" not in render_page(page(incidents=tuple(older[:INCIDENTS_SHOWN])))


def test_atom_feed_keeps_every_current_incident_and_the_newest_others() -> None:
    ns = {"a": "http://www.w3.org/2005/Atom"}
    ended = [IncidentView(f"e{i}", NOW - 3600 * (i + 2), NOW - 3600 * (i + 1), "timeout") for i in range(FEED_ENTRIES)]
    old_and_open = IncidentView("stuck", NOW - 90 * 86400, None, "connect")  # older than every ended one
    root = ET.fromstring(atom_feed(page(incidents=(*ended, old_and_open))))
    titles = [e.findtext("a:title", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert len(titles) == FEED_ENTRIES
    assert titles[-1] == "stuck is down"  # kept though oldest, and last: newest first
    assert titles[0] == "e0 was down (resolved)" and "e99 was down (resolved)" not in titles
