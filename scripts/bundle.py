"""Run the whole bundle natively, without Docker: upwatch, Prometheus and Alertmanager on loopback.

It uses the repository's files as they are: prometheus.yml and rules/ are copied into a work
folder next to targets files that point at the loopback ports chosen here (the committed
targets/ name the compose services), and alertmanager/ is copied with the secrets folder given.
Overrides (YAML files merged key by key over prometheus.yml or alertmanager.yml) exist for tests
that need short intervals; the shipped files are never changed.

    scripts/bundle                       # ports 9877 (upwatch), 9090 (Prometheus), 9093 (Alertmanager)
    scripts/bundle --secrets alertmanager/secrets --workdir /var/tmp/upwatch-bundle

Stop it with Ctrl-C (or SIGTERM): it stops the three programs in order.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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


def prepare(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    """Lay out the work folder and return the command line of each program."""
    prom_dir, am_dir = work / "prometheus", work / "alertmanager"
    for folder in (prom_dir, am_dir):
        if folder.exists():
            shutil.rmtree(folder)
    prom_dir.mkdir(parents=True)
    prom_config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    if args.prometheus_override:
        prom_config = merge(prom_config, yaml.safe_load(Path(args.prometheus_override).read_text()))
    write_yaml(prom_dir / "prometheus.yml", prom_config)
    shutil.copytree(REPO / "rules", prom_dir / "rules", ignore=shutil.ignore_patterns("tests"))
    loopback = {
        "upwatch": args.upwatch_port,
        "prometheus": args.prometheus_port,
        "alertmanager": args.alertmanager_port,
    }
    for job, port in loopback.items():
        write_yaml(prom_dir / "targets" / f"{job}.yml", [{"targets": [f"127.0.0.1:{port}"]}])

    shutil.copytree(REPO / "alertmanager", am_dir, ignore=shutil.ignore_patterns("secrets", "secrets.example"))
    am_config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    if args.alertmanager_override:
        am_config = merge(am_config, yaml.safe_load(Path(args.alertmanager_override).read_text()))
    write_yaml(am_dir / "alertmanager.yml", am_config)
    secrets = Path(args.secrets) if args.secrets else REPO / "alertmanager" / "secrets.example"
    shutil.copytree(secrets, am_dir / "secrets")

    upwatch_config = Path(args.upwatch_config).resolve()
    return {
        "upwatch": [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--config",
            str(upwatch_config),
            "--listen",
            f"127.0.0.1:{args.upwatch_port}",
            "--log-format",
            "json",
        ],
        "prometheus": [
            find_program("prometheus"),
            f"--config.file={prom_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--storage.tsdb.retention.time={args.retention}",
            f"--web.listen-address=127.0.0.1:{args.prometheus_port}",
            f"--web.external-url=http://127.0.0.1:{args.prometheus_port}/",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        "alertmanager": [
            find_program("prometheus-alertmanager", "alertmanager"),
            f"--config.file={am_dir / 'alertmanager.yml'}",
            f"--storage.path={work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{args.alertmanager_port}",
            f"--web.external-url=http://127.0.0.1:{args.alertmanager_port}/",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
    }


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
    parser.add_argument("--retention", default="35d", help="Prometheus retention; 30-day uptime needs more than 30d")
    parser.add_argument("--prometheus-override", help="YAML merged over prometheus.yml (tests: short intervals)")
    parser.add_argument("--alertmanager-override", help="YAML merged over alertmanager.yml (tests: short intervals)")
    parser.add_argument("--ready-file", help="write the URLs here as JSON once everything is ready")
    args = parser.parse_args()

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="upwatch-bundle-"))
    work.mkdir(parents=True, exist_ok=True)
    commands = prepare(args, work)
    ready_urls = {
        "upwatch": f"http://127.0.0.1:{args.upwatch_port}/-/ready",
        "alertmanager": f"http://127.0.0.1:{args.alertmanager_port}/-/ready",
        "prometheus": f"http://127.0.0.1:{args.prometheus_port}/-/ready",
    }
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("upwatch", "alertmanager", "prometheus"):  # Prometheus last: its targets are up
            log = (work / f"{name}.log").open("wb")
            # Alertmanager resolves *_file secret paths against its working directory (templates
            # against the config's folder), so it runs from its own folder.
            cwd = work / "alertmanager" if name == "alertmanager" else work
            procs[name] = subprocess.Popen(commands[name], stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
            wait_ready(name, ready_urls[name], procs[name])
        urls = {name: url.removesuffix("/-/ready") for name, url in ready_urls.items()}
        print(json.dumps({"workdir": str(work), **urls}), flush=True)
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({"workdir": str(work), **urls}))
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited with code {proc.returncode}; see {work / (name + '.log')}")
            time.sleep(0.2)
    finally:
        for name in ("prometheus", "alertmanager", "upwatch"):
            proc = procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main()
