"""The public status page as one HTML document: no script, no request to any other site, inline SVG drawn here.

Every text that comes from the config or a target (names, announcements, reasons) is escaped; the
only styles are the one <style> block, whose hash the Content-Security-Policy names, and classes.
Light and dark follow `prefers-color-scheme`; the layout is one column that fits a phone.

The 90-day bars are compact on purpose (a page of 500 endpoints stays small): consecutive days of
the same kind with nothing to report (all up, or no data) are one SVG path with one tooltip for
the run; every other day is its own bar with its own tooltip.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import math
import time
from collections.abc import Sequence
from itertools import groupby

from exporter.history.records import DayBar, ResponseSlot
from exporter.state import State

from .view import (
    BANNER_TEXT,
    DAY_SECONDS,
    DAYS_SHOWN,
    UPTIME_WINDOWS,
    AnnouncementView,
    EndpointView,
    IncidentView,
    PageView,
)

# The incident history shows the newest this many; the JSON API has them all.
INCIDENTS_SHOWN = 100

_CSS = """\
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--card:#f6f8fa;
--ok:#1a7f37;--minor:#9a6700;--partial:#bc4c00;--major:#cf222e;--none:#d0d7de;--p50:#0969da;--p95:#8250df}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;
--card:#161b22;--ok:#3fb950;--minor:#d29922;--partial:#db6d28;--major:#f85149;--none:#30363d;--p50:#4493f8;
--p95:#ab7df8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif}
header,main,footer{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin:2rem 0 .5rem}h3{font-size:1rem;margin:0}
a{color:var(--p50)}
.banner{border-radius:.5rem;padding:1rem;font-weight:600;color:#fff;margin:1rem 0}
.banner p{margin:0}
.b-operational{background:var(--ok)}.b-degraded{background:var(--minor)}.b-partial_outage{background:var(--partial)}
.b-major_outage{background:var(--major)}.b-no_data{background:var(--muted)}
.note{border-left:4px solid var(--minor);padding:.25rem .75rem;color:var(--muted)}
ul.eps,ul.news{list-style:none;padding:0;margin:0}
li.ep,li.news{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.75rem;margin:.5rem 0}
.head{display:flex;flex-wrap:wrap;justify-content:space-between;gap:.5rem;align-items:baseline}
.state{font-weight:600}.s-up{color:var(--ok)}.s-degraded{color:var(--minor)}.s-down{color:var(--major)}
.s-unknown{color:var(--muted)}
dl.up{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;margin:.5rem 0}dl.up div{display:flex;gap:.35rem}
dt{color:var(--muted)}dd{margin:0;font-variant-numeric:tabular-nums}
svg{display:block;width:100%;height:auto}
.d-ok{fill:var(--ok)}.d-minor{fill:var(--minor)}.d-partial{fill:var(--partial)}.d-major{fill:var(--major)}
.d-none{fill:var(--none)}
.l50,.l95{fill:none;stroke-width:1.5}.l50{stroke:var(--p50)}.l95{stroke:var(--p95)}.axis{stroke:var(--line)}
.legend{display:flex;gap:1rem;color:var(--muted);font-size:.85rem}.k50{color:var(--p50)}.k95{color:var(--p95)}
.span{display:flex;justify-content:space-between;color:var(--muted);font-size:.8rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.35rem .5rem;
border-bottom:1px solid var(--line);vertical-align:top}
.wrap{overflow-x:auto}
@media (max-width:40rem){.inc thead{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}
.inc tr{display:block;border-bottom:1px solid var(--line);padding:.35rem 0}
.inc td{display:grid;grid-template-columns:5.5rem 1fr;gap:.5rem;border:0;padding:.1rem .5rem}
.inc td::before{content:attr(data-label);color:var(--muted)}}
.details{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.lvl{font-size:.8rem;text-transform:uppercase;color:var(--muted)}
footer{color:var(--muted);font-size:.85rem}
"""

# The page's policy: nothing but this document and its one style block, no script at all.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# The page's icon (a dot), served at /favicon.svg so that browsers do not ask for a missing /favicon.ico.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#1a7f37"/></svg>'
)

_STATE_TEXT = {State.UP: "Up", State.DEGRADED: "Degraded", State.DOWN: "Down", State.UNKNOWN: "No data yet"}
_WINDOW_TEXT = {"24h": "24 h", "7d": "7 days", "30d": "30 days", "90d": "90 days"}
# A day's class by its uptime: all up, a little down (at least 99 %), more (at least 95 %), worse.
_MINOR, _PARTIAL = 0.99, 0.95
_BAR_WIDTH, _BAR_STEP, _BAR_HEIGHT = 4, 5, 24
_CHART_WIDTH, _CHART_HEIGHT = 480, 64
# The outline of the bar at each day's place, ready to join into a run's path.
_BAR_PATHS = tuple(f"M{i * _BAR_STEP} 0h{_BAR_WIDTH}v{_BAR_HEIGHT}h-{_BAR_WIDTH}z" for i in range(DAYS_SHOWN))


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def percent(ratio: float | None) -> str:
    """An uptime as the page writes it: two decimals, rounded down so that 99.999 % never reads 100 %."""
    if ratio is None or math.isnan(ratio):
        return "no data"
    if ratio >= 1.0:
        return "100%"
    return f"{math.floor(max(ratio, 0.0) * 10_000) / 100:.2f}%"


def duration_text(seconds: float) -> str:
    """A duration in words a visitor reads at a glance: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < DAY_SECONDS:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // DAY_SECONDS} d {s % DAY_SECONDS // 3600} h"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.0095 else f"{seconds * 1000:.1f} ms"


def day_class(day: DayBar) -> str:
    """The colour class of a day's bar."""
    if day.uptime is None:
        return "d-none"
    if day.uptime >= 1.0 and not day.incidents:
        return "d-ok"
    if day.uptime >= _MINOR:
        return "d-minor"
    if day.uptime >= _PARTIAL:
        return "d-partial"
    return "d-major"


def day_tooltip(day: DayBar) -> str:
    """A day's figures, as its bar's tooltip says them."""
    if day.uptime is None:
        return f"{_day(day.start)}: no data"
    parts = [f"{_day(day.start)}: {percent(day.uptime)} up", f"{day.probes} probes, {day.failures} failed"]
    if day.down_seconds > 0:
        parts.append(f"down {duration_text(day.down_seconds)}")
    if day.incidents:
        count = len(day.incidents)
        parts.append(f"{count} incident{'s' if count != 1 else ''}")
    return ", ".join(parts)


def bars_svg(name: str, days: Sequence[DayBar]) -> str:
    """The 90-day bars of one endpoint: oldest on the left, today on the right."""
    days = list(days)[-DAYS_SHOWN:]
    classes = [day_class(d) for d in days]
    shapes: list[str] = []
    index = DAYS_SHOWN - len(days)  # too young for 90 days: the bars start further right
    first = 0
    for cls, run in groupby(classes):
        count = sum(1 for _ in run)
        run_days = days[first : first + count]
        if cls in ("d-ok", "d-none"):  # nothing to tell day by day: one path, one tooltip for the run
            d = "".join(_BAR_PATHS[index : index + count])
            start, end = _day(run_days[0].start), _day(run_days[-1].start)
            span = start if count == 1 else f"{start} to {end}"
            what = "no data" if cls == "d-none" else "100% up, no incident"
            shapes.append(f'<path class="{cls}" d="{d}"><title>{span}: {what}</title></path>')
        else:
            for i, day in enumerate(run_days):
                shapes.append(
                    f'<rect class="{cls}" x="{(index + i) * _BAR_STEP}" width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}">'
                    f"<title>{day_tooltip(day)}</title></rect>"
                )
        index += count
        first += count
    bad = [d for d, cls in zip(days, classes, strict=True) if cls not in ("d-ok", "d-none")]
    worst = min(bad, key=lambda d: d.uptime or 0.0, default=None)
    label = f"Uptime of {name}, one bar per day for {DAYS_SHOWN} days: "
    if all(cls == "d-none" for cls in classes):
        label += "no data yet."
    elif worst is None:
        label += "every day fully up."
    else:
        label += f"{len(bad)} day{'s' if len(bad) != 1 else ''} with downtime, the worst {day_tooltip(worst)}."
    return (
        f'<svg viewBox="0 0 {DAYS_SHOWN * _BAR_STEP} {_BAR_HEIGHT}" role="img" aria-label="{_e(label)}">'
        + "".join(shapes)
        + "</svg>"
    )


def _nice_ceiling(value: float) -> float:
    """The chart's top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 0.001
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= value))


def _line(values: Sequence[float | None], top: float) -> str:
    """SVG path data through the values (whole pixels, relative steps: small and well compressed), broken at gaps."""
    xs = _line_xs(len(values))
    base, scale = _CHART_HEIGHT - 1, (_CHART_HEIGHT - 2) / top
    d: list[str] = []
    last_x = last_y = 0
    drawing = False
    for x, v in zip(xs, values, strict=True):
        if v is None:
            drawing = False
            continue
        y = round(base - (v if v < top else top) * scale)
        d.append(f"l{x - last_x} {y - last_y}" if drawing else f"M{x} {y}")
        last_x, last_y, drawing = x, y, True
    return "".join(d)


@functools.cache
def _line_xs(count: int) -> tuple[int, ...]:
    """The x of each of `count` points spread over the chart's width."""
    step = _CHART_WIDTH / max(1, count - 1)
    return tuple(round(i * step) for i in range(count))


def latency_svg(name: str, slots: Sequence[ResponseSlot]) -> str:
    """Response time over the last 24 hours: p50 and p95 lines, scaled to the highest p95."""
    values = [v for s in slots for v in (s.p50, s.p95) if v is not None]
    if not values:
        return f'<p class="details">No response times for {_e(name)} in the last 24 hours.</p>'
    top = _nice_ceiling(max(values))
    p50s = [s.p50 for s in slots if s.p50 is not None]
    p95s = [s.p95 for s in slots if s.p95 is not None]
    median = sorted(p50s)[len(p50s) // 2] if p50s else None
    label = f"Response time of {name} over the last 24 hours: "
    label += f"median p50 {_ms(median)}, " if median is not None else ""
    label += f"highest p95 {_ms(max(p95s))}." if p95s else "no p95."
    p50 = _line([s.p50 for s in slots], top)
    p95 = _line([s.p95 for s in slots], top)
    return (
        f'<svg viewBox="0 0 {_CHART_WIDTH} {_CHART_HEIGHT}" role="img" aria-label="{_e(label)}">'
        f'<path class="axis" d="M0 {_CHART_HEIGHT - 0.5}H{_CHART_WIDTH}"/>'
        f'<path class="l95" d="{p95}"/><path class="l50" d="{p50}"/></svg>'
        f'<div class="span"><span>24 h ago</span><span>top: {_ms(top)}</span><span>now</span></div>'
    )


def _endpoint(ep: EndpointView, page: PageView) -> str:
    state = ep.state
    since = f" since {_when(ep.since)}" if ep.since is not None and state is not State.UNKNOWN else ""
    uptimes = "".join(
        f"<div><dt>{_WINDOW_TEXT[w]}</dt><dd>{percent(ep.uptime.get(w))}</dd></div>" for w in UPTIME_WINDOWS
    )
    details = ""
    if page.show_details and ep.details is not None:
        last = f" — last failure: {_e(ep.details.last_message)}" if ep.details.last_message else ""
        details = f'<p class="details">{_e(ep.details.method)} {_e(ep.details.url)}{last}</p>'
    return (
        '<li class="ep"><div class="head">'
        f"<h3>{_e(ep.name)}</h3>"
        f'<span class="state s-{state.value}">{_STATE_TEXT[state]}<span class="details">{_e(since)}</span></span>'
        f'</div><dl class="up" aria-label="Uptime">{uptimes}</dl>'
        f"{bars_svg(ep.name, ep.days)}"
        '<div class="span"><span>90 days ago</span><span>today</span></div>'
        f'<div class="legend"><span class="k50">— p50</span><span class="k95">— p95</span></div>'
        f"{latency_svg(ep.name, ep.latency)}{details}</li>"
    )


def _announcement(a: AnnouncementView) -> str:
    window = ""
    if a.starts is not None or a.ends is not None:
        start = _when(a.starts) if a.starts is not None else "now"
        end = _when(a.ends) if a.ends is not None else "until further notice"
        window = f'<p class="details">{_e(start)} to {_e(end)}</p>'
    message = f"<p>{_e(a.message)}</p>" if a.message else ""
    return f'<li class="news"><span class="lvl">{_e(a.level)}</span><h3>{_e(a.title)}</h3>{window}{message}</li>'


def _incident_rows(incidents: Sequence[IncidentView], page: PageView, vantages: bool) -> str:
    rows = []
    for inc in incidents:
        end = _when(inc.end) if inc.end is not None else "ongoing"
        reason = _e(inc.reason or "—")
        if page.show_details and inc.message:
            reason += f'<div class="details">{_e(inc.message)}</div>'
        rows.append(
            f'<tr><td data-label="Endpoint">{_e(inc.endpoint)}</td><td data-label="Start">{_e(_when(inc.start))}</td>'
            f'<td data-label="End">{_e(end)}</td>'
            f'<td data-label="Duration">{_e(duration_text(inc.duration(page.now)))}</td>'
            f'<td data-label="Reason">{reason}</td>'
            + (f'<td data-label="Vantage">{_e(inc.vantage or "—")}</td>' if vantages else "")
            + "</tr>"
        )
    return "".join(rows)


def _has_vantages(incidents: Sequence[IncidentView]) -> bool:
    return any(inc.vantage for inc in incidents)


def _incidents(page: PageView) -> str:
    current = [i for i in page.incidents if i.end is None]
    past = [i for i in page.incidents if i.end is not None]
    parts = ['<section aria-labelledby="incidents"><h2 id="incidents">Incidents</h2>']
    for title, items, empty in (
        ("Current", current, "No current incident."),
        ("History", past, "No incident in the history."),
    ):
        parts.append(f"<h3>{title}</h3>")
        if not items:
            parts.append(f"<p>{empty}</p>")
            continue
        vantages = _has_vantages(items)
        vantage = '<th scope="col">Vantage</th>' if vantages else ""
        more = len(items) - INCIDENTS_SHOWN
        parts.append(
            '<div class="wrap"><table class="inc"><thead><tr><th scope="col">Endpoint</th><th scope="col">Start</th>'
            f'<th scope="col">End</th><th scope="col">Duration</th><th scope="col">Reason</th>{vantage}</tr></thead>'
            f"<tbody>{_incident_rows(items[:INCIDENTS_SHOWN], page, vantages)}</tbody></table></div>"
        )
        if more > 0:
            parts.append(
                f'<p class="details">{more:,} older incident{"s" if more != 1 else ""} in the '
                '<a href="/api/v1/endpoints">JSON API</a>.</p>'
            )
    parts.append("</section>")
    return "".join(parts)


def render_page(page: PageView) -> str:
    """The whole status page."""
    banner = page.banner
    description = f"<p>{_e(page.description)}</p>" if page.description else ""
    where = f"<p>Probed from <strong>{_e(page.vantage)}</strong>.</p>" if page.vantage else ""
    note = f'<p class="note">{_e(page.history_note)}</p>' if page.history_note else ""
    news = ""
    if page.announcements:
        items = "".join(_announcement(a) for a in page.announcements)
        news = (
            f'<section aria-labelledby="news"><h2 id="news">Announcements</h2><ul class="news">{items}</ul></section>'
        )
    groups = []
    for n, group in enumerate(page.groups):
        if not group.endpoints:
            continue
        items = "".join(_endpoint(ep, page) for ep in group.endpoints)
        if group.name:
            heading = f'aria-labelledby="g{n}"><h2 id="g{n}">{_e(group.name)}</h2>'
        else:  # a page without groups: one list, no heading
            heading = 'aria-label="Endpoints">'
        groups.append(f'<section {heading}<ul class="eps">{items}</ul></section>')
    if not groups:
        groups.append("<p>No endpoints on this page.</p>")
    metrics = ' · <a href="/metrics">Metrics</a>' if page.show_details else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark"><meta http-equiv="refresh" content="60">'
        f"<title>{_e(page.title)}</title><style>{_CSS}</style>"
        '<link rel="icon" type="image/svg+xml" href="/favicon.svg">'
        '<link rel="alternate" type="application/atom+xml" title="Incidents" href="/feed.atom"></head>'
        f"<body><header><h1>{_e(page.title)}</h1>{description}{where}</header><main>"
        f'<section class="banner b-{banner.value}" role="status" aria-label="Overall status">'
        f"<p>{BANNER_TEXT[banner]}</p></section>{note}{news}{''.join(groups)}{_incidents(page)}</main>"
        f'<footer><p>Updated {_e(_when(page.now))} · <a href="/feed.atom">Incident feed</a> · '
        f'<a href="/api/v1/endpoints">JSON</a>{metrics}</p></footer></body></html>'
    )
