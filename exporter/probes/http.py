"""The HTTP prober: one endpoint in, one ProbeResult out; a failing target is a result, never an exception.

The exchange and redirects live here; the wire (connection, parser, body decoding) in `exchange`,
name lookups in `resolve`, TLS contexts and second looks in `tls`, expectations in `judge`, and
failure reasons and redaction in `failures`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from yarl import URL

from exporter import __version__
from exporter.probes.budget import BodyBudget
from exporter.probes.exchange import Head, HttpConnection, connect
from exporter.probes.failures import (
    Failure,
    NoResponse,
    ProbeError,
    UnsupportedRedirect,
    classify,
    exception_chain,
    public_message,
)
from exporter.probes.judge import Response, judge, needs_body_text
from exporter.probes.request import Target, build_request, parse_target
from exporter.probes.resolve import Resolver
from exporter.probes.spec import ProbeSpec
from exporter.probes.tls import TLSContexts, TLSSetupError, cert_expiry, read_after_handshake, unverified_cert
from exporter.probes.trace import PeerCert, ProbeTrace, peer_cert
from exporter.results import FailureReason, ProbeResult

if TYPE_CHECKING:  # a worker process takes ProbeSpecs and never loads the config machinery
    from exporter.config import Endpoint

USER_AGENT = f"upwatch/{__version__}"
DEFAULT_HEADERS = (("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
# Headers that still go to another site after a redirect; every other configured header (API keys,
# tokens, cookies, whatever their name) is meant for the endpoint's own origin only.
CROSS_ORIGIN_HEADERS = frozenset(("user-agent", "accept", "accept-encoding", "accept-language"))

_PHASE_WORDS = {  # for timeout messages: what the probe was doing when the deadline struck
    "resolve": "during the dns lookup",
    "connect": "while connecting",
    "tls": "during the tls handshake",
    "processing": "waiting for the response",
    "transfer": "reading the body",
}


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
    cert: PeerCert | None = None
    completed_at: float | None = None  # when the last response's last byte arrived
    connection: HttpConnection | None = None  # the one the last response came on

    def new_hop(self) -> None:
        self.status_code, self.http_version, self.content_length, self.body_bytes = 0, 0.0, -1, 0
        self.ssl, self.cert, self.completed_at, self.connection = False, None, None, None
        self.trace.handshake = None

    def handshake_cert(self) -> PeerCert | None:
        return None if self.trace.handshake is None else self.trace.handshake.peer_cert

    def response(self, head: Head, connection: HttpConnection) -> None:
        self.status_code = head.status
        self.http_version = head.http_version
        self.content_length = _content_length(head.get("content-length"))
        self.ssl = connection.ssl_object is not None
        self.cert = peer_cert(connection.ssl_object)
        self.connection = connection


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An endpoint's first request, built once and reused by every probe of it."""

    source: Endpoint | ProbeSpec  # what it was built from
    spec: ProbeSpec
    url: URL
    target: Target
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    request: bytes


