"""HTTP endpoints of `upwatch serve`: /metrics, /-/healthy, /-/ready, /-/reload and the status page's family.

The HTTP server is uvicorn, with h11 as its HTTP/1.1 parser, running a small ASGI application of
our own on the agent's event loop, on sockets bound here. uvicorn was chosen over aiohttp's server
by memory: importing it costs about 6 MB where aiohttp costs 16 MB, in a process whose memory is
counted against blackbox_exporter's. h11 rather than httptools because it bounds a request's head
(uvicorn's httptools protocol keeps whatever header bytes arrive: 100 MB of one header took
100 MB); a 19 MB /metrics is served as fast with either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from .compression import gzip_pieces
from .logs import get_logger
from .status.serve import Answer, StatusPages

if TYPE_CHECKING:
    from .web import WebAccess

ReloadFn = Callable[[], Awaitable[tuple[bool, str]]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Idle keep-alive connections are closed after this long: longer than Prometheus's usual scrape
# intervals (15-30 s), so a scraper keeps its connection from one scrape to the next.
KEEP_ALIVE_SECONDS = 40
# A request line and headers longer than this are refused (431), as net/http refuses more than its 1 MB.
MAX_REQUEST_HEAD_BYTES = 16 * 1024
# On shutdown, requests under way get this long to finish.
GRACEFUL_SHUTDOWN_SECONDS = 5
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    """A response: status, content type, body in pieces, extra headers."""

    status: int
    content_type: str
    pieces: Sequence[bytes]
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def text(cls, status: int, text: str, *headers: tuple[str, str]) -> Reply:
        """A plain-text response."""
        return cls(status, _TEXT, (text.encode(),), headers)


Handler = Callable[[Scope], Awaitable[Reply]]


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, minus its signal handling: the agent owns SIGTERM, SIGINT and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _ToStructlog(logging.Handler):
    """uvicorn's own log lines (a malformed request, a connection error) in the agent's log."""

    def emit(self, record: logging.LogRecord) -> None:
        log = get_logger(component="http")
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            log.error("http server error", message=message, exc_info=record.exc_info)
        else:
            log.warning("http server warning", message=message)


def _quiet_uvicorn() -> None:
    """Route uvicorn's loggers (warnings and errors only) into structlog, once."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [_ToStructlog()]
        logger.setLevel(logging.WARNING)
        logger.propagate = False


class _Trimmer:
    """Hands the memory a scrape freed back to the system, at most once a second (glibc's malloc_trim).

    A scrape of thousands of endpoints builds and frees tens of megabytes in a helper thread's
    malloc arena, which glibc keeps for reuse, scattered: trimming after the response is sent
    returns it (8 MB less resident at 5,000 endpoints). It runs in a helper thread, never on the
    loop. Elsewhere than glibc it does nothing.
    """

    def __init__(self) -> None:
        self._trim: Callable[[int], int] | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        self._last = 0.0
        self._pending = False

    def after_large_response(self) -> None:
        """Schedule a trim: now, or a second after the last one; requests meanwhile share it."""
        if self._trim is None or self._pending:
            return
        self._pending = True
        delay = max(0.0, self._last + 1.0 - time.monotonic())
        asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        assert self._trim is not None
        future = asyncio.get_running_loop().run_in_executor(None, self._trim, 0)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[int]) -> None:
        self._pending = False
        self._last = time.monotonic()


@dataclass(slots=True)
class _Batch:
    """The scrapes that wait for one render: whether any wants gzip, and the render's outcome."""

    done: asyncio.Future[None]
    compress: bool = False
    plain: list[bytes] = field(default_factory=list)
    gzip: bytes = b""


