"""The status page's other forms: SVG badges, shields.io endpoint JSON, the JSON API and the Atom feed of incidents.

Badges follow shields.io's flat style (label on grey, message on the state's colour) so they sit
well next to other README badges; their `.json` twins are shields.io's "endpoint" schema, for
people who restyle them through shields.io. All of it is built from the same `PageView` as the
page, so every figure is the page's.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from exporter.state import State

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

from .page import percent
from .view import EndpointView, IncidentView, PageView

BADGE_KINDS: tuple[str, ...] = ("status", "uptime-24h", "uptime-7d", "uptime-30d", "response")

# shields.io's named colours, as hex for our own SVG.
# The Atom feed lists at most this many incidents (all the current ones, the newest others): feed readers
# poll it often, and the JSON API has every incident.
FEED_ENTRIES = 100

_COLOURS = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "lightgrey": "#9f9f9f",
}
_STATE_BADGE = {
    State.UP: ("up", "brightgreen"),
    State.DEGRADED: ("degraded", "yellow"),
    State.DOWN: ("down", "red"),
    State.UNKNOWN: ("no data", "lightgrey"),
}
# Characters XML 1.0 cannot carry (a target's message may contain them): dropped from the feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class Badge:
    """What one badge says: label, message and colour (a shields.io colour name)."""

    label: str
    message: str
    colour: str


def badge(endpoint: EndpointView, kind: str) -> Badge:
    """The badge of one kind (see BADGE_KINDS) for an endpoint; ValueError for an unknown kind."""
    if kind == "status":
        message, colour = _STATE_BADGE[endpoint.state]
        return Badge(endpoint.name, message, colour)
    if kind.startswith("uptime-") and kind in BADGE_KINDS:
        window = kind.removeprefix("uptime-")
        ratio = endpoint.uptime.get(window)
        return Badge(f"uptime {window}", percent(ratio), _uptime_colour(ratio))
    if kind == "response":
        seconds = endpoint.response
        if seconds is None:
            return Badge("response time", "no data", "lightgrey")
        colour = "brightgreen" if seconds < 0.2 else "green" if seconds < 0.5 else "yellow" if seconds < 1 else "red"
        return Badge("response time", f"{seconds * 1000:.0f} ms", colour)
    raise ValueError(f"unknown badge {kind!r}")


def _uptime_colour(ratio: float | None) -> str:
    if ratio is None or math.isnan(ratio):
        return "lightgrey"
    if ratio >= 0.999:
        return "brightgreen"
    if ratio >= 0.99:
        return "green"
    if ratio >= 0.95:
        return "yellow"
    if ratio >= 0.9:
        return "orange"
    return "red"


def _text_width(text: str) -> int:
    # Verdana 11 px averages about 6.5 px a character (shields.io measures exactly; near enough here).
    return max(1, round(len(text) * 6.5)) + 10


def badge_svg(b: Badge) -> str:
    """The badge as a flat SVG, with its text as the accessible name."""
    left, right = _text_width(b.label), _text_width(b.message)
    width = left + right
    label, message = html.escape(b.label), html.escape(b.message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{_COLOURS[b.colour]}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:g}" y="14">{label}</text><text x="{left + right / 2:g}" y="14">{message}</text>'
        "</g></svg>"
    )


def badge_json(b: Badge) -> str:
    """shields.io's endpoint schema for the same badge."""
    return json.dumps({"schemaVersion": 1, "label": b.label, "message": b.message, "color": b.colour})


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _incident(inc: IncidentView, page: PageView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "endpoint": inc.endpoint,
        "start": _iso(inc.start),
        "end": _iso(inc.end),
        "duration_seconds": round(inc.duration(page.now), 3),
        "reason": inc.reason,
    }
    if inc.vantage:
        out["vantage"] = inc.vantage
    if page.show_details:
        out["message"] = inc.message
    return out


