"""The agent end to end in-process: /metrics, control paths, status page, reloads."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from exporter.app import Agent, auto_workers
from exporter.compression import gzip_pieces
from exporter.config import Endpoint
from exporter.sharding import rendezvous_bucket
from exporter.source import ConfigSource, parse_listen

LOG = structlog.get_logger()
# A reload with worker processes waits for them to take the new assignment: seconds on a loaded machine.
RELOAD_TIMEOUT = 30.0


def write_config(path: Path, url: str, *names: str, extra: str = "") -> None:
    lines = ["endpoints:"]
    for name in names:
        lines += [
            f"  - name: {name}",
            f"    url: {url}",
            "    interval: 200ms",
            "    timeout: 150ms",
            "    failure_threshold: 1",
            "    headers: {Authorization: 'Bearer top-secret-token'}",
            "    labels: {team: payments}",
            "    slo: {availability: 99.9}",
        ]
    path.write_text("\n".join(lines) + "\n" + extra)


# The agent behaves the same whether it probes in its own process or in worker processes.
@pytest.fixture(params=[0, 2], ids=["in-process", "two-workers"])
async def agent(
    tmp_path: Path, httpserver: HTTPServer, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Agent, str, Path]]:
    httpserver.expect_request("/health").respond_with_data("ok")
    config = tmp_path / "upwatch.yml"
    url = httpserver.url_for("/health").replace("http://", "http://user:hunter2@") + "?key=querysecret"
    workers = f"workers: {request.param}\n"
    write_config(config, url, "orders", "billing", extra=workers)
    agent = Agent(source=ConfigSource(config, True), listen=("127.0.0.1", 0), log=LOG, lifecycle=True)
    await agent.start()
    host, port = agent.server.addresses[0]
    try:
        yield agent, f"http://{host}:{port}", config
    finally:
        await agent.stop()


Metrics = dict[str, dict[tuple[tuple[str, str], ...], float]]


async def scrape(base: str) -> Metrics:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{base}/metrics")
    assert resp.status_code == 200
    out: Metrics = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    for key, v in metrics.get(name, {}).items():
        if all((k, labels[k]) in key for k in labels):
            return v
    return None


async def scrape_until(base: str, what: str, done: Callable[[Metrics], object]) -> Metrics:
    """Scrape until `done(metrics)` holds (the probes run on their own timer); fail after 30 s."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        metrics = await scrape(base)
        if done(metrics):
            return metrics
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after 30 s waiting for {what}")
        await asyncio.sleep(0.05)


def successes(metrics: Metrics, endpoint: str) -> float:
    """How many probes of `endpoint` have succeeded (0 before the first)."""
    return value(metrics, "upwatch_probes_total", endpoint=endpoint, result="success") or 0


