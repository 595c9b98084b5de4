"""The HTTP prober against real local servers: pytest-httpserver, TLS servers with trustme certificates, raw sockets."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from exporter.config import Endpoint
from exporter.probes.http import HttpProber
from exporter.probes.tls import TLSContexts, TLSSetupError
from exporter.results import PHASES, FailureReason, ProbeResult

# pytest-asyncio 1.x deprecates overriding event_loop_policy in favour of a hook that would have to name
# a loop for every async test of the suite; the fixture below parametrizes this file only.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning')

# How much longer than its deadline a timed-out probe may take: generous for a loaded machine,
# yet well short of the 3 s a late server here takes to answer and of the 5 s timeout that an
# explicit deadline overrides, so that a probe waiting past its deadline still fails.
MARGIN = 1.0

# ---------------------------------------------------------------------------
# Helpers


def make_endpoint(url: str, **fields: Any) -> Endpoint:
    """An endpoint as the config loader would build it (durations as text, TLS paths as absolute Paths)."""
    return Endpoint.model_validate({"name": "test", "url": url, "timeout": "3s", **fields})


def assert_failed(result: ProbeResult, reason: FailureReason) -> None:
    """A failed result with the given reason, a message, and a sane duration."""
    assert not result.success, result
    assert result.reason is reason, (result.reason, result.message)
    assert result.message
    assert result.duration_seconds >= 0
    assert sum(result.phases.values()) <= result.duration_seconds + 1e-6


def assert_timed_out(result: ProbeResult, timeout: float) -> None:
    assert_failed(result, FailureReason.TIMEOUT)
    assert timeout - 0.05 <= result.duration_seconds <= timeout + MARGIN


def slowest_phase(result: ProbeResult) -> str:
    """The phase that took longest: where a probe that waited spent its time, however loaded the machine."""
    return max(result.phases, key=result.phases.__getitem__)


def leaf_expiry(cert: trustme.LeafCert) -> float:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).not_valid_after_utc.timestamp()


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every probe test runs on the standard loop and on uvloop, which worker processes use."""
    return uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    p = HttpProber()
    yield p
    await p.aclose()


# ---------------------------------------------------------------------------
# Raw socket servers for broken protocols


def read_request(conn: socket.socket) -> bytes:
    """Read up to the end of the request headers (a probe's body is small and comes with them)."""
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class RawServer:
    """A TCP server on 127.0.0.1 that runs `handle(conn, stopped)` in a thread per connection."""

    def __init__(self, handle: Callable[[socket.socket, threading.Event], None]) -> None:
        self.handle = handle
        self.stopped = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so that the accept loop notices `stopped`
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _accept_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn, self.stopped)
        except OSError:
            pass  # the probe gave up and closed: expected for several cases
        finally:
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self._accepter.join(2)
        self._listener.close()
        for thread in self._threads:
            thread.join(2)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, threading.Event], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handle: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        server = RawServer(handle)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def never_answers(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)
    stopped.wait(5)


