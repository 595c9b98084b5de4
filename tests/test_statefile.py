"""The data directory, with real `upwatch serve`s: restarts keep incidents and counters, bad files are ignored."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, UPWATCH, Samples, Served, free_port, running, value, wait_for
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from exporter.statefile import FILE_NAME, StateFileError, decode, write_atomically
from exporter.store import DEFAULT_BUCKETS


@contextmanager
def serve(
    tmp_path: Path, config: Path, data_dir: Path | None, name: str = "upwatch", env: dict[str, str] | None = None
) -> Iterator[Served]:
    """`upwatch serve --data-dir` on a free loopback port, JSON logs in `tmp_path/name.log`."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    args = [*UPWATCH, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--log-format", "json"]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    with running(args, f"http://127.0.0.1:{port}/-/ready", log=log, env=env) as proc:
        yield Served(proc, f"http://127.0.0.1:{port}", log)


def config_file(tmp_path: Path, endpoints: dict[str, str], workers: int = 0, threshold: int = 2) -> Path:
    """A config probing each named URL every 300 ms, host metrics off."""
    lines = "".join(
        f"  - {{name: {name}, url: '{url}', interval: 300ms, timeout: 250ms, failure_threshold: {threshold}}}\n"
        for name, url in endpoints.items()
    )
    path = tmp_path / "upwatch.yml"
    path.write_text(f"workers: {workers}\nhost: {{enabled: false}}\nendpoints:\n{lines}")
    return path


def state_of(samples: Samples, endpoint: str) -> str | None:
    """The state whose one-hot gauge is 1."""
    states = samples.get("upwatch_endpoint_state", {})
    return next((dict(k)["state"] for k, v in states.items() if dict(k)["endpoint"] == endpoint and v == 1), None)


def figures(samples: Samples, endpoint: str) -> dict[str, float]:
    """The endpoint's counters and since."""
    return {
        "success": value(samples, "upwatch_probes_total", endpoint=endpoint, result="success"),
        "failure": value(samples, "upwatch_probes_total", endpoint=endpoint, result="failure"),
        "http_status": value(samples, "upwatch_probe_failures_total", endpoint=endpoint, reason="http_status"),
        "incidents": value(samples, "upwatch_endpoint_incidents_total", endpoint=endpoint),
        "downtime": value(samples, "upwatch_endpoint_downtime_seconds_total", endpoint=endpoint),
        "count": value(samples, "upwatch_probe_duration_seconds_count", endpoint=endpoint),
        "since": value(samples, "upwatch_endpoint_state_since_timestamp_seconds", endpoint=endpoint),
    }


def saved(data_dir: Path) -> dict[str, Any]:
    """The state file as JSON."""
    return json.loads((data_dir / FILE_NAME).read_text())


