"""End to end: upwatch + Prometheus + Alertmanager started by scripts/bundle.py from the repository's files.

Only the intervals (scrape, evaluation, group_wait, group_interval), the SMTP server address and
the secrets folder are injected for the test; rules, routes, inhibitions and templates are the
shipped ones. A pytest-httpserver serves the probed endpoints (checkout, and search of severity
warning, switched up and down by the test) and receives Slack webhooks; aiosmtpd receives the
emails.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import REPO, Inbox, alert_receivers, fast_alerting, mail_body, native_bundle, program, resolved, wait_for
from werkzeug import Response

GROUP_INTERVAL = 6.0  # injected; the shipped file says 5m
SMTP_PASSWORD = "smtp-secret-from-file"


@dataclass
class Stack:
    """The running bundle and the knobs the test turns."""

    inbox: Inbox
    endpoint_url: str
    prometheus: str
    alertmanager: str
    set_healthy: Callable[[bool], None]
    set_search_healthy: Callable[[bool], None]
    alertmanagers: int


# Once with one Alertmanager, once with a clustered pair (each alert sent to both): the same
# notifications, each exactly once, either way.
@pytest.fixture(scope="module", params=[1, 2], ids=["one-alertmanager", "clustered-pair"])
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    program("prometheus")
    program("prometheus-alertmanager")
    tmp: Path = tmp_path_factory.mktemp("bundle")
    healthy = threading.Event()
    healthy.set()
    search_healthy = threading.Event()  # a second endpoint, of severity warning
    search_healthy.set()
    with alert_receivers(tmp, SMTP_PASSWORD) as receivers:
        for path, up in (("/health", healthy), ("/search", search_healthy)):
            receivers.web.expect_request(path).respond_with_handler(
                lambda req, up=up: Response("ok" if up.is_set() else "down", status=200 if up.is_set() else 503)
            )
        endpoint_url = receivers.web.url_for("/health")
        upwatch_config = tmp / "upwatch.yml"
        upwatch_config.write_text(
            "endpoints:\n"
            "  - name: checkout\n"
            f"    url: {endpoint_url}\n"
            "    interval: 500ms\n    timeout: 400ms\n    failure_threshold: 2\n    success_threshold: 1\n"
            "    labels: {team: web}\n"
            "  - name: search\n"
            f"    url: {receivers.web.url_for('/search')}\n"
            "    interval: 500ms\n    timeout: 400ms\n    failure_threshold: 2\n    success_threshold: 1\n"
            "    labels: {team: web, severity: warning}\n"
            "host: {enabled: false}\n"
        )
        with native_bundle(
            tmp,
            upwatch_config=upwatch_config,
            **fast_alerting(receivers, GROUP_INTERVAL),
            alertmanagers=request.param,
        ) as bundle:
            yield Stack(
                inbox=receivers.inbox,
                endpoint_url=endpoint_url,
                prometheus=bundle.prometheus,
                alertmanager=bundle.alertmanager,
                set_healthy=lambda up: healthy.set() if up else healthy.clear(),
                set_search_healthy=lambda up: search_healthy.set() if up else search_healthy.clear(),
                alertmanagers=request.param,
            )


def firing_alerts(stack: Stack) -> set[str]:
    resp = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=5).json()
    return {a["labels"]["alertname"] for a in resp["data"]["alerts"] if a["state"] == "firing"}


def test_the_stack_scrapes_upwatch(stack: Stack) -> None:
    def up() -> bool:
        resp = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": 'probe_success{endpoint="checkout"}'})
        result = resp.json()["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_for("Prometheus to see the endpoint up", up, 30)
    # Prometheus sends to every Alertmanager, and a pair has formed one cluster.
    wait_for(
        "Prometheus to know every Alertmanager",
        lambda: (
            len(httpx.get(f"{stack.prometheus}/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"])
            == stack.alertmanagers
        ),
        30,
    )
    wanted = stack.alertmanagers if stack.alertmanagers > 1 else 0  # one alone runs no cluster

    def peers() -> int:
        return len(httpx.get(f"{stack.alertmanager}/api/v2/status").json()["cluster"].get("peers") or [])

    wait_for(f"{wanted} Alertmanagers in the cluster", lambda: peers() == wanted, 30)
    time.sleep(2)
    assert not stack.inbox.slack_about("EndpointDown")
    assert not stack.inbox.mail_about("EndpointDown")


def test_endpoint_down_notifies_slack_and_email_once_then_resolves(stack: Stack) -> None:
    inbox = stack.inbox
    went_down = time.monotonic()
    stack.set_healthy(False)
    wait_for(
        "EndpointDown on Slack and by email",
        lambda: inbox.slack_about("EndpointDown") and inbox.mail_about("EndpointDown"),
        40,
    )
    (first_at, message), *_ = inbox.slack_about("EndpointDown")
    assert first_at - went_down < 30, "first notification within 30 s of the endpoint going down"
    text = json.dumps(message)
    assert "checkout" in text and stack.endpoint_url in text
    (_, mail), *_ = inbox.mail_about("EndpointDown")
    assert "checkout" in mail["Subject"] + mail_body(mail)
    assert stack.endpoint_url in mail_body(mail)
    assert mail["To"] == "oncall@example.com"

    time.sleep(GROUP_INTERVAL * 1.5)  # a group interval later: nothing new while it stays down
    assert len(inbox.slack_about("EndpointDown")) == 1
    assert len(inbox.mail_about("EndpointDown")) == 1

    stack.set_healthy(True)
    wait_for("a resolved message on Slack", lambda: any(resolved(m) for _, m in inbox.slack_about("EndpointDown")), 40)
    wait_for("a resolved email", lambda: len(inbox.mail_about("EndpointDown")) == 2, 20)
    assert len(inbox.slack_about("EndpointDown")) == 2


def test_flapping_within_a_group_interval_notifies_once_per_group_interval(stack: Stack) -> None:
    inbox = stack.inbox
    slack_before = len(inbox.slack_about("EndpointDown"))
    mail_before = len(inbox.mail_about("EndpointDown"))
    stack.set_healthy(False)
    wait_for("a new EndpointDown notification", lambda: len(inbox.slack_about("EndpointDown")) > slack_before, 40)
    notified = time.monotonic()
    # Flap right after the notification, well inside the group interval: recover (one good
    # probe closes the incident), then fail again (two failed probes reopen it). That is the
    # third incident in 15 minutes (with the previous test's): the flap budget. EndpointFlapping
    # fires and joins EndpointDown's group, EndpointDown stays firing; the group says so at its
    # next group_interval tick, not sooner.
    time.sleep(0.5)
    stack.set_healthy(True)
    time.sleep(1.0)  # two probes, and as many scrapes and evaluations
    stack.set_healthy(False)
    assert time.monotonic() - notified < GROUP_INTERVAL / 2
    time.sleep(GROUP_INTERVAL * 2.5)  # the tick that says it flaps, then two with nothing new
    slack = inbox.slack_about("EndpointDown")[slack_before:]
    titles = [m["attachments"][0]["title"] for _, m in slack]
    assert titles == [
        "[FIRING:1] EndpointDown checkout (critical)",
        "[FIRING:2] EndpointFlapping, EndpointDown checkout (critical)",
    ], titles
    assert "Endpoint checkout is flapping: down 3 times in 15 minutes" in json.dumps(slack[1][1])
    wait_for("the emails", lambda: len(inbox.mail_about("EndpointDown")) >= mail_before + 2, 10)
    time.sleep(1)
    assert len(inbox.mail_about("EndpointDown")) == mail_before + 2

    # Up again, but it flapped: both alerts stay firing until it has been up for 5 minutes (the
    # rules' durations are not scaled here), so nothing resolves within these group intervals.
    stack.set_healthy(True)
    time.sleep(GROUP_INTERVAL * 2)
    assert len(inbox.slack_about("EndpointDown")[slack_before:]) == 2
    assert "EndpointFlapping" in firing_alerts(stack) and "EndpointDown" in firing_alerts(stack)
    # Notifications of one group are never closer than a group interval.
    times = [t for t, _ in inbox.slack_about("EndpointDown")[slack_before:]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= GROUP_INTERVAL - 1.0 for gap in gaps), f"notifications closer than a group interval: {gaps}"


def test_a_warning_goes_to_slack_only(stack: Stack) -> None:
    # search carries severity: warning, which its EndpointDown keeps.
    stack.set_search_healthy(False)
    wait_for("EndpointDown of search on Slack", lambda: any("search" in t for t in slack_titles(stack)), 30)
    time.sleep(2)
    assert "[FIRING:1] EndpointDown search (warning)" in slack_titles(stack)
    assert not [m for _, m in stack.inbox.mail if "search" in m["Subject"]]
    stack.set_search_healthy(True)


def slack_titles(stack: Stack) -> list[str]:
    """The titles of every Slack message so far."""
    with stack.inbox.lock:
        return [m["attachments"][0]["title"] for _, m in stack.inbox.slack]


def test_secrets_came_from_the_files(stack: Stack) -> None:
    # Slack messages only reach the URL written in secrets/slack_webhook_url, and the SMTP
    # login used the password from secrets/smtp_password.
    assert stack.inbox.slack
    assert stack.inbox.logins and all(password == SMTP_PASSWORD for _, password in stack.inbox.logins)
    shipped = (REPO / "alertmanager" / "alertmanager.yml").read_text()
    assert SMTP_PASSWORD not in shipped and "slack-webhook" not in shipped