def resets(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def sends_garbage(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")


def closes_silently(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)


def truncates_body(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")


def answers_http10(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")


def replies(data: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """A handler that reads the request, sends `data` and closes."""

    def handle(conn: socket.socket, stopped: threading.Event) -> None:
        read_request(conn)
        conn.sendall(data)

    return handle


def trickles_forever(conn: socket.socket, stopped: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")  # no length: the body ends at close
    while not stopped.is_set():
        conn.sendall(b"x" * 1024)
        time.sleep(0.005)


def keeps_alive(conn: socket.socket, stopped: threading.Event) -> None:
    """Answers every request on the connection and keeps it open, inviting reuse."""
    while not stopped.is_set() and read_request(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


@pytest.mark.parametrize(
    ("handler", "reason", "in_message"),
    [
        (resets, FailureReason.CONNECT, "reset"),
        (sends_garbage, FailureReason.PROTOCOL, "invalid HTTP response"),
        (closes_silently, FailureReason.PROTOCOL, "without a response"),
        (truncates_body, FailureReason.PROTOCOL, "invalid HTTP response"),
        # HTTP/0.9: the body alone, no status line.
        (replies(b"<html>hello from 1991</html>\n"), FailureReason.PROTOCOL, "the reply is not HTTP/1.x"),
        (replies(b"HTTP/2 200\r\ncontent-length: 2\r\n\r\nok"), FailureReason.PROTOCOL, "the reply is not HTTP/1.x"),
    ],
    ids=["reset", "garbage", "close-without-response", "truncated-body", "http-0.9", "http-2-status-line"],
)
async def test_broken_servers(
    prober: HttpProber, raw_server: Any, handler: Any, reason: FailureReason, in_message: str
) -> None:
    server = raw_server(handler)
    result = await prober.probe(make_endpoint(server.url()))
    assert_failed(result, reason)
    assert in_message in result.message
    assert result.duration_seconds < 3  # ended by the failure, not by the timeout


@pytest.mark.parametrize(
    ("reply", "success"),
    [
        # Short headers and the start of a large body in one read: a fast local server sends them so.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 1048576, True),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: a\r\n" * 7000 + b"Content-Length: 2\r\n\r\nok", False),
    ],
    ids=["short-headers-large-body", "one-long-header", "many-headers"],
)
async def test_headers_are_limited_to_64_kib_however_they_arrive(
    prober: HttpProber, raw_server: Any, reply: bytes, success: bool
) -> None:
    server = raw_server(replies(reply))
    result = await prober.probe(make_endpoint(server.url(), body_size_limit="2MiB"))
    if success:
        assert result.success, result.message
        assert result.body_bytes == 1048576
    else:
        assert_failed(result, FailureReason.PROTOCOL)
        assert "headers longer than 65536 bytes" in result.message


async def test_server_that_never_answers_times_out(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(never_answers)
    result = await prober.probe(make_endpoint(server.url(), timeout="300ms"))
    assert_timed_out(result, 0.3)
    assert "waiting for the response" in result.message
    assert slowest_phase(result) == "processing"


async def test_explicit_deadline_wins_over_timeout(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(never_answers)
    deadline = asyncio.get_running_loop().time() + 0.2
    result = await prober.probe(make_endpoint(server.url(), timeout="5s"), deadline=deadline)
    assert_timed_out(result, 0.2)


async def test_endless_body_hits_the_size_limit(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(trickles_forever)
    result = await prober.probe(make_endpoint(server.url(), body_size_limit="4KiB", timeout="2s"))
    assert_failed(result, FailureReason.BODY)
    assert result.message == "body larger than 4096 bytes"
    assert result.body_bytes > 4096
    assert result.status_code == 200
    assert result.duration_seconds < 2  # ended by the failure, not by the 2 s timeout


async def test_endless_body_hits_the_deadline(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(trickles_forever)
    result = await prober.probe(make_endpoint(server.url(), timeout="300ms"))
    assert_timed_out(result, 0.3)
    assert "reading the body" in result.message
    assert 0 < result.body_bytes < 10 * 1024 * 1024
    assert slowest_phase(result) == "transfer"


async def test_http10_response(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(answers_http10)
    result = await prober.probe(make_endpoint(server.url()))
    assert result.success, result.message
    assert result.http_version == 1.0
    assert result.content_length == 2
    assert result.body_bytes == 2


async def test_every_probe_opens_a_fresh_connection(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(keeps_alive)
    endpoint = make_endpoint(server.url())
    results = [await prober.probe(endpoint) for _ in range(3)]
    assert all(r.success for r in results), [r.message for r in results]
    assert server.connections == 3
    assert all(r.phases["connect"] > 0 for r in results)
    assert all(r.http_version == 1.1 for r in results)


async def test_cancellation_propagates(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(never_answers)
    task = asyncio.create_task(prober.probe(make_endpoint(server.url(), timeout="5s")))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------------------
# Connect and DNS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused(prober: HttpProber) -> None:
    result = await prober.probe(make_endpoint(f"http://127.0.0.1:{free_port()}/"))
    assert_failed(result, FailureReason.CONNECT)
    assert result.message == "connection refused"
    assert result.status_code == 0
    assert result.duration_seconds < 3  # ended by the failure, not by the timeout


async def test_unknown_host_is_a_dns_failure(prober: HttpProber) -> None:
    result = await prober.probe(make_endpoint("http://no-such-host.invalid/"))
    assert_failed(result, FailureReason.DNS)
    assert "no-such-host.invalid" in result.message
    assert result.phases["connect"] == 0


async def test_secrets_never_reach_the_message(prober: HttpProber) -> None:
    endpoint = make_endpoint(
        "http://alice:pa55word@no-such-host.invalid/x?api_key=k3y-s3cret",
        headers={"Authorization": "Bearer t0ken-s3cret"},
    )
    result = await prober.probe(endpoint)
    assert_failed(result, FailureReason.DNS)
    for secret in ("alice", "pa55word", "k3y-s3cret", "t0ken-s3cret"):
        assert secret not in result.message


async def test_invalid_request_header_is_an_error_without_its_value(prober: HttpProber, raw_server: Any) -> None:
    server = raw_server(answers_http10)
    # The config loader rejects such a value; the prober must still turn it into a result, not leak it.
    valid = make_endpoint(server.url())
    endpoint = valid.model_copy(update={"headers": {"X-Token": "s3cret\r\nInjected: yes"}})
    result = await prober.probe(endpoint)
    assert_failed(result, FailureReason.ERROR)
    assert "s3cret" not in result.message
    assert server.connections <= 1


# ---------------------------------------------------------------------------
# pytest-httpserver: status, headers, body, redirects, timing


@pytest.mark.parametrize(
    ("served", "expected", "success"),
    [
        (200, None, True),
        (204, None, True),
        (500, None, False),
        (404, [404], True),
        (404, ["2xx"], False),
        (302, ["3xx"], True),  # no Location: nothing to follow
        (503, ["500-503"], True),
        (504, ["500-503"], False),
        (418, [200, "4xx"], True),
        (302, [200, "4xx"], False),
    ],
)
async def test_status(
    prober: HttpProber, httpserver: HTTPServer, served: int, expected: list[int | str] | None, success: bool
) -> None:
    httpserver.expect_request("/status").respond_with_data("", status=served)
    fields = {} if expected is None else {"expect": {"status": expected}}
    result = await prober.probe(make_endpoint(httpserver.url_for("/status"), **fields))
    assert result.status_code == served
    assert result.success is success, result.message
    if not success:
        assert_failed(result, FailureReason.HTTP_STATUS)
        assert str(served) in result.message
        assert not result.failed_due_to_regex


BODY = "service status: UP, all good"


@pytest.mark.parametrize(
    ("expect", "success"),
    [
        ({"body_contains": "UP"}, True),
        ({"body_contains": "DOWN"}, False),
        ({"body_matches": r"status:\s*UP"}, True),
        ({"body_matches": r"^DOWN"}, False),
        ({"body_not_matches": "maintenance"}, True),
        ({"body_not_matches": "all good"}, False),
        ({"body_contains": "UP", "body_matches": "good$", "body_not_matches": "error"}, True),
    ],
)
async def test_body_checks(prober: HttpProber, httpserver: HTTPServer, expect: dict[str, str], success: bool) -> None:
    httpserver.expect_request("/body").respond_with_data(BODY)
    result = await prober.probe(make_endpoint(httpserver.url_for("/body"), expect=expect))
    assert result.success is success, result.message
    assert result.failed_due_to_regex is not success
    assert result.body_bytes == len(BODY)
    assert result.content_length == len(BODY)
    if not success:
        assert_failed(result, FailureReason.BODY)


@pytest.mark.parametrize(
    ("headers", "success", "in_message"),
    [
        ({"Content-Type": "application/json"}, True, ""),
        ({"content-type": "^application/json$"}, True, ""),
        ({"X-Version": r"^1\.2\."}, True, ""),
        ({"X-Version": r"^2\."}, False, "does not match"),
        ({"X-Missing": ".*"}, False, "missing"),
    ],
)
async def test_header_checks(
    prober: HttpProber, httpserver: HTTPServer, headers: dict[str, str], success: bool, in_message: str
) -> None:
    httpserver.expect_request("/headers").respond_with_data(
        "{}", content_type="application/json", headers={"X-Version": "1.2.3"}
    )
    result = await prober.probe(make_endpoint(httpserver.url_for("/headers"), expect={"headers": headers}))
    assert result.success is success, result.message
    if not success:
        assert_failed(result, FailureReason.HEADER)
        assert result.failed_due_to_regex
        assert in_message in result.message
        assert "1.2.3" not in result.message  # header values stay out of messages


@pytest.mark.parametrize(
    ("status", "expect", "reason"),
    [
        (500, {"headers": {"X-Missing": "."}, "body_contains": "nope"}, FailureReason.HTTP_STATUS),
        (200, {"headers": {"X-Missing": "."}, "body_contains": "nope"}, FailureReason.HEADER),
        (200, {"body_contains": "nope", "max_response_time": "1ms"}, FailureReason.BODY),
    ],
)
async def test_first_failed_check_wins(
    prober: HttpProber, httpserver: HTTPServer, status: int, expect: dict[str, Any], reason: FailureReason
) -> None:
    httpserver.expect_request("/order").respond_with_data("body", status=status)
    result = await prober.probe(make_endpoint(httpserver.url_for("/order"), expect=expect))
    assert_failed(result, reason)


async def test_redirects_are_followed_and_counted(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_data("", status=301, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": httpserver.url_for("/c")})
    httpserver.expect_request("/c").respond_with_data("landed")
    result = await prober.probe(make_endpoint(httpserver.url_for("/a"), expect={"body_contains": "landed"}))
    assert result.success, result.message
    assert result.redirects == 2
    assert result.status_code == 200


@pytest.mark.parametrize(("expected", "success"), [(None, False), (["3xx"], True)])
async def test_redirect_not_followed_is_judged_by_status(
    prober: HttpProber, httpserver: HTTPServer, expected: list[str] | None, success: bool
) -> None:
    httpserver.expect_request("/moved").respond_with_data("", status=302, headers={"Location": "/elsewhere"})
    fields: dict[str, Any] = {"follow_redirects": False}
    if expected is not None:
        fields["expect"] = {"status": expected}
    result = await prober.probe(make_endpoint(httpserver.url_for("/moved"), **fields))
    assert result.success is success, result.message
    assert result.status_code == 302
    assert result.redirects == 0
    if not success:
        assert_failed(result, FailureReason.HTTP_STATUS)


@pytest.mark.parametrize(("max_redirects", "hops", "success"), [(3, 3, True), (2, 3, False), (0, 1, False)])
async def test_max_redirects(
    prober: HttpProber, httpserver: HTTPServer, max_redirects: int, hops: int, success: bool
) -> None:
    for i in range(hops):
        httpserver.expect_request(f"/hop{i}").respond_with_data("", status=307, headers={"Location": f"/hop{i + 1}"})
    httpserver.expect_request(f"/hop{hops}").respond_with_data("end")
    result = await prober.probe(make_endpoint(httpserver.url_for("/hop0"), max_redirects=max_redirects))
    assert result.success is success, result.message
    if not success:
        assert_failed(result, FailureReason.PROTOCOL)
        assert "redirects" in result.message
        assert result.redirects == max_redirects


async def test_redirect_loop_is_a_protocol_failure(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
    result = await prober.probe(make_endpoint(httpserver.url_for("/loop")))
    assert_failed(result, FailureReason.PROTOCOL)
    assert result.message == "more than 10 redirects"
    assert result.redirects == 10


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets a slow handler finish at teardown (the default httpserver handles one request at a time)."""
    event = threading.Event()
    yield event
    event.set()


async def test_slow_response_is_too_slow(prober: HttpProber, httpserver: HTTPServer, release: threading.Event) -> None:
    def slow(request: Request) -> Response:
        release.wait(0.3)
        return Response("late but fine")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    result = await prober.probe(make_endpoint(httpserver.url_for("/slow"), expect={"max_response_time": "100ms"}))
    assert_failed(result, FailureReason.TOO_SLOW)
    assert "max_response_time" in result.message
    assert result.status_code == 200
    # It waited for the late answer, the server's processing time, and judged it too slow before
    # its 3 s timeout.
    assert 0.3 <= result.duration_seconds < 3
    assert slowest_phase(result) == "processing"


async def test_response_slower_than_timeout_times_out(
    prober: HttpProber, httpserver: HTTPServer, release: threading.Event
) -> None:
    def stuck(request: Request) -> Response:
        release.wait(3)
        return Response("too late")

    httpserver.expect_request("/stuck").respond_with_handler(stuck)
    try:
        result = await prober.probe(make_endpoint(httpserver.url_for("/stuck"), timeout="300ms"))
    finally:
        release.set()
    assert_timed_out(result, 0.3)
    assert result.status_code == 0


async def test_post_sends_body_and_headers(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/submit",
        method="POST",
        data='{"ping": true}',
        headers={"X-Api-Key": "k3y", "Content-Type": "application/json"},
    ).respond_with_data("accepted", status=202)
    endpoint = make_endpoint(
        httpserver.url_for("/submit"),
        method="POST",
        body='{"ping": true}',
        headers={"X-Api-Key": "k3y", "Content-Type": "application/json"},
    )
    result = await prober.probe(endpoint)
    assert result.success, result.message
    assert result.status_code == 202
    request, _ = httpserver.log[-1]
    assert request.headers["User-Agent"].startswith("upwatch/")


async def test_url_credentials_become_basic_auth(prober: HttpProber, httpserver: HTTPServer) -> None:
    token = base64.b64encode(b"alice:s3cret").decode()
    httpserver.expect_request("/private", headers={"Authorization": f"Basic {token}"}).respond_with_data("hi")
    url = httpserver.url_for("/private").replace("://", "://alice:s3cret@")
    result = await prober.probe(make_endpoint(url))
    assert result.success, result.message
    request, _ = httpserver.log[-1]
    assert "s3cret" not in request.url  # credentials travel in the header only


async def test_body_over_limit(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data("x" * 5000)
    result = await prober.probe(make_endpoint(httpserver.url_for("/big"), body_size_limit=1000))
    assert_failed(result, FailureReason.BODY)
    assert result.message.startswith("body larger than 1000 bytes")
    assert not result.failed_due_to_regex


async def test_head_response_is_not_held_to_its_announced_length(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big", method="HEAD").respond_with_data("x" * 5000)
    result = await prober.probe(make_endpoint(httpserver.url_for("/big"), method="HEAD", body_size_limit=1000))
    assert result.success, result.message
    assert result.content_length == 5000
    assert result.body_bytes == 0


async def test_redirect_to_another_scheme_is_a_protocol_failure(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ftp").respond_with_data("", status=302, headers={"Location": "ftp://127.0.0.1/file"})
    result = await prober.probe(make_endpoint(httpserver.url_for("/ftp")))
    assert_failed(result, FailureReason.PROTOCOL)
    assert "unsupported" in result.message


@pytest.mark.parametrize(
    "location", ["javascript:alert(1)", "JavaScript:void(0)", "file:///etc/passwd", "data:text/html,hi", "mailto:x@y"]
)
async def test_redirect_to_a_scheme_a_probe_does_not_follow_is_a_protocol_failure(
    prober: HttpProber, httpserver: HTTPServer, location: str
) -> None:
    httpserver.expect_request("/away").respond_with_data("", status=302, headers={"Location": location})
    result = await prober.probe(make_endpoint(httpserver.url_for("/away")))
    assert_failed(result, FailureReason.PROTOCOL)
    scheme = location.partition(":")[0].lower()
    assert result.message == f"unsupported redirect target: scheme {scheme!r} is not http or https"


def one_response_per_connection(conn: socket.socket, stopped: threading.Event) -> None:
    """Redirects / to /next, then closes the connection without saying `Connection: close` (HTTP/1.1 keeps it)."""
    if read_request(conn).startswith(b"GET /next "):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    else:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n")


async def test_a_redirect_whose_kept_alive_connection_was_closed_is_followed_on_a_fresh_one(
    prober: HttpProber, raw_server: Any
) -> None:
    server = raw_server(one_response_per_connection)
    results = [await prober.probe(make_endpoint(server.url())) for _ in range(5)]
    assert [(r.success, r.message) for r in results] == [(True, "")] * 5
    assert all(r.redirects == 1 and r.status_code == 200 for r in results)


async def test_successful_plain_http_result(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ok").respond_with_data("fine")
    before = time.time()
    result = await prober.probe(make_endpoint(httpserver.url_for("/ok")))
    assert result.success, result.message
    assert result.reason is None
    assert result.message == ""
    assert result.endpoint == "test"
    assert before <= result.started_at <= time.time()
    assert (result.status_code, result.http_version, result.ssl) == (200, 1.0, False)  # werkzeug answers 1.0
    assert result.cert_expiry_timestamp is None
    assert set(result.phases) == set(PHASES)
    assert result.phases["resolve"] > 0  # the URL names `localhost`
    assert result.phases["tls"] == 0
    assert result.phases["connect"] >= 0
    assert result.phases["processing"] >= 0
    assert result.phases["transfer"] >= 0
    assert sum(result.phases.values()) <= result.duration_seconds


# ---------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@contextmanager
def https_server(cert: trustme.LeafCert) -> Iterator[HTTPServer]:
    """An HTTPS server on 127.0.0.1 presenting `cert`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = HTTPServer(host="127.0.0.1", ssl_context=context)
    server.expect_request("/").respond_with_data("secure")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_valid_certificate(prober: HttpProber, ca: trustme.CA, ca_file: Path) -> None:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with https_server(cert) as server:
        result = await prober.probe(make_endpoint(server.url_for("/"), tls={"ca_file": ca_file}))
    assert result.success, result.message
    assert result.ssl
    assert result.cert_expiry_timestamp == leaf_expiry(cert)
    assert result.phases["tls"] > 0
    assert sum(result.phases.values()) <= result.duration_seconds


async def test_server_name_override(prober: HttpProber, ca: trustme.CA, ca_file: Path) -> None:
    cert = ca.issue_cert("api.example.test")
    with https_server(cert) as server:
        url = server.url_for("/")
        plain = await prober.probe(make_endpoint(url, tls={"ca_file": ca_file}))
        named = await prober.probe(make_endpoint(url, tls={"ca_file": ca_file, "server_name": "api.example.test"}))
    assert_failed(plain, FailureReason.TLS)
    assert named.success, named.message


@pytest.mark.parametrize(
    ("case", "in_message"),
    [
        ("unknown-ca", "certificate verify failed"),
        ("expired", "expired"),
        ("wrong-host", "mismatch"),
    ],
)
async def test_bad_certificates_fail_with_tls_and_report_expiry(
    prober: HttpProber, ca: trustme.CA, ca_file: Path, case: str, in_message: str
) -> None:
    tls: dict[str, Any] = {"ca_file": ca_file}
    if case == "unknown-ca":
        cert = trustme.CA().issue_cert("127.0.0.1")
    elif case == "expired":
        cert = ca.issue_cert(
            "127.0.0.1", not_before=now_utc() - dt.timedelta(days=30), not_after=now_utc() - dt.timedelta(days=1)
        )
    else:
        cert = ca.issue_cert("other.example.test")
    with https_server(cert) as server:
        result = await prober.probe(make_endpoint(server.url_for("/"), tls=tls))
        insecure = await prober.probe(make_endpoint(server.url_for("/"), tls={"verify": False}))
    assert_failed(result, FailureReason.TLS)
    assert in_message in result.message
    assert result.phases["tls"] > 0
    # The expiry comes from a second, non-verifying handshake.
    assert result.cert_expiry_timestamp == leaf_expiry(cert)
    if case == "expired":
        assert result.cert_expiry_timestamp < time.time()
    assert insecure.success, insecure.message
    assert insecure.ssl
    assert insecure.cert_expiry_timestamp == leaf_expiry(cert)


@pytest.fixture(scope="module")
def client_cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    client = ca.issue_cert("client.example.test")
    folder = tmp_path_factory.mktemp("client")
    cert_file, key_file = folder / "client.pem", folder / "client.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


def tls_server(
    context: ssl.SSLContext, then: Callable[[ssl.SSLSocket], None]
) -> Callable[[socket.socket, threading.Event], None]:
    """A raw-server handler that does the TLS handshake with `context`, reads the request, and runs `then`."""

    def handle(conn: socket.socket, stopped: threading.Event) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            read_request(tls)
            then(tls)

    return handle


def answer_ok(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")


def reset_connection(tls: ssl.SSLSocket) -> None:
    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_client_certificate(
    prober: HttpProber, raw_server: Any, ca: trustme.CA, ca_file: Path, client_cert_files: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    cert_file, key_file = client_cert_files
    url = raw_server(tls_server(context, answer_ok)).url(scheme="https")
    # In TLS 1.3 the server's "certificate required" alert races with a reset (the request is never read);
    # repeated probes show the prober reports it as tls every time.
    without = [await prober.probe(make_endpoint(url, tls={"ca_file": ca_file})) for _ in range(5)]
    with_cert = await prober.probe(
        make_endpoint(url, tls={"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file})
    )
    for result in without:
        assert_failed(result, FailureReason.TLS)
        assert "certificate required" in result.message
        assert result.duration_seconds < 3  # ended by the failure, not by the 3 s timeout
    assert with_cert.success, with_cert.message
    assert with_cert.ssl


async def test_tls_server_that_resets_after_the_handshake(prober: HttpProber, raw_server: Any, ca: trustme.CA) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = ca.issue_cert("127.0.0.1")
    cert.configure_cert(context)
    url = raw_server(tls_server(context, reset_connection)).url(scheme="https")
    result = await prober.probe(make_endpoint(url, tls={"verify": False}))
    assert_failed(result, FailureReason.CONNECT)
    assert result.message == "connection reset by peer"
    assert result.cert_expiry_timestamp == leaf_expiry(cert)  # from the handshake, though no response came
    assert result.duration_seconds < 3  # ended by the failure, not by the timeout


async def test_https_url_against_plain_http_server(prober: HttpProber, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("plain")
    result = await prober.probe(make_endpoint(httpserver.url_for("/").replace("http://", "https://")))
    assert_failed(result, FailureReason.TLS)


# ---------------------------------------------------------------------------
# TLS material that cannot be loaded


def encrypted_key(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )


@pytest.mark.parametrize(
    ("case", "in_message"),
    [
        ("ca-garbage", "ca_file"),
        ("ca-missing", "ca_file"),
        ("cert-garbage", "no PEM certificate"),
        ("key-mismatch", "does not match"),
        ("key-encrypted", "encrypted"),
        ("key-garbage", "key_file"),
        ("cert-without-key", "cert_file"),
    ],
)
def test_unloadable_tls_material(
    ca: trustme.CA, client_cert_files: tuple[Path, Path], tmp_path: Path, case: str, in_message: str
) -> None:
    cert_file, key_file = client_cert_files
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    other_key = tmp_path / "other.key"
    other_key.write_bytes(ca.issue_cert("other.test").private_key_pem.bytes())
    locked_key = tmp_path / "locked.key"
    locked_key.write_bytes(encrypted_key(key_file.read_bytes()))
    tls: dict[str, Any] = {
        "ca-garbage": {"ca_file": garbage},
        "ca-missing": {"ca_file": tmp_path / "missing.pem"},
        "cert-garbage": {"cert_file": garbage, "key_file": key_file},
        "key-mismatch": {"cert_file": cert_file, "key_file": other_key},
        "key-encrypted": {"cert_file": cert_file, "key_file": locked_key},
        "key-garbage": {"cert_file": cert_file, "key_file": garbage},
        "cert-without-key": {"cert_file": cert_file},
    }[case]
    with pytest.raises(TLSSetupError, match=in_message):
        TLSContexts().load(make_endpoint("https://127.0.0.1:1/", tls=tls).tls)


HANG_GUARD = 60.0  # seconds: far beyond any load; only a load that blocks forever takes that long


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "key_file"])
@pytest.mark.parametrize(
    ("kind", "in_message"),
    [
        ("directory", "it is a directory"),
        ("fifo", "it is not a regular file (a named pipe)"),
        ("dev-zero", "it is not a regular file (a character device)"),
    ],
)
def test_tls_files_that_are_not_regular_files_are_never_read(
    client_cert_files: tuple[Path, Path], tmp_path: Path, key: str, kind: str, in_message: str
) -> None:
    """A directory, a named pipe (whose reading would block forever) or /dev/zero (endless) put in place of a file."""
    cert_file, key_file = client_cert_files
    odd = {"directory": tmp_path, "fifo": tmp_path / "pipe", "dev-zero": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(odd)
    tls: dict[str, Any] = {"cert_file": cert_file, "key_file": key_file} if key != "ca_file" else {}
    tls[key] = odd
    spec = make_endpoint("https://127.0.0.1:1/", tls=tls).tls
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            TLSContexts().load(spec)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert outcome, f"loading {key} blocked on {odd}"
    (error,) = outcome
    assert isinstance(error, TLSSetupError), error
    assert str(error) == f"cannot use {key} {odd}: {in_message}"


async def test_unloadable_tls_material_is_an_error_result(prober: HttpProber, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    result = await prober.probe(make_endpoint("https://127.0.0.1:1/", tls={"ca_file": garbage}))
    assert_failed(result, FailureReason.ERROR)
    assert "ca_file" in result.message


async def test_rotated_ca_file_is_picked_up(prober: HttpProber, tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    ca_path = tmp_path / "ca.pem"
    old_ca.cert_pem.write_to_path(str(ca_path))
    with https_server(new_ca.issue_cert("127.0.0.1")) as server:
        endpoint = make_endpoint(server.url_for("/"), tls={"ca_file": ca_path})
        before = await prober.probe(endpoint)
        new_ca.cert_pem.write_to_path(str(ca_path))
        stat = ca_path.stat()  # a clearly newer mtime, whatever the file system's time resolution
        os.utime(ca_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        after = await prober.probe(endpoint)
    assert_failed(before, FailureReason.TLS)
    assert after.success, after.message