@pytest.fixture
def target(httpserver: HTTPServer) -> Iterator[tuple[HTTPServer, threading.Event]]:
    """`/health` answers 200 while the event is set, else 503; `/ok` always 200."""
    healthy = threading.Event()
    healthy.set()

    def health(_: Request) -> Response:
        return Response("ok" if healthy.is_set() else "down", status=200 if healthy.is_set() else 503)

    httpserver.expect_request("/health").respond_with_handler(health)
    httpserver.expect_request("/ok").respond_with_data("ok")
    yield httpserver, healthy


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("workers", [0, 1])
def test_a_restart_during_an_incident_keeps_it_and_the_counters_go_on(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event], workers: int, stop: str
) -> None:
    server, healthy = target
    config = config_file(tmp_path, {"api": server.url_for("/health"), "web": server.url_for("/ok")}, workers)
    data = tmp_path / "data"
    with serve(tmp_path, config, data, "first") as agent:
        wait_for("api up", lambda: state_of(agent.metrics(), "api") == "up", DEADLINE)
        healthy.clear()
        wait_for("api down", lambda: state_of(agent.metrics(), "api") == "down", DEADLINE)
        # After a SIGKILL only what was saved survives: wait until the incident is on disk.
        wait_for(
            "the incident saved",
            lambda: (data / FILE_NAME).exists() and saved(data)["endpoints"]["api"]["state"]["state"] == "down",
            DEADLINE,
        )
        on_disk = saved(data)["endpoints"]["api"]
        before = figures(agent.metrics(), "api")
        agent.proc.send_signal(getattr(signal, stop))
        agent.proc.wait(DEADLINE)
    assert before["incidents"] == 1
    if stop == "SIGKILL":  # the counts since the last save are lost with the process: at least those saved remain
        before["failure"] = sum(on_disk["probes"]["failures"].values())
        before["downtime"] = on_disk["state"]["downtime_seconds"]
        before["count"] = sum(on_disk["duration"]["bucket_hits"])

    with serve(tmp_path, config, data, "second") as agent:
        first = agent.metrics()
        assert state_of(first, "api") == "down"
        after = figures(first, "api")
        assert after["since"] == before["since"], "the incident keeps its start"
        assert after["incidents"] == 1
        assert after["failure"] >= before["failure"], "counters continue, never reset"
        assert after["success"] == before["success"]
        assert after["downtime"] >= before["downtime"] > 0
        assert after["count"] >= before["count"] > 0
        # More failed probes: still the same incident, and the counters grow from where they were.
        wait_for(
            "more failed probes", lambda: figures(agent.metrics(), "api")["failure"] >= before["failure"] + 3, DEADLINE
        )
        assert figures(agent.metrics(), "api")["incidents"] == 1
        assert state_of(agent.metrics(), "api") == "down"
        healthy.set()
        wait_for("api up again", lambda: state_of(agent.metrics(), "api") == "up", DEADLINE)
        assert figures(agent.metrics(), "api")["incidents"] == 1
        assert state_of(agent.metrics(), "web") == "up"
        (restored,) = agent.events("state restored")
        assert restored["restored"] == 2 and restored["down"] == ["api"]


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "corrupt": (b"\x00\xffgarbage{", "not JSON (corrupt or truncated)"),
    "truncated": (b'{"format": "upwatch-state", "version": 1, "saved_at": 1796000000.0, "endp', "not JSON"),
    "foreign": (b'{"scrape_configs": []}', "not an upwatch state file"),
    "newer": (b'{"format": "upwatch-state", "version": 99, "written_by": "upwatch 9.0"}', "written by a newer upwatch"),
    "broken": (
        b'{"format": "upwatch-state", "version": 1, "saved_at": 1.0, "buckets": [], "endpoints": {"api": []}}',
        "does not follow the format",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_an_unusable_state_file_is_reported_once_ignored_and_replaced(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event], case: str
) -> None:
    server, _ = target
    raw, problem = BAD_FILES[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / FILE_NAME).write_bytes(raw)
    config = config_file(tmp_path, {"api": server.url_for("/health")})
    with serve(tmp_path, config, data) as agent:
        (ignored,) = agent.events("state file ignored; starting fresh")
        assert ignored["level"] == "warning"
        assert problem in ignored["problem"]
        assert ignored["path"] == str(data / FILE_NAME)
        assert not agent.events("state restored")
        wait_for("api up", lambda: state_of(agent.metrics(), "api") == "up", DEADLINE)
        assert figures(agent.metrics(), "api")["incidents"] == 0

        def replaced() -> bool:
            try:
                return "api" in decode((data / FILE_NAME).read_bytes(), DEFAULT_BUCKETS).endpoints
            except StateFileError:
                return False

        wait_for("the agent's own state file in its place", replaced, DEADLINE)


def test_a_state_file_in_a_place_that_cannot_be_read_is_reported_and_probing_goes_on(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event]
) -> None:
    server, _ = target
    data = tmp_path / "data"
    (data / FILE_NAME).mkdir(parents=True)  # a folder where the file should be: unreadable, unwritable
    config = config_file(tmp_path, {"api": server.url_for("/health")})
    with serve(tmp_path, config, data) as agent:
        (ignored,) = agent.events("state file ignored; starting fresh")
        assert "cannot read it" in ignored["problem"]
        wait_for("api up", lambda: state_of(agent.metrics(), "api") == "up", DEADLINE)
        wait_for("the failed save reported", lambda: agent.events("state not saved; retrying"), DEADLINE)
        wait_for("more probes", lambda: figures(agent.metrics(), "api")["success"] >= 5, DEADLINE)
        assert len(agent.events("state not saved; retrying")) == 1, "reported once, not at every attempt"


def test_a_stale_state_keeps_its_counters_but_not_its_incident(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event]
) -> None:
    """A state saved last week does not claim `down` since then: the endpoint starts unknown, its probes decide."""
    server, healthy = target
    config = config_file(tmp_path, {"api": server.url_for("/health")})
    data = tmp_path / "data"
    healthy.clear()
    with serve(tmp_path, config, data, "first") as agent:
        wait_for("api down", lambda: state_of(agent.metrics(), "api") == "down", DEADLINE)
        before = figures(agent.metrics(), "api")
    document = saved(data)
    document["saved_at"] -= 7 * 86400
    write_atomically(data, json.dumps(document).encode())
    with serve(tmp_path, config, data, "second") as agent:
        first = agent.metrics()
        (restored,) = agent.events("state restored")
        assert (restored["restored"], restored["counters_only"]) == (0, 1)
        after = figures(first, "api")
        assert after["failure"] >= before["failure"]
        assert after["since"] > before["since"]
        # Still failing: confirmed anew, a second incident (the alert resolved while nobody watched).
        wait_for("api down again", lambda: state_of(agent.metrics(), "api") == "down", DEADLINE)
        assert figures(agent.metrics(), "api")["incidents"] == before["incidents"] + 1


