"""`upwatch serve --web.config.file` (exporter-toolkit's format) and `--web.enable-lifecycle`, on a real agent.

Each test starts `upwatch serve` as a process with real TLS material (trustme) and real bcrypt
hashes, and talks to it over the network as Prometheus, curl or a browser page would.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import structlog
import trustme
import yaml
from helpers import REPO, UPWATCH, free_port, program, running, stop, wait_for

from exporter.app import Agent
from exporter.source import ConfigSource
from exporter.web import WebAccess, WebConfigFile

# Cost 4, the lowest: the tests check passwords many times and the cost does not change the logic.
ALICE = "alice"
ALICE_PASSWORD = "correct horse"
ALICE_HASH = bcrypt.hashpw(ALICE_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
BOB_PASSWORD = "battery staple"
BOB_HASH = bcrypt.hashpw(BOB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
UPWATCH_CONFIG = "host: {enabled: false}\nendpoints: []\n"
HEADERS = {
    "X-Frame-Options": "deny",
    "X-Content-Type-Options": "nosniff",
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": "default-src 'none'",
    "X-XSS-Protection": "1",
}


@dataclass(frozen=True)
class Material:
    """The TLS files in one folder: the server's certificate and key, its CA, and client certificates."""

    folder: Path
    server_ca: trustme.CA
    client_ca: trustme.CA
    client: trustme.LeafCert  # issued by client_ca, SAN prometheus.example
    stranger: trustme.LeafCert  # issued by another CA


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    folder = tmp_path_factory.mktemp("tls")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(folder / "server.crt")
    server.private_key_pem.write_to_path(folder / "server.key")
    server_ca.cert_pem.write_to_path(folder / "server-ca.pem")
    client_ca.cert_pem.write_to_path(folder / "client-ca.pem")
    client = client_ca.issue_cert("prometheus.example")
    client.private_key_and_cert_chain_pem.write_to_path(folder / "client.pem")
    stranger = trustme.CA().issue_cert("prometheus.example")
    return Material(folder, server_ca, client_ca, client, stranger)


def client_context(material: Material, cert: trustme.LeafCert | None) -> ssl.SSLContext:
    """A client context trusting the server's CA, presenting `cert` when given."""
    ctx = ssl.create_default_context()
    material.server_ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


@dataclass
class Running:
    """A running `upwatch serve`: its process, base URL and JSON log."""

    proc: subprocess.Popen[str]
    base: str
    log: Path

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log events called `name` so far."""
        lines = self.log.read_text().splitlines()
        return [e for e in (json.loads(line) for line in lines if line.startswith("{")) if e["event"] == name]


@contextmanager
def serve(tmp_path: Path, web: str | None, *flags: str, client: httpx.Client | None = None) -> Iterator[Running]:
    """`upwatch serve` with `web` as its web config file (written next to the TLS files), ready for `client`."""
    config = tmp_path / "upwatch.yml"
    config.write_text(UPWATCH_CONFIG)
    args = [*UPWATCH, "serve", "--config", str(config), "--log-format", "json"]
    if web is not None:
        (tmp_path / "web.yml").write_text(web)
        args += ["--web.config.file", str(tmp_path / "web.yml")]
    port = free_port()
    scheme = "https" if web is not None and "tls_server_config" in web else "http"
    base = f"{scheme}://127.0.0.1:{port}"
    log = tmp_path / "upwatch.log"
    with log.open("w") as err:
        proc = subprocess.Popen([*args, "--listen", f"127.0.0.1:{port}", *flags], stderr=err, text=True)
    try:
        probe = client or httpx.Client()

        def ready() -> bool:
            assert proc.poll() is None, f"upwatch exited with {proc.returncode}:\n{log.read_text()}"
            try:
                return probe.get(f"{base}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("upwatch to be ready", ready, 30)
        yield Running(proc, base, log)
    finally:
        stop(proc)


def tls_web(material: Material, **extra: object) -> str:
    """A web config with the server's certificate and key, and `extra` keys of tls_server_config."""
    tls = {"cert_file": "server.crt", "key_file": "server.key", **extra}
    return yaml.safe_dump({"tls_server_config": tls})


