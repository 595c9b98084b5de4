"""The Alertmanager bundle (alertmanager/): config checks, routing, templates, and the real program's behaviour.

amtool checks the file and the routing tree; a real Alertmanager on loopback (its Slack webhook a
pytest-httpserver, its smarthost a small SMTP sink in this file) shows what reaches Slack and email,
what is inhibited and what is muted. Timers are shortened in the test's copy only.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import json
import re
import shutil
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import REPO, free_port, program, stop, wait_until_ready
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

AM_DIR = REPO / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"
TEMPLATES = AM_DIR / "templates"
RUNBOOK = "https://github.com/upwatch/upwatch/blob/main/docs/runbook.md#"
ENDPOINT_DASHBOARD = "http://localhost:3000/d/upwatch-endpoint/endpoint?var-endpoint="
HOST_DASHBOARD = "http://localhost:3000/d/upwatch-host/host?var-instance="
VANTAGE_DASHBOARD = "http://localhost:3000/d/upwatch-overview/overview?var-instance=$__all"
SMTP_PASSWORD = "smtp-test-password"

RECEIVERS = {"critical", "warning", "null", "payments-critical", "payments-warning"}
DEFAULT_RECEIVER = "warning"


def load_config() -> dict[str, Any]:
    """The production alertmanager.yml as data."""
    return yaml.safe_load(CONFIG.read_text())


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a program to completion and keep its output."""
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


# ---------------------------------------------------------------------------------------------
# amtool: the file is valid, every routing decision, the templates
# ---------------------------------------------------------------------------------------------


