"""The command line, through click's runner and as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from exporter.cli import main
from exporter.config import json_schema
from exporter.sharding import rendezvous_bucket

REPO = Path(__file__).resolve().parent.parent
UPWATCH = [sys.executable, "-m", "exporter"]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def good_config(tmp_path: Path, url: str, name: str = "api") -> Path:
    path = tmp_path / "upwatch.yml"
    path.write_text(f"endpoints:\n  - name: {name}\n    url: {url}\n    timeout: 2s\n")
    return path


# -- validate ----------------------------------------------------------------


def test_validate_the_example_config() -> None:
    code, out = run("validate", str(REPO / "upwatch.yml"))
    assert code == 0, out
    assert "valid (3 endpoints)" in out


def test_validate_counts_one_endpoint_in_the_singular(tmp_path: Path) -> None:
    code, out = run("validate", str(good_config(tmp_path, "http://127.0.0.1:1/")))
    assert code == 0 and out.rstrip().endswith("valid (1 endpoint)"), out


def test_validate_reports_every_problem_one_a_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "endpoints:\n  - name: a\n    url: ftp://x\n    timeout: 40s\n  - name: a\n    url: http://x\n    bogus: 1\n"
    )
    code, out = run("validate", str(bad))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines == [
        f"{bad}:3:10: endpoints[a].url: invalid URL 'ftp://x': scheme must be http or https",
        f"{bad}:4:14: endpoints[a].timeout: must be shorter than interval (30s by default), got 40s",
        f"{bad}:5:11: endpoints[1].name: duplicate endpoint name 'a' (first used on line 2)",
        f"{bad}:7:5: endpoints[1].bogus: unknown key 'bogus'; known keys: "
        "name, url, method, headers, body, interval, timeout, failure_threshold, success_threshold, degraded_after, "
        "expect, tls, follow_redirects, max_redirects, body_size_limit, labels, slo, quorum, status_page",
    ]


def test_validate_several_files_and_json(tmp_path: Path) -> None:
    good = good_config(tmp_path, "http://127.0.0.1:1/")
    bad = tmp_path / "bad.yml"
    bad.write_text("endpoints: 5\n")
    code, out = run("validate", str(good), str(bad), "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["valid"] is False
    assert [f["valid"] for f in doc["files"]] == [True, False]
    assert doc["files"][1]["problems"] == [
        {
            "file": str(bad),
            "line": 1,
            "column": 12,
            "location": "endpoints",
            "message": "must be a list of endpoints, got an integer",
        }
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\xff\xfe garbage",
        b"\xff\xfe\xfd",
        b"[",
        b"",
        b"- a\n- b\n",
        b"endpoints: [{name: x, url: http://x, tls: {ca_file: /nope}}]",
    ],
)
def test_validate_never_shows_a_traceback(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_bytes(content)
    code, out = run("validate", str(bad))
    assert code == 1
    assert "Traceback" not in out
    assert out.startswith(f"{bad}:")


def test_validate_missing_file_and_usage_errors(tmp_path: Path) -> None:
    code, out = run("validate", str(tmp_path / "nope.yml"))
    assert code == 1
    assert "cannot read file" in out
    code, _ = run("validate", "--format", "xml")
    assert code == 2


def test_validate_defaults_to_env_var_then_cwd(tmp_path: Path) -> None:
    cfg = good_config(tmp_path, "http://127.0.0.1:1/")
    code, out = run("validate", env={"UPWATCH_CONFIG": str(cfg)})
    assert code == 0, out
    assert str(cfg) in out


def test_validate_bad_tls_material(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    cfg = tmp_path / "c.yml"
    cfg.write_text("endpoints:\n  - name: api\n    url: https://127.0.0.1/\n    tls: {ca_file: ca.pem}\n")
    code, out = run("validate", str(cfg))
    assert code == 1
    assert out.startswith(f"{cfg}:4:10: endpoints[api].tls: cannot load ca_file {junk}")


# -- schema ------------------------------------------------------------------


def test_schema_is_printed_and_matches_the_committed_file() -> None:
    code, out = run("schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == json_schema()
    committed = json.loads((REPO / "upwatch.schema.json").read_text())
    assert committed == schema, "run `upwatch schema -o upwatch.schema.json` to refresh the committed schema"
    example = yaml.safe_load((REPO / "upwatch.yml").read_text())
    jsonschema.validate(example, schema)
    assert "yaml-language-server: $schema=./upwatch.schema.json" in (REPO / "upwatch.yml").read_text()


# -- probe -------------------------------------------------------------------


def test_probe_prints_a_table_and_exits_0_when_all_pass(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("fine")
    cfg = good_config(tmp_path, httpserver.url_for("/"))
    code, out = run("probe", "--config", str(cfg))
    assert code == 0, out
    header, row = out.strip().splitlines()
    assert header.split()[:4] == ["ENDPOINT", "RESULT", "STATUS", "DURATION"]
    assert "RESOLVE" in header and "TRANSFER" in header
    assert row.split()[:3] == ["api", "ok", "200"]


def test_probe_json_and_failure_exit_code(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("nope", status=503)
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "endpoints:\n"
        f"  - {{name: bad, url: '{httpserver.url_for('/')}', timeout: 2s}}\n"
        f"  - {{name: refused, url: 'http://127.0.0.1:{free_port()}/', timeout: 2s}}\n"
    )
    code, out = run("probe", "--config", str(cfg), "--format", "json")
    assert code == 1
    rows = {r["endpoint"]: r for r in json.loads(out)}
    assert rows["bad"]["success"] is False
    assert rows["bad"]["reason"] == "http_status"
    assert rows["bad"]["status_code"] == 503
    assert rows["refused"]["reason"] == "connect"
    assert set(rows["bad"]["phases"]) == {"resolve", "connect", "tls", "processing", "transfer"}
    code, out = run("probe", "--config", str(cfg), "refused", "--format", "json")
    assert [r["endpoint"] for r in json.loads(out)] == ["refused"]


def test_validate_and_probe_show_the_shard_and_the_vantage(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("fine")
    names = [f"ep-{i}" for i in range(6)]
    mine = [n for n in names if rendezvous_bucket(n, 2) == 0]
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "vantage: fra1\nshard: {index: 0, total: 2}\nendpoints:\n"
        + "".join(f"  - {{name: {n}, url: '{httpserver.url_for('/')}', timeout: 2s}}\n" for n in names)
    )
    code, out = run("validate", str(cfg))
    assert code == 0 and f"valid (6 endpoints; shard 0 of 2 (counting from 0) probes {len(mine)})" in out, out
    code, out = run("validate", str(cfg), "--format", "json")
    (report,) = json.loads(out)["files"]
    assert report["shard"] == {"index": 0, "total": 2} and report["probed"] == mine
    code, out = run("probe", "--config", str(cfg))
    assert code == 0, out
    first, _, *rows = out.strip().splitlines()
    assert first == "vantage: fra1" and [row.split()[0] for row in rows] == mine
    code, out = run("probe", "--config", str(cfg), "--format", "json")
    assert {(r["endpoint"], r["vantage"]) for r in json.loads(out)} == {(n, "fra1") for n in mine}


def test_probe_unknown_endpoint_is_a_usage_error(tmp_path: Path) -> None:
    cfg = good_config(tmp_path, "http://127.0.0.1:1/")
    code, out = run("probe", "--config", str(cfg), "nope")
    assert code == 2
    assert "no endpoint named 'nope'" in out


# -- serve as a real process ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, httpserver: HTTPServer) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    httpserver.expect_request("/").respond_with_data("fine")
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text(
        f"endpoints:\n  - {{name: first, url: '{httpserver.url_for('/')}', interval: 300ms, timeout: 200ms}}\n"
    )
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("upwatch serve did not become ready: " + proc.communicate()[1])
    try:
        yield proc, base, cfg
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def scraped_names(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("probe_success", "upwatch_config_last_reload_successful"):
                out[s.labels.get("endpoint", s.name)] = s.value
    return out


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail("condition not met in time")


def test_serve_scrape_sighup_reload_and_sigterm(
    served: tuple[subprocess.Popen[str], str, Path], httpserver: HTTPServer
) -> None:
    proc, base, cfg = served
    wait_for(lambda: scraped_names(base).get("first") == 1)

    cfg.write_text(
        "endpoints:\n"
        f"  - {{name: first, url: '{httpserver.url_for('/')}', interval: 300ms, timeout: 200ms}}\n"
        f"  - {{name: second, url: '{httpserver.url_for('/')}', interval: 300ms, timeout: 200ms}}\n"
    )
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: scraped_names(base).get("second") == 1)

    cfg.write_text("endpoints: {oops\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: scraped_names(base).get("upwatch_config_last_reload_successful") == 0)
    assert scraped_names(base).get("second") == 1  # the old config keeps running

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "upwatch started" in names
    assert "config reloaded" in names
    assert "config reload rejected" in names
    assert names[-1] == "upwatch stopped"
    assert all("timestamp" in e and "level" in e for e in events)


def test_serve_refuses_an_invalid_config_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text("endpoints:\n  - name: x\n")
    proc = subprocess.run(
        [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}", "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert f"{cfg}:2:5: endpoints[x]: missing required key 'url'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_logs_failures_and_state_changes_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/x?token=querysecret"
    cfg.write_text(
        "endpoints:\n"
        f"  - name: down\n    url: '{url}'\n    interval: 500ms\n    timeout: 450ms\n    failure_threshold: 2\n"
        "    headers: {Authorization: 'Bearer headersecret'}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def page() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text
        except httpx.TransportError:
            return ""

    try:
        wait_for(lambda: 'class="state s-down"' in page(), timeout=20)
        text = page()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "probe failed"]
    assert failed and failed[0]["reason"] == "connect" and failed[0]["endpoint"] == "down"
    changes = [e for e in events if e["event"] == "endpoint state changed"]
    assert [(c["old"], c["new"]) for c in changes] == [("unknown", "down")]
    assert changes[0]["url"] == f"http://127.0.0.1:{url.split(':')[3].split('/')[0]}/x"
    for secret in ("hunter2", "querysecret", "headersecret"):
        assert secret not in err
        assert secret not in text
