"""The probe engine's parts: the pure judge, bounded body decoding, name lookups, and what a redirect may carry."""

from __future__ import annotations

import asyncio
import gzip
import socket
import subprocess
import sys
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from exporter.config import Endpoint, Expect
from exporter.probes.exchange import BodyDecoder
from exporter.probes.failures import InvalidResponse
from exporter.probes.http import HttpProber
from exporter.probes.judge import Response as Judged
from exporter.probes.judge import judge
from exporter.probes.resolve import Resolver
from exporter.probes.spec import ExpectSpec
from exporter.results import FailureReason


def expect(**fields: Any) -> ExpectSpec:
    return Expect.model_validate(fields).spec()


def make_endpoint(url: str, **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "test", "url": url, "timeout": "3s", **fields})


# ---------------------------------------------------------------------------
# judge(expect, response): no server needed


@pytest.mark.parametrize(
    ("rules", "response", "reason", "in_message"),
    [
        ({}, Judged(200, ()), None, ""),
        ({}, Judged(503, ()), FailureReason.HTTP_STATUS, "status 503, expected 2xx"),
        ({"status": ["3xx", 418]}, Judged(418, ()), None, ""),
        ({"headers": {"X-V": "^1"}}, Judged(200, (("x-v", "0.9"), ("x-v", "1.2"))), None, ""),
        ({"headers": {"X-V": "^2"}}, Judged(200, (("x-v", "1.2"),)), FailureReason.HEADER, "does not match"),
        ({"headers": {"X-V": "."}}, Judged(200, ()), FailureReason.HEADER, "header X-V missing"),
        ({"body_contains": "UP"}, Judged(200, (), "all UP"), None, ""),
        ({"body_contains": "UP"}, Judged(200, (), "DOWN"), FailureReason.BODY, "does not contain 'UP'"),
        ({"body_not_matches": "err(or)?"}, Judged(200, (), "an error"), FailureReason.BODY, "body matches"),
        ({}, Judged(200, (), None, "body larger than 10 bytes"), FailureReason.BODY, "body larger than 10 bytes"),
        # the first failed check wins: status before headers before size before content
        ({"headers": {"X": "."}}, Judged(500, ()), FailureReason.HTTP_STATUS, "status 500"),
        ({"headers": {"X": "."}}, Judged(200, (), None, "too big"), FailureReason.HEADER, "missing"),
        ({"body_contains": "x"}, Judged(200, (), "y", "too big"), FailureReason.BODY, "too big"),
        # head checks only: a body not read yet is not judged
        ({"body_contains": "UP"}, Judged(200, ()), None, ""),
    ],
)
def test_judge(rules: dict[str, Any], response: Judged, reason: FailureReason | None, in_message: str) -> None:
    failure = judge(expect(**rules), response)
    if reason is None:
        assert failure is None
    else:
        assert failure is not None
        assert failure.reason is reason
        assert in_message in failure.message
        # failed_due_to_regex: a header or body-content check, not the status or the body's size
        assert failure.regex is (
            reason is FailureReason.HEADER or (reason is FailureReason.BODY and not response.oversize)
        )


def test_judge_never_quotes_header_values_or_body_text() -> None:
    failure = judge(expect(headers={"X-Token": "^ok$"}), Judged(200, (("x-token", "s3cret-value"),)))
    assert failure is not None and "s3cret" not in failure.message
    failure = judge(expect(body_matches="^ok$"), Judged(200, (), "s3cret body"))
    assert failure is not None and "s3cret" not in failure.message


# ---------------------------------------------------------------------------
# Bounded decoding


def gzip_of_zeros(size: int, layers: int = 1) -> bytes:
    """`layers` nested gzip streams of `size` zero bytes, built a chunk at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = bytes(1 << 20)
    data = b"".join(packer.compress(chunk) for _ in range(size // len(chunk))) + packer.flush()
    for _ in range(layers - 1):
        data = gzip.compress(data, 9)
    return data


@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_never_produces_much_more_than_asked(layers: int) -> None:
    bomb = gzip_of_zeros(256 << 20, layers)
    assert len(bomb) < 300_000  # a quarter GiB in a few hundred KB (or a few KB)
    decoder = BodyDecoder(["gzip"] * layers)
    tracemalloc.start()
    try:
        out = decoder.feed(bomb, 4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == 4097  # one past the room: "too large", and no more
    assert peak < 2 << 20


def test_decoder_round_trips_and_refuses_deep_stacks() -> None:
    text = b"hello, " * 1000
    assert BodyDecoder(["gzip"]).feed(gzip.compress(text), 1 << 20) == text
    assert BodyDecoder(["deflate"]).feed(zlib.compress(text), 1 << 20) == text
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert BodyDecoder(["deflate"]).feed(raw.compress(text) + raw.flush(), 1 << 20) == text  # raw deflate too
    assert BodyDecoder(["br"]).feed(b"left as is", 100) == b"left as is"
    with pytest.raises(InvalidResponse, match="stacked"):
        BodyDecoder(["gzip", "gzip", "gzip"])
    with pytest.raises(InvalidResponse, match="cannot decode"):
        BodyDecoder(["gzip"]).feed(b"not gzip at all", 100)


@pytest.fixture
def bomb_server() -> Iterator[int]:
    """A raw server answering every request with half a GiB of zeros in 1 KB of gzip of gzip.

    Raw, not pytest-httpserver: that server runs in this process and its own buffers would blur the
    memory the probe takes.
    """
    body = gzip_of_zeros(512 << 20, 2)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(head + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


async def test_a_stacked_gzip_bomb_costs_the_body_limit_not_its_size(bomb_server: int) -> None:
    prober = HttpProber()
    endpoint = make_endpoint(f"http://127.0.0.1:{bomb_server}/", body_size_limit="1MiB", expect={"body_contains": "x"})
    tracemalloc.start()
    try:
        result = await prober.probe(endpoint)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await prober.aclose()
    assert result.reason is FailureReason.BODY, result.message
    assert result.message == "body larger than 1048576 bytes"
    assert result.duration_seconds < 3
    assert peak < 4 << 20  # the limit and a few buffers, not half a GiB


# ---------------------------------------------------------------------------
# Name lookups


async def test_ip_literals_are_not_looked_up(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    prober = HttpProber(resolver=Resolver(nameservers=["127.0.0.1:9"]))  # would fail any lookup
    try:
        result = await prober.probe(make_endpoint(f"http://127.0.0.1:{httpserver.port}/"))
    finally:
        await prober.aclose()
    assert result.success, result.message
    assert result.phases["resolve"] == 0.0


@pytest.fixture
def silent_dns() -> Iterator[str]:
    """A UDP name server on loopback that reads every query and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def swallow() -> None:
        while not stop.is_set():
            try:
                sock.recvfrom(4096)
            except TimeoutError:
                continue

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    sock.close()