def in_folder(material: Material, tmp_path: Path) -> Path:
    """A folder for one test's agent holding the TLS files (the web config names them relatively)."""
    for name in ("server.crt", "server.key", "client-ca.pem"):
        (tmp_path / name).write_bytes((material.folder / name).read_bytes())
    return tmp_path


def test_tls_with_client_certificates_verified_against_the_client_ca(tmp_path: Path, material: Material) -> None:
    folder = in_folder(material, tmp_path)
    web = tls_web(material, client_auth_type="RequireAndVerifyClientCert", client_ca_file="client-ca.pem")
    good = httpx.Client(verify=client_context(material, material.client))
    with serve(folder, web, client=good) as agent:
        resp = good.get(f"{agent.base}/metrics")
        assert resp.status_code == 200 and "upwatch_build_info" in resp.text
        assert resp.http_version == "HTTP/1.1"
        # No client certificate, or one from a CA the agent does not trust: the handshake fails (with TLS 1.3
        # the client learns it at its first read).
        for cert in (None, material.stranger):
            with pytest.raises(httpx.TransportError), httpx.Client(verify=client_context(material, cert)) as other:
                other.get(f"{agent.base}/metrics")
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(httpx.TransportError):
            httpx.get(agent.base.replace("https:", "http:") + "/metrics")
        (started,) = agent.events("upwatch started")
        assert started["tls"] is True


