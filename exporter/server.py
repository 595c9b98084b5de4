"""HTTP endpoints of `upwatch serve`: /metrics, /-/healthy, /-/ready, /-/reload and a status page."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__
from .store import EndpointSnapshot, StoreSnapshot

try:
    # ISA-L's deflate: a gzip of the exposition text in a quarter of zlib's CPU time, for 3 % more bytes
    # (bench/compression.py). Like zlib, it releases the GIL while it compresses.
    from isal import isal_zlib as _deflate
except ImportError:  # no isal wheel for this machine, so pyproject's marker leaves it out: the standard library's
    import zlib as _deflate  # type: ignore[no-redef]

ReloadFn = Callable[[], Awaitable[tuple[bool, str]]]


class MetricsServer:
    """Serves the registry and the agent's control paths on one address."""

    def __init__(
        self,
        *,
        probe_text: Callable[[], Sequence[bytes]],
        ready: Callable[[], bool],
        reload: ReloadFn,
        snapshot: Callable[[], StoreSnapshot],
    ) -> None:
        # The server's own registry (never the global one): the agent's and the host's collectors.
        self._registry = CollectorRegistry(auto_describe=False)
        self._probe_text = probe_text
        self._ready = ready
        self._reload = reload
        self._snapshot = snapshot
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._ready_handler)
        app.router.add_post("/-/reload", self._reload_handler)
        app.router.add_put("/-/reload", self._reload_handler)
        app.router.add_get("/", self._index)
        self.app = app

    def register(self, collector: Collector) -> None:
        """Serve a collector's metrics on /metrics."""
        self._registry.register(collector)

    def unregister(self, collector: Collector) -> None:
        """Stop serving a collector's metrics."""
        self._registry.unregister(collector)

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks a free one; see `port`)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host or None, port, reuse_address=True)
        await self._site.start()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound."""
        if self._runner is None:
            return []
        out = []
        for addr in self._runner.addresses:
            out.append((str(addr[0]), int(addr[1])))
        return out

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _render(self, compress: bool) -> list[bytes]:
        # The probe part comes pre-rendered, in pieces (see ProbeExposition.render): compressed or
        # written one by one, never joined into one string of tens of megabytes.
        pieces = [*self._probe_text(), generate_latest(self._registry)]
        return [gzip_pieces(pieces)] if compress else pieces

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        # Always the text format (0.0.4), as node_exporter and blackbox_exporter serve by
        # default. Rendering runs in a worker thread so a large scrape does not stall the event
        # loop and probe timing.
        compress = "gzip" in request.headers.get("Accept-Encoding", "")
        pieces = await asyncio.get_running_loop().run_in_executor(None, self._render, compress)
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
        if compress:
            response.headers["Content-Encoding"] = "gzip"
        response.content_length = sum(map(len, pieces))
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response

    async def _healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="upwatch is healthy.\n")

    async def _ready_handler(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="upwatch is ready.\n")
        return web.Response(status=503, text="upwatch is not ready.\n")

    async def _reload_handler(self, request: web.Request) -> web.Response:
        ok, message = await self._reload()
        if ok:
            return web.Response(text=message + "\n")
        return web.Response(status=500, text=message + "\n")

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=render_index(self._snapshot()), content_type="text/html")


def gzip_pieces(pieces: Iterable[bytes]) -> bytes:
    """One gzip stream of the pieces, compressed one after the other (never joined first)."""
    # Level 1: the exposition text compresses about 16x even so, in both codecs. wbits 31: a gzip stream.
    stream = _deflate.compressobj(1, _deflate.DEFLATED, 31)
    out = [stream.compress(piece) for piece in pieces]
    out.append(stream.flush())
    return b"".join(out)


_STATE_COLOURS = {"up": "#1a7f37", "degraded": "#b58100", "down": "#cf222e", "unknown": "#6e7781"}


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _row(ep: EndpointSnapshot) -> str:
    state = str(ep.state.state)
    last = ep.last
    if last is None:
        result = "not probed yet"
        status = duration = ""
    else:
        result = "success" if last.success else f"failure: {last.reason} — {last.message}"
        status = str(last.status_code or "")
        duration = f"{last.duration_seconds * 1000:.0f} ms"
    cells = [
        html.escape(ep.endpoint.name),
        f'<span style="color:{_STATE_COLOURS.get(state, "#000")};font-weight:bold">{state.upper()}</span>',
        html.escape(_when(ep.state.since)),
        html.escape(result),
        html.escape(status),
        html.escape(duration),
        html.escape(f"{ep.endpoint.method} {ep.endpoint.safe_url}"),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_index(snapshot: StoreSnapshot) -> str:
    """The status page: each endpoint, its state, since when, and its last result."""
    rows = "\n".join(_row(ep) for ep in snapshot.endpoints) or '<tr><td colspan="7">No endpoints configured.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>upwatch</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.4em .8em;text-align:left}}</style></head>
<body><h1>upwatch {html.escape(__version__)}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
<table><thead><tr><th>Endpoint</th><th>State</th><th>Since</th><th>Last result</th><th>Status</th>
<th>Duration</th><th>Target</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
