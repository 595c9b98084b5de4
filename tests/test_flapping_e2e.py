"""End to end, the flap budget: endpoints flapping 30 s down / 30 s up for 20 minutes page at most every 5 minutes.

upwatch probes local endpoints that flap; Prometheus and Alertmanager run the shipped rules,
routes, inhibitions and templates (scripts/bundle.py), and a fake Slack (pytest-httpserver)
counts what arrives. To fit in about 4 minutes, every duration of the scenario is divided by
SCALE, consistently:

- the flap: 3 s down / 3 s up for 2 minutes (30 s / 30 s for 20 minutes);
- the agent: a probe every 1 s, 2 failures open an incident (every 10 s, 2 failures);
- Prometheus: scrapes and rule evaluations every 1.5 s (15 s), and every duration written in the
  rules (range selectors such as the flap budget's [15m] and [5m], `for`, group intervals) divided
  by SCALE in the bundle's copy of rules/, loaded with a reload;
- Alertmanager: group_wait 1 s (10 s), group_interval 30 s (5m), repeat_interval 24 m (4h).

What cannot be scaled is Alertmanager's own 30 s cycle that deletes resolved groups; the budget
does not depend on it, as the groups of flapping endpoints never empty before the end. Three
endpoints flap, their flaps a third of a period apart (so that group ticks fall on different
phases of the flap), and one has a single clean outage of 2 (scaled) minutes in the meantime.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from helpers import alert_receivers, native_bundle, resolved, wait_for
from werkzeug import Request, Response

SCALE = 10
PHASE = 30 / SCALE  # seconds down, then as many up
FLAP = 20 * 60 / SCALE  # seconds of flapping
GROUP_INTERVAL = 300 / SCALE
FLAPPING = ["flap-a", "flap-b", "flap-c"]
CLEAN = "clean"
CLEAN_OUTAGE = (30 / SCALE, 150 / SCALE)  # down from 30 s to 2m30s (scaled) after the flaps start

DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}


def scaled(duration: str) -> str:
    """A Prometheus duration divided by SCALE, in milliseconds."""
    ms = sum(int(n) * UNIT_MS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))
    assert ms > 0, duration
    return f"{max(1, round(ms / SCALE))}ms"


def scale_ranges(text: str) -> str:
    """Every range selector's duration ([15m]) in a query divided by SCALE."""
    return re.sub(rf"\[({DURATION.pattern})\]", lambda m: f"[{scaled(m.group(1))}]", text)


