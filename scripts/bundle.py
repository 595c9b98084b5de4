"""Run the whole bundle natively, without Docker: upwatch, Prometheus and Alertmanager on loopback.

It uses the repository's files as they are: prometheus.yml and rules/ are copied into a work
folder next to targets files that point at the loopback ports chosen here (the committed
targets/ name the compose services), and alertmanager/ is copied with the secrets folder given.
Overrides (YAML files merged key by key over prometheus.yml or alertmanager.yml) exist for tests
that need short intervals; the shipped files are never changed.

    scripts/bundle                       # ports 9877 (upwatch), 9090 (Prometheus), 9093 (Alertmanager)
    scripts/bundle --secrets alertmanager/secrets --workdir /var/tmp/upwatch-bundle

Across several vantages (issue 10), on the same engines: `--vantages eu,us,ap` starts, per
vantage, `--shards` upwatch agents (the same endpoint list, `vantage` and `shard` set) and a
Prometheus in agent mode that scrapes them and remote-writes to the central Prometheus (which
takes remote writes, evaluates the rules and alerts); `--alertmanagers 2` starts Alertmanagers in
one gossip cluster, and the central Prometheus sends every alert to each of them.

    scripts/bundle --vantages eu,us,ap --shards 2 --alertmanagers 2

Stop it with Ctrl-C (or SIGTERM): it stops the programs in order. A program that exits on its
own is reported on stderr and the others keep running (a fault test can kill one; `--ready-file`
lists every program's pid).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def merge(base: Any, override: Any) -> Any:
    """`override` merged over `base`: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def find_program(*names: str) -> str:
    """The first of these programs on PATH."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        f"none of {', '.join(names)} is installed (Debian: apt-get install prometheus prometheus-alertmanager)"
    )


def write_yaml(path: Path, data: Any) -> None:
    """Write YAML, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@dataclass(frozen=True)
class Program:
    """One program of the bundle: its command line, readiness URL, working folder and extra environment."""

    name: str
    command: list[str]
    ready: str
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


def absolute_tls_files(data: Any, folder: Path) -> None:
    """Make the config's relative TLS file paths absolute against `folder`, the original config's.

    The per-agent copies live in the work folder, and upwatch reads relative paths against the
    folder of the file it loads. Paths with `${VAR}` are left as they are (they may expand to
    absolute ones).
    """
    if not isinstance(data, dict):
        return
    sections = [data.get("defaults"), *(data.get("endpoints") or [])]
    for section in sections:
        tls = section.get("tls") if isinstance(section, dict) else None
        if not isinstance(tls, dict):
            continue
        for key in ("ca_file", "cert_file", "key_file"):
            value = tls.get(key)
            if isinstance(value, str) and value and "${" not in value and not Path(value).is_absolute():
                tls[key] = str(folder / value)


def agents(args: argparse.Namespace) -> list[tuple[str | None, int, int]]:
    """(vantage, shard index, port) of every upwatch agent; one without vantages."""
    vantages: list[str | None] = [v for v in args.vantages.split(",") if v] if args.vantages else [None]
    out = []
    for v, vantage in enumerate(vantages):
        for shard in range(args.shards):
            out.append((vantage, shard, args.upwatch_port + v * args.shards + shard))
    return out