def test_renamed_retargeted_and_removed_endpoints_start_fresh_or_are_dropped(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event]
) -> None:
    server, _ = target
    data = tmp_path / "data"
    urls = {"kept": server.url_for("/ok"), "moved": server.url_for("/ok"), "gone": server.url_for("/ok")}
    with serve(tmp_path, config_file(tmp_path, urls), data, "first") as agent:
        wait_for("probes of each", lambda: all(figures(agent.metrics(), n)["success"] >= 3 for n in urls), DEADLINE)
    kept = saved(data)["endpoints"]["kept"]["probes"]["success"]
    urls = {"kept": server.url_for("/ok"), "moved": server.url_for("/health"), "new": server.url_for("/ok")}
    with serve(tmp_path, config_file(tmp_path, urls), data, "second") as agent:
        first = agent.metrics()
        assert figures(first, "kept")["success"] >= kept
        assert figures(first, "moved")["success"] < kept, "a new URL is a new endpoint: it starts from 0"
        (restored,) = agent.events("state restored")
        assert (restored["restored"], restored["retargeted"], restored["dropped"]) == (1, ["moved"], 1)
        wait_for("gone left the file", lambda: set(saved(data)["endpoints"]) == set(urls), DEADLINE)


def test_the_file_is_replaced_whole_never_seen_half_written(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event]
) -> None:
    """A reader polling the file while the agent saves it every second always reads a whole file."""
    server, healthy = target
    # Endpoints that change state at every save, and enough of them that a save takes several writes.
    urls = {f"e{i:03}": server.url_for("/health") for i in range(300)}
    data = tmp_path / "data"
    with serve(tmp_path, config_file(tmp_path, urls, threshold=1), data) as agent:
        seen: set[float] = set()
        reads = 0
        flips = 0
        while len(seen) < 6:
            try:
                raw = (data / FILE_NAME).read_bytes()
            except FileNotFoundError:
                continue
            reads += 1
            seen.add(decode(raw, DEFAULT_BUCKETS).saved_at)  # raises on a partial file
            if reads % 200 == 0:
                flips += 1
                healthy.set() if flips % 2 else healthy.clear()
            assert agent.proc.poll() is None
    assert len(raw) > 100_000
    assert not [p.name for p in data.iterdir() if p.name != FILE_NAME], "no temporary file left behind"
    assert os.stat(data).st_mode & 0o077 == 0 and os.stat(data / FILE_NAME).st_mode & 0o077 == 0


def test_without_a_data_dir_nothing_is_written(tmp_path: Path, target: tuple[HTTPServer, threading.Event]) -> None:
    server, _ = target
    config = config_file(tmp_path, {"api": server.url_for("/ok")})
    before = set(tmp_path.iterdir())
    with serve(tmp_path, config, None) as agent:
        wait_for("probes", lambda: figures(agent.metrics(), "api")["success"] >= 2, DEADLINE)
    assert set(tmp_path.iterdir()) - before == {tmp_path / "upwatch.log"}
    for event in ("no state file yet; starting fresh", "state restored", "state file ignored; starting fresh"):
        assert not agent.events(event)


@pytest.mark.parametrize("where", ["environment", "config"])
def test_the_data_dir_from_the_environment_or_the_config(
    tmp_path: Path, target: tuple[HTTPServer, threading.Event], where: str
) -> None:
    """$UPWATCH_DATA_DIR, else the config's data_dir (relative to the config file's folder)."""
    server, _ = target
    config = config_file(tmp_path, {"api": server.url_for("/ok")})
    env = {"UPWATCH_DATA_DIR": str(tmp_path / "kept")} if where == "environment" else {}
    if where == "config":
        config.write_text(config.read_text() + "data_dir: kept\n")
    with serve(tmp_path, config, None, env=env) as agent:
        wait_for("probes", lambda: figures(agent.metrics(), "api")["success"] >= 1, DEADLINE)
    assert saved(tmp_path / "kept")["endpoints"]["api"]["probes"]["success"] >= 1