def test_tls_refuses_client_certificates_without_an_allowed_san(tmp_path: Path, material: Material) -> None:
    folder = in_folder(material, tmp_path)
    common = {"client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "client-ca.pem"}
    client = httpx.Client(verify=client_context(material, material.client))
    with serve(folder, tls_web(material, client_allowed_sans=["prometheus.example"], **common), client=client) as a:
        assert client.get(f"{a.base}/-/healthy").status_code == 200
    other = httpx.Client(verify=client_context(material, material.client_ca.issue_cert("other.example")))
    with serve(folder, tls_web(material, client_allowed_sans=["other.example"], **common), client=other) as a:
        assert other.get(f"{a.base}/-/healthy").status_code == 200
        with pytest.raises(httpx.TransportError):
            client.get(f"{a.base}/-/healthy")


def test_basic_auth_with_bcrypt_hashes_and_the_configured_headers(tmp_path: Path, material: Material) -> None:
    web = yaml.safe_dump(
        {"basic_auth_users": {ALICE: ALICE_HASH}, "http_server_config": {"headers": HEADERS}}, sort_keys=False
    )
    with serve(tmp_path, web, client=httpx.Client(auth=(ALICE, ALICE_PASSWORD))) as agent:
        url = f"{agent.base}/metrics"
        good = httpx.get(url, auth=(ALICE, ALICE_PASSWORD))
        assert good.status_code == 200 and "upwatch_build_info" in good.text
        for name, value in HEADERS.items():
            assert good.headers[name] == value
        for auth in [(ALICE, "wrong"), ("mallory", ALICE_PASSWORD), (ALICE, "x" * 100), None]:
            refused = httpx.get(url, auth=auth)
            assert refused.status_code == 401, auth
            assert refused.headers["www-authenticate"] == "Basic"
            assert refused.headers["x-frame-options"] == "deny"
            assert "upwatch_build_info" not in refused.text
        # Every path is behind it, the status page and the health checks too.
        for path in ("/", "/-/healthy", "/api/v1/endpoints"):
            assert httpx.get(f"{agent.base}{path}").status_code == 401
        assert httpx.get(f"{agent.base}/-/healthy", auth=(ALICE, ALICE_PASSWORD)).status_code == 200


def test_the_web_config_is_read_again_while_the_agent_runs(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    alice = httpx.Client(auth=(ALICE, ALICE_PASSWORD))
    with serve(tmp_path, yaml.safe_dump({"basic_auth_users": {ALICE: ALICE_HASH}}), client=alice) as agent:
        url = f"{agent.base}/-/healthy"
        assert httpx.get(url, auth=("bob", BOB_PASSWORD)).status_code == 401
        web.write_text(yaml.safe_dump({"basic_auth_users": {ALICE: ALICE_HASH, "bob": BOB_HASH}}))
        assert httpx.get(url, auth=("bob", BOB_PASSWORD)).status_code == 200
        # A file that turns bad fails closed, and says why in the log, once.
        web.write_text("basic_auth_users:\n  bob: hunter2\n")
        for _ in range(3):
            assert httpx.get(url, auth=("bob", BOB_PASSWORD)).status_code == 500
        (logged,) = agent.events("web config unusable; refusing requests until it is fixed")
        assert "web.yml:2:8: basic_auth_users.bob: not a bcrypt hash" in logged["problem"]
        assert "hunter2" not in agent.log.read_text()
        web.write_text(yaml.safe_dump({"basic_auth_users": {ALICE: ALICE_HASH}}))
        assert alice.get(url).status_code == 200


def test_rate_limit_refuses_requests_past_the_burst(tmp_path: Path) -> None:
    with serve(tmp_path, yaml.safe_dump({"rate_limit": {"interval": "1h", "burst": 5}})) as agent:
        # The readiness checks took a token or two: some 200s, then nothing but 429s.
        answers = [httpx.get(f"{agent.base}/-/healthy").status_code for _ in range(6)]
        assert answers[0] == 200 and answers[-1] == 429 and answers == sorted(answers), answers


def test_reload_over_http_is_off_without_the_lifecycle_flag_and_sighup_still_reloads(tmp_path: Path) -> None:
    with serve(tmp_path, None) as agent:
        for method in ("POST", "PUT"):
            refused = httpx.request(method, f"{agent.base}/-/reload")
            assert refused.status_code == 403
            assert "--web.enable-lifecycle" in refused.text
        assert not agent.events("config reloaded")
        agent.proc.send_signal(signal.SIGHUP)
        wait_for("the SIGHUP reload", lambda: agent.events("config reloaded"), 30)
        (started,) = agent.events("upwatch started")
        assert started["lifecycle_api"] is False


def test_reload_with_the_lifecycle_flag_refuses_other_origins_and_sends_no_cors(tmp_path: Path) -> None:
    with serve(tmp_path, None, "--web.enable-lifecycle") as agent:
        url = f"{agent.base}/-/reload"
        answers = [
            httpx.post(url),
            httpx.put(url),
            httpx.post(url, headers={"Origin": agent.base}),
            httpx.post(url, headers={"Origin": "http://evil.example"}),
            httpx.post(url, headers={"Origin": "null"}),
            httpx.post(url, headers={"Origin": agent.base.replace("127.0.0.1", "localhost")}),
            httpx.options(url, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 403, 403, 403, 405]
        for answer in answers:
            assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
        assert len(agent.events("config reloaded")) == 3


BAD_WEB_CONFIGS = [
    ("unknown-top-key", "basic_auth_user:\n  a: b\n", "1:1: basic_auth_user: unknown key 'basic_auth_user'"),
    (
        "unknown-tls-key",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_filse: x\n",
        "4:3: tls_server_config.cert_filse: unknown key 'cert_filse' (did you mean 'cert_file'?)",
    ),
    (
        "missing-key",
        "tls_server_config:\n  cert_file: server.crt\n",
        "2:3: tls_server_config: missing one of key or key_file",
    ),
    (
        "key-file-absent",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n",
        "3:13: tls_server_config.key_file: cannot read {folder}/nope.key: No such file or directory",
    ),
    (
        "key-not-matching",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: client-ca.pem\n",
        "2:14: tls_server_config.cert_file: the certificate and key do not load as a pair: not PEM text",
    ),
    (
        "client-auth-unknown",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Always\n",
        "4:21: tls_server_config.client_auth_type: invalid client_auth_type 'Always'; one of NoClientCert,",
    ),
    (
        "client-auth-unverified",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAnyClientCert\n",
        "4:21: tls_server_config.client_auth_type: RequireAnyClientCert (a client certificate accepted without",
    ),
    (
        "client-ca-without-policy",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: client-ca.pem\n",
        "4:19: tls_server_config.client_ca_file: a client CA is set but client_auth_type is NoClientCert",
    ),
    (
        "client-ca-empty",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /dev/null\n",
        "5:19: tls_server_config.client_ca_file: no CA certificate loads from it: no certificate in it",
    ),
    (
        "tls-version",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
        "4:16: tls_server_config.min_version: unknown TLS version 'TLS14'; one of TLS10, TLS11, TLS12, TLS13",
    ),
    (
        "versions-crossed",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS13\n  max_version: TLS12\n",
        "4:16: tls_server_config.min_version: min_version is above max_version",
    ),
    (
        "cipher",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA]\n",
        "4:58: tls_server_config.cipher_suites[1]: unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'",
    ),
    (
        "curve",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [CurveP999]\n",
        "4:23: tls_server_config.curve_preferences[0]: unknown curve 'CurveP999'",
    ),
    (
        "password-not-hash",
        "basic_auth_users:\n  john: doe\n",
        "2:9: basic_auth_users.john: not a bcrypt hash",
    ),
    (
        "header-not-allowed",
        "http_server_config:\n  headers:\n    Access-Control-Allow-Origin: '*'\n",
        "3:5: http_server_config.headers.Access-Control-Allow-Origin: unknown key 'Access-Control-Allow-Origin'",
    ),
    (
        "header-value",
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
        "3:29: http_server_config.headers.X-Content-Type-Options: invalid value 'sniff' for X-Content-Type-Options",
    ),
    ("http2-type", "http_server_config:\n  http2: maybe\n", "2:10: http_server_config.http2: must be true or false"),
    ("not-a-mapping", "- tls_server_config\n", "1:1: (root): the top level must be a mapping"),
    ("yaml", "basic_auth_users: [\n", "2:1: (root): invalid YAML"),
]


def with_web_config(material: Material, tmp_path: Path, text: str) -> tuple[Path, Path]:
    """A folder with the TLS files, an empty upwatch.yml and `text` as web.yml; the folder and web.yml."""
    folder = in_folder(material, tmp_path)
    (folder / "web.yml").write_text(text)
    (folder / "upwatch.yml").write_text(UPWATCH_CONFIG)
    return folder, folder / "web.yml"


def validate(folder: Path, web: Path, *more: str) -> subprocess.CompletedProcess[str]:
    """`upwatch validate` of the folder's upwatch.yml with `--web.config.file web`."""
    args = [str(folder / "upwatch.yml"), "--web.config.file", str(web), *more]
    return subprocess.run([*UPWATCH, "validate", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("name", "text", "expected"), BAD_WEB_CONFIGS, ids=[c[0] for c in BAD_WEB_CONFIGS])
def test_a_bad_web_config_stops_serve_with_file_line_and_key(
    tmp_path: Path, material: Material, name: str, text: str, expected: str
) -> None:
    folder, web = with_web_config(material, tmp_path, text)
    args = ["--config", str(folder / "upwatch.yml"), "--listen", "127.0.0.1:0", "--web.config.file", str(web)]
    done = subprocess.run(
        [*UPWATCH, "serve", *args, "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    printed = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert printed and printed[0].startswith(f"{web}:" + expected.format(folder=folder)), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("name", "text", "expected"), BAD_WEB_CONFIGS, ids=[c[0] for c in BAD_WEB_CONFIGS])
def test_validate_reports_a_bad_web_config_with_file_line_and_key(
    tmp_path: Path, material: Material, name: str, text: str, expected: str
) -> None:
    folder, web = with_web_config(material, tmp_path, text)
    done = validate(folder, web)
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0] == f"{folder / 'upwatch.yml'}: valid (0 endpoints)"
    assert lines[1].startswith(f"{web}:" + expected.format(folder=folder)), done.stdout
    assert "valid web config" not in done.stdout and "Traceback" not in done.stderr
    as_json = validate(folder, web, "--format", "json")
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and report["valid"] is False and report["files"][0]["valid"] is True
    assert report["web_config"]["file"] == str(web) and report["web_config"]["valid"] is False
    (problem,) = report["web_config"]["problems"][:1]
    assert f"{problem['line']}:{problem['column']}: {problem['location']}: " in lines[1]


def test_validate_says_what_a_good_web_config_sets_up(tmp_path: Path, material: Material) -> None:
    folder, web = with_web_config(material, tmp_path, "")
    cases = [
        ("", "plain HTTP, no basic auth"),
        (tls_web(material), "TLS, no basic auth"),
        (
            yaml.safe_dump(
                {
                    "tls_server_config": {
                        "cert_file": "server.crt",
                        "key_file": "server.key",
                        "client_auth_type": "RequireAndVerifyClientCert",
                        "client_ca_file": "client-ca.pem",
                    },
                    "basic_auth_users": {ALICE: ALICE_HASH, "bob": BOB_HASH},
                    "http_server_config": {"headers": HEADERS},
                }
            ),
            "TLS, RequireAndVerifyClientCert, 2 basic auth users, 5 response headers",
        ),
    ]
    for text, summary in cases:
        web.write_text(text)
        done = validate(folder, web)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[-1] == f"{web}: valid web config ({summary})"
    # A web config naming a TLS file that is gone is refused, as serve would refuse it.
    (folder / "server.key").unlink()
    web.write_text(tls_web(material))
    done = validate(folder, web)
    assert done.returncode == 1 and "tls_server_config.key_file" in done.stdout, done.stdout
    missing = validate(folder, folder / "nope.yml")
    assert missing.returncode == 1 and "cannot read the web config file" in missing.stdout, missing.stdout


def test_an_empty_web_config_serves_plain_http_without_auth(tmp_path: Path) -> None:
    with serve(tmp_path, "") as agent:
        assert httpx.get(f"{agent.base}/metrics").status_code == 200


def test_prometheus_scrapes_the_agent_over_tls_with_basic_auth_and_a_client_certificate(
    tmp_path: Path, material: Material
) -> None:
    folder = in_folder(material, tmp_path)
    material.client.private_key_pem.write_to_path(folder / "client.key")
    material.client.cert_chain_pems[0].write_to_path(folder / "client.crt")
    (folder / "server-ca.pem").write_bytes((material.folder / "server-ca.pem").read_bytes())
    web = yaml.safe_dump(
        {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "server.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "client-ca.pem",
            },
            "basic_auth_users": {ALICE: ALICE_HASH},
        }
    )
    client = httpx.Client(verify=client_context(material, material.client), auth=(ALICE, ALICE_PASSWORD))
    with serve(folder, web, client=client) as agent:
        target = agent.base.removeprefix("https://")
        prometheus_config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "upwatch",
                    "scheme": "https",
                    "basic_auth": {"username": ALICE, "password": ALICE_PASSWORD},
                    "tls_config": {
                        "ca_file": str(folder / "server-ca.pem"),
                        "cert_file": str(folder / "client.crt"),
                        "key_file": str(folder / "client.key"),
                    },
                    "static_configs": [{"targets": [target]}],
                },
                {
                    # The same target without the password: Prometheus sees it down.
                    "job_name": "no-password",
                    "scheme": "https",
                    "tls_config": {
                        "ca_file": str(folder / "server-ca.pem"),
                        "cert_file": str(folder / "client.crt"),
                        "key_file": str(folder / "client.key"),
                    },
                    "static_configs": [{"targets": [target]}],
                },
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
        port = free_port()
        args = [
            program("prometheus"),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with running(args, f"http://127.0.0.1:{port}/-/ready"):

            def up() -> dict[str, float]:
                result = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}).json()
                return {r["metric"]["job"]: float(r["value"][1]) for r in result["data"]["result"]}

            wait_for("both scrapes to have run", lambda: len(up()) == 2, 60)
            assert up() == {"upwatch": 1.0, "no-password": 0.0}
            query = {"query": 'upwatch_build_info{job="upwatch"}'}
            wait_for(
                "the agent's own metrics in Prometheus",
                lambda: httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params=query).json()["data"]["result"],
                60,
            )
            targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets").json()["data"]["activeTargets"]
            refused = next(t for t in targets if t["labels"]["job"] == "no-password")
            assert "401" in refused["lastError"]