def prepare(args: argparse.Namespace, work: Path) -> list[Program]:
    """Lay out the work folder and return the programs, in the order they start."""
    prom_dir, am_dir = work / "prometheus", work / "alertmanager"
    for folder in (prom_dir, am_dir, work / "vantages"):
        if folder.exists():
            shutil.rmtree(folder)
    prom_dir.mkdir(parents=True)
    prom_config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    if args.prometheus_override:
        prom_config = merge(prom_config, yaml.safe_load(Path(args.prometheus_override).read_text()))
    write_yaml(prom_dir / "prometheus.yml", prom_config)
    shutil.copytree(REPO / "rules", prom_dir / "rules", ignore=shutil.ignore_patterns("tests"))
    every = agents(args)
    multi = bool(args.vantages)
    am_ports = [args.alertmanager_port + i for i in range(args.alertmanagers)]
    # With vantages, the agents are scraped by their vantage's Prometheus agent, not the central one.
    upwatch_targets = [] if multi else [{"targets": [f"127.0.0.1:{port}" for _, _, port in every]}]
    write_yaml(prom_dir / "targets" / "upwatch.yml", upwatch_targets)
    write_yaml(prom_dir / "targets" / "prometheus.yml", [{"targets": [f"127.0.0.1:{args.prometheus_port}"]}])
    write_yaml(prom_dir / "targets" / "alertmanager.yml", [{"targets": [f"127.0.0.1:{p}" for p in am_ports]}])

    shutil.copytree(REPO / "alertmanager", am_dir, ignore=shutil.ignore_patterns("secrets", "secrets.example"))
    am_config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    if args.alertmanager_override:
        am_config = merge(am_config, yaml.safe_load(Path(args.alertmanager_override).read_text()))
    write_yaml(am_dir / "alertmanager.yml", am_config)
    secrets = Path(args.secrets) if args.secrets else REPO / "alertmanager" / "secrets.example"
    shutil.copytree(secrets, am_dir / "secrets")

    programs = []
    base_config = Path(args.upwatch_config).resolve()
    for vantage, shard, port in every:
        config = base_config
        name = "upwatch" if not multi and args.shards == 1 else f"upwatch-{vantage or 'all'}-{shard}"
        if multi or args.shards > 1:
            data = yaml.safe_load(base_config.read_text()) or {}
            absolute_tls_files(data, base_config.parent)
            if vantage is not None:
                data["vantage"] = vantage
            if args.shards > 1:
                data["shard"] = {"index": shard, "total": args.shards}
            config = work / "vantages" / f"{name}.yml"
            write_yaml(config, data)
        command = [sys.executable, "-m", "exporter", "serve", "--config", str(config)]
        command += ["--listen", f"127.0.0.1:{port}", "--log-format", "json"]
        # Each agent's states and counters survive its restart (kept in the work folder across runs).
        command += ["--data-dir", str(work / f"{name}-data")]
        # The agent's vantage in its environment too, for `${UPWATCH_VANTAGE}` in the config.
        env = {"UPWATCH_VANTAGE": vantage} if vantage is not None else {}
        # The status page's history from the central Prometheus (`${UPWATCH_PROMETHEUS_URL}` in upwatch.yml).
        env["UPWATCH_PROMETHEUS_URL"] = f"http://127.0.0.1:{args.prometheus_port}"
        programs.append(Program(name, command, f"http://127.0.0.1:{port}/-/ready", work, env))

    for i, port in enumerate(am_ports):
        name = "alertmanager" if i == 0 else f"alertmanager-{i}"
        command = [
            find_program("prometheus-alertmanager", "alertmanager"),
            f"--config.file={am_dir / 'alertmanager.yml'}",
            f"--storage.path={work / (name + '-data')}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/",
            "--log.level=warn",
        ]
        if len(am_ports) == 1:
            command.append("--cluster.listen-address=")
        else:
            # One gossip cluster: each listens on its own port and knows the others'.
            command.append(f"--cluster.listen-address=127.0.0.1:{args.cluster_port + i}")
            command += [f"--cluster.peer=127.0.0.1:{args.cluster_port + j}" for j in range(len(am_ports)) if j != i]
            command.append("--cluster.peer-timeout=5s")
        # Alertmanager resolves *_file secret paths against its working directory (templates
        # against the config's folder), so it runs from its own folder.
        programs.append(Program(name, command, f"http://127.0.0.1:{port}/-/ready", am_dir))

    central = [
        find_program("prometheus"),
        f"--config.file={prom_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'prometheus-data'}",
        f"--storage.tsdb.retention.time={args.retention}",
        f"--web.listen-address=127.0.0.1:{args.prometheus_port}",
        f"--web.external-url=http://127.0.0.1:{args.prometheus_port}/",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    if multi:
        central.append("--web.enable-remote-write-receiver")
    programs.append(Program("prometheus", central, f"http://127.0.0.1:{args.prometheus_port}/-/ready", work))

    if multi:
        # Per vantage, a Prometheus in agent mode: scrapes its agents, remote-writes to the central
        # one, and adds its vantage as an external label, so that `up` of its agents has it too.
        vantages = list(dict.fromkeys(v for v, _, _ in every))
        for i, vantage in enumerate(vantages):
            assert vantage is not None
            port = args.prometheus_port + 1 + i
            folder = work / "vantages" / f"prometheus-{vantage}"
            config = {
                "global": {
                    "scrape_interval": prom_config["global"]["scrape_interval"],
                    "scrape_timeout": prom_config["global"].get("scrape_timeout", "10s"),
                    "external_labels": {"vantage": vantage},
                },
                "scrape_configs": [
                    {
                        "job_name": "upwatch",
                        "static_configs": [{"targets": [f"127.0.0.1:{p}" for v, _, p in every if v == vantage]}],
                    }
                ],
                "remote_write": [{"url": f"http://127.0.0.1:{args.prometheus_port}/api/v1/write"}],
            }
            write_yaml(folder / "prometheus.yml", config)
            command = [
                find_program("prometheus"),
                "--enable-feature=agent",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.agent.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ]
            programs.append(Program(f"prometheus-{vantage}", command, f"http://127.0.0.1:{port}/-/ready", folder))
    return programs


def wait_ready(name: str, url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until a program answers its readiness URL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with code {proc.returncode}; see its log in the work folder")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{name} not ready at {url} after {timeout:.0f}s")


def main() -> None:
    """Start the three programs, report where they are, and stop them on a signal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upwatch-config", default=str(REPO / "upwatch.yml"))
    parser.add_argument("--upwatch-port", type=int, default=9877)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--workdir", help="folder for configs, data and logs [default: a new temporary one]")
    parser.add_argument("--secrets", help="folder with slack_webhook_url and smtp_password [default: the examples]")
    parser.add_argument(
        "--retention", default="100d", help="Prometheus retention; the status page's 90 daily bars need more than 90d"
    )
    parser.add_argument("--prometheus-override", help="YAML merged over prometheus.yml (tests: short intervals)")
    parser.add_argument("--alertmanager-override", help="YAML merged over alertmanager.yml (tests: short intervals)")
    parser.add_argument("--ready-file", help="write the URLs here as JSON once everything is ready")
    parser.add_argument("--vantages", help="comma-separated vantage names: a Prometheus agent and agents for each")
    parser.add_argument("--shards", type=int, default=1, help="upwatch agents per vantage, splitting the endpoints")
    parser.add_argument("--alertmanagers", type=int, default=1, help="Alertmanagers, in one gossip cluster if 2+")
    parser.add_argument("--cluster-port", type=int, default=9094, help="first Alertmanager cluster (gossip) port")
    args = parser.parse_args()

    if args.shards < 1 or args.alertmanagers < 1:
        parser.error("--shards and --alertmanagers take 1 or more")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="upwatch-bundle-"))
    work.mkdir(parents=True, exist_ok=True)
    programs = prepare(args, work)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # Agents first, the central Prometheus after the Alertmanagers, the vantages' Prometheus last.
        for program in programs:
            log = (work / f"{program.name}.log").open("wb")
            procs[program.name] = subprocess.Popen(
                program.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=program.cwd,
                env={**os.environ, **program.env},
            )
            wait_ready(program.name, program.ready, procs[program.name])
        urls = {program.name: program.ready.removesuffix("/-/ready") for program in programs}
        report = {"workdir": str(work), **urls}
        print(json.dumps(report), flush=True)
        if args.ready_file:
            pids = {name: proc.pid for name, proc in procs.items()}
            Path(args.ready_file).write_text(json.dumps({**report, "pids": pids}))
        # A program that exits (a crash, or killed by a fault test) is reported, and the others keep
        # running, as under Compose: the bundle ends on a signal, or when nothing is left running.
        reported: set[str] = set()
        while not stopping:
            for name, proc in procs.items():
                if name not in reported and proc.poll() is not None:
                    reported.add(name)
                    print(
                        f"bundle: {name} exited with code {proc.returncode}; the others keep running "
                        f"(its log: {work / (name + '.log')})",
                        file=sys.stderr,
                        flush=True,
                    )
            if len(reported) == len(procs):
                raise SystemExit("bundle: every program has exited")
            time.sleep(0.2)
    finally:
        for name in reversed(list(procs)):
            proc = procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main()
