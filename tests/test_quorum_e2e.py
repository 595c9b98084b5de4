"""Quorum alerting end to end (issue 10): three vantages, two clustered Alertmanagers, Slack and email.

scripts/bundle.py runs an upwatch agent and a Prometheus agent per vantage (eu, us, ap), remote
writing to a central Prometheus with the shipped rules, and two Alertmanagers in one gossip
cluster with the shipped routes. Only intervals, the SMTP address and the secrets are injected.
One pytest-httpserver answers the endpoint for every vantage: each agent probes
`/v/${UPWATCH_VANTAGE}/checkout`, so the test fails the endpoint for chosen vantages only, as a
regional outage would. A watcher records every alert Prometheus has, all along, so that a test can
say an alert never fired in its window, not just that it is not firing at the end.

The tests run in order on one bundle and each leaves the endpoint up for the next.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import (
    Inbox,
    NativeBundle,
    alert_receivers,
    fast_alerting,
    mail_body,
    native_bundle,
    resolved,
    scrape,
    wait_for,
)
from werkzeug import Request, Response

VANTAGES = ("eu", "us", "ap")
GROUP_INTERVAL = 6.0  # injected; the shipped file says 5m


@dataclass
class AlertWatch:
    """Every (time, alertname, state, labels) Prometheus reported, polled twice a second."""

    prometheus: str
    seen: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                alerts = httpx.get(f"{self.prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            except (httpx.HTTPError, ValueError, KeyError):
                continue
            now = time.monotonic()
            with self.lock:
                self.seen += [(now, a["labels"]["alertname"], a["state"], a["labels"]) for a in alerts]

    def since(self, start: float, *names: str) -> list[tuple[float, str, str, dict[str, str]]]:
        """What was seen of these alerts (pending or firing) since `start`."""
        with self.lock:
            return [entry for entry in self.seen if entry[0] >= start and entry[1] in names]

    def firing(self, name: str) -> bool:
        """Whether the alert fired at the last poll that had it."""
        with self.lock:
            return any(n == name and state == "firing" for t, n, state, _ in self.seen[-20:])


@dataclass
class Stack:
    """The running bundle, what the receivers got, and the vantages the endpoint fails for."""

    bundle: NativeBundle
    inbox: Inbox
    watch: AlertWatch
    failing: set[str]
    endpoint_url: str

    def fail_for(self, *vantages: str) -> None:
        """From now on the endpoint answers 503 to these vantages' agents (and 200 to the others)."""
        self.failing.clear()
        self.failing.update(vantages)

    def query(self, expr: str) -> dict[str, float]:
        """An instant query's values, by the result's `vantage` label ("" when absent)."""
        resp = httpx.get(f"{self.bundle.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        return {r["metric"].get("vantage", ""): float(r["value"][1]) for r in resp.json()["data"]["result"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("quorum")
    failing: set[str] = set()

    def endpoint(req: Request) -> Response:
        vantage = req.path.split("/")[2]
        return Response("down", status=503) if vantage in failing else Response("ok")

    with alert_receivers(tmp) as receivers:
        receivers.web.expect_request(re.compile(r"^/v/[a-z]+/checkout$")).respond_with_handler(endpoint)
        config = tmp / "upwatch.yml"
        # The default quorum: a majority of the vantages that report the endpoint (2 of 3).
        config.write_text(
            "host: {enabled: false}\n"
            "endpoints:\n"
            "  - name: checkout\n"
            f"    url: '{receivers.web.url_for('/v')}/${{UPWATCH_VANTAGE}}/checkout'\n"
            "    interval: 500ms\n    timeout: 400ms\n    failure_threshold: 2\n    success_threshold: 1\n"
        )
        with native_bundle(
            tmp,
            upwatch_config=config,
            **fast_alerting(receivers, GROUP_INTERVAL),
            alertmanagers=2,
            vantages=VANTAGES,
        ) as bundle:
            watch = AlertWatch(bundle.prometheus)
            watcher = threading.Thread(target=watch.run, name="alert-watch", daemon=True)
            watcher.start()
            try:
                yield Stack(bundle, receivers.inbox, watch, failing, receivers.web.url_for("/v"))
            finally:
                watch.stopping.set()
                watcher.join(10)


def slack_texts(inbox: Inbox, alertname: str) -> list[str]:
    return [json.dumps(m) for _, m in inbox.slack_about(alertname)]


def test_every_vantage_votes_and_the_quorum_is_a_majority(stack: Stack) -> None:
    wait_for(
        "every vantage to see checkout up",
        lambda: stack.query('probe_success{endpoint="checkout"}') == dict.fromkeys(VANTAGES, 1.0),
        90,
    )
    wait_for(
        "three voters and a quorum of two",
        lambda: (
            stack.query('endpoint_vantages:upwatch_endpoint_voters:count{endpoint="checkout"}') == {"": 3.0}
            and stack.query('endpoint_vantages:upwatch_endpoint_quorum:count{endpoint="checkout"}') == {"": 2.0}
        ),
        60,
    )
    assert not stack.inbox.slack and not stack.inbox.mail


def test_failing_from_one_vantage_warns_naming_it_and_pages_nobody(stack: Stack) -> None:
    start = time.monotonic()
    stack.fail_for("eu")
    # EndpointDownRegional waits a minute for other vantages to confirm, then goes to Slack.
    wait_for(
        "EndpointDownRegional on Slack",
        lambda: any(not resolved(m) for _, m in stack.inbox.slack_about("EndpointDownRegional")),
        150,
    )
    (text,) = slack_texts(stack.inbox, "EndpointDownRegional")
    assert "checkout" in text and "eu" in text and "warning" in text.lower()
    regional = stack.watch.since(start, "EndpointDownRegional")
    assert {labels["vantage"] for _, _, _, labels in regional} == {"eu"}
    time.sleep(2)
    # No page: EndpointDown never even pending, nothing by email, nothing critical on Slack.
    assert not stack.watch.since(start, "EndpointDown")
    assert not stack.inbox.mail and not pages_about(stack.inbox)

    stack.fail_for()
    wait_for(
        "the regional warning resolved",
        lambda: any(resolved(m) for _, m in stack.inbox.slack_about("EndpointDownRegional")),
        60,
    )
    assert not stack.inbox.mail


def notified_slack(alertmanager: str) -> float:
    """How many Slack notifications this Alertmanager has sent."""
    _, samples = scrape(f"{alertmanager}/metrics")
    sent = samples.get("alertmanager_notifications_total", {})
    return sum(v for labels, v in sent.items() if ("integration", "slack") in labels)


def test_failing_from_two_vantages_pages_once_and_a_killed_alertmanager_loses_nothing(stack: Stack) -> None:
    inbox = stack.inbox
    stack.fail_for("eu", "us")
    wait_for(
        "EndpointDown on Slack and by email",
        lambda: pages_about(inbox) and inbox.mail_about("EndpointDown"),
        60,
    )
    time.sleep(GROUP_INTERVAL * 1.5)  # both Alertmanagers have the alert: still one message each way
    (page,) = pages_about(inbox)
    text = json.dumps(page)
    assert "checkout" in text and "critical" in text.lower()
    assert "eu" in text and "us" in text  # the vantages that see it down are named
    (_, mail), *more = inbox.mail_about("EndpointDown")
    assert not more and "checkout" in mail["Subject"] + mail_body(mail)

    # Kill the Alertmanager that sent it, in the middle of the incident: the other one, which has
    # the same alerts (Prometheus sends to both) and the gossiped notification log, sends the
    # resolved message, once.
    senders = [name for name in ("alertmanager", "alertmanager-1") if notified_slack(stack.bundle.urls[name]) > 0]
    assert len(senders) == 1, f"exactly one Alertmanager notifies while both run: {senders}"
    os.kill(stack.bundle.pids[senders[0]], signal.SIGKILL)
    stack.fail_for()
    wait_for(
        "the resolved message on Slack and by email",
        lambda: len([m for m in pages_about(inbox) if resolved(m)]) == 1 and len(inbox.mail_about("EndpointDown")) == 2,
        90,
    )
    time.sleep(GROUP_INTERVAL * 1.5)
    assert len(pages_about(inbox)) == 2 and len(inbox.mail_about("EndpointDown")) == 2


def pages_about(inbox: Inbox) -> list[dict[str, Any]]:
    """Slack messages of the quorum EndpointDown group (not EndpointDownRegional's)."""
    return [m for _, m in inbox.slack_about("EndpointDown") if "EndpointDownRegional" not in json.dumps(m)]


def test_a_vantage_whose_agent_dies_is_lost_loudly_and_the_quorum_shrinks(stack: Stack) -> None:
    start = time.monotonic()
    os.kill(stack.bundle.pids["upwatch-ap-0"], signal.SIGKILL)
    wait_for("UpwatchVantageLost on Slack", lambda: stack.inbox.slack_about("UpwatchVantageLost"), 240)
    (text,) = slack_texts(stack.inbox, "UpwatchVantageLost")
    assert "ap" in text
    lost = stack.watch.since(start, "UpwatchVantageLost")
    assert {labels["vantage"] for _, _, _, labels in lost} == {"ap"}
    # ap's votes are gone, not counted as down or up: two voters, a quorum of two.
    assert stack.query('endpoint_vantages:upwatch_endpoint_voters:count{endpoint="checkout"}') == {"": 2.0}
    assert stack.query('endpoint_vantages:upwatch_endpoint_quorum:count{endpoint="checkout"}') == {"": 2.0}
    # No endpoint alert at any point: the endpoint is up from the vantages left.
    assert not stack.watch.since(start, "EndpointDown", "EndpointDownRegional")