def _endpoint(ep: EndpointView, page: PageView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": ep.name,
        "group": ep.group,
        "state": ep.state.value,
        "since": _iso(ep.since) if ep.state is not State.UNKNOWN else None,
        "uptime": dict(ep.uptime),
        "response_time_p50_24h_seconds": ep.response,
        "days": [
            {
                "date": time.strftime("%Y-%m-%d", time.gmtime(d.start)),
                "uptime": d.uptime,
                "probes": d.probes,
                "failures": d.failures,
                "down_seconds": round(d.down_seconds, 3),
                "incidents": len(d.incidents),
            }
            for d in ep.days
        ],
    }
    if page.show_details and ep.details is not None:
        out["url"], out["method"] = ep.details.url, ep.details.method
        out["last_failure"] = ep.details.last_message
    return out


def api_json(page: PageView) -> str:
    """The JSON API (/api/v1/endpoints): states, uptimes, days and incidents, as public as the page."""
    data: Mapping[str, Any] = {
        "title": page.title,
        "generated_at": _iso(page.now),
        "status": page.banner.value,
        "vantage": page.vantage,
        "history_note": page.history_note,
        "endpoints": [_endpoint(ep, page) for ep in page.endpoints],
        "incidents": [_incident(inc, page) for inc in page.incidents],
        "announcements": [
            {"title": a.title, "message": a.message, "level": a.level, "starts": _iso(a.starts), "ends": _iso(a.ends)}
            for a in page.announcements
        ],
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def feed_incidents(page: PageView) -> list[IncidentView]:
    """The incidents the feed lists, newest first: every current one, and the newest others, FEED_ENTRIES in all."""
    current = [inc for inc in page.incidents if inc.end is None]
    ended = [inc for inc in page.incidents if inc.end is not None][: max(FEED_ENTRIES - len(current), 0)]
    return sorted([*current, *ended], key=lambda inc: inc.start, reverse=True)


def atom_feed(page: PageView) -> bytes:
    """The Atom feed of incidents (/feed.atom), newest first: those of `feed_incidents`.

    Its ids are URNs and its links relative (resolved against wherever the feed was fetched), so
    nothing in it comes from the request: a Host header can neither appear in it nor vary it.
    """
    import xml.etree.ElementTree as ET

    atom = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", atom)
    feed = ET.Element(f"{{{atom}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{atom}}}{tag}", attrs)
        if text is not None:
            el.text = _xml_text(text)
        return el

    sub(feed, "id", "urn:upwatch:incidents")
    sub(feed, "title", f"{page.title}: incidents")
    latest = max((inc.end or inc.start for inc in page.incidents), default=page.now)
    sub(feed, "updated", _iso(latest))
    sub(feed, "link", rel="self", href="/feed.atom")
    sub(feed, "link", rel="alternate", type="text/html", href="/")
    author = sub(feed, "author")
    sub(author, "name", page.title)
    for inc in feed_incidents(page):
        entry = sub(feed, "entry")
        sub(entry, "id", f"urn:upwatch:incident:{quote(_xml_text(inc.endpoint), safe='')}:{inc.start * 1000:.0f}")
        where = f" from {inc.vantage}" if inc.vantage else ""
        title = f"{inc.endpoint} is down{where}" if inc.end is None else f"{inc.endpoint} was down{where} (resolved)"
        sub(entry, "title", title)
        sub(entry, "published", _iso(inc.start))
        sub(entry, "updated", _iso(inc.end or inc.start))
        sub(entry, "link", rel="alternate", type="text/html", href="/")
        start, end = _iso(inc.start), _iso(inc.end)
        summary = f"Down since {start}" if inc.end is None else f"Down from {start} to {end}"
        summary += f" ({round(inc.duration(page.now))} s)"
        if inc.reason:
            summary += f"; reason: {inc.reason}"
        if page.show_details and inc.message:
            summary += f": {inc.message}"
        sub(entry, "summary", summary + ".")
    out: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return out
