"""Shared test helpers: free ports, real programs started on loopback, waiting for them, and alert receivers."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

REPO = Path(__file__).resolve().parent.parent
UPWATCH = [sys.executable, "-m", "exporter"]


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Terminate a running child and reap it (draining its pipes, if any); kill it if it lingers past `timeout`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (see free_ports)."""
    return free_ports(1)


def _planned_ports() -> tuple[int, int]:
    # Below the kernel's ephemeral range: ports it never gives to a connection's source side on its
    # own, so a port planned here is not taken by some client (a probe, a scrape) before the program
    # meant to listen on it starts. That race once failed a test that started nine agents in turn.
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 10_000, max(low, 10_100)


def program(name: str) -> str:
    """The path of a program the tests need; fail (never skip) with how to get it when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test, which installs the Debian packages the tests need")
    return path


def wait_until_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30.0, log: Path | None = None) -> None:
    """Poll an HTTP URL until it answers 200; fail with the process's output if it dies or never does."""

    def output() -> str:
        out, err = proc.communicate()
        return f"{out}\n{err if log is None else log.read_text()}"

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{output()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{url} not ready after {timeout}s:\n{output()}")


@contextmanager
def running(
    args: Sequence[str], ready_url: str, *, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run a program until the block ends; it must answer `ready_url` first.

    Its stderr goes to the file `log` when given (to be read while it runs), else to a pipe.
    """
    with contextlib.ExitStack() as stack:
        stderr: Any = stack.enter_context(log.open("w")) if log is not None else subprocess.PIPE
        proc = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        try:
            wait_until_ready(ready_url, proc, log=log)
            yield proc
        finally:
            stop(proc)


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str, timeout: float = 10) -> tuple[dict[str, str], Samples]:
    """Family types (by family name) and sample values (by sample name, then sorted labels) of a /metrics page."""
    text = httpx.get(url, timeout=timeout).text
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return types, samples


def wait_for(what: str, predicate: Callable[[], object], timeout: float) -> None:
    """Poll until `predicate()` is true; fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free now, below the ephemeral range."""
    low, high = _planned_ports()
    for _ in range(200):
        base = random.randrange(low, high - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")


@dataclass(frozen=True)
class NativeBundle:
    """A running scripts/bundle.py: its URLs and ports, and every program's URL and pid by name."""

    prometheus: str
    alertmanager: str
    upwatch: str
    ports: dict[str, int]
    urls: dict[str, str]
    pids: dict[str, int]
    workdir: Path


@contextmanager
def native_bundle(
    tmp: Path,
    *,
    upwatch_config: Path,
    secrets: Path | None = None,
    prometheus_override: dict[str, Any] | None = None,
    alertmanager_override: dict[str, Any] | None = None,
    alertmanagers: int = 1,
    vantages: Sequence[str] = (),
    shards: int = 1,
) -> Iterator[NativeBundle]:
    """Run the whole bundle with scripts/bundle.py on free loopback ports, with test-only overrides.

    With `alertmanagers` of 2 or more they form one gossip cluster, on consecutive ports (web and
    gossip) from two free ones; Prometheus sends to each. With `vantages`, each gets `shards` agents
    and a Prometheus agent that remote-writes to the central Prometheus (consecutive ports too).
    """
    program("prometheus")
    program("prometheus-alertmanager")
    options: list[str] = []
    for name, data in (("prometheus", prometheus_override), ("alertmanager", alertmanager_override)):
        if data is not None:
            (tmp / f"{name}-override.yml").write_text(yaml.safe_dump(data))
            options += [f"--{name}-override", str(tmp / f"{name}-override.yml")]
    agents = max(1, len(vantages)) * shards
    ports = {
        "upwatch": free_ports(agents) if agents > 1 else free_port(),
        "prometheus": free_ports(1 + len(vantages)) if vantages else free_port(),
        "alertmanager": free_ports(alertmanagers) if alertmanagers > 1 else free_port(),
    }
    if alertmanagers > 1:
        options += ["--alertmanagers", str(alertmanagers), "--cluster-port", str(free_ports(alertmanagers))]
    if vantages:
        options += ["--vantages", ",".join(vantages)]
    if shards > 1:
        options += ["--shards", str(shards)]
    if secrets is not None:
        options += ["--secrets", str(secrets)]
    ready = tmp / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "bundle.py"),
            "--workdir",
            str(tmp / "work"),
            "--upwatch-config",
            str(upwatch_config),
            *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
            "--ready-file",
            str(ready),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("the bundle to start", lambda: ready.exists() or proc.poll() is not None, 120)
        if proc.poll() is not None:
            out, err = proc.communicate()
            logs = "\n".join(p.read_text()[-3000:] for p in (tmp / "work").glob("*.log"))
            pytest.fail(f"scripts/bundle.py exited {proc.returncode}:\n{out}\n{err}\n{logs}")
        report = json.loads(ready.read_text())
        pids = report.pop("pids")
        workdir = Path(report.pop("workdir"))
        first_agent = next(name for name in report if name.startswith("upwatch"))
        yield NativeBundle(
            prometheus=report["prometheus"],
            alertmanager=report["alertmanager"],
            upwatch=report[first_agent],
            ports=ports,
            urls=report,
            pids=pids,
            workdir=workdir,
        )
    finally:
        stop(proc, timeout=30)


@dataclass
class Inbox:
    """What the fake Slack and the SMTP server received, with arrival times."""

    slack: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    mail: list[tuple[float, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def slack_about(self, alertname: str) -> list[tuple[float, dict[str, Any]]]:
        """The Slack messages that name the alert, in arrival order."""
        with self.lock:
            return [(t, m) for t, m in self.slack if alertname in json.dumps(m)]

    def mail_about(self, alertname: str) -> list[tuple[float, EmailMessage]]:
        """The emails that name the alert, in arrival order."""
        with self.lock:
            return [(t, m) for t, m in self.mail if alertname in m["Subject"] + mail_body(m)]


def mail_body(message: EmailMessage) -> str:
    """An email's HTML (or else plain) body."""
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content() if part is not None else ""


def resolved(payload: dict[str, Any]) -> bool:
    """Whether a Slack message reports the group as all resolved (the template colours it "good")."""
    return any(a.get("color") == "good" for a in payload.get("attachments", []))


class _MailHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.inbox.lock:
            self.inbox.mail.append((time.monotonic(), message))
        return "250 OK"


@dataclass(frozen=True)
class Receivers:
    """A fake Slack (on `web`, which tests may give more routes) and an SMTP server, and the secrets that reach them."""

    inbox: Inbox
    web: HTTPServer
    smtp_port: int
    secrets: Path
    smtp_password: str


def fast_alerting(receivers: Receivers, group_interval: float) -> dict[str, Any]:
    """native_bundle keywords for alert-path tests: the receivers' secrets and SMTP server, scrapes and
    rule evaluations every 500 ms, a group_wait of 1 s and this group_interval (the shipped file: 5m)."""
    return {
        "secrets": receivers.secrets,
        "prometheus_override": {
            "global": {"scrape_interval": "500ms", "scrape_timeout": "500ms", "evaluation_interval": "500ms"}
        },
        "alertmanager_override": {
            "global": {"smtp_smarthost": f"127.0.0.1:{receivers.smtp_port}", "smtp_require_tls": False},
            "route": {"group_wait": "1s", "group_interval": f"{group_interval:g}s", "repeat_interval": "1h"},
        },
    }


@contextmanager
def alert_receivers(tmp: Path, smtp_password: str = "smtp-secret-from-file") -> Iterator[Receivers]:
    """Slack's webhook on a pytest-httpserver and an aiosmtpd server (PLAIN login with `smtp_password`), on loopback.

    `secrets` is a folder for scripts/bundle.py --secrets: the webhook URL and the SMTP password.
    """
    inbox = Inbox()
    web = HTTPServer(host="127.0.0.1", port=free_port())

    def slack(req: Request) -> Response:
        with inbox.lock:
            inbox.slack.append((time.monotonic(), json.loads(req.get_data())))
        return Response("ok")

    web.expect_request("/slack-webhook", method="POST").respond_with_handler(slack)
    web.start()

    def authenticate(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            with inbox.lock:
                inbox.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=data.password.decode() == smtp_password)
        return AuthResult(success=False)

    smtp_port = free_port()
    smtp = Controller(
        _MailHandler(inbox),
        hostname="127.0.0.1",
        port=smtp_port,
        authenticator=authenticate,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],  # Alertmanager authenticates with PLAIN
    )
    smtp.start()
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack_webhook_url").write_text(web.url_for("/slack-webhook") + "\n")
    (secrets / "smtp_password").write_text(smtp_password)  # Alertmanager uses the file byte for byte
    try:
        yield Receivers(inbox=inbox, web=web, smtp_port=smtp_port, secrets=secrets, smtp_password=smtp_password)
    finally:
        smtp.stop()
        web.clear()
        web.stop()


NGINX_ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")

_NGINX_CONF = """\
load_module {echo_module};
{user}
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
        location /sleep {{ default_type text/plain; echo_sleep 0.05; echo ok; }}
        location /hang {{ default_type text/plain; echo_sleep $arg_seconds; echo ok; }}
    }}
}}
"""


@dataclass(frozen=True)
class Nginx:
    """A running nginx: `/` answers 200 "ok" at once, `/sleep` after 50 ms, `/hang?seconds=N` after N seconds."""

    port: int

    def url(self, path: str = "/") -> str:
        """The URL of a path on it."""
        return f"http://127.0.0.1:{self.port}{path}"


def _answers(server: Nginx, proc: subprocess.Popen[bytes], timeout: float = 10) -> bool:
    """Whether the server answers before `timeout`, while its process lives."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            return httpx.get(server.url("/"), timeout=1).text == "ok\n"
        except httpx.TransportError:
            time.sleep(0.05)
    return False


@contextmanager
def nginx(prefix: Path) -> Iterator[Nginx]:
    """Debian's nginx-light (with its echo module) on a free loopback port, its files under `prefix`.

    A healthy target that keeps up with hundreds of probes a second and has a known latency,
    running outside the test process (a server in the test process would be the bottleneck).
    """
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin") or program("nginx")
    if not NGINX_ECHO_MODULE.exists():
        pytest.fail(f"{NGINX_ECHO_MODULE} is missing: run scripts/test, which installs nginx-light")
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # the free port may be taken by someone else before nginx binds it
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                echo_module=NGINX_ECHO_MODULE,
                # As root, nginx would run its worker as "nobody", who cannot write the temp folder.
                user="user root;" if os.geteuid() == 0 else "",
                prefix=prefix,
                port=port,
            )
        )
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Nginx(port)
        if _answers(server, proc):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"nginx did not start:\n{(prefix / 'error.log').read_text()}")
    try:
        yield server
    finally:
        stop(proc)


# -- upwatch serve with probe workers ---------------------------------------------------------------

DEADLINE = 60.0  # seconds to wait for any one condition: generous, for a loaded test machine


@dataclass
class Served:
    """A running `upwatch serve`: its process, base URL and JSON log file."""

    proc: Any
    base: str
    log: Path

    def metrics(self, timeout: float = 10) -> Samples:
        """The samples of /metrics now."""
        return scrape(f"{self.base}/metrics", timeout)[1]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log events called `name` so far."""
        lines = self.log.read_text().splitlines()
        return [e for e in (json.loads(line) for line in lines if line.startswith("{")) if e["event"] == name]

    def workers(self) -> dict[str, int]:
        """Child processes named upwatch-probeN, name -> pid, read from /proc."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                comm = (entry / "comm").read_text().strip()
            except OSError:  # gone meanwhile
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == self.proc.pid and comm.startswith("upwatch-probe") and fields[0] != "Z":
                found[comm] = int(entry.name)
        return found


def endpoint_yaml(name: str, url: str, interval: str = "1s", timeout: str = "900ms", **extra: str) -> str:
    """One endpoint as a line of YAML."""
    more = "".join(f", {k}: {v}" for k, v in extra.items())
    return f"  - {{name: {name}, url: '{url}', interval: {interval}, timeout: {timeout}{more}}}\n"


def write_upwatch_config(path: Path, endpoints: list[str], workers: int = 2) -> None:
    """A config of these endpoints (from `endpoint_yaml`), probed by `workers` processes, host metrics off."""
    path.write_text(f"workers: {workers}\nhost: {{enabled: false}}\nendpoints:\n" + "".join(endpoints))


@contextmanager
def serve_upwatch(tmp_path: Path, config: Path, log_level: str = "info", flags: Sequence[str] = ()) -> Iterator[Served]:
    """`upwatch serve` (with more `flags`) on a free loopback port with JSON logs in a file, until the block ends."""
    port = free_port()
    log = tmp_path / "upwatch.log"
    args = [*UPWATCH, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--log-format", "json"]
    args += ["--log-level", log_level, *flags]
    with running(args, f"http://127.0.0.1:{port}/-/ready", log=log) as proc:
        yield Served(proc, f"http://127.0.0.1:{port}", log)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value, 0 when absent."""
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def probes(samples: Samples, endpoint: str, result: str = "success") -> float:
    """How many probes of `endpoint` had `result`."""
    return value(samples, "upwatch_probes_total", endpoint=endpoint, result=result)


def failures(samples: Samples) -> float:
    """Failed probes of every endpoint."""
    return sum(v for k, v in samples.get("upwatch_probes_total", {}).items() if ("result", "failure") in k)


def all_probed(agent: Served, names: list[str], at_least: float = 1, than: Samples | None = None) -> bool:
    """Whether every named endpoint has `at_least` more good probes than in `than` (or in all)."""
    samples = agent.metrics()
    return all(probes(samples, n) >= at_least + (probes(than, n) if than else 0) for n in names)