def test_the_example_web_config_serves_once_uncommented(tmp_path: Path, material: Material) -> None:
    example = (REPO / "web-config.example.yml").read_text()
    assert not yaml.safe_load(example)  # as committed, all commented out: plain HTTP, as with no file
    _, block = example.split("\n\n", 1)  # the settings, after the opening paragraph
    text = "\n".join(line[2:] if line.startswith("# ") else line.removeprefix("#") for line in block.splitlines())
    placeholder = re.search(r"\$2b\$10\$REPLACE\S+", text)
    assert placeholder is not None
    text = text.replace(placeholder.group(), ALICE_HASH)  # the operator's own hash
    (tmp_path / "tls").mkdir()
    for name, source in (
        ("upwatch.crt", "server.crt"),
        ("upwatch.key", "server.key"),
        ("prometheus-ca.crt", "client-ca.pem"),
    ):
        (tmp_path / "tls" / name).write_bytes((material.folder / source).read_bytes())
    client = httpx.Client(verify=client_context(material, material.client), auth=("prometheus", ALICE_PASSWORD))
    with serve(tmp_path, text, client=client) as agent:
        resp = client.get(f"{agent.base}/metrics")
        assert resp.status_code == 200 and resp.headers["x-frame-options"] == "deny"
        assert client.get(f"{agent.base}/metrics", auth=("prometheus", "wrong")).status_code == 401