def scale_rules(folder: Path) -> None:
    """Divide every duration of the rule files in `folder` by SCALE.

    Range selectors in expressions and in the annotations' queries, `for`, `keep_firing_for` and
    group intervals.
    """
    for path in folder.glob("*.yml"):
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            if "interval" in group:
                group["interval"] = scaled(group["interval"])
            for rule in group["rules"]:
                rule["expr"] = scale_ranges(rule["expr"])
                rule["annotations"] = {k: scale_ranges(v) for k, v in rule.get("annotations", {}).items()}
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = scaled(rule[key])
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def flapping(start: list[float], offset: float) -> Callable[[Request], Response]:
    """A health check that fails for PHASE seconds, then passes for PHASE, for FLAP seconds from start[0] + offset."""

    def handler(_: Request) -> Response:
        elapsed = time.monotonic() - start[0] - offset if start else -1
        down = 0 <= elapsed < FLAP and int(elapsed // PHASE) % 2 == 0
        return Response("down" if down else "ok", status=503 if down else 200)

    return handler


def clean_outage(start: list[float]) -> Callable[[Request], Response]:
    """A health check that fails once, during CLEAN_OUTAGE after start[0]."""

    def handler(_: Request) -> Response:
        down = bool(start) and CLEAN_OUTAGE[0] <= time.monotonic() - start[0] < CLEAN_OUTAGE[1]
        return Response("down" if down else "ok", status=503 if down else 200)

    return handler


def title(message: dict[str, Any]) -> str:
    """A Slack message's title."""
    return str(message["attachments"][0]["title"])


def test_flapping_endpoints_page_at_most_once_per_group_interval_and_say_they_flap(tmp_path: Path) -> None:
    start: list[float] = []
    with alert_receivers(tmp_path) as receivers:
        endpoints = ""
        for i, name in enumerate([*FLAPPING, CLEAN]):
            handler = clean_outage(start) if name == CLEAN else flapping(start, i * 2 * PHASE / len(FLAPPING))
            receivers.web.expect_request(f"/{name}").respond_with_handler(handler)
            endpoints += (
                f"  - {{name: {name}, url: '{receivers.web.url_for(f'/{name}')}', interval: 1s, timeout: 800ms,"
                " failure_threshold: 2, success_threshold: 1}\n"
            )
        config = tmp_path / "upwatch.yml"
        config.write_text(f"host: {{enabled: false}}\nendpoints:\n{endpoints}")
        with native_bundle(
            tmp_path,
            upwatch_config=config,
            secrets=receivers.secrets,
            prometheus_override={
                "global": {
                    "scrape_interval": scaled("15s"),
                    "scrape_timeout": scaled("10s"),
                    "evaluation_interval": scaled("15s"),
                }
            },
            alertmanager_override={
                "global": {"smtp_smarthost": f"127.0.0.1:{receivers.smtp_port}", "smtp_require_tls": False},
                "route": {
                    "group_wait": scaled("10s"),
                    "group_interval": scaled("5m"),
                    "repeat_interval": scaled("4h"),
                },
            },
        ) as bundle:
            scale_rules(bundle.workdir / "prometheus" / "rules")
            assert httpx.post(f"{bundle.prometheus}/-/reload", timeout=30).status_code == 200
            rules = httpx.get(f"{bundle.prometheus}/api/v1/rules", timeout=10).text
            assert "[1m30s]" in rules and "[15m]" not in rules, "Prometheus runs the scaled rules"

            def all_up() -> bool:
                query = {"query": "probe_success == 1"}
                found = httpx.get(f"{bundle.prometheus}/api/v1/query", params=query, timeout=10).json()
                return len(found["data"]["result"]) == len(FLAPPING) + 1

            wait_for("Prometheus to see every endpoint up", all_up, 60)
            start.append(time.monotonic())
            time.sleep(FLAP + 2 * PHASE)  # the last flap ends 2/3 of a period after FLAP

            def about(endpoint: str) -> list[tuple[float, dict[str, Any]]]:
                with receivers.inbox.lock:
                    return [(t, m) for t, m in receivers.inbox.slack if f"*{endpoint}*" in json.dumps(m)]

            # Each flapping endpoint's alerts resolve once it has been up for 5 (scaled) minutes,
            # and its group says so at its next tick.
            wait_for(
                "every flapping endpoint's resolved message",
                lambda: all(about(name) and resolved(about(name)[-1][1]) for name in FLAPPING),
                4 * GROUP_INTERVAL,
            )
            wait_for("the emails", lambda: len(receivers.inbox.mail) >= len(receivers.inbox.slack), 20)
            time.sleep(2)  # anything else on its way

    for name in FLAPPING:
        messages = about(name)
        titles = [title(m) for _, m in messages]
        # At most one per group_interval, and no more than: down, then flapping, then resolved.
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(messages)]
        assert all(gap >= GROUP_INTERVAL - 1 for gap in gaps), f"{name}: {titles}, {gaps} s apart"
        assert titles == [
            f"[FIRING:1] EndpointDown {name} (critical)",
            f"[FIRING:2] EndpointFlapping, EndpointDown {name} (critical)",
            f"[RESOLVED] EndpointFlapping, EndpointDown {name} (critical)",
        ], f"{name}: {titles}, {gaps} s apart"
        # The second message says it is flapping, and how often.
        text = messages[1][1]["attachments"][0]["text"]
        assert re.search(rf"Endpoint {name} is flapping: down \d+ times in 15 minutes", text), text
        assert f"{name} (" in text and "went down" in text and "it is flapping" in text

    # A clean outage amid them pages as before: down, then resolved, nothing about flapping.
    assert [title(m) for _, m in about(CLEAN)] == [
        f"[FIRING:1] EndpointDown {CLEAN} (critical)",
        f"[RESOLVED] EndpointDown {CLEAN} (critical)",
    ]
    # Each Slack message of a critical group is also an email.
    assert len(receivers.inbox.mail) == len(receivers.inbox.slack) == 3 * len(FLAPPING) + 2