class SharedRender:
    """Renders /metrics in a helper thread, one render at a time, shared by the scrapes that wait for it.

    Ten clients scraping back to back would otherwise run renders side by side: cores taken from the
    probes (whose timings they would inflate) to build the same text over and over. Here a scrape that
    arrives while a render runs waits for the next one, which starts when the current one ends and
    serves every scrape that arrived meanwhile, so every answer holds data gathered after its request
    arrived, scrapes cost at most one render's CPU at a time, and gzip runs once per render.
    """

    def __init__(self, render: Callable[[], list[bytes]]) -> None:
        self._render = render
        self._waiting: _Batch | None = None
        self._driver: asyncio.Task[None] | None = None
        self.renders = 0  # renders run so far (for tests and the curious)

    async def get(self, compress: bool) -> list[bytes]:
        """The exposition text, in pieces (one gzip stream when compress), gathered after this call."""
        loop = asyncio.get_running_loop()
        batch = self._waiting
        if batch is None:
            batch = self._waiting = _Batch(loop.create_future())
        batch.compress |= compress
        if self._driver is None:
            self._driver = asyncio.create_task(self._drive(), name="metrics-render")
        await asyncio.shield(batch.done)
        return [batch.gzip] if compress else batch.plain

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        batch: _Batch | None = None
        try:
            while (batch := self._waiting) is not None:
                self._waiting = None
                try:
                    batch.plain, batch.gzip = await loop.run_in_executor(None, self._run, batch.compress)
                except Exception as exc:  # every waiting scrape answers 500 and says why in the log
                    batch.done.set_exception(exc)
                else:
                    batch.done.set_result(None)
                # Nobody may be left to retrieve a failure: mark it seen so asyncio does not log it twice.
                batch.done.add_done_callback(lambda f: f.exception())
        finally:
            self._driver = None
            # Cancelled (the agent is stopping): no scrape may wait forever for a render that will not come.
            for left in (batch, self._waiting):
                if left is not None and not left.done.done():
                    left.done.set_exception(RuntimeError("the agent is stopping"))
                    left.done.add_done_callback(lambda f: f.exception())
            self._waiting = None

    def _run(self, compress: bool) -> tuple[list[bytes], bytes]:
        self.renders += 1
        pieces = self._render()
        return pieces, gzip_pieces(pieces) if compress else b""


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for host:port: every address the host has (every interface for ""), as asyncio binds them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 socket takes IPv4
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class MetricsServer:
    """Serves the registry and the agent's control paths on one address."""

    def __init__(
        self,
        *,
        probe_text: Callable[[], Sequence[bytes]],
        ready: Callable[[], bool],
        reload: ReloadFn,
        pages: StatusPages,
        access: WebAccess | None = None,
        lifecycle: bool = False,
    ) -> None:
        # The server's own registry (never the global one): the agent's and the host's collectors.
        self._registry = CollectorRegistry(auto_describe=False)
        self._probe_text = probe_text
        self._ready = ready
        self._reload = reload
        self._pages = pages
        self._access = access  # the web config's rules (--web.config.file); None: open, plain HTTP
        self._lifecycle = lifecycle  # --web.enable-lifecycle: /-/reload works only with it
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._sockets: list[socket.socket] = []
        self._log = get_logger(component="http")
        self._trimmer = _Trimmer()
        self._renders = SharedRender(self._render)
        # path -> method -> handler; GET answers HEAD too.
        self._routes: dict[str, dict[str, Handler]] = {
            "/metrics": {"GET": self._metrics},
            "/-/healthy": {"GET": self._healthy},
            "/-/ready": {"GET": self._ready_handler},
            "/-/reload": {"POST": self._reload_handler, "PUT": self._reload_handler},
            "/": {"GET": self._index},
            "/api/v1/endpoints": {"GET": self._api},
            "/feed.atom": {"GET": self._feed},
            "/favicon.svg": {"GET": self._favicon},
        }

    def register(self, collector: Collector) -> None:
        """Serve a collector's metrics on /metrics."""
        self._registry.register(collector)

    def unregister(self, collector: Collector) -> None:
        """Stop serving a collector's metrics."""
        self._registry.unregister(collector)

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks a free one; see `addresses`); OSError if it cannot."""
        _quiet_uvicorn()
        self._sockets = bind(host, port)
        # With `tls_server_config`: TLS, and each connection's client certificate held to the allowed SANs.
        tls = self._access if self._access is not None and self._access.tls is not None else None
        config = uvicorn.Config(
            self,
            http=_checking_client_sans(tls) if tls is not None else "h11",
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        if tls is not None:
            from .web import ServingContext

            config.load()
            config.ssl = ServingContext(tls.ssl_context)  # rebuilt per connection when the files change
        self._server = server = _Uvicorn(config)
        self._task = task = asyncio.create_task(server.serve(sockets=self._sockets), name="http-server")
        while not server.started:
            if task.done():  # it failed to start: say why
                task.result()
                raise OSError("the HTTP server stopped at start")
            await asyncio.sleep(0.005)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound."""
        out = []
        for sock in self._sockets:
            if sock.fileno() != -1:
                host, port = sock.getsockname()[:2]
                out.append((str(host), int(port)))
        return out

    async def stop(self) -> None:
        """Stop listening; requests under way get GRACEFUL_SHUTDOWN_SECONDS to finish."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task
        for sock in self._sockets:
            sock.close()
        self._server = self._task = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application: route, answer, and never let a handler's bug take the connection down quietly."""
        if scope["type"] != "http":
            return
        path = scope["path"]
        methods = self._routes.get(path)
        if methods is None and path.startswith("/badge/"):
            methods = {"GET": self._badge}
        method = scope["method"]
        extra: tuple[tuple[str, str], ...] = ()
        refusal = None
        if self._access is not None:
            extra, refusal = await self._access.admit(scope["headers"])
        if refusal is not None:
            reply = Reply.text(refusal.status, refusal.text, *refusal.headers)
        elif methods is None:
            reply = Reply.text(404, "404: Not Found\n")
        elif (handler := methods.get("GET" if method == "HEAD" else method)) is None:
            allowed = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
            reply = Reply.text(405, "405: Method Not Allowed\n", ("allow", allowed))
        else:
            try:
                reply = await handler(scope)
            except Exception:
                self._log.exception("http handler failed", path=scope["path"], method=method)
                reply = Reply.text(500, "500: Internal Server Error\n")
        headers = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(sum(map(len, reply.pieces))).encode()),
            *((k.encode(), v.encode()) for k, v in (*reply.headers, *extra)),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        for piece in reply.pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if scope["path"] == "/metrics":  # the one response whose rendering frees megabytes
            self._trimmer.after_large_response()

    def _render(self) -> list[bytes]:
        # The probe part comes pre-rendered, in pieces (see ProbeExposition.render): compressed or
        # written one by one, never joined into one string of tens of megabytes.
        return [*self._probe_text(), generate_latest(self._registry)]

    async def _metrics(self, scope: Scope) -> Reply:
        # Always the text format (0.0.4), as node_exporter and blackbox_exporter serve by
        # default. Rendering runs in a helper thread (SharedRender) so a large scrape does not stall
        # the event loop and probe timing, and concurrent scrapes share renders.
        compress = "gzip" in _header(scope, b"accept-encoding")
        pieces = await self._renders.get(compress)
        headers = (("content-encoding", "gzip"),) if compress else ()
        return Reply(200, CONTENT_TYPE_PLAIN_0_0_4, pieces, headers)

    async def _healthy(self, scope: Scope) -> Reply:
        return Reply.text(200, "upwatch is healthy.\n")

    async def _ready_handler(self, scope: Scope) -> Reply:
        if self._ready():
            return Reply.text(200, "upwatch is ready.\n")
        return Reply.text(503, "upwatch is not ready.\n")

    async def _reload_handler(self, scope: Scope) -> Reply:
        if not self._lifecycle:
            return Reply.text(403, "403: the lifecycle API is not enabled; start upwatch with --web.enable-lifecycle\n")
        if not same_origin(scope):
            # A browser page elsewhere must not reload the agent; curl and Prometheus send no Origin.
            return Reply.text(403, "403: cross-origin requests to /-/reload are refused\n")
        ok, message = await self._reload()
        return Reply.text(200 if ok else 500, message + "\n")

    async def _index(self, scope: Scope) -> Reply:
        return _reply(await self._pages.page(), scope)

    async def _api(self, scope: Scope) -> Reply:
        return _reply(await self._pages.api(), scope)

    async def _favicon(self, scope: Scope) -> Reply:
        return _reply(self._pages.favicon(), scope)

    async def _feed(self, scope: Scope) -> Reply:
        return _reply(await self._pages.feed(), scope)

    async def _badge(self, scope: Scope) -> Reply:
        return _reply(await self._pages.badge(scope["path"]), scope)