async def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    tmp_path: Path, material: Material
) -> None:
    # In-process, on asyncio's own event loop (`serve` above runs on uvloop): both make each TLS
    # connection with the context in force when it arrives.
    folder = in_folder(material, tmp_path)
    (folder / "web.yml").write_text(tls_web(material))
    (folder / "upwatch.yml").write_text(UPWATCH_CONFIG)
    log = structlog.get_logger()
    access = WebAccess(WebConfigFile.open(folder / "web.yml", log), log)
    agent = Agent(source=ConfigSource(folder / "upwatch.yml", True), listen=("127.0.0.1", 0), log=log, access=access)
    await agent.start()
    try:
        host, port = agent.server.addresses[0]
        url = f"https://{host}:{port}/-/healthy"
        async with httpx.AsyncClient(verify=client_context(material, None)) as old:
            assert (await old.get(url)).status_code == 200
        renewed_ca = trustme.CA()
        renewed = renewed_ca.issue_cert("127.0.0.1")
        renewed.cert_chain_pems[0].write_to_path(folder / "server.crt")
        renewed.private_key_pem.write_to_path(folder / "server.key")
        trusting = ssl.create_default_context()
        renewed_ca.configure_trust(trusting)
        async with httpx.AsyncClient(verify=trusting) as new:
            assert (await new.get(url)).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            async with httpx.AsyncClient(verify=client_context(material, None)) as old:
                await old.get(url)
    finally:
        await agent.stop()
