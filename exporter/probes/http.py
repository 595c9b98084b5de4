"""The HTTP prober: one endpoint in, one ProbeResult out; a failing target is a result, never an exception."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpcore
import httpx
from cryptography import x509

from exporter import __version__
from exporter.config import Endpoint, StatusRange, TLSConfig
from exporter.probes.tls import TLSContexts, TLSSetupError
from exporter.redact import SecretScrubber
from exporter.results import PHASES, FailureReason, ProbeResult

USER_AGENT = f"upwatch/{__version__}"
_MAX_MESSAGE = 300

_PHASE_WORDS = {  # for timeout messages: what the probe was doing when the deadline struck
    "resolve": "during the dns lookup",
    "connect": "while connecting",
    "tls": "during the tls handshake",
    "processing": "waiting for the response",
    "transfer": "reading the body",
}


# ---------------------------------------------------------------------------
# Phase timing


@dataclass(slots=True)
class _Handshake:
    """Where a TLS handshake went and what it gave, to look again at a server that failed the probe."""

    address: str
    port: int
    server_name: str | None
    seconds: float = 0.0
    version: str | None = None  # "TLSv1.3" once complete
    peer_cert: bytes | None = None  # DER leaf certificate once complete


class _ProbeTrace:
    """Phase timings and TLS facts of one probe; phases never overlap, so they sum to at most the duration."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.last_phase: str | None = None  # the phase running when a timeout struck
        self.handshake: _Handshake | None = None  # the current hop's TLS handshake, if any
        self._open: tuple[str, float] | None = None

    def start(self, phase: str) -> None:
        self.stop()
        self._open = (phase, time.monotonic())
        self.last_phase = phase

    def stop(self, now: float | None = None) -> None:
        if self._open is not None:
            phase, began = self._open
            self.totals[phase] += (time.monotonic() if now is None else now) - began
            self._open = None

    async def on_event(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's `trace` extension: marks when a request goes out and its response headers are in."""
        if name.endswith(".send_request_headers.started"):
            self.start("processing")
        elif name.endswith(".receive_response_headers.complete"):
            self.start("transfer")


class _ResolveError(httpcore.ConnectError):
    """A failed DNS lookup; a ConnectError so that httpx maps it like any connect failure."""


class _HandshakeError(httpcore.ConnectError):
    """A TLS handshake that failed for any cause."""


class _TimedStream(httpcore.AsyncNetworkStream):
    """A TCP stream that times its TLS handshake and keeps the peer's certificate."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, trace: _ProbeTrace, address: str, port: int) -> None:
        self._inner = inner
        self._trace = trace
        self._address = address
        self._port = port

    # The `timeout` parameters are httpcore's interface; httpx passes None, the probe's deadline rules.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        handshake = self._trace.handshake = _Handshake(self._address, self._port, server_hostname)
        self._trace.start("tls")
        began = time.monotonic()
        try:
            stream = await self._inner.start_tls(ssl_context, server_hostname=server_hostname, timeout=timeout)
        except httpcore.ConnectError as exc:
            # The TCP connection stood, so whatever broke the handshake (even a reset) is a TLS failure.
            raise _HandshakeError("tls handshake failed") from exc
        finally:
            self._trace.stop()
            handshake.seconds = time.monotonic() - began
        ssl_object = stream.get_extra_info("ssl_object")
        handshake.version = ssl_object.version() if ssl_object is not None else None
        handshake.peer_cert = _peer_cert(ssl_object)
        return stream

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _TimedBackend(httpcore.AsyncNetworkBackend):
    """Resolves names itself, so that DNS lookup and TCP connect are timed apart."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, trace: _ProbeTrace) -> None:
        self._inner = inner
        self._trace = trace

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._trace.start("resolve")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _ResolveError(f"dns lookup of {host} failed: {exc.strerror or exc}") from exc
        finally:
            self._trace.stop()
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._trace.start("connect")
        try:
            error: httpcore.ConnectError | None = None
            # One address after the other, in the resolver's order: `localhost` may give ::1 first while the
            # server listens on 127.0.0.1 only.
            for address in addresses:
                try:
                    stream = await self._inner.connect_tcp(
                        address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
                    continue
                return _TimedStream(stream, self._trace, address, port)
            raise error or _ResolveError(f"dns lookup of {host} returned no address")
        finally:
            self._trace.stop()

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ProbeTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request, response and error mapping) over a connection pool of our making."""

    def __init__(self, pool: httpcore.AsyncConnectionPool, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no public way to plug in a network backend, so its pool (a private attribute) is replaced;
        # this is the only private httpx name used here.
        self._pool = pool


# ---------------------------------------------------------------------------
# Results


class _CheckFailed(Exception):
    """A failed expectation (status, header, body, redirects), raised to end the exchange."""

    def __init__(self, reason: FailureReason, message: str, *, regex: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.regex = regex


@dataclass(slots=True)
class _Failure:
    reason: FailureReason
    message: str
    regex: bool = False
    unverified: bool = False  # the server's certificate failed verification
    dropped: bool = False  # the server reset or closed the connection before any response


@dataclass(slots=True)
class _Observed:
    """What the last response showed; reset for every redirect hop, like blackbox_exporter."""

    trace: _ProbeTrace = field(default_factory=_ProbeTrace)
    status_code: int = 0
    http_version: float = 0.0
    content_length: int = -1
    body_bytes: int = 0
    redirects: int = 0
    ssl: bool = False
    cert_der: bytes | None = None

    def new_hop(self) -> None:
        self.status_code, self.http_version, self.content_length, self.body_bytes = 0, 0.0, -1, 0
        self.ssl, self.cert_der = False, None
        self.trace.handshake = None

    def handshake_cert(self) -> bytes | None:
        return None if self.trace.handshake is None else self.trace.handshake.peer_cert

    def response(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.http_version = _http_version(response.http_version)
        self.content_length = _content_length(response.headers.get("content-length"))
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        self.ssl = ssl_object is not None
        self.cert_der = _peer_cert(ssl_object)


def _peer_cert(ssl_object: Any) -> bytes | None:
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None


def _cert_expiry(der: bytes | None) -> float | None:
    if der is None:
        return None
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def _http_version(text: str) -> float:
    try:
        return float(text.removeprefix("HTTP/"))
    except ValueError:
        return 0.0


def _content_length(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return -1
    return int(value)


def _statuses(ranges: tuple[StatusRange, ...]) -> str:
    return ", ".join(str(r) for r in ranges)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---------------------------------------------------------------------------
# Failure classification


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything that caused it, outermost first."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        # httpcore re-raises `from None` with the original as its argument, so suppressed
        # contexts and exception arguments are followed too.
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


_CONNECT_ERRNOS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by peer (broken pipe)",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EHOSTDOWN: "host down",
    errno.ENETDOWN: "network down",
    errno.ETIMEDOUT: "connect timed out",
    errno.EADDRNOTAVAIL: "address not available",
}


def _classify(exc: BaseException) -> _Failure:
    """The failure reason and a short message for an exception raised while probing."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, _ResolveError):
            return _Failure(FailureReason.DNS, str(e))
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = e.verify_message or _ssl_reason(e)
            return _Failure(FailureReason.TLS, f"certificate verify failed: {detail}", unverified=True)
    handshake = any(isinstance(e, _HandshakeError) for e in chain)
    prefix = "tls handshake failed" if handshake else "tls error"
    for e in chain:
        # "Want read/write" only mean "call again": anyio leaves them behind as contexts.
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            return _Failure(FailureReason.TLS, f"{prefix}: {_ssl_reason(e)}")
    if handshake:
        return _Failure(FailureReason.TLS, f"{prefix}: {_os_error_text(chain) or 'connection closed by the server'}")
    for e in chain:
        if isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS:
            dropped = e.errno in (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE)
            return _Failure(FailureReason.CONNECT, _CONNECT_ERRNOS[e.errno], dropped=dropped)
    for e in chain:
        if isinstance(e, ConnectionError):
            return _Failure(FailureReason.CONNECT, f"connection error: {e.strerror or type(e).__name__}")
    for e in chain:
        if isinstance(e, httpx.RemoteProtocolError):
            text = str(e)
            if text.startswith("Server disconnected without sending a response"):
                return _Failure(FailureReason.PROTOCOL, "server closed the connection without a response", dropped=True)
            return _Failure(FailureReason.PROTOCOL, f"invalid HTTP response: {_lower_first(text).rstrip('.')}")
        if isinstance(e, httpx.DecodingError):
            return _Failure(FailureReason.PROTOCOL, f"cannot decode the response body: {_lower_first(str(e))}")
        if isinstance(e, httpx.UnsupportedProtocol):
            return _Failure(FailureReason.PROTOCOL, f"unsupported redirect target: {_lower_first(str(e))}")
        if isinstance(e, httpx.LocalProtocolError):
            # Its text may quote a request header value, so it is left out.
            return _Failure(FailureReason.ERROR, "invalid request: httpx refused to send it")
        if isinstance(e, httpx.ConnectError):
            return _Failure(FailureReason.CONNECT, f"connect failed: {_lower_first(str(e)) or 'unknown error'}")
        if isinstance(e, httpx.NetworkError):
            return _Failure(FailureReason.CONNECT, f"connection error: {_lower_first(str(e)) or type(e).__name__}")
        if isinstance(e, OSError) and e.strerror:
            return _Failure(FailureReason.CONNECT, f"connection error: {e.strerror}")
    return _Failure(FailureReason.ERROR, f"unexpected error: {type(exc).__name__}: {exc}".rstrip(": "))


def _os_error_text(chain: list[BaseException]) -> str | None:
    for e in chain:
        if isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS:
            return _CONNECT_ERRNOS[e.errno]
    return None


def _ssl_reason(e: ssl.SSLError) -> str:
    if isinstance(e, ssl.SSLEOFError) or e.reason == "UNEXPECTED_EOF_WHILE_READING":
        return "connection closed by the server"
    if e.reason:
        return e.reason.lower().replace("_", " ")
    return e.strerror or str(e) or type(e).__name__


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# ---------------------------------------------------------------------------
# The prober


class HttpProber:
    """Probes HTTP endpoints; one instance is shared by all endpoints and reused across probes."""

    def __init__(self, tls: TLSContexts | None = None) -> None:
        # Shared with the config loader, which built every endpoint's context already.
        self._tls = tls if tls is not None else TLSContexts()
        # Stateless, so one serves every probe; each probe wraps it to time its own connections.
        self._backend: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()

    async def aclose(self) -> None:
        """Drop cached state; every probe closes its own connections."""
        self._tls.clear()

    async def probe(self, endpoint: Endpoint, deadline: float | None = None) -> ProbeResult:
        """Probe once within `deadline` (loop time; default now + timeout); never raises for a failing target."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + endpoint.timeout
        started_at = time.time()
        began = time.monotonic()
        seen = _Observed()
        failure: _Failure | None
        try:
            failure, ended = await self._run(endpoint, deadline, began, seen)
        except Exception as exc:  # a bug in here must not stop the endpoint's probe loop
            failure, ended = _Failure(FailureReason.ERROR, f"internal error: {type(exc).__name__}"), time.monotonic()
        seen.trace.stop(ended)
        redact = SecretScrubber(endpoint.url, endpoint.headers.values(), max_length=_MAX_MESSAGE)
        return ProbeResult(
            endpoint=endpoint.name,
            success=failure is None,
            started_at=started_at,
            duration_seconds=ended - began,
            reason=None if failure is None else failure.reason,
            message="" if failure is None else redact(failure.message),
            status_code=seen.status_code,
            http_version=seen.http_version,
            content_length=seen.content_length,
            body_bytes=seen.body_bytes,
            redirects=seen.redirects,
            ssl=seen.ssl,
            # Without a response (say a timeout after the handshake) the handshake's certificate still tells.
            cert_expiry_timestamp=_cert_expiry(seen.cert_der or seen.handshake_cert()),
            failed_due_to_regex=failure is not None and failure.regex,
            phases=MappingProxyType(dict(seen.trace.totals)),
        )

    async def _run(
        self, endpoint: Endpoint, deadline: float, began: float, seen: _Observed
    ) -> tuple[_Failure | None, float]:
        """The probe's work; returns the failure (None on success) and when the network work ended."""
        try:
            ssl_context = self._tls.context(endpoint.tls)
        except TLSSetupError as exc:
            return _Failure(FailureReason.ERROR, str(exc)), time.monotonic()
        pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            # A pool per probe: every probe opens fresh connections (redirect hops to the same origin may
            # reuse one, as in blackbox_exporter), and closing the pool closes them all.
            network_backend=_TimedBackend(self._backend, seen.trace),
        )
        client = httpx.AsyncClient(
            transport=_ProbeTransport(pool, ssl_context),
            headers={"User-Agent": USER_AGENT},
            timeout=None,  # the deadline bounds the whole probe instead
            follow_redirects=False,  # followed by hand, to count hops and bound each one
            trust_env=False,  # proxies and CA paths come from the config, not the environment
        )
        try:
            failure = await self._exchange_within(endpoint, client, deadline, began, seen)
            handshake = seen.trace.handshake
            if failure is not None and failure.unverified and handshake is not None:
                seen.cert_der = await self._unverified_cert(endpoint.tls, handshake, deadline)
            elif failure is not None and failure.dropped and handshake is not None and handshake.version == "TLSv1.3":
                failure = await self._post_handshake_rejection(endpoint.tls, handshake, deadline) or failure
            ended = time.monotonic()
            limit = endpoint.expect.max_response_time
            if failure is None and limit is not None and ended - began > limit:
                failure = _Failure(
                    FailureReason.TOO_SLOW,
                    f"response took {ended - began:.3f}s, more than max_response_time {limit:g}s",
                )
            return failure, ended
        finally:
            with contextlib.suppress(Exception):  # closing a finished probe's sockets cannot change its result
                await client.aclose()

    async def _exchange_within(
        self, endpoint: Endpoint, client: httpx.AsyncClient, deadline: float, began: float, seen: _Observed
    ) -> _Failure | None:
        """Run the exchange under the hard deadline and turn whatever went wrong into a failure."""
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                await self._exchange(endpoint, client, seen)
        except _CheckFailed as exc:
            return _Failure(exc.reason, exc.message, regex=exc.regex)
        except Exception as exc:
            # Checked first: httpcore may turn the deadline's cancellation into an error of its own.
            if scope.expired():
                phase = _PHASE_WORDS.get(seen.trace.last_phase or "", "starting")
                return _Failure(FailureReason.TIMEOUT, f"timed out after {time.monotonic() - began:.3g}s, {phase}")
            return _classify(exc)
        return None

    async def _exchange(self, endpoint: Endpoint, client: httpx.AsyncClient, seen: _Observed) -> None:
        """Send the request, follow redirects, and judge the last response; raises on any failure."""
        url = httpx.URL(endpoint.url)
        request = client.build_request(
            endpoint.method,
            url,
            headers=endpoint.headers,
            content=None if endpoint.body is None else endpoint.body.encode(),
            extensions=self._extensions(endpoint, url, seen.trace),
        )
        while True:
            seen.new_hop()
            response = await client.send(request, stream=True)
            try:
                seen.response(response)
                next_request = response.next_request if endpoint.follow_redirects else None
                if next_request is None:
                    await self._judge(endpoint, response, seen)
                    return
            finally:
                await response.aclose()
                seen.trace.stop()
            if seen.redirects >= endpoint.max_redirects:
                raise _CheckFailed(FailureReason.PROTOCOL, f"more than {endpoint.max_redirects} redirects")
            seen.redirects += 1
            # httpx copies the first request's extensions; server_name is meant for the endpoint's own host only.
            next_request.extensions = self._extensions(endpoint, next_request.url, seen.trace)
            request = next_request

    @staticmethod
    def _extensions(endpoint: Endpoint, url: httpx.URL, trace: _ProbeTrace) -> dict[str, Any]:
        extensions: dict[str, Any] = {"trace": trace.on_event}
        server_name = endpoint.tls.server_name
        if server_name and url.host == httpx.URL(endpoint.url).host:
            extensions["sni_hostname"] = server_name
        return extensions

    async def _judge(self, endpoint: Endpoint, response: httpx.Response, seen: _Observed) -> None:
        """Check the last response in order: status, headers, body size, body content."""
        expect = endpoint.expect
        status = response.status_code
        if not any(status in r for r in expect.status):
            raise _CheckFailed(FailureReason.HTTP_STATUS, f"status {status}, expected {_statuses(expect.status)}")
        for name, pattern in expect.headers.items():
            values = response.headers.get_list(name)
            if not values:
                raise _CheckFailed(FailureReason.HEADER, f"header {name} missing", regex=True)
            if not any(pattern.search(value) for value in values):
                raise _CheckFailed(
                    FailureReason.HEADER, f"header {name} does not match {_short(pattern.pattern)}", regex=True
                )
        body = await self._read_body(response, endpoint.body_size_limit, seen)
        if expect.body_contains is None and expect.body_matches is None and expect.body_not_matches is None:
            return
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if expect.body_contains is not None and expect.body_contains not in text:
            raise _CheckFailed(FailureReason.BODY, f"body does not contain {_short(expect.body_contains)}", regex=True)
        if expect.body_matches is not None and not expect.body_matches.search(text):
            raise _CheckFailed(
                FailureReason.BODY, f"body does not match {_short(expect.body_matches.pattern)}", regex=True
            )
        if expect.body_not_matches is not None and expect.body_not_matches.search(text):
            raise _CheckFailed(
                FailureReason.BODY, f"body matches {_short(expect.body_not_matches.pattern)}", regex=True
            )

    @staticmethod
    async def _read_body(response: httpx.Response, limit: int, seen: _Observed) -> bytes:
        """The body, streamed and never more than `limit` bytes held, however much the server sends."""
        # HEAD responses announce the length of a body they do not carry.
        if seen.content_length > limit and response.request.method != "HEAD":
            raise _CheckFailed(
                FailureReason.BODY, f"body larger than {limit} bytes (Content-Length: {seen.content_length})"
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            seen.body_bytes += len(chunk)
            if seen.body_bytes > limit:
                raise _CheckFailed(FailureReason.BODY, f"body larger than {limit} bytes")
            body += chunk
        seen.trace.stop()
        return bytes(body)

    async def _unverified_cert(self, tls: TLSConfig, handshake: _Handshake, deadline: float) -> bytes | None:
        """The leaf certificate from a second, non-verifying handshake, to report the expiry of a rejected one."""
        try:
            context = self._tls.context(tls, verify=False)
            async with asyncio.timeout_at(deadline):
                stream = await self._backend.connect_tcp(handshake.address, handshake.port)
                try:
                    stream = await stream.start_tls(context, server_hostname=handshake.server_name)
                    return _peer_cert(stream.get_extra_info("ssl_object"))
                finally:
                    await stream.aclose()
        except Exception:  # the certificate is a bonus: the probe has failed (tls) either way
            return None

    async def _post_handshake_rejection(
        self, tls: TLSConfig, handshake: _Handshake, deadline: float
    ) -> _Failure | None:
        """A TLS failure if the server rejects a fresh TLS 1.3 handshake (e.g. no client certificate), else None.

        In TLS 1.3 a server judges the client certificate only after the client considers the handshake
        done and has sent its request; its alert then often races with a reset (the request was never
        read) and is lost. A second handshake that sends nothing lets the alert arrive intact.
        """
        loop = asyncio.get_running_loop()
        # The alert follows the handshake within a round trip; a server that accepts waits for a request.
        until = min(deadline, loop.time() + 0.1 + 2 * handshake.seconds)
        try:
            context = self._tls.context(tls)
            async with asyncio.timeout_at(until):
                stream = await self._backend.connect_tcp(handshake.address, handshake.port)
                try:
                    stream = await stream.start_tls(context, server_hostname=handshake.server_name)
                    await stream.read(1)
                finally:
                    await stream.aclose()
        except Exception as exc:
            failure = _classify(exc)
            if failure.reason is FailureReason.TLS and any(isinstance(e, ssl.SSLError) for e in _chain(exc)):
                return failure
        return None
