"""The status page's view from the agent itself: its config, the store's states and its own bounded history.

(With `status_page.prometheus_url` the history comes from Prometheus instead; that source fills the
same records.)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from exporter.config import Config, Endpoint
from exporter.history import EndpointHistory
from exporter.state import State
from exporter.store import EndpointSnapshot, StoreSnapshot

from .view import (
    AnnouncementView,
    EndpointDetails,
    EndpointView,
    GroupView,
    IncidentView,
    PageView,
)


def _endpoint(
    ep: Endpoint,
    snap: EndpointSnapshot | None,
    hist: EndpointHistory | None,
    group: str,
) -> EndpointView:
    state = snap.state.state if snap is not None else State.UNKNOWN
    since = snap.state.since if snap is not None else None
    details = None
    if snap is not None:
        last = snap.last
        message = f"{last.reason}: {last.message}" if last is not None and not last.success else ""
        details = EndpointDetails(url=ep.safe_url, method=ep.method, last_message=message)
    if hist is None:
        return EndpointView(name=ep.name, state=state, since=since, group=group, details=details)
    medians = [slot.p50 for slot in hist.response_times if slot.p50 is not None]
    return EndpointView(
        name=ep.name,
        state=state,
        since=since,
        uptime={
            "24h": hist.last_24h.uptime,
            "7d": hist.last_7d.uptime,
            "30d": hist.last_30d.uptime,
            "90d": hist.last_90d.uptime,
        },
        days=hist.days,
        latency=hist.response_times,
        response=sorted(medians)[len(medians) // 2] if medians else None,  # the upper median
        group=group,
        details=details,
    )


def build_page(
    config: Config,
    snapshot: StoreSnapshot,
    histories: Mapping[str, EndpointHistory],
    now: float,
    *,
    history_limit: int,
    history_note: str | None = None,
) -> PageView:
    """The page's view: the endpoints the config puts on it, grouped, with their states and history.

    `histories` covers at most `history_limit` endpoints (the recorder's HISTORY_LIMIT); when it is
    full and some endpoints have none, the page says so.
    """
    page = config.status_page
    snaps = {s.endpoint.name: s for s in snapshot.endpoints}
    groups = []
    incidents: list[IncidentView] = []
    without = 0
    for laid_out in page.arrange(config.probed):
        name = laid_out.name or ""
        views = []
        for ep in laid_out.endpoints:
            hist = histories.get(ep.name)
            without += hist is None
            views.append(_endpoint(ep, snaps.get(ep.name), hist, name))
            if hist is not None:
                incidents += [
                    IncidentView(
                        endpoint=ep.name,
                        start=inc.start,
                        end=inc.end,
                        reason=str(inc.reason or ""),
                        message=inc.message,
                        vantage=inc.vantage if inc.vantage is not None else config.vantage,
                    )
                    for inc in hist.incidents
                ]
        groups.append(GroupView(name, tuple(views)))
    incidents.sort(key=lambda inc: inc.start, reverse=True)
    moment = datetime.fromtimestamp(now, UTC)
    announcements = tuple(
        AnnouncementView(
            title=a.title,
            message=a.message or "",
            level=str(a.level),
            starts=a.starts.timestamp() if a.starts is not None else None,
            ends=a.ends.timestamp() if a.ends is not None else None,
        )
        for a in page.announcements
        if a.shown_at(moment)
    )
    if without and history_note is None and len(histories) >= history_limit:
        history_note = (
            f"History is kept for the first {history_limit:,} endpoints on this page only; "
            f"{without:,} show their current state alone."
        )
    return PageView(
        title=page.title,
        description=page.description or "",
        now=now,
        groups=tuple(groups),
        incidents=tuple(incidents),
        announcements=announcements,
        history_note=history_note,
        vantage=config.vantage,
        show_details=page.show_details,
    )