def test_check_config_accepts_the_file_without_any_secret_present() -> None:
    # The secrets are files read when a notification is sent, so the committed config checks
    # (and Alertmanager starts) without them.
    result = run([program("amtool"), "check-config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 inhibit rules" in result.stdout
    assert f"{len(RECEIVERS)} receivers" in result.stdout
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("path", "old", "new", "error"),
    [
        ("alertmanager.yml", "receiver: payments-warning", "receiver: nobody", "nobody"),
        (
            "templates/slack.tmpl",
            '{{ define "upwatch.slack.text" -}}',
            '{{ define "upwatch.slack.text" -}}{{ .x',
            "slack.tmpl",
        ),
    ],
    ids=["unknown-receiver", "broken-template"],
)
def test_check_config_fails_on_a_broken_copy(path: str, old: str, new: str, error: str, tmp_path: Path) -> None:
    # The check above can fail: it resolves receivers and parses the templates.
    broken = tmp_path / "alertmanager"
    shutil.copytree(AM_DIR, broken, ignore=shutil.ignore_patterns("secrets"))
    text = (broken / path).read_text()
    assert old in text
    (broken / path).write_text(text.replace(old, new, 1))
    result = run([program("amtool"), "check-config", str(broken / "alertmanager.yml")])
    assert result.returncode != 0
    assert error in result.stdout + result.stderr


ENDPOINT = ["alertname=EndpointDown", "endpoint=orders-api", "instance=upwatch:9877", "job=upwatch"]
HOST = ["alertname=HostCpuHigh", "instance=upwatch:9877", "job=upwatch"]
FLAPPING = ["alertname=EndpointFlapping", "endpoint=orders-api", "instance=upwatch:9877", "job=upwatch"]


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        pytest.param([*ENDPOINT, "severity=critical"], "critical", id="critical-endpoint"),
        pytest.param([*HOST, "severity=critical"], "critical", id="critical-host"),
        pytest.param([*ENDPOINT, "severity=warning"], "warning", id="warning"),
        pytest.param([*HOST, "severity=info"], "null", id="info"),
        pytest.param([*ENDPOINT, "team=checkout", "severity=critical"], "critical", id="other-team-critical"),
        pytest.param([*ENDPOINT, "team=payments", "severity=critical"], "payments-critical", id="payments-critical"),
        pytest.param([*ENDPOINT, "team=payments", "severity=warning"], "payments-warning", id="payments-warning"),
        pytest.param([*ENDPOINT, "team=payments", "severity=info"], "null", id="payments-info"),
        pytest.param([*ENDPOINT, "team=payments", "severity=page"], "payments-warning", id="payments-unknown"),
        pytest.param(
            [*ENDPOINT, "maintenance_window=weekly", "severity=critical"], "critical", id="maintenance-critical"
        ),
        pytest.param([*ENDPOINT, "maintenance_window=weekly", "severity=warning"], "warning", id="maintenance-warning"),
        pytest.param([*ENDPOINT, "maintenance_window=weekly", "severity=info"], "null", id="maintenance-info"),
        pytest.param(
            [*ENDPOINT, "maintenance_window=weekly", "team=payments", "severity=critical"],
            "critical",
            id="maintenance-before-team",
        ),
        pytest.param([*ENDPOINT, "maintenance_window=monthly", "severity=critical"], "critical", id="other-window"),
        # An unknown or missing severity is still seen (Slack), but pages nobody.
        pytest.param([*ENDPOINT, "severity=page"], DEFAULT_RECEIVER, id="unknown-severity"),
        # The flap budget's route (EndpointDown and EndpointFlapping grouped per endpoint) routes
        # like every other alert below it.
        pytest.param([*FLAPPING, "severity=critical"], "critical", id="flapping-critical"),
        pytest.param([*FLAPPING, "team=payments", "severity=critical"], "payments-critical", id="flapping-payments"),
        pytest.param([*FLAPPING, "severity=warning"], "warning", id="flapping-warning"),
        pytest.param(ENDPOINT, DEFAULT_RECEIVER, id="no-severity"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    result = run(
        [
            program("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={receiver}",
            *labels,
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_route_verification_can_fail() -> None:
    # --verify.receivers really compares: a critical alert does not go to the warning receiver.
    result = run(
        [
            program("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            "--verify.receivers=warning",
            *ENDPOINT,
            "severity=critical",
        ]
    )
    assert result.returncode != 0


def test_maintenance_route_mutes_every_route_below_it() -> None:
    # Alertmanager applies the mute of the route an alert finally matches and does not inherit
    # mute_time_intervals, so the maintenance route and every child must name the window.
    # The owner routes are shared (a YAML alias) by the flap budget's route and the one for every
    # other alert, so the maintenance route is found under each.
    config = load_config()
    weekly = ['maintenance_window="weekly"']
    maintenance = [route for route, _ in routes_with_effective_timers(config) if route.get("matchers") == weekly]
    assert len(maintenance) == 2
    muted: list[dict[str, Any]] = []

    def walk(route: dict[str, Any]) -> None:
        muted.append(route)
        for child in route.get("routes", []):
            walk(child)

    for route in maintenance:
        walk(route)
    assert len(muted) > 2
    for route in muted:
        assert route.get("mute_time_intervals") == ["weekly-maintenance"], route
    (interval,) = [t for t in config["time_intervals"] if t["name"] == "weekly-maintenance"]
    assert interval["time_intervals"] == [
        {"weekdays": ["sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}], "location": "UTC"}
    ]


def alert_data(status: str) -> dict[str, Any]:
    """Template data (Alertmanager's template.Data) for one group of EndpointDown plus a host alert."""
    starts = "2024-05-01T10:00:00Z"
    ends = "2024-05-01T10:42:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    endpoint_alert = {
        "status": status,
        "labels": {
            "alertname": "EndpointDown",
            "endpoint": "orders-api",
            "instance": "upwatch:9877",
            "job": "upwatch",
            "severity": "critical",
            "state": "down",
        },
        "annotations": {
            "summary": "Endpoint orders-api is down",
            "description": "orders-api has been down since 3 failed probes <value 0>",
            "url": "https://api.example.com/health",
            "runbook_url": RUNBOOK + "endpointdown",
            "dashboard_url": ENDPOINT_DASHBOARD + "orders-api",
        },
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "1",
    }
    host_alert = {
        "status": status,
        "labels": {
            "alertname": "HostFilesystemSpaceLow",
            "instance": "upwatch:9877",
            "job": "upwatch",
            "severity": "warning",
            "mountpoint": "/home",
            "device": "/dev/sda2",
        },
        "annotations": {
            "summary": "Filesystem /home is almost full",
            "description": "/home on upwatch:9877 is 85.2% full",
            "runbook_url": RUNBOOK + "hostfilesystemspacelow",
            "dashboard_url": HOST_DASHBOARD + "upwatch:9877",
        },
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "2",
    }
    return {
        "receiver": "critical",
        "status": status,
        "alerts": [endpoint_alert, host_alert],
        "groupLabels": {"alertname": "EndpointDown", "endpoint": "orders-api", "instance": "upwatch:9877"},
        "commonLabels": {"instance": "upwatch:9877", "job": "upwatch"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
    }


def render(template: str, data: dict[str, Any], tmp_path: Path, kind: str = "text") -> str:
    """Render one named template of alertmanager/templates with amtool and the given data."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    result = run(
        [
            program("amtool"),
            "template",
            "render",
            f"--template.glob={TEMPLATES}/*.tmpl",
            f"--template.text={{{{ template {json.dumps(template)} . }}}}",
            f"--template.data={data_file}",
            f"--template.type={kind}",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("template", ["upwatch.slack.title", "upwatch.email.subject"])
@pytest.mark.parametrize(
    ("status", "expected"),
    [("firing", "[FIRING:2] EndpointDown orders-api"), ("resolved", "[RESOLVED] EndpointDown orders-api")],
)
def test_title_and_subject(template: str, status: str, expected: str, tmp_path: Path) -> None:
    assert render(template, alert_data(status), tmp_path).strip() == expected


def vantage_alert_data() -> dict[str, Any]:
    """Template data for one group of UpwatchVantageLost: an alert with neither endpoint nor instance."""
    labels = {"alertname": "UpwatchVantageLost", "vantage": "eu-west", "severity": "warning"}
    return {
        "receiver": "warning",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": "Vantage eu-west has stopped reporting",
                    "description": "No agent of vantage eu-west has reported for 2 minutes",
                    "runbook_url": RUNBOOK + "upwatchvantagelost",
                    "dashboard_url": VANTAGE_DASHBOARD,
                },
                "startsAt": "2024-05-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "3",
            }
        ],
        "groupLabels": {"alertname": "UpwatchVantageLost"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
    }


@pytest.mark.parametrize(
    ("template", "kind", "expected"),
    [
        ("upwatch.slack.title", "text", "[FIRING:1] UpwatchVantageLost vantage eu-west (warning)"),
        ("upwatch.email.subject", "text", "[FIRING:1] UpwatchVantageLost vantage eu-west (warning)"),
        ("upwatch.slack.text", "text", "*vantage eu-west*: Vantage eu-west has stopped reporting"),
        ("upwatch.email.html", "html", "FIRING: vantage eu-west: Vantage eu-west has stopped reporting"),
    ],
)
def test_vantage_alerts_name_the_vantage(template: str, kind: str, expected: str, tmp_path: Path) -> None:
    # Alerts about a vantage as a whole have no endpoint and no instance to show.
    assert expected in render(template, vantage_alert_data(), tmp_path, kind)


@pytest.mark.parametrize(("status", "color"), [("firing", "danger"), ("resolved", "good")])
def test_slack_color(status: str, color: str, tmp_path: Path) -> None:
    assert render("upwatch.slack.color", alert_data(status), tmp_path).strip() == color


def test_slack_color_of_a_warning_group(tmp_path: Path) -> None:
    data = alert_data("firing")
    data["alerts"] = data["alerts"][1:]
    assert render("upwatch.slack.color", data, tmp_path).strip() == "warning"


@pytest.mark.parametrize(("template", "kind"), [("upwatch.slack.text", "text"), ("upwatch.email.html", "html")])
@pytest.mark.parametrize("status", ["firing", "resolved"])
def test_body_shows_every_alert(template: str, kind: str, status: str, tmp_path: Path) -> None:
    body = render(template, alert_data(status), tmp_path, kind)
    if kind == "html":
        # html/template escapes values; undo the escaping of the few characters the data contains.
        assert "&lt;value 0&gt;" in body
        body = body.replace("&lt;", "<").replace("&gt;", ">").replace("&#43;", "+")
    counts = "2 firing, 0 resolved" if status == "firing" else "0 firing, 2 resolved"
    assert counts in body
    for text in [
        "orders-api",  # endpoint
        "upwatch:9877 /home (/dev/sda2)",  # instance of a host alert, with its filesystem
        "https://api.example.com/health",  # url annotation
        "2024-05-01 10:00:00 UTC",  # since
        "orders-api has been down since 3 failed probes <value 0>",  # value, from the description
        "85.2% full",
        "critical",
        "warning",
        RUNBOOK + "endpointdown",
        RUNBOOK + "hostfilesystemspacelow",
        ENDPOINT_DASHBOARD + "orders-api",
        HOST_DASHBOARD + "upwatch:9877",
    ]:
        assert text in body, text
    assert f"{status.upper()} (endpoint down)" in body
    if status == "resolved":
        assert body.count("2024-05-01 10:42:00 UTC") == 2
        assert "FIRING" not in body
    else:
        assert "Resolved at" not in body
        assert "RESOLVED" not in body


# ---------------------------------------------------------------------------------------------
# The production file keeps the contract's timing guarantees
# ---------------------------------------------------------------------------------------------

DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def seconds(text: str) -> float:
    """A Prometheus duration (5m, 1h30m) in seconds."""
    parts = DURATION.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * UNITS[u] for n, u in parts)


def routes_with_effective_timers(config: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, float]]]:
    """Every route of the tree with its group_wait, group_interval, repeat_interval after inheritance."""
    defaults = {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 4 * 3600.0}

    def walk(route: dict[str, Any], inherited: dict[str, float]) -> Iterator[tuple[dict[str, Any], dict[str, float]]]:
        timers = {key: seconds(route[key]) if key in route else value for key, value in inherited.items()}
        yield route, timers
        for child in route.get("routes", []):
            yield from walk(child, timers)

    yield from walk(config["route"], defaults)


def test_root_timers_are_the_contract() -> None:
    route = load_config()["route"]
    assert route["group_by"] == ["alertname", "endpoint", "instance"]
    assert route["group_wait"] == "10s"
    assert route["group_interval"] == "5m"
    assert route["repeat_interval"] == "4h"


def test_no_route_breaks_the_dedupe() -> None:
    routes = list(routes_with_effective_timers(load_config()))
    assert len(routes) > 5
    for route, timers in routes:
        # At most one notification per group and receiver in any 5 minutes.
        assert timers["group_interval"] >= 300, route
        # The first notification within 30 s of the alert reaching Alertmanager.
        assert timers["group_wait"] <= 30, route
        # Reminders are only sent on group_interval ticks.
        assert timers["repeat_interval"] % timers["group_interval"] == 0, route
        assert timers["repeat_interval"] >= 3600, route
        if "group_by" in route and route.get("matchers") != FLAP_BUDGET_MATCHERS:
            assert "alertname" in route["group_by"] or route["group_by"] == ["..."], route


FLAP_BUDGET_MATCHERS = ['alertname=~"EndpointDown|EndpointFlapping"']


def test_the_flap_budget_groups_down_and_flapping_per_endpoint() -> None:
    # The only group of more than one alert name: an endpoint's EndpointDown and EndpointFlapping,
    # so that group_interval bounds their notifications together. Routed below it exactly as the
    # other alerts are.
    route = load_config()["route"]
    first, rest = route["routes"]
    assert first["matchers"] == FLAP_BUDGET_MATCHERS
    assert first["group_by"] == ["endpoint", "instance"]
    assert "group_interval" not in first and "group_wait" not in first and "receiver" not in first
    assert "matchers" not in rest and "group_by" not in rest
    assert first["routes"] == rest["routes"]


def test_every_receiver_exists_and_is_used() -> None:
    config = load_config()
    defined = {r["name"] for r in config["receivers"]}
    assert defined == RECEIVERS
    used = {route["receiver"] for route, _ in routes_with_effective_timers(config) if "receiver" in route}
    assert used <= defined
    assert used == defined
    assert config["route"]["receiver"] == DEFAULT_RECEIVER


def test_notifiers_send_resolved_and_use_the_templates() -> None:
    config = load_config()
    slack_channels: dict[str, set[str]] = {}
    emails: dict[str, list[str]] = {}
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert slack["send_resolved"] is True
            assert slack["title"] == '{{ template "upwatch.slack.title" . }}'
            assert slack["text"] == '{{ template "upwatch.slack.text" . }}'
            assert slack["color"] == '{{ template "upwatch.slack.color" . }}'
            slack_channels.setdefault(receiver["name"], set()).add(slack["channel"])
        for mail in receiver.get("email_configs", []):
            assert mail["send_resolved"] is True
            assert mail["headers"] == {"Subject": '{{ template "upwatch.email.subject" . }}'}
            assert mail["html"] == '{{ template "upwatch.email.html" . }}'
            emails.setdefault(receiver["name"], []).append(mail["to"])
    assert slack_channels == {
        "critical": {"#alerts"},
        "warning": {"#alerts"},
        "payments-critical": {"#payments-alerts"},
        "payments-warning": {"#payments-alerts"},
    }
    assert emails == {"critical": ["oncall@example.com"], "payments-critical": ["oncall@example.com"]}
    assert config["templates"] == ["templates/*.tmpl"]


def test_secrets_only_from_files() -> None:
    text = CONFIG.read_text()
    for literal in ["api_url", "auth_password", "auth_secret", "webhook_url"]:
        assert not re.search(rf"{literal}\s*:", text), f"{literal} must come from a file"
    assert "hooks.slack.com" not in text
    glob = load_config()["global"]
    assert glob["slack_api_url_file"] == "secrets/slack_webhook_url"
    assert glob["smtp_auth_password_file"] == "secrets/smtp_password"
    assert glob["smtp_smarthost"] == "smtp.example.com:587"
    assert "alertmanager/secrets/" in (REPO / ".gitignore").read_text().splitlines()
    assert sorted(p.name for p in (AM_DIR / "secrets.example").iterdir()) == [
        "README.md",
        "slack_webhook_url",
        "smtp_password",
    ]


# ---------------------------------------------------------------------------------------------
# A real Alertmanager on loopback
# ---------------------------------------------------------------------------------------------


@dataclass
class SMTPSink:
    """Mails received by a minimal SMTP server (no TLS; AUTH PLAIN only)."""

    messages: list[EmailMessage] = field(default_factory=list)
    auth: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for Go's net/smtp client: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT."""

    server: SMTPServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 127.0.0.1 ESMTP test sink")
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-127.0.0.1")
                self.reply("250-AUTH PLAIN")
                self.reply("250 8BITMIME")
            elif verb == "AUTH":
                _, user, password = base64.b64decode(command.split()[2]).decode().split("\0")
                with self.server.sink.lock:
                    self.server.sink.auth.append((user, password))
                self.reply("235 2.7.0 accepted")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                message = email.message_from_bytes(data, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                with self.server.sink.lock:
                    self.server.sink.messages.append(message)
                self.reply("250 2.0.0 queued")
            elif verb == "QUIT":
                self.reply("221 2.0.0 bye")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.reply("250 2.0.0 ok")


class SMTPServer(socketserver.ThreadingTCPServer):
    """The sink's server; one thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sink: SMTPSink) -> None:
        super().__init__(("127.0.0.1", 0), SMTPHandler)
        self.sink = sink


@pytest.fixture
def smtp() -> Iterator[tuple[SMTPSink, int]]:
    sink = SMTPSink()
    server = SMTPServer(sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Alertmanager:
    """A running Alertmanager and what it sent."""

    url: str
    received: list[tuple[float, dict[str, Any]]]
    smtp: SMTPSink

    def post(self, *alerts: dict[str, Any]) -> None:
        """Post alerts as Prometheus does."""
        response = httpx.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=5)
        assert response.status_code == 200, response.text

    def slack(self) -> list[tuple[float, dict[str, Any]]]:
        """Every Slack message received so far, with the (monotonic) time it arrived."""
        return list(self.received)

    def alerts(self) -> dict[str, dict[str, Any]]:
        """Alertmanager's view of its alerts, by the `test` label."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        return {a["labels"]["test"]: a for a in response.json()}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def settle(done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `done` until it holds or `timeout` passes; the caller then asserts, with a readable diff."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def alert(test: str, starts: datetime, ends: datetime | None = None, **labels: str) -> dict[str, Any]:
    """One alert as Prometheus posts it, with the bundle's annotations."""
    name = labels["alertname"]
    target = labels.get("endpoint", labels.get("instance", ""))
    dashboard = ENDPOINT_DASHBOARD + target if "endpoint" in labels else HOST_DASHBOARD + target
    body: dict[str, Any] = {
        "labels": {"test": test, "job": "upwatch", **labels},
        "annotations": {
            "summary": f"{name} on {target}",
            "description": f"{target} value 42",
            "runbook_url": RUNBOOK + name.lower(),
            "dashboard_url": dashboard,
            **({"url": f"https://{target}.example.com/health"} if "endpoint" in labels else {}),
        },
        "startsAt": starts.isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


@pytest.fixture
def start_alertmanager(
    tmp_path: Path, httpserver: HTTPServer, smtp: tuple[SMTPSink, int]
) -> Iterator[Callable[..., Alertmanager]]:
    """Start prometheus-alertmanager on a copy of alertmanager/ with shorter timers and loopback notifiers."""
    binary = program("prometheus-alertmanager")
    sink, smtp_port = smtp
    received: list[tuple[float, dict[str, Any]]] = []

    def webhook(request: Request) -> Response:
        received.append((time.monotonic(), json.loads(request.get_data())))
        return Response("ok")

    httpserver.expect_request("/slack", method="POST").respond_with_handler(webhook)
    procs: list[subprocess.Popen[str]] = []

    def start(
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "1h",
        always_maintenance: bool = False,
    ) -> Alertmanager:
        folder = tmp_path / "alertmanager"
        shutil.copytree(AM_DIR, folder, ignore=shutil.ignore_patterns("secrets"))
        # The production secret paths (secrets/...), relative to the folder Alertmanager runs in.
        (folder / "secrets").mkdir()
        (folder / "secrets" / "slack_webhook_url").write_text(httpserver.url_for("/slack") + "\n")
        (folder / "secrets" / "smtp_password").write_text(SMTP_PASSWORD)  # used verbatim, a newline would be part of it
        config = yaml.safe_load((folder / "alertmanager.yml").read_text())
        config["route"].update(group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval)
        config["global"].update(smtp_smarthost=f"127.0.0.1:{smtp_port}", smtp_require_tls=False)
        if always_maintenance:
            (window,) = [t for t in config["time_intervals"] if t["name"] == "weekly-maintenance"]
            window["time_intervals"] = [{"weekdays": ["sunday:saturday"]}]
        (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # Alertmanager resolves the relative *_file secret paths against its working directory
        # (only templates and http_config files against the config's folder), so it runs from there.
        with (tmp_path / "alertmanager.log").open("w") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    "--config.file=alertmanager.yml",
                    f"--storage.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                    f"--web.external-url={url}",
                ],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        procs.append(proc)
        try:
            wait_until_ready(f"{url}/-/ready", proc)
        except pytest.fail.Exception:
            pytest.fail("Alertmanager did not start:\n" + (tmp_path / "alertmanager.log").read_text())
        return Alertmanager(url=url, received=received, smtp=sink)

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)


def test_firing_then_resolved_reaches_slack_and_email(start_alertmanager: Callable[..., Alertmanager]) -> None:
    am = start_alertmanager()
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    labels = {"alertname": "EndpointDown", "endpoint": "orders-api", "instance": "upwatch:9877"}
    am.post(alert("notify", starts, severity="critical", state="down", **labels))

    (_, firing), *_ = wait_for("the firing Slack message", am.slack)
    (attachment,) = firing["attachments"]
    assert firing["channel"] == "#alerts"
    assert attachment["title"] == "[FIRING:1] EndpointDown orders-api (critical)"
    assert attachment["color"] == "danger"
    text = attachment["text"]
    assert "*1 firing, 0 resolved*" in text
    assert "https://orders-api.example.com/health" in text
    assert "State: FIRING (endpoint down)" in text
    assert f"Since: {starts:%Y-%m-%d %H:%M:%S} UTC" in text
    assert "Value: orders-api value 42" in text
    assert "Severity: critical" in text
    assert f"<{RUNBOOK}endpointdown|Runbook>" in text
    assert f"<{ENDPOINT_DASHBOARD}orders-api|Dashboard>" in text
    assert "Resolved at" not in text

    mail = wait_for("the firing email", lambda: list(am.smtp.messages))[0]
    assert mail["Subject"] == "[FIRING:1] EndpointDown orders-api (critical)"
    assert mail["To"] == "oncall@example.com"
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert f"{RUNBOOK}endpointdown" in html
    assert "https://orders-api.example.com/health" in html
    # The password came from the secrets/smtp_password file.
    assert am.smtp.auth[0] == ("upwatch@example.com", SMTP_PASSWORD)

    ends = datetime.now(UTC).replace(microsecond=0)
    am.post(alert("notify", starts, ends, severity="critical", state="down", **labels))
    (_, resolved) = wait_for("the resolved Slack message", lambda: am.slack()[1:])[0]
    (attachment,) = resolved["attachments"]
    assert attachment["title"] == "[RESOLVED] EndpointDown orders-api (critical)"
    assert attachment["color"] == "good"
    assert "*0 firing, 1 resolved*" in attachment["text"]
    assert f"Resolved at: {ends:%Y-%m-%d %H:%M:%S} UTC" in attachment["text"]
    assert "State: RESOLVED (endpoint down)" in attachment["text"]
    mail = wait_for("the resolved email", lambda: list(am.smtp.messages[1:]))[0]
    assert mail["Subject"] == "[RESOLVED] EndpointDown orders-api (critical)"


def test_one_notification_per_group_interval_and_reminders_after_repeat_interval(
    start_alertmanager: Callable[..., Alertmanager],
) -> None:
    # Timers scaled down: group_wait 1s, group_interval 2s, repeat_interval 4s.
    am = start_alertmanager(group_wait="1s", group_interval="2s", repeat_interval="4s")
    starts = datetime.now(UTC) - timedelta(minutes=1)
    labels = {"alertname": "HostFilesystemSpaceLow", "instance": "host-a:9877", "severity": "warning"}
    am.post(alert("root", starts, mountpoint="/", **labels))
    first = wait_for("the first notification", am.slack)[0][0]

    # The group changes right after its first notification (a second filesystem), and the first
    # alert flaps: the change waits for the next group_interval tick instead of going out at once.
    am.post(alert("home", starts, mountpoint="/home", **labels))
    am.post(alert("root", starts, datetime.now(UTC), mountpoint="/", **labels))
    am.post(alert("root", datetime.now(UTC), mountpoint="/", **labels))
    second, message = wait_for("the second notification", lambda: am.slack()[1:])[0]
    assert second - first >= 2 - 0.2
    assert "*2 firing, 0 resolved*" in message["attachments"][0]["text"]

    # Nothing changes any more: the next message is a reminder, no sooner than repeat_interval.
    third = wait_for("a reminder", lambda: am.slack()[2:], timeout=12)[0][0]
    assert third - second >= 4 - 0.2
    times = [t for t, _ in am.slack()]
    assert all(b - a >= 2 - 0.2 for a, b in itertools.pairwise(times)), times


def test_inhibition(start_alertmanager: Callable[..., Alertmanager]) -> None:
    am = start_alertmanager()
    now = datetime.now(UTC)
    a, b = "upwatch-a:9877", "upwatch-b:9877"
    am.post(
        # EndpointDown silences the other endpoint alerts of its endpoint and instance only, except
        # EndpointFlapping, which shares its group (the flap budget) to say that it flaps.
        alert("down", now, alertname="EndpointDown", endpoint="orders", instance=a, severity="critical"),
        alert("degraded", now, alertname="EndpointDegraded", endpoint="orders", instance=a, severity="warning"),
        alert("flapping", now, alertname="EndpointFlapping", endpoint="orders", instance=a, severity="warning"),
        alert("stalled", now, alertname="UpwatchProbesStalled", endpoint="orders", instance=a, severity="warning"),
        alert("burn", now, alertname="EndpointErrorBudgetBurn", endpoint="orders", instance=a, severity="critical"),
        alert("other-endpoint", now, alertname="EndpointDegraded", endpoint="users", instance=a, severity="warning"),
        # critical silences warning of the same alertname and instance (and filesystem).
        alert("cpu-critical", now, alertname="HostCpuHigh", instance=b, severity="critical"),
        alert("cpu-warning", now, alertname="HostCpuHigh", instance=b, severity="warning"),
        alert("cpu-warning-elsewhere", now, alertname="HostCpuHigh", instance=a, severity="warning"),
        alert("memory-warning", now, alertname="HostMemoryHigh", instance=b, severity="warning"),
        alert("fs-root", now, alertname="HostFilesystemSpaceLow", instance=b, mountpoint="/", severity="critical"),
        alert("fs-root-warn", now, alertname="HostFilesystemSpaceLow", instance=b, mountpoint="/", severity="warning"),
        alert("fs-home", now, alertname="HostFilesystemSpaceLow", instance=b, mountpoint="/home", severity="warning"),
    )
    expected_inhibited = {"degraded", "stalled", "burn", "cpu-warning", "fs-root-warn"}

    def inhibited() -> set[str]:
        return {name for name, found in am.alerts().items() if found["status"]["inhibitedBy"]}

    # Alertmanager learns its inhibiting alerts asynchronously: poll a little, then compare.
    settle(lambda: inhibited() == expected_inhibited)
    assert inhibited() == expected_inhibited
    alerts = am.alerts()
    assert len(alerts) == 13
    for name in expected_inhibited:
        assert alerts[name]["status"]["state"] == "suppressed"
    assert alerts["degraded"]["status"]["inhibitedBy"] == [alerts["down"]["fingerprint"]]
    assert alerts["cpu-warning"]["status"]["inhibitedBy"] == [alerts["cpu-critical"]["fingerprint"]]
    for name in ["down", "flapping", "other-endpoint", "cpu-critical", "cpu-warning-elsewhere", "memory-warning"]:
        assert alerts[name]["status"]["state"] == "active", name
    assert alerts["fs-home"]["status"]["state"] == "active"

    # The agent is gone: everything else of its instance is silenced, but not other instances.
    am.post(alert("upwatch-down", now, alertname="UpwatchDown", instance=b, severity="critical"))
    settle(lambda: bool(am.alerts()["memory-warning"]["status"]["inhibitedBy"]))
    alerts = am.alerts()
    for name in ["cpu-critical", "memory-warning", "fs-root", "fs-home"]:
        assert alerts[name]["status"]["inhibitedBy"] == [alerts["upwatch-down"]["fingerprint"]], name
    for name in ["down", "other-endpoint", "cpu-warning-elsewhere", "upwatch-down"]:
        assert alerts[name]["status"]["state"] == "active", name

    # The host is gone: that silences UpwatchDown too.
    am.post(alert("host-down", now, alertname="HostDown", instance=b, severity="critical"))
    settle(lambda: bool(am.alerts()["upwatch-down"]["status"]["inhibitedBy"]))
    alerts = am.alerts()
    assert alerts["upwatch-down"]["status"]["inhibitedBy"] == [alerts["host-down"]["fingerprint"]]
    assert alerts["host-down"]["status"]["state"] == "active"
    assert alerts["down"]["status"]["state"] == "active"


def test_the_flap_budget_notifies_an_endpoint_at_most_once_per_group_interval(
    start_alertmanager: Callable[..., Alertmanager],
) -> None:
    # What Prometheus sends for a flapping endpoint under the bundle's rules: EndpointDown fires,
    # EndpointFlapping joins it a little later, both stay firing while it flaps and resolve
    # together. One group, so the "flapping" message waits for the group_interval tick after the
    # "down" one (2 s here), and a single message says both resolved.
    am = start_alertmanager(group_wait="1s", group_interval="2s")
    starts = datetime.now(UTC) - timedelta(minutes=1)
    labels = {"endpoint": "orders-api", "instance": "upwatch:9877", "severity": "critical"}
    down = alert("down", starts, alertname="EndpointDown", state="down", **labels)
    am.post(down)
    first = wait_for("the down message", am.slack)[0][0]
    flapping = alert("flapping", datetime.now(UTC), alertname="EndpointFlapping", **labels)
    am.post(flapping)
    second, message = wait_for("the flapping message", lambda: am.slack()[1:])[0]
    assert second - first >= 2 - 0.2
    (attachment,) = message["attachments"]
    assert attachment["title"] == "[FIRING:2] EndpointFlapping, EndpointDown orders-api (critical)"
    assert "EndpointFlapping on orders-api" in attachment["text"]  # its summary

    time.sleep(2 * 2)  # two ticks while it flaps: nothing has changed, nothing is sent
    assert len(am.slack()) == 2
    ends = datetime.now(UTC)
    am.post(
        alert("down", starts, ends, alertname="EndpointDown", state="down", **labels),
        alert("flapping", datetime.fromisoformat(flapping["startsAt"]), ends, alertname="EndpointFlapping", **labels),
    )
    _, message = wait_for("the resolved message", lambda: am.slack()[2:])[0]
    (attachment,) = message["attachments"]
    assert attachment["title"] == "[RESOLVED] EndpointFlapping, EndpointDown orders-api (critical)"
    settle(lambda: len(am.smtp.messages) >= 3)
    time.sleep(2)
    times = [t for t, _ in am.slack()]
    assert len(times) == 3, [m["attachments"][0]["title"] for _, m in am.slack()]
    assert all(b - a >= 2 - 0.2 for a, b in itertools.pairwise(times)), times
    assert [m["Subject"] for m in am.smtp.messages] == [
        "[FIRING:1] EndpointDown orders-api (critical)",
        "[FIRING:2] EndpointFlapping, EndpointDown orders-api (critical)",
        "[RESOLVED] EndpointFlapping, EndpointDown orders-api (critical)",
    ]


def test_inhibition_across_vantages(start_alertmanager: Callable[..., Alertmanager]) -> None:
    am = start_alertmanager()
    now = datetime.now(UTC)
    eu, us = {"vantage": "eu-west", "instance": "eu:9877"}, {"vantage": "us-east", "instance": "us:9877"}
    am.post(
        # EndpointDown by quorum (no instance) silences every vantage's other alerts of orders.
        alert("down", now, alertname="EndpointDown", endpoint="orders", severity="critical", state="down"),
        alert("orders-burn-eu", now, alertname="EndpointErrorBudgetBurn", endpoint="orders", severity="critical", **eu),
        alert("orders-flapping-us", now, alertname="EndpointFlapping", endpoint="orders", severity="warning", **us),
        # EndpointDownRegional silences its own vantage's other alerts of the endpoint, not another's.
        alert(
            "regional", now, alertname="EndpointDownRegional", endpoint="users", vantage="eu-west", severity="warning"
        ),
        alert("users-burn-eu", now, alertname="EndpointErrorBudgetBurn", endpoint="users", severity="critical", **eu),
        alert("users-burn-us", now, alertname="EndpointErrorBudgetBurn", endpoint="users", severity="critical", **us),
        # An impaired vantage's endpoint alerts are silenced, any endpoint; other vantages' are not.
        alert("impaired", now, alertname="UpwatchVantageImpaired", vantage="ap-south", severity="warning"),
        alert(
            "search-degraded-ap",
            now,
            alertname="EndpointDegraded",
            endpoint="search",
            vantage="ap-south",
            instance="ap:9877",
            severity="warning",
        ),
        alert("search-degraded-us", now, alertname="EndpointDegraded", endpoint="search", severity="warning", **us),
        # Agents of different vantages may share an instance name (localhost:9877 behind each
        # vantage's Prometheus): one vantage's dead agent silences its own alerts, not another's.
        alert(
            "sa-agent-down",
            now,
            alertname="UpwatchDown",
            instance="localhost:9877",
            vantage="sa-east",
            severity="critical",
        ),
        alert(
            "cart-degraded-sa",
            now,
            alertname="EndpointDegraded",
            endpoint="cart",
            instance="localhost:9877",
            vantage="sa-east",
            severity="warning",
        ),
        alert(
            "cart-degraded-eu",
            now,
            alertname="EndpointDegraded",
            endpoint="cart",
            instance="localhost:9877",
            vantage="eu-west",
            severity="warning",
        ),
        # Without vantages nothing changes: a per-agent EndpointDown (with its instance) silences
        # only its own instance's alerts, as test_inhibition shows.
        alert("agent-down", now, alertname="EndpointDown", endpoint="web", instance="a:9877", severity="critical"),
        alert(
            "web-burn-b",
            now,
            alertname="EndpointErrorBudgetBurn",
            endpoint="web",
            instance="b:9877",
            severity="critical",
        ),
    )
    expected = {
        "orders-burn-eu": "down",
        "orders-flapping-us": "down",
        "users-burn-eu": "regional",
        "search-degraded-ap": "impaired",
        "cart-degraded-sa": "sa-agent-down",
    }

    def inhibited() -> set[str]:
        return {name for name, found in am.alerts().items() if found["status"]["inhibitedBy"]}

    settle(lambda: inhibited() == set(expected))
    assert inhibited() == set(expected)
    alerts = am.alerts()
    for name, by in expected.items():
        assert alerts[name]["status"]["inhibitedBy"] == [alerts[by]["fingerprint"]], name
    for name in [
        "down",
        "regional",
        "users-burn-us",
        "impaired",
        "search-degraded-us",
        "agent-down",
        "web-burn-b",
        "sa-agent-down",
        "cart-degraded-eu",
    ]:
        assert alerts[name]["status"]["state"] == "active", name


def test_maintenance_window_mutes_notifications(start_alertmanager: Callable[..., Alertmanager]) -> None:
    # The test's copy widens weekly-maintenance to all week, so the mute is in force now.
    am = start_alertmanager(always_maintenance=True)
    now = datetime.now(UTC)
    for window, name in [({"maintenance_window": "weekly"}, "muted"), ({}, "normal")]:
        for severity in ["critical", "warning"]:
            am.post(
                alert(
                    f"{name}-{severity}",
                    now,
                    alertname="EndpointDown",
                    endpoint=f"{name}-{severity}",
                    instance="upwatch:9877",
                    severity=severity,
                    **window,
                )
            )
    wait_for("both unmuted groups", lambda: len(am.slack()) >= 2)
    time.sleep(1.5)  # the muted groups were due at the same time; give them a margin
    titles = sorted(message["attachments"][0]["title"] for _, message in am.slack())
    assert titles == [
        "[FIRING:1] EndpointDown normal-critical (critical)",
        "[FIRING:1] EndpointDown normal-warning (warning)",
    ]
    assert [m["Subject"] for m in am.smtp.messages] == ["[FIRING:1] EndpointDown normal-critical (critical)"]
