"""A throwaway nginx for the benchmarks: HTTP and HTTPS (trustme CA) on free loopback ports, a tiny page and /sleep."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

NGINX = "/usr/sbin/nginx"
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")

_CONFIG = """\
worker_processes 1;
daemon off;
master_process off;
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{load_echo}
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{http_port} backlog=4096;
    listen 127.0.0.1:{https_port} ssl backlog=4096;
    ssl_certificate {prefix}/server.pem;
    ssl_certificate_key {prefix}/server.pem;
    location / {{ return 200 "ok\\n"; }}
    {sleep}
  }}
}}
"""


@dataclass(frozen=True)
class Nginx:
    """Where the running nginx answers."""

    pid: int
    http_port: int
    https_port: int
    ca_file: Path
    version: str

    @property
    def http_url(self) -> str:
        """The plain-HTTP page."""
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def https_url(self) -> str:
        """The HTTPS page."""
        return f"https://127.0.0.1:{self.https_port}/"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_version() -> str:
    """nginx's version string, e.g. 'nginx/1.22.1'."""
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=True)
    return out.stderr.strip().removeprefix("nginx version: ")


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on 127.0.0.1:port."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


@contextlib.contextmanager
def run_nginx(prefix: Path) -> Iterator[Nginx]:
    """Run one nginx process (no master) under `prefix` until the block ends; /sleep needs the echo module."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(prefix / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(prefix / "server.pem"))
    http_port, https_port = free_port(), free_port()
    has_echo = ECHO_MODULE.exists()
    (prefix / "nginx.conf").write_text(
        _CONFIG.format(
            prefix=prefix,
            http_port=http_port,
            https_port=https_port,
            load_echo=f"load_module {ECHO_MODULE};" if has_echo else "",
            sleep="location /sleep { echo_sleep 0.05; echo ok; }" if has_echo else "",
        )
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(http_port)
        wait_for_port(https_port)
        yield Nginx(proc.pid, http_port, https_port, prefix / "ca.pem", nginx_version())
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Terminate a child and wait; kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