def _reply(answer: Answer, scope: Scope) -> Reply:
    """A status-page answer as a reply: its gzipped body (made off the loop) when it has one and the client takes it."""
    if answer.gzipped is None:
        return Reply(answer.status, answer.content_type, (answer.body,), answer.headers)
    if "gzip" in _header(scope, b"accept-encoding"):
        headers = (*answer.headers, ("content-encoding", "gzip"), ("vary", "accept-encoding"))
        return Reply(answer.status, answer.content_type, (answer.gzipped,), headers)
    return Reply(answer.status, answer.content_type, (answer.body,), (*answer.headers, ("vary", "accept-encoding")))


def same_origin(scope: Scope) -> bool:
    """Whether a request has no Origin header, or one naming this server as the client reached it."""
    origins = [v for k, v in scope["headers"] if k == b"origin"]
    if not origins:
        return True
    if len(origins) > 1:
        return False
    scheme = scope.get("scheme", "http")
    host = _header(scope, b"host")
    try:
        own = _origin_parts(f"{scheme}://{host}")
        theirs = _origin_parts(origins[0].decode("latin-1"))
    except ValueError:
        return False
    return own is not None and own == theirs


def _origin_parts(text: str) -> tuple[str, str, int] | None:
    """(scheme, lower-case host, port) of an origin; None for `null` and anything that is not an origin."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.username:
        return None
    return parts.scheme, parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)


def _checking_client_sans(access: WebAccess) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a TLS connection whose client certificate lacks every allowed SAN."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ClientSANCheck(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not access.peer_allowed(transport.get_extra_info("peercert")):
                get_logger(component="http").warning("client certificate has no allowed SAN; connection closed")
                transport.abort()

    return ClientSANCheck


def _header(scope: Scope, name: bytes) -> str:
    """A request header's values, comma-joined ("" when absent); names are lower case in ASGI."""
    return ", ".join(v.decode("latin-1") for k, v in scope["headers"] if k == name)