async def test_a_dead_name_server_holds_up_only_its_own_lookups(silent_dns: str, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    healthy = make_endpoint(f"http://127.0.0.1:{httpserver.port}/")
    prober = HttpProber(resolver=Resolver(nameservers=[silent_dns]))
    try:
        alone = [await prober.probe(healthy) for _ in range(20)]
        stuck = [
            asyncio.create_task(prober.probe(make_endpoint(f"http://svc-{i}.example.test/", timeout="2s")))
            for i in range(50)
        ]
        await asyncio.sleep(0.1)  # every lookup is out and unanswered
        crowded = [await prober.probe(healthy) for _ in range(20)]
        dead = await asyncio.gather(*stuck)
    finally:
        await prober.aclose()
    assert all(r.success for r in alone + crowded), [r.message for r in alone + crowded if not r.success]
    assert all(r.reason is FailureReason.TIMEOUT and "dns lookup" in r.message for r in dead)
    median = sorted(r.duration_seconds for r in crowded)[10]
    baseline = sorted(r.duration_seconds for r in alone)[10]
    assert median < baseline + 0.005


# ---------------------------------------------------------------------------
# Redirects: what goes to another site


async def test_configured_headers_stay_with_their_origin(httpserver: HTTPServer) -> None:
    other = HTTPServer(host="localhost")  # another origin: another host name and port
    other.expect_request("/landing").respond_with_data("landed")
    other.start()
    try:
        httpserver.expect_request("/same").respond_with_data("", status=302, headers={"Location": "/moved"})
        httpserver.expect_request("/moved").respond_with_data(
            "", status=302, headers={"Location": other.url_for("/landing")}
        )
        prober = HttpProber()
        headers = {"X-Api-Key": "k3y-s3cret", "Authorization": "Bearer t0ken", "Accept": "text/plain"}
        try:
            result = await prober.probe(make_endpoint(httpserver.url_for("/same"), headers=headers))
        finally:
            await prober.aclose()
        assert result.success, result.message
        assert result.redirects == 2
        same_origin, _ = httpserver.log[-1]
        assert same_origin.headers["X-Api-Key"] == "k3y-s3cret"  # a redirect within the site keeps them
        landed, _ = other.log[-1]
        assert "X-Api-Key" not in landed.headers
        assert "Authorization" not in landed.headers
        assert landed.headers["Accept"] == "text/plain"
        assert landed.headers["User-Agent"].startswith("upwatch/")
    finally:
        other.stop()


async def test_post_turned_get_by_a_303_drops_its_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/form", method="POST").respond_with_data("", status=303, headers={"Location": "/done"})
    httpserver.expect_request("/done", method="GET").respond_with_data("thanks")
    prober = HttpProber()
    try:
        endpoint = make_endpoint(
            httpserver.url_for("/form"), method="POST", body="a=1", headers={"Content-Type": "text/plain"}
        )
        result = await prober.probe(endpoint)
    finally:
        await prober.aclose()
    assert result.success, result.message
    done, _ = httpserver.log[-1]
    assert done.method == "GET"
    assert "Content-Type" not in done.headers
    assert done.get_data() == b""


def test_the_prober_loads_without_the_config_machinery() -> None:
    # A worker process probes ProbeSpecs; importing pydantic, YAML or the host collectors would cost it memory.
    heavy = "{'pydantic', 'yaml', 'prometheus_client'}"
    code = f"import sys, exporter.probes.http; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_the_prober_forgets_endpoints_a_reload_removed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    prober = HttpProber()
    endpoints = [make_endpoint(httpserver.url_for("/"), name=f"ep-{i}") for i in range(3)]
    try:
        for endpoint in endpoints:
            assert (await prober.probe(endpoint)).success
        prober.retain({"ep-0"})
        assert set(prober._prepared) == {"ep-0"}  # what it built for the others is gone
        assert (await prober.probe(endpoints[2])).success  # and is built again if they come back
    finally:
        await prober.aclose()
