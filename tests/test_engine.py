"""The probe engine end to end: a real `upwatch serve` with `workers: 2` probing a real nginx.

Each test waits for what it needs (polling /metrics, the log file or /proc until a condition
holds, with a generous deadline); none asserts on a stopwatch.
"""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import datetime
from pathlib import Path

import httpx
from helpers import (
    DEADLINE,
    Nginx,
    all_probed,
    endpoint_yaml,
    failures,
    probes,
    serve_upwatch,
    value,
    wait_for,
    write_upwatch_config,
)

from exporter.scheduler import spread_offset
from exporter.sharding import rendezvous_bucket


def names_on(worker: int, count: int, prefix: str = "ep") -> list[str]:
    """The first `count` endpoint names that rendezvous hashing gives to `worker` of two."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        if rendezvous_bucket(f"{prefix}-{i}", 2) == worker:
            out.append(f"{prefix}-{i}")
        i += 1
    return out


def test_two_workers_share_the_endpoints_and_probe_every_one(tmp_path: Path, nginx_target: Nginx) -> None:
    names = [f"ep-{i}" for i in range(40)]
    config = tmp_path / "upwatch.yml"
    write_upwatch_config(config, [endpoint_yaml(n, nginx_target.url("/")) for n in names])
    with serve_upwatch(tmp_path, config) as agent:
        wait_for("every endpoint probed", lambda: all_probed(agent, names), DEADLINE)
        samples = agent.metrics()
        assert failures(samples) == 0, [(e["endpoint"], e["message"]) for e in agent.events("probe failed")]
        assert value(samples, "upwatch_probe_workers") == 2
        assert value(samples, "upwatch_probe_worker_restarts_total") == 0
        # Two worker processes, children of the agent, visible by name in ps and /proc.
        assert set(agent.workers()) == {"upwatch-probe0", "upwatch-probe1"}
        # Each probes the endpoints rendezvous hashing gives it.
        assigned = {e["worker"]: e["endpoints"] for e in agent.events("probe worker assigned")}
        expected = [sum(1 for n in names if rendezvous_bucket(n, 2) == w) for w in (0, 1)]
        assert assigned == {0: expected[0], 1: expected[1]}
        (chosen,) = agent.events("probe processes")
        assert (chosen["workers"], chosen["setting"]) == (2, "2")


def test_a_killed_worker_is_restarted_and_its_probes_in_flight_are_counted_lost(
    tmp_path: Path, nginx_target: Nginx
) -> None:
    healthy = names_on(0, 8) + names_on(1, 8)
    # Three endpoints of worker 0 whose probes hang until their 1.9 s timeout, every 2 s, with
    # grid offsets far apart: from their first probes on, at least two are always in flight.
    hanging: list[str] = []
    for name in names_on(0, 50, prefix="hang"):
        offset = spread_offset(name, 2.0)
        if all(0.4 <= abs(offset - spread_offset(h, 2.0)) <= 1.6 for h in hanging):
            hanging.append(name)
    hanging = hanging[:3]
    assert len(hanging) == 3
    config = tmp_path / "upwatch.yml"
    write_upwatch_config(
        config,
        [endpoint_yaml(n, nginx_target.url("/")) for n in healthy]
        + [endpoint_yaml(n, nginx_target.url("/hang?seconds=30"), "2s", "1900ms") for n in hanging],
    )
    with serve_upwatch(tmp_path, config) as agent:
        wait_for("every endpoint probed", lambda: all_probed(agent, healthy), DEADLINE)
        # Twice: a first tick that passed while the worker started ran late, and may have made the
        # endpoint skip its next one; from the second probe on, every one is on its grid.
        wait_for(
            "each hanging probe to time out twice",
            lambda: all(probes(samples, n, "failure") >= 2 for samples in [agent.metrics()] for n in hanging),
            DEADLINE,
        )
        before = agent.workers()
        os.kill(before["upwatch-probe0"], signal.SIGKILL)
        wait_for("the worker to be restarted", lambda: agent.events("probe worker restarted"), DEADLINE)
        (died,) = agent.events("probe worker died")
        assert died["worker"] == 0 and died["signal"] == "SIGKILL" and died["level"] == "error"
        assert died["endpoints"] == len(hanging) + 8
        assert died["lost_probes"] >= 2
        wait_for(
            "a new upwatch-probe0",
            lambda: agent.workers().get("upwatch-probe0", before["upwatch-probe0"]) != before["upwatch-probe0"],
            DEADLINE,
        )
        assert agent.workers()["upwatch-probe1"] == before["upwatch-probe1"]  # the other one untouched
        # The dead worker's endpoints are probed again, by the new process.
        at_restart = agent.metrics()
        wait_for(
            "worker 0's endpoints probed again",
            lambda: all_probed(agent, names_on(0, 8), 2, than=at_restart),
            DEADLINE,
        )
        samples = agent.metrics()
        assert value(samples, "upwatch_probe_worker_restarts_total") == 1
        assert value(samples, "upwatch_probes_lost_total", reason="worker_exit") == died["lost_probes"]
        assert value(samples, "upwatch_probe_workers") == 2
        assert all(probes(samples, n, "failure") == 0 for n in healthy)


def test_a_hung_worker_is_killed_and_restarted(tmp_path: Path, nginx_target: Nginx) -> None:
    names = [f"ep-{i}" for i in range(4)]
    config = tmp_path / "upwatch.yml"
    write_upwatch_config(config, [endpoint_yaml(n, nginx_target.url("/")) for n in names], workers=1)
    with serve_upwatch(tmp_path, config) as agent:
        wait_for("every endpoint probed", lambda: all_probed(agent, names), DEADLINE)
        before = agent.workers()["upwatch-probe0"]
        os.kill(before, signal.SIGSTOP)  # alive, its pipes open, but silent: hung
        try:
            wait_for("the hung worker to be restarted", lambda: agent.events("probe worker restarted"), 2 * DEADLINE)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(before, signal.SIGCONT)
        (hung,) = agent.events("probe worker hung; killing it")
        assert hung["worker"] == 0 and hung["level"] == "error"
        (died,) = agent.events("probe worker died")
        assert died["signal"] == "SIGKILL"
        at_restart = agent.metrics()
        wait_for("probed again", lambda: all_probed(agent, names, 2, than=at_restart), DEADLINE)
        assert agent.workers()["upwatch-probe0"] != before
        assert value(agent.metrics(), "upwatch_probe_worker_restarts_total") == 1


def test_a_first_tick_passing_while_a_worker_starts_runs_late_not_never(tmp_path: Path, nginx_target: Nginx) -> None:
    # Every 20 s, first at 0-60 ms past the start of probing: before any worker process can have
    # started (a fresh interpreter takes a few hundred milliseconds to import the prober).
    early = next(f"early-{i}" for i in range(10_000) if spread_offset(f"early-{i}", 20.0) < 0.06)
    config = tmp_path / "upwatch.yml"
    write_upwatch_config(config, [endpoint_yaml(early, nginx_target.url("/"), "20s")], workers=1)
    with serve_upwatch(tmp_path, config, log_level="debug") as agent:
        (started,) = agent.events("upwatch started")
        wait_for("a probe", lambda: all_probed(agent, [early]), DEADLINE)
        (first, *_) = agent.events("probe finished")
        # Probed as soon as the worker was up, not an interval later, and nothing skipped.
        assert first["endpoint"] == early
        assert iso_seconds(first["timestamp"]) - iso_seconds(started["timestamp"]) < 10
        assert not agent.events("probe ticks skipped")
        assert value(agent.metrics(), "upwatch_probe_ticks_skipped_total", endpoint=early) == 0


def iso_seconds(text: str) -> float:
    """Unix seconds of a log line's ISO 8601 timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_reload_changing_one_endpoint_moves_nothing_and_keeps_the_other_loops(
    tmp_path: Path, nginx_target: Nginx
) -> None:
    names = [f"ep-{i}" for i in range(20)]
    config = tmp_path / "upwatch.yml"
    write_upwatch_config(config, [endpoint_yaml(n, nginx_target.url("/")) for n in names])
    with serve_upwatch(tmp_path, config, flags=["--web.enable-lifecycle"]) as agent:
        wait_for("every endpoint probed", lambda: all_probed(agent, names, 2), DEADLINE)
        pids = agent.workers()
        assigned = len(agent.events("probe worker assigned"))
        before = agent.metrics()
        changed = names[7]
        write_upwatch_config(
            config,
            [endpoint_yaml(n, nginx_target.url("/sleep") if n == changed else nginx_target.url("/")) for n in names],
        )
        response = httpx.post(f"{agent.base}/-/reload", timeout=30)
        assert response.status_code == 200, response.text
        wait_for(
            "the changed endpoint's new loop",
            lambda: len(agent.events("probe worker assigned")) > assigned,
            DEADLINE,
        )
        wait_for("every endpoint probed twice more", lambda: all_probed(agent, names, 2, than=before), DEADLINE)
        # Rendezvous hashing moved nothing; only the changed endpoint's worker heard of the reload,
        # and it restarted that one loop and no other.
        (_, reassigned) = agent.events("probe endpoints assigned")
        assert reassigned["moved"] == 0
        (told,) = agent.events("probe worker assigned")[assigned:]
        assert told["worker"] == rendezvous_bucket(changed, 2)
        assert (told["loops_started"], told["loops_stopped"]) == (1, 1)
        assert agent.workers() == pids
        samples = agent.metrics()
        assert failures(samples) == 0, [(e["endpoint"], e["message"]) for e in agent.events("probe failed")]
        # The counters went on under the same names: no reset.
        assert all(probes(samples, n) > probes(before, n) for n in names)
        assert value(samples, "upwatch_endpoint_info", endpoint=changed, url=nginx_target.url("/sleep"), method="GET")


def test_workers_exit_when_the_main_process_dies(tmp_path: Path, nginx_target: Nginx) -> None:
    config = tmp_path / "upwatch.yml"
    write_upwatch_config(config, [endpoint_yaml(f"ep-{i}", nginx_target.url("/")) for i in range(6)])
    with serve_upwatch(tmp_path, config) as agent:
        wait_for("two workers", lambda: len(agent.workers()) == 2, DEADLINE)
        pids = list(agent.workers().values())
        agent.proc.kill()  # no orderly shutdown: the workers see their control pipes end

        def gone(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            return state == "Z"

        wait_for("the workers to exit", lambda: all(gone(pid) for pid in pids), DEADLINE)
