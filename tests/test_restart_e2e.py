"""End to end: the agent killed and restarted during an incident pages once and resolves once.

The whole bundle from scripts/bundle.py (real Prometheus and Alertmanager, the shipped rules,
routes and templates; only the intervals are short), whose agent keeps its data directory in the
work folder. The endpoint goes down and pages; the agent is killed (SIGKILL: a crash, no clean
shutdown), stays away for longer than a group interval (Prometheus fails its scrapes) and is
started again with the same command. Then the endpoint recovers. Slack and email each get
exactly one "down" and one "resolved".
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
from helpers import alert_receivers, fast_alerting, native_bundle, resolved, running, wait_for
from werkzeug import Response

GROUP_INTERVAL = 6.0  # injected; the shipped file says 5m
# Confirming an incident takes 16 probes of 500 ms: longer than a group interval, so that an agent
# that restarted without its state (unknown until it confirms the incident anew) would have
# Alertmanager send "resolved", then a second page.
FAILURE_THRESHOLD = 16
DEADLINE = 60.0


def query(prometheus: str, expr: str) -> list[dict[str, object]]:
    """The result of an instant query."""
    result: list[dict[str, object]] = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}).json()["data"][
        "result"
    ]
    return result


def firing(prometheus: str, alertname: str) -> bool:
    """Whether Prometheus has the alert firing now."""
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return any(a["labels"]["alertname"] == alertname and a["state"] == "firing" for a in alerts)


def test_a_restart_during_an_incident_sends_one_down_and_one_resolved(tmp_path: Path) -> None:
    healthy = threading.Event()
    healthy.set()
    with alert_receivers(tmp_path) as receivers:
        receivers.web.expect_request("/health").respond_with_handler(
            lambda _: Response("ok" if healthy.is_set() else "down", status=200 if healthy.is_set() else 503)
        )
        config = tmp_path / "upwatch.yml"
        config.write_text(
            "endpoints:\n"
            "  - name: checkout\n"
            f"    url: {receivers.web.url_for('/health')}\n"
            "    interval: 500ms\n    timeout: 400ms\n"
            f"    failure_threshold: {FAILURE_THRESHOLD}\n"
            "host: {enabled: false}\n"
        )
        inbox = receivers.inbox
        with native_bundle(tmp_path, upwatch_config=config, **fast_alerting(receivers, GROUP_INTERVAL)) as bundle:
            prometheus = bundle.prometheus
            wait_for("Prometheus to see checkout up", lambda: query(prometheus, "probe_success == 1"), DEADLINE)
            healthy.clear()
            wait_for("the EndpointDown page", lambda: inbox.slack_about("EndpointDown"), DEADLINE)
            wait_for("the page by email", lambda: inbox.mail_about("EndpointDown"), DEADLINE)
            state_file = bundle.workdir / "upwatch-data" / "state.json"
            wait_for(
                "the incident in the agent's state file",
                lambda: (
                    state_file.exists()
                    and json.loads(state_file.read_text())["endpoints"]["checkout"]["state"]["state"] == "down"
                ),
                DEADLINE,
            )

            os.kill(bundle.pids["upwatch"], signal.SIGKILL)
            wait_for("Prometheus to fail a scrape", lambda: query(prometheus, 'up{job="upwatch"} == 0'), DEADLINE)
            # Away for longer than a group interval, as when its container moves to another host.
            time.sleep(GROUP_INTERVAL * 1.5)
            assert firing(prometheus, "EndpointDown"), "still firing while the agent is away"
            assert len(inbox.slack_about("EndpointDown")) == 1, "no resolved while the agent is away"
            port = bundle.ports["upwatch"]
            command = [sys.executable, "-m", "exporter", "serve", "--config", str(config)]
            command += ["--listen", f"127.0.0.1:{port}", "--log-format", "json"]
            command += ["--data-dir", str(state_file.parent)]
            with running(command, f"http://127.0.0.1:{port}/-/ready", log=tmp_path / "restarted.log"):
                wait_for("Prometheus to scrape it again", lambda: query(prometheus, 'up{job="upwatch"} == 1'), DEADLINE)
                # Long enough for a wrong "resolved" and a second page to arrive: the restarted
                # agent's first probes, and two group intervals of Alertmanager.
                time.sleep(GROUP_INTERVAL * 2.5)
                assert len(inbox.slack_about("EndpointDown")) == 1, "no resolved, no second page"
                assert query(prometheus, 'upwatch_endpoint_state{state="down"} == 1')
                (incidents,) = query(prometheus, "upwatch_endpoint_incidents_total")
                assert incidents["value"][1] == "1", "the same incident, counted once"  # type: ignore[index]
                assert query(prometheus, "resets(upwatch_endpoint_incidents_total[10m]) == 0"), "no counter reset"

                healthy.set()
                wait_for(
                    "the resolved message",
                    lambda: any(resolved(m) for _, m in inbox.slack_about("EndpointDown")),
                    DEADLINE,
                )
                wait_for("the resolved email", lambda: len(inbox.mail_about("EndpointDown")) >= 2, DEADLINE)
                time.sleep(GROUP_INTERVAL * 1.5)  # nothing more follows
                slack = inbox.slack_about("EndpointDown")
                assert [resolved(m) for _, m in slack] == [False, True], "one down, one resolved"
                assert len(inbox.mail_about("EndpointDown")) == 2
