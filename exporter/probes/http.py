"""The HTTP prober: one endpoint in, one ProbeResult out; a failing target is a result, never an exception."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpcore
import httpx
from cryptography import x509

from exporter import __version__
from exporter.config import Endpoint, StatusRange, TLSConfig
from exporter.probes.failures import Failure, classify, exception_chain
from exporter.probes.tls import TLSContexts, TLSSetupError
from exporter.probes.trace import Handshake, ProbeTrace, ProbeTransport, TimedBackend, peer_cert
from exporter.redact import SecretScrubber
from exporter.results import FailureReason, ProbeResult

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
# Results


class _CheckFailed(Exception):
    """A failed expectation (status, header, body, redirects), raised to end the exchange."""

    def __init__(self, reason: FailureReason, message: str, *, regex: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.regex = regex


@dataclass(slots=True)
class _Observed:
    """What the last response showed; reset for every redirect hop, like blackbox_exporter."""

    trace: ProbeTrace = field(default_factory=ProbeTrace)
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
        self.cert_der = peer_cert(ssl_object)


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
        failure: Failure | None
        try:
            failure, ended = await self._run(endpoint, deadline, began, seen)
        except Exception as exc:  # a bug in here must not stop the endpoint's probe loop
            failure, ended = Failure(FailureReason.ERROR, f"internal error: {type(exc).__name__}"), time.monotonic()
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
    ) -> tuple[Failure | None, float]:
        """The probe's work; returns the failure (None on success) and when the network work ended."""
        try:
            ssl_context = self._tls.context(endpoint.tls)
        except TLSSetupError as exc:
            return Failure(FailureReason.ERROR, str(exc)), time.monotonic()
        pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            # A pool per probe: every probe opens fresh connections (redirect hops to the same origin may
            # reuse one, as in blackbox_exporter), and closing the pool closes them all.
            network_backend=TimedBackend(self._backend, seen.trace),
        )
        client = httpx.AsyncClient(
            transport=ProbeTransport(pool, ssl_context),
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
                failure = Failure(
                    FailureReason.TOO_SLOW,
                    f"response took {ended - began:.3f}s, more than max_response_time {limit:g}s",
                )
            return failure, ended
        finally:
            with contextlib.suppress(Exception):  # closing a finished probe's sockets cannot change its result
                await client.aclose()

    async def _exchange_within(
        self, endpoint: Endpoint, client: httpx.AsyncClient, deadline: float, began: float, seen: _Observed
    ) -> Failure | None:
        """Run the exchange under the hard deadline and turn whatever went wrong into a failure."""
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                await self._exchange(endpoint, client, seen)
        except _CheckFailed as exc:
            return Failure(exc.reason, exc.message, regex=exc.regex)
        except Exception as exc:
            # Checked first: httpcore may turn the deadline's cancellation into an error of its own.
            if scope.expired():
                phase = _PHASE_WORDS.get(seen.trace.last_phase or "", "starting")
                return Failure(FailureReason.TIMEOUT, f"timed out after {time.monotonic() - began:.3g}s, {phase}")
            return classify(exc)
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
    def _extensions(endpoint: Endpoint, url: httpx.URL, trace: ProbeTrace) -> dict[str, Any]:
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

    async def _unverified_cert(self, tls: TLSConfig, handshake: Handshake, deadline: float) -> bytes | None:
        """The leaf certificate from a second, non-verifying handshake, to report the expiry of a rejected one."""
        try:
            context = self._tls.context(tls, verify=False)
            async with asyncio.timeout_at(deadline):
                stream = await self._backend.connect_tcp(handshake.address, handshake.port)
                try:
                    stream = await stream.start_tls(context, server_hostname=handshake.server_name)
                    return peer_cert(stream.get_extra_info("ssl_object"))
                finally:
                    await stream.aclose()
        except Exception:  # the certificate is a bonus: the probe has failed (tls) either way
            return None

    async def _post_handshake_rejection(self, tls: TLSConfig, handshake: Handshake, deadline: float) -> Failure | None:
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
            failure = classify(exc)
            if failure.reason is FailureReason.TLS and any(isinstance(e, ssl.SSLError) for e in exception_chain(exc)):
                return failure
        return None