def _content_length(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return -1
    return int(value)


def _charset(content_type: str | None) -> str:
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or "utf-8"
    return "utf-8"


def _text(data: bytes, content_type: str | None) -> str:
    try:
        return data.decode(_charset(content_type), errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


class HttpProber:
    """Probes HTTP endpoints; one instance is shared by all endpoints and reused across probes."""

    def __init__(
        self, tls: TLSContexts | None = None, *, resolver: Resolver | None = None, budget: BodyBudget | None = None
    ) -> None:
        # Shared with the config loader, which built every endpoint's context already.
        self._tls = tls if tls is not None else TLSContexts()
        self._resolver = resolver if resolver is not None else Resolver()
        self.budget = budget if budget is not None else BodyBudget()  # bodies kept at once, by all its probes
        self._prepared: dict[str, _Prepared] = {}

    async def aclose(self) -> None:
        """Drop cached state; every probe closes its own connections."""
        self._tls.clear()
        self._prepared.clear()
        await self._resolver.aclose()

    def retain(self, names: Collection[str]) -> None:
        """Forget what was prepared for endpoints other than `names` (after a reload removed some)."""
        for name in [n for n in self._prepared if n not in names]:
            del self._prepared[name]

    async def probe(self, endpoint: Endpoint | ProbeSpec, deadline: float | None = None) -> ProbeResult:
        """Probe once within `deadline` (loop time; default now + timeout); never raises for a failing target."""
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + endpoint.timeout
        started_at = time.time()
        began = time.monotonic()
        seen = _Observed()
        failure: Failure | None
        spec: ProbeSpec | None = None
        try:
            prepared = self._prepare(endpoint)
            spec = prepared.spec
            failure, ended = await self._run(prepared, deadline, began, seen)
        except ProbeError as exc:  # the request cannot be built: nothing was sent
            failure, ended = classify(exc), time.monotonic()
        except Exception as exc:  # a bug in here must not stop the endpoint's probe loop
            failure, ended = Failure(FailureReason.ERROR, f"internal error: {type(exc).__name__}"), time.monotonic()
        seen.trace.stop(ended)
        if spec is None:
            spec = endpoint if isinstance(endpoint, ProbeSpec) else endpoint.probe_spec()
        secrets = [value for _, value in spec.headers]
        return ProbeResult(
            endpoint=endpoint.name,
            success=failure is None,
            started_at=started_at,
            duration_seconds=ended - began,
            reason=None if failure is None else failure.reason,
            message="" if failure is None else public_message(failure, endpoint.url, secrets),
            status_code=seen.status_code,
            http_version=seen.http_version,
            content_length=seen.content_length,
            body_bytes=seen.body_bytes,
            redirects=seen.redirects,
            ssl=seen.ssl,
            # Without a response (say a timeout after the handshake) the handshake's certificate still tells.
            cert_expiry_timestamp=cert_expiry(seen.cert or seen.handshake_cert()),
            failed_due_to_regex=failure is not None and failure.regex,
            phases=MappingProxyType(seen.trace.totals),
        )

    async def _run(
        self, prepared: _Prepared, deadline: float, began: float, seen: _Observed
    ) -> tuple[Failure | None, float]:
        """The probe's work; returns the failure (None on success) and when the network work ended."""
        endpoint = prepared.spec
        failure = await self._exchange_within(endpoint, prepared, deadline, began, seen)
        handshake = seen.trace.handshake
        if failure is not None and failure.unverified and handshake is not None:
            seen.cert = await self._second_look(endpoint, handshake.address, handshake.port, handshake.server_name)
        elif failure is not None and failure.dropped and handshake is not None and handshake.version == "TLSv1.3":
            failure = await self._late_rejection(endpoint, seen.trace, deadline) or failure
        ended = seen.completed_at if failure is None and seen.completed_at is not None else time.monotonic()
        limit = endpoint.expect.max_response_time
        if failure is None and limit is not None and ended - began > limit:
            failure = Failure(
                FailureReason.TOO_SLOW, f"response took {ended - began:.3f}s, more than max_response_time {limit:g}s"
            )
        return failure, ended

    def _prepare(self, source: Endpoint | ProbeSpec) -> _Prepared:
        cached = self._prepared.get(source.name)
        if cached is not None and cached.source is source:
            return cached
        endpoint = source if isinstance(source, ProbeSpec) else source.probe_spec()
        url = URL(endpoint.url)
        target = parse_target(url)
        configured = {name.lower() for name, _ in endpoint.headers}
        headers = tuple(h for h in DEFAULT_HEADERS if h[0].lower() not in configured) + endpoint.headers
        body = None if endpoint.body is None else endpoint.body.encode()
        request = build_request(endpoint.method, target, headers, body)
        prepared = _Prepared(source, endpoint, url, target, headers, body, request)
        self._prepared[endpoint.name] = prepared
        return prepared

    async def _exchange_within(
        self, endpoint: ProbeSpec, prepared: _Prepared, deadline: float, began: float, seen: _Observed
    ) -> Failure | None:
        """Run the exchange under the hard deadline and turn whatever went wrong into a failure."""
        connection: list[HttpConnection] = []  # the open connection, closed whatever happens
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                return await self._exchange(endpoint, prepared, seen, connection)
        except TLSSetupError as exc:
            return Failure(FailureReason.ERROR, str(exc))
        except Exception as exc:
            if scope.expired():
                phase = _PHASE_WORDS.get(seen.trace.last_phase or "", "starting")
                if seen.connection is not None and seen.connection.waiting_for_budget:
                    phase = f"waiting for room in the body budget (body_memory_limit, {self.budget.total} bytes)"
                return Failure(FailureReason.TIMEOUT, f"timed out after {time.monotonic() - began:.3g}s, {phase}")
            return classify(exc)
        finally:
            if seen.connection is not None and endpoint.method != "HEAD":
                seen.body_bytes = seen.connection.body_size  # as far as reading went, whatever ended it
            for conn in connection:
                conn.close()

    async def _exchange(
        self, endpoint: ProbeSpec, prepared: _Prepared, seen: _Observed, opened: list[HttpConnection]
    ) -> Failure | None:
        """Send the request, follow redirects, and judge the last response."""
        url, target, method, request = prepared.url, prepared.target, endpoint.method, prepared.request
        headers, body = prepared.headers, prepared.body
        keep_text = needs_body_text(endpoint.expect)
        conn: HttpConnection | None = None
        origin: tuple[str, str, int] | None = None

        async def send_on_fresh(old: HttpConnection | None) -> HttpConnection:
            if old is not None:
                old.close()
            new = await self._open(prepared, target, seen)
            opened.append(new)
            new.send(request, head_only=method == "HEAD", limit=endpoint.body_size_limit, keep=keep_text)
            return new

        while True:
            seen.new_hop()
            reused = conn is not None and origin == target.origin and conn.reusable
            if conn is not None and reused:
                conn.send(request, head_only=method == "HEAD", limit=endpoint.body_size_limit, keep=keep_text)
            else:
                conn = await send_on_fresh(conn)
                origin = target.origin
            try:
                head = await conn.head()
            except (NoResponse, ConnectionError):
                if not reused or conn.answered:
                    raise
                # The server closed the kept-alive connection before reading this request (an idle timeout,
                # or one response per connection without `Connection: close`): sent again on a fresh one,
                # as browsers do, rather than failing a probe that a browser would pass.
                conn = await send_on_fresh(conn)
                head = await conn.head()
            seen.response(head, conn)
            location = head.get("location") if endpoint.follow_redirects and head.status in REDIRECT_STATUSES else None
            if location is None:
                return await self._judge(endpoint, head, conn, seen)
            if seen.redirects >= endpoint.max_redirects:
                return Failure(FailureReason.PROTOCOL, f"more than {endpoint.max_redirects} redirects")
            seen.redirects += 1
            try:
                next_url = url.join(URL(location))
            except ValueError:
                raise UnsupportedRedirect("unsupported redirect target: the location is not a valid URL") from None
            next_target = parse_target(next_url)
            if (head.status == 303 and method != "HEAD") or (head.status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = _without_body_headers(headers)
            if next_target.origin != prepared.target.origin:
                headers = tuple(h for h in headers if h[0].lower() in CROSS_ORIGIN_HEADERS)
            url, target = next_url, next_target
            request = build_request(method, target, headers, body)

    async def _judge(self, endpoint: ProbeSpec, head: Head, conn: HttpConnection, seen: _Observed) -> Failure | None:
        """Check the last response in order: status, headers, body size, body content."""
        expect, limit = endpoint.expect, endpoint.body_size_limit
        failure = judge(expect, Response(head.status, head.headers))
        if failure is not None:
            return failure
        # HEAD responses announce the length of a body they do not carry.
        if seen.content_length > limit and endpoint.method != "HEAD":
            return judge(
                expect,
                Response(
                    head.status,
                    head.headers,
                    oversize=f"body larger than {limit} bytes (Content-Length: {seen.content_length})",
                ),
            )
        body = await conn.body()
        seen.completed_at = conn.completed_at
        oversize = f"body larger than {limit} bytes" if body.oversize else None
        text = None if body.data is None else _text(body.data, head.get("content-type"))
        return judge(expect, Response(head.status, head.headers, text, oversize))

    async def _open(self, prepared: _Prepared, target: Target, seen: _Observed) -> HttpConnection:
        """A connection to the target: resolved, connected (each address in turn), and TLS if https."""
        endpoint, trace = prepared.spec, seen.trace
        # Looked up first: TLS material that does not load is the probe's problem, not the server's.
        context = self._tls.context(endpoint.tls) if target.scheme == "https" else None
        if target.literal:
            addresses = [target.host]  # nothing to look up, so no resolve phase and no detour
        else:
            trace.start("resolve")
            try:
                addresses = await self._resolver.addresses(target.host, target.port)
            finally:
                trace.stop()
        error: OSError | None = None
        # One address after the other, in the resolver's order: `localhost` may give ::1 first while the
        # server listens on 127.0.0.1 only.
        for address in addresses:
            try:
                conn = await connect(address, target.port, trace, self.budget)
                break
            except OSError as exc:
                error = exc
        else:
            assert error is not None
            raise error
        if context is not None:
            # SNI and the name the certificate must carry: `tls.server_name` is for the endpoint's own host only.
            name = endpoint.tls.server_name
            await conn.start_tls(context, name if name and target.host == prepared.target.host else target.host)
        return conn

    async def _second_look(
        self, endpoint: ProbeSpec, address: str, port: int, server_name: str | None
    ) -> PeerCert | None:
        """The certificate of a server that failed verification, from a handshake that does not verify."""
        try:
            context = self._tls.context(endpoint.tls, verify=False)
            async with asyncio.timeout(min(endpoint.timeout, 2.0)):
                return await unverified_cert(context, address, port, server_name)
        except Exception:  # the certificate is a bonus: the probe has failed (tls) either way
            return None

    async def _late_rejection(self, endpoint: ProbeSpec, trace: ProbeTrace, deadline: float) -> Failure | None:
        """A TLS failure if the server rejects a fresh TLS 1.3 handshake (e.g. no client certificate), else None."""
        handshake = trace.handshake
        assert handshake is not None
        loop = asyncio.get_running_loop()
        # The alert follows the handshake within a round trip; a server that accepts waits for a request.
        until = min(deadline, loop.time() + 0.1 + 2 * handshake.seconds)
        try:
            context = self._tls.context(endpoint.tls)
            async with asyncio.timeout_at(until):
                await read_after_handshake(context, handshake.address, handshake.port, handshake.server_name)
        except Exception as exc:
            failure = classify(exc)
            if failure.reason is FailureReason.TLS and any(isinstance(e, ssl.SSLError) for e in exception_chain(exc)):
                return failure
        return None


def _without_body_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A request that lost its body on a redirect (POST turned GET) loses the headers describing it too."""
    return tuple(h for h in headers if h[0].lower() not in ("content-type", "content-length", "content-encoding"))