async def test_metrics_control_paths_and_status_page(agent: tuple[Agent, str, Path]) -> None:
    _, base, _ = agent
    metrics = await scrape_until(
        base,
        "both endpoints probed",
        lambda m: value(m, "upwatch_endpoint_state", endpoint="orders", state="up") and successes(m, "billing"),
    )
    assert value(metrics, "probe_success", endpoint="orders", team="payments") == 1
    assert value(metrics, "upwatch_probes_total", endpoint="billing", result="success")
    assert value(metrics, "upwatch_endpoint_state", endpoint="orders", state="up") == 1
    assert value(metrics, "upwatch_endpoint_slo_objective", endpoint="orders") == pytest.approx(0.999)
    assert value(metrics, "upwatch_config_last_reload_successful") == 1
    assert value(metrics, "upwatch_build_info") == 1
    async with httpx.AsyncClient() as client:
        raw = (await client.get(f"{base}/metrics")).text
        assert (await client.get(f"{base}/-/healthy")).status_code == 200
        assert (await client.get(f"{base}/-/ready")).status_code == 200
        assert (await client.get(f"{base}/-/reload")).status_code == 405
        page = await client.get(f"{base}/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # The endpoint with its state: up, or on a loaded machine whatever a probe slower than its
    # 150 ms timeout made of it since.
    assert "orders" in page.text and any(f'class="state s-{s}"' in page.text for s in ("up", "degraded", "down"))
    for secret in ("top-secret-token", "hunter2", "querysecret"):
        assert secret not in raw
        assert secret not in page.text
    assert "_created" not in raw


async def test_the_http_server_answers_like_a_careful_one(agent: tuple[Agent, str, Path]) -> None:
    running, base, _ = agent
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/nothing-here")).status_code == 404
        refused = await client.get(f"{base}/-/reload")
        assert refused.status_code == 405 and refused.headers["allow"] == "POST, PUT"
        assert (await client.post(f"{base}/metrics")).headers["allow"] == "GET, HEAD"
        head = await client.head(f"{base}/metrics")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        gzipped = await client.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
        assert gzipped.headers["content-encoding"] == "gzip" and "upwatch_build_info" in gzipped.text
        assert "server" not in refused.headers
    # A request head past 16 KiB is refused, not buffered, and the server goes on.
    host, port = running.server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    answer = await reader.read(100)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/-/healthy")).status_code == 200


async def test_bad_reload_keeps_the_old_config(agent: tuple[Agent, str, Path]) -> None:
    running, base, config = agent
    config.write_text("endpoints:\n  - name: broken\n    url: ftp://nope\n")
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{base}/-/reload", timeout=RELOAD_TIMEOUT)
    assert resp.status_code == 500
    assert "url" in resp.text and "ftp://nope" in resp.text
    before = successes(await scrape(base), "orders")
    metrics = await scrape_until(base, "orders probed after the reload", lambda m: successes(m, "orders") > before)
    assert value(metrics, "upwatch_config_last_reload_successful") == 0
    assert value(metrics, "upwatch_config_reloads_total", result="failure") == 1
    assert value(metrics, "probe_success", endpoint="orders") == 1  # still probed
    assert running.config is not None and [e.name for e in running.config.endpoints] == ["orders", "billing"]


async def test_good_reload_adds_and_removes_endpoints(agent: tuple[Agent, str, Path], httpserver: HTTPServer) -> None:
    _, base, config = agent
    before = successes(await scrape_until(base, "three probes", lambda m: successes(m, "orders") >= 3), "orders")
    # The new URL changes "orders" (its loop restarts) and adds "shipping".
    workers = next(line for line in config.read_text().splitlines() if line.startswith("workers:"))
    write_config(config, httpserver.url_for("/health"), "orders", "shipping", extra=workers + "\n")
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{base}/-/reload", timeout=RELOAD_TIMEOUT)
    assert resp.status_code == 200, resp.text
    metrics = await scrape_until(base, "shipping probed", lambda m: value(m, "probe_success", endpoint="shipping"))
    assert value(metrics, "upwatch_config_last_reload_successful") == 1
    # Both loops started at the reload, on grids less than an interval apart: a counter reset
    # then would show at most two probes of "orders" by now.
    assert successes(metrics, "orders") >= before
    assert value(metrics, "probe_success", endpoint="billing") is None
    await scrape_until(base, "orders probed again", lambda m: successes(m, "orders") > before)


async def test_host_only_when_no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    agent = Agent(source=ConfigSource(tmp_path / "upwatch.yml", False), listen=("127.0.0.1", 0), log=LOG)
    await agent.start()
    try:
        assert agent.config is None
        host, port = agent.server.addresses[0]
        metrics = await scrape(f"http://{host}:{port}")
        assert value(metrics, "upwatch_build_info") == 1
        assert "probe_success" not in metrics
    finally:
        await agent.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9877", ("", 9877)),
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("[::1]:9877", ("::1", 9877)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9877", "host:", "host:99999", "::1:9877", "a:b"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen(text)


@pytest.mark.parametrize(
    "pieces",
    [
        [],
        [b""],
        [b"# HELP a A.\n# TYPE a gauge\n", b"", b'a{endpoint="x"} 1.0\n'],
        [os.urandom(300_000).hex().encode(), b"\xe2\x9c\x93\n" * 100_000],  # more than one block; UTF-8
    ],
    ids=["none", "empty", "small", "large"],
)
def test_gzip_of_pieces_is_one_gzip_stream_of_their_text(pieces: list[bytes]) -> None:
    body = gzip_pieces(pieces)
    # One member, so that single-stream gzip readers (httpx, say) read all of it too.
    reader = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert reader.decompress(body) == b"".join(pieces)
    assert reader.eof and reader.unused_data == b""
    assert gzip.decompress(body) == b"".join(pieces)


def test_gzip_of_pieces_falls_back_to_zlib_without_isal() -> None:
    """Where isal has no wheel, pyproject's marker leaves it out and the standard library's zlib compresses."""
    code = (
        "import gzip, sys\n"
        "sys.modules['isal'] = None  # as if not installed\n"
        "from exporter import compression as server\n"
        "assert server._deflate.__name__ == 'zlib', server._deflate\n"
        "assert gzip.decompress(server.gzip_pieces([b'a 1\\n', b'b 2\\n'])) == b'a 1\\nb 2\\n'\n"
    )
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


async def test_metrics_are_gzipped_when_asked_and_in_text_format(agent: tuple[Agent, str, Path]) -> None:
    _, base, _ = agent
    await scrape_until(base, "a first probe", lambda m: "probe_success" in m)
    async with httpx.AsyncClient() as client:
        zipped = await client.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
        plain = await client.get(f"{base}/metrics", headers={"Accept-Encoding": "identity"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    # same families either way (values may have moved on between the two scrapes)
    names = {f.name for f in text_string_to_metric_families(zipped.text)}
    assert names == {f.name for f in text_string_to_metric_families(plain.text)}
    assert {"probe_success", "upwatch_probes", "upwatch_build_info"} <= names
    # The probe text and the registry's (agent, host) are served one after the other: no family twice.
    families = [f.name for f in text_string_to_metric_families(plain.text)]
    assert len(families) == len(set(families))
    assert int(plain.headers["Content-Length"]) == len(plain.content)


async def test_reload_rebuilds_host_metrics(tmp_path: Path) -> None:
    config = tmp_path / "upwatch.yml"
    config.write_text("host: {enabled: true}\n")
    agent = Agent(source=ConfigSource(config, True), listen=("127.0.0.1", 0), log=LOG)
    await agent.start()
    try:
        host, port = agent.server.addresses[0]
        base = f"http://{host}:{port}"
        metrics = await scrape(base)
        assert value(metrics, "node_load1") is not None
        assert value(metrics, "node_scrape_collector_success", collector="vmstat") == 1

        config.write_text("host: {collectors: {vmstat: false}}\n")
        assert (await agent.reload())[0]
        metrics = await scrape(base)
        assert value(metrics, "node_load1") is not None
        assert value(metrics, "node_scrape_collector_success", collector="vmstat") is None
        assert "node_vmstat_pgmajfault" not in metrics

        config.write_text("host: {enabled: false}\n")
        assert (await agent.reload())[0]
        metrics = await scrape(base)
        assert not [name for name in metrics if name.startswith("node_")]
        assert value(metrics, "upwatch_build_info") == 1
    finally:
        await agent.stop()


async def test_reload_moves_probing_between_the_main_process_and_workers(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/health").respond_with_data("ok")
    config = tmp_path / "upwatch.yml"
    url = httpserver.url_for("/health")
    write_config(config, url, "orders", "billing", extra="workers: 0\n")
    agent = Agent(source=ConfigSource(config, True), listen=("127.0.0.1", 0), log=LOG, cpus=lambda: 3)
    with structlog.testing.capture_logs() as logs:
        await agent.start()
        try:
            host, port = agent.server.addresses[0]
            base = f"http://{host}:{port}"
            seen = successes(await scrape_until(base, "a probe", lambda m: successes(m, "orders")), "orders")
            assert agent.worker_pids == []

            # `auto`, once the config asks for 50 probes a second (12 endpoints every 200 ms: 60),
            # starts as many workers as their CPU needs: one for 60 plain HTTP probes a second.
            many = ["orders", "billing", *(f"extra-{i}" for i in range(10))]
            write_config(config, url, *many, extra="workers: auto\n")
            assert (await agent.reload())[0]
            metrics = await scrape_until(
                base,
                "one worker probing",
                lambda m: value(m, "upwatch_probe_workers") == 1 and successes(m, "orders") > seen + 2,
            )
            assert len(agent.worker_pids) == 1
            seen = successes(metrics, "orders")

            # At most one worker per allowed concurrent probe.
            write_config(config, url, *many, extra="workers: 3\nmax_concurrent_probes: 2\n")
            assert (await agent.reload())[0]
            metrics = await scrape_until(
                base,
                "two workers probing",
                lambda m: value(m, "upwatch_probe_workers") == 2 and successes(m, "orders") > seen + 2,
            )
            assert len(agent.worker_pids) == 2
            seen = successes(metrics, "orders")

            write_config(config, url, "orders", "billing", extra="workers: auto\n")  # 10 probes a second
            assert (await agent.reload())[0]
            metrics = await scrape_until(base, "probes in-process again", lambda m: successes(m, "orders") > seen + 2)
            assert value(metrics, "upwatch_probe_workers") == 0
            assert agent.worker_pids == []
        finally:
            await agent.stop()
    chosen = [(e["workers"], e["setting"]) for e in logs if e["event"] == "probe processes"]
    assert chosen == [(0, "0"), (1, "auto"), (2, "3"), (0, "auto")]


@pytest.mark.parametrize(
    ("count", "interval", "scheme", "cpus", "expected"),
    [
        pytest.param(10, "30s", "http", 8, 0, id="small: the main process probes"),
        pytest.param(499, "60s", "https", 8, 0, id="under both thresholds"),
        pytest.param(500, "60s", "http", 8, 1, id="500 endpoints: one worker"),
        pytest.param(60, "1s", "http", 8, 1, id="60 probes a second: one worker"),
        pytest.param(5000, "5s", "http", 2, 1, id="1,000 HTTP probes a second fit one worker"),
        pytest.param(1000, "10s", "https", 2, 1, id="100 HTTPS probes a second fit one worker"),
        pytest.param(5000, "5s", "https", 2, 2, id="1,000 HTTPS probes a second: every CPU"),
        pytest.param(5000, "5s", "https", 8, 5, id="no more workers than their CPU needs"),
    ],
)
def test_auto_workers_follow_the_probes_cpu_need(
    count: int, interval: str, scheme: str, cpus: int, expected: int
) -> None:
    endpoints = [
        Endpoint.model_validate({"name": f"ep-{i}", "url": f"{scheme}://127.0.0.1/", "interval": interval})
        for i in range(count)
    ]
    assert auto_workers(endpoints, cpus) == expected


async def test_a_vantage_labels_every_endpoint_series_and_a_shard_exports_only_its_own(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/health").respond_with_data("ok")
    config = tmp_path / "upwatch.yml"
    names = [f"ep-{i}" for i in range(12)]
    write_config(config, httpserver.url_for("/health"), *names, extra="vantage: eu-west\nshard: {index: 1, total: 3}\n")
    mine = {n for n in names if rendezvous_bucket(n, 3) == 1}
    assert 0 < len(mine) < len(names)
    agent = Agent(source=ConfigSource(config, True), listen=("127.0.0.1", 0), log=LOG)
    await agent.start()
    try:
        host, port = agent.server.addresses[0]
        metrics = await scrape_until(
            f"http://{host}:{port}", "the shard's endpoints probed", lambda m: all(successes(m, n) for n in mine)
        )
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://{host}:{port}/")).text
    finally:
        await agent.stop()
    assert "Probed from <strong>eu-west</strong>" in page
    endpoint_series = [
        dict(labels) for samples in metrics.values() for labels in samples if any(k == "endpoint" for k, _ in labels)
    ]
    assert {s["endpoint"] for s in endpoint_series} == mine  # the other shards' endpoints: neither probed nor exported
    assert all(s["vantage"] == "eu-west" for s in endpoint_series)
    assert value(metrics, "upwatch_agent_info", vantage="eu-west", shard_index="1", shard_total="3") == 1
    assert value(metrics, "upwatch_endpoints", scope="configured") == 12
    assert value(metrics, "upwatch_endpoints", scope="probed") == len(mine)
    # The agent's own series are not an endpoint's: no vantage label there but on its info.
    assert ("vantage", "eu-west") not in next(iter(metrics["upwatch_build_info"]))


async def test_without_a_vantage_no_series_has_the_label(agent: tuple[Agent, str, Path]) -> None:
    _, base, _ = agent
    metrics = await scrape_until(base, "a probe", lambda m: successes(m, "orders"))
    assert not [name for name, samples in metrics.items() for labels in samples if "vantage" in dict(labels)]
    assert value(metrics, "upwatch_agent_info", shard_index="0", shard_total="1") == 1


async def test_the_status_family_from_the_agents_own_history(agent: tuple[Agent, str, Path]) -> None:
    _, base, _ = agent
    before = await scrape_until(
        base, "both endpoints probed", lambda m: successes(m, "orders") and successes(m, "billing")
    )
    async with httpx.AsyncClient() as client:
        api = (await client.get(f"{base}/api/v1/endpoints")).json()
        after = await scrape(base)
        svg = await client.get(f"{base}/badge/orders/status.svg")
        shields = (await client.get(f"{base}/badge/orders/uptime-24h.json")).json()
        missing = await client.get(f"{base}/badge/nobody/status.svg")
        wrong = await client.get(f"{base}/badge/orders/uptime-1y.svg")
        feed = await client.get(f"{base}/feed.atom")
        page = await client.get(f"{base}/", headers={"Accept-Encoding": "gzip"})
    names = [ep["name"] for ep in api["endpoints"]]
    assert names == ["orders", "billing"] and api["status"] in ("operational", "degraded", "partial_outage")

    def probes(metrics: Metrics, name: str) -> float:
        return sum(value(metrics, "upwatch_probes_total", endpoint=name, result=r) for r in ("success", "failure"))

    for ep in api["endpoints"]:
        # The day bars count the agent's probes: at least those counted before the API was first
        # asked (its view was built after), at most those counted after it answered.
        counted = sum(day["probes"] for day in ep["days"])
        assert probes(before, ep["name"]) <= counted <= probes(after, ep["name"]), ep["name"]
        assert "url" not in ep  # show_details is off: no URL, and so no secret, anywhere
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and "orders" in svg.text
    assert shields["schemaVersion"] == 1 and shields["label"] == "uptime 24h"
    assert missing.status_code == 404 and wrong.status_code == 404
    assert feed.status_code == 200 and feed.text.startswith("<?xml")
    assert page.headers.get("content-encoding") == "gzip" and "orders" in page.text
    for body in (page.text, svg.text, feed.text, json.dumps(api)):
        for secret in ("top-secret-token", "hunter2", "querysecret"):
            assert secret not in body


def test_probing_in_process_loads_the_prober_before_the_first_probe(tmp_path: Path) -> None:
    # Loaded by the first probe, the import blocked the loop after that probe's deadline was set:
    # on a busy host the first probe after a start failed as a "timeout" a millisecond long.
    config = tmp_path / "upwatch.yml"
    config.write_text(
        "workers: 0\nhost: {enabled: false}\nendpoints:\n  - {name: a, url: 'http://127.0.0.1:9/', interval: 1h}\n"
    )
    code = (
        "import asyncio, sys, structlog\n"
        "from pathlib import Path\n"
        "from exporter.app import Agent\nfrom exporter.source import ConfigSource\n"
        "async def main():\n"
        f"    agent = Agent(source=ConfigSource(Path({str(config)!r}), True), listen=('127.0.0.1', 0), "
        "log=structlog.get_logger())\n"
        "    await agent.start()\n"
        "    print('prober loaded:', 'exporter.probes.http' in sys.modules)\n"
        "    await agent.stop()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "prober loaded: True" in out.splitlines()
