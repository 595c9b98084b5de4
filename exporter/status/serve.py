"""The page and its other forms as HTTP answers: built off the event loop, at most every few seconds, shared.

A status page is read by people and polled by badges: it need not be fresher than a few seconds,
and building it for many endpoints costs milliseconds of CPU that must never come from the probes'
event loop. So the view is built in a helper thread at most every REFRESH_SECONDS, one build at a
time, and each rendering of it (HTML, JSON, feed) is made once per view and kept with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.compression import gzip_pieces

from .feeds import BADGE_KINDS, api_json, atom_feed, badge, badge_json, badge_svg
from .page import CONTENT_SECURITY_POLICY, FAVICON_SVG, render_page
from .view import PageView

REFRESH_SECONDS = 5.0
# Bodies at least this long are also kept gzipped (below it gzip saves too little to be worth it).
GZIP_FROM_BYTES = 1024

# Every answer of the page's family: no sniffing, no framing, no referrer; the HTML also its CSP.
COMMON_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", f"public, max-age={REFRESH_SECONDS:g}"),
)
PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    *COMMON_HEADERS,
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the HTTP server sends: status, content type, body and headers, and the body gzipped if worth it."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = COMMON_HEADERS
    gzipped: bytes | None = None  # made with the body, off the event loop; None for small bodies


@dataclass(slots=True)
class _Built:
    view: PageView
    at: float
    forms: dict[str, tuple[bytes, bytes | None]] = field(default_factory=dict)  # name -> body, gzipped


def _rendered(render: Callable[[PageView], bytes], view: PageView) -> tuple[bytes, bytes | None]:
    body = render(view)
    return body, gzip_pieces((body,)) if len(body) > GZIP_FROM_BYTES else None


class StatusPages:
    """Answers `/`, `/api/v1/endpoints`, `/feed.atom` and `/badge/...` from views built by `build`."""

    def __init__(self, build: Callable[[], PageView], clock: Callable[[], float] = time.monotonic) -> None:
        self._build = build
        self._clock = clock
        self._built: _Built | None = None
        self._building: asyncio.Future[_Built] | None = None

    async def _current(self) -> _Built:
        built = self._built
        if built is not None and self._clock() - built.at < REFRESH_SECONDS:
            return built
        if self._building is None:  # one build at a time; everyone asking meanwhile shares it
            loop = asyncio.get_running_loop()
            self._building = loop.create_future()
            try:
                view = await loop.run_in_executor(None, self._build)
            except Exception as exc:
                self._building.set_exception(exc)
                self._building.exception()  # retrieved here: the callers below re-raise it
                raise
            finally:
                building, self._building = self._building, None
            self._built = new = _Built(view, self._clock())
            building.set_result(new)
            return new
        return await asyncio.shield(self._building)

    async def _form(self, name: str, render: Callable[[PageView], bytes]) -> tuple[bytes, bytes | None]:
        """A rendering of the current view, and its gzip, both made once per view in a helper thread."""
        built = await self._current()
        form = built.forms.get(name)
        if form is None:
            form = await asyncio.get_running_loop().run_in_executor(None, _rendered, render, built.view)
            built.forms[name] = form
        return form

    async def page(self) -> Answer:
        """The status page."""
        body, gzipped = await self._form("html", lambda view: render_page(view).encode())
        return Answer(200, "text/html; charset=utf-8", body, PAGE_HEADERS, gzipped)

    def favicon(self) -> Answer:
        """The page's icon."""
        return Answer(200, "image/svg+xml", FAVICON_SVG.encode())

    async def api(self) -> Answer:
        """The JSON API of the page's figures."""
        body, gzipped = await self._form("api", lambda view: api_json(view).encode())
        return Answer(200, "application/json", body, gzipped=gzipped)

    async def feed(self) -> Answer:
        """The Atom feed of incidents."""
        body, gzipped = await self._form("feed", atom_feed)
        return Answer(200, "application/atom+xml; charset=utf-8", body, gzipped=gzipped)

    async def badge(self, path: str) -> Answer:
        """`/badge/<endpoint>/<kind>.svg` or `.json`; `path` is the decoded request path (ASGI's `path`)."""
        rest = path.removeprefix("/badge/")
        name, _, file = rest.rpartition("/")
        kind, _, ext = file.rpartition(".")
        if not name or kind not in BADGE_KINDS or ext not in ("svg", "json"):
            return Answer(404, "text/plain; charset=utf-8", b"404: no such badge\n")
        built = await self._current()
        endpoint = next((ep for ep in built.view.endpoints if ep.name == name), None)
        if endpoint is None:
            return Answer(404, "text/plain; charset=utf-8", b"404: no such endpoint on the status page\n")
        b = badge(endpoint, kind)
        if ext == "json":
            return Answer(200, "application/json", badge_json(b).encode())
        return Answer(200, "image/svg+xml", badge_svg(b).encode())
