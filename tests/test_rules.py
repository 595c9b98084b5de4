"""The Prometheus side of the bundle: prometheus.yml, the rules, their promtool unit tests and the runbook.

promtool checks the config and the rules and runs the unit tests in rules/tests/; the rest
reads the YAML and holds it to the shared alerting spec: every alert has a severity, a
summary, a description, a runbook section and a dashboard; every recording rule is named
level:metric:operations; every alert and recording rule is exercised by a unit test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules"
RULE_TESTS = RULES / "tests"
RUNBOOK = REPO / "docs" / "runbook.md"

SPEC_RULE_FILES = ["host-alerts.yml", "host-recording.yml", "upwatch-alerts.yml", "upwatch-recording.yml"]
SEVERITIES = {"critical", "warning", "info"}
RECORD_NAME = re.compile(r"^[a-z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+$")
RUNBOOK_URL = "https://github.com/upwatch/upwatch/blob/main/docs/runbook.md#"
ENDPOINT_DASHBOARD = "http://localhost:3000/d/upwatch-endpoint/endpoint?var-endpoint={{ $labels.endpoint }}"
HOST_DASHBOARD = "http://localhost:3000/d/upwatch-host/host?var-instance={{ $labels.instance }}"
VANTAGE_DASHBOARD = "http://localhost:3000/d/upwatch-overview/overview?var-instance=$__all"
# EndpointDown keeps the endpoint's own severity label, defaulting to critical: the spec's
# expression for the per-agent rule, the same label_replace around the whole expression for the
# quorum rule.
# The per-agent EndpointDown reads the last sample of the last minute (an agent restarting must not resolve it).
SEVERITY_DEFAULT = re.compile(
    r'label_replace\(\s*last_over_time\(upwatch_endpoint_state\{state="down"\}\[1m\]\)\s*==\s*1\s*,'
    r'\s*"severity"\s*,\s*"critical"\s*,\s*"severity"\s*,\s*""\s*\)'
)
SEVERITY_DEFAULT_AROUND = re.compile(
    r'^label_replace\(.*,\s*"severity"\s*,\s*"critical"\s*,\s*"severity"\s*,\s*""\s*\)$', re.DOTALL
)
# How an alert about one endpoint gets its `url`: from the agent's upwatch_endpoint_info, or, for the
# alerts judged across vantages (no instance), from any one agent's. Compared with runs of
# whitespace as one space.
URL_JOINS = (
    "* on (job, instance, vantage, endpoint) group_left (url) "
    "topk by (job, instance, vantage, endpoint) (1, last_over_time(upwatch_endpoint_info[1m]))",
    "* on (job, instance, vantage, endpoint) group_left (url) upwatch_endpoint_info",
    "* ignoring (vantage, instance, job, shard, url, method) group_left (url) "
    "topk without (vantage, instance, job, shard, url, method) (1, last_over_time(upwatch_endpoint_info[1m]))",
)
JOBS = {
    "upwatch": ["host.docker.internal:9877"],
    "prometheus": ["prometheus:9090"],
    "alertmanager": ["alertmanager:9093", "alertmanager-2:9093"],  # the clustered pair
}
# Alerts about the agent as a whole, and about a vantage as a whole; every other alert of
# upwatch-alerts.yml is about one endpoint.
AGENT_ALERTS = {"UpwatchDown", "UpwatchConfigReloadFailed"}
VANTAGE_ALERTS = {"UpwatchVantageImpaired", "UpwatchVantageLost"}


def promtool() -> str:
    """The promtool program; fail (never skip) with how to get it when it is missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run scripts/test, which installs Debian's prometheus package")
    return path


def run_promtool(*args: str, cwd: Path = REPO) -> str:
    """Run promtool; fail with its whole output unless it exits 0."""
    proc = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited with {proc.returncode}:\n{output}"
    return output


def load(path: Path) -> Any:
    """One YAML file."""
    return yaml.safe_load(path.read_text())


def rule_files() -> list[Path]:
    """The rule files Prometheus loads (rules/*.yml)."""
    return sorted(RULES.glob("*.yml"))


def unit_test_files() -> list[Path]:
    """The promtool unit test files (rules/tests/*.yml)."""
    return sorted(RULE_TESTS.glob("*.yml"))


def rules() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every rule of every rule file, with the file's name."""
    for path in rule_files():
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                yield path.name, rule


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule (an alert name can have several rules, one per severity)."""
    return [rule for _, rule in rules() if "alert" in rule]


def endpoint_alerts() -> list[dict[str, Any]]:
    """The alerting rules about one endpoint."""
    return [
        r
        for f, r in rules()
        if f == "upwatch-alerts.yml" and "alert" in r and r["alert"] not in AGENT_ALERTS | VANTAGE_ALERTS
    ]


def records() -> list[dict[str, Any]]:
    """Every recording rule."""
    return [rule for _, rule in rules() if "record" in rule]


def runbook_anchors() -> set[str]:
    """The anchors GitHub gives the runbook's headings (lowercase, punctuation dropped, spaces to hyphens)."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if match := re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line):
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-"))
    return anchors


# promtool


def test_prometheus_config_is_valid() -> None:
    """promtool accepts prometheus.yml as committed, with its targets files and all four rule files."""
    output = run_promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 4 rule files found" in output, output


def test_prometheus_config_runs_from_a_copy_with_its_own_targets(tmp_path: Path) -> None:
    """A native run copies prometheus.yml and rules/ into a folder and writes loopback targets there."""
    shutil.copy(REPO / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(RULES, tmp_path / "rules")
    (tmp_path / "targets").mkdir()
    for port, job in enumerate(JOBS, start=19870):
        (tmp_path / "targets" / f"{job}.yml").write_text(f'- targets: ["127.0.0.1:{port}"]\n')
    output = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 4 rule files found" in output, output


def test_rules_are_valid() -> None:
    """promtool check rules passes on every rule file (syntax, PromQL, templates, duplicates)."""
    assert sorted(p.name for p in rule_files()) == SPEC_RULE_FILES
    run_promtool("check", "rules", *(str(p.relative_to(REPO)) for p in rule_files()))


@pytest.mark.parametrize("path", unit_test_files(), ids=lambda path: path.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    """promtool runs the unit test file and all of its tests pass."""
    output = run_promtool("test", "rules", str(path.relative_to(REPO)))
    assert "WARNING" not in output, output  # a rule_files pattern in a test file that matches nothing


# The rules against the spec


def test_every_alert_has_a_severity() -> None:
    """critical, warning or info in its labels; EndpointDown (and the single-site EndpointFlapping,
    which shares its notifications: the flap budget) take the endpoint's own, else critical."""
    problems = []
    for alert in alerts():
        name, labels = alert["alert"], alert.get("labels", {})
        if name == "EndpointDown" or (name == "EndpointFlapping" and "severity" not in labels):
            if "severity" in labels:
                problems.append("EndpointDown: severity must come from the endpoint's label, not the rule")
            if not (SEVERITY_DEFAULT.search(alert["expr"]) or SEVERITY_DEFAULT_AROUND.match(alert["expr"].strip())):
                problems.append(f"{name}: expression does not default severity to critical: {alert['expr']}")
        elif labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r} is not one of {sorted(SEVERITIES)}")
    assert not problems, "\n".join(problems)


def test_every_alert_has_its_annotations() -> None:
    """summary (one line), description, runbook_url to an existing runbook section, dashboard_url."""
    anchors = runbook_anchors()
    problems = []
    for alert in alerts():
        name, annotations = alert["alert"], alert.get("annotations", {})
        summary = annotations.get("summary", "")
        if not summary.strip() or "\n" in summary.strip():
            problems.append(f"{name}: summary must be one non-empty line, got {summary!r}")
        if not annotations.get("description", "").strip():
            problems.append(f"{name}: no description")
        if annotations.get("runbook_url") != RUNBOOK_URL + name.lower():
            problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r}, not {RUNBOOK_URL + name.lower()}")
        if name.lower() not in anchors:
            problems.append(f"{name}: docs/runbook.md has no heading {name!r} (anchor #{name.lower()})")
        if alert in endpoint_alerts():
            dashboard = ENDPOINT_DASHBOARD
        elif name in VANTAGE_ALERTS:
            dashboard = VANTAGE_DASHBOARD
        else:
            dashboard = HOST_DASHBOARD
        if annotations.get("dashboard_url") != dashboard:
            problems.append(f"{name}: dashboard_url {annotations.get('dashboard_url')!r}, not {dashboard!r}")
    assert not problems, "\n".join(problems)


def test_endpoint_alerts_carry_the_url() -> None:
    """Alerts about one endpoint join `url` from upwatch_endpoint_info and show it as an annotation."""
    problems = []
    for alert in endpoint_alerts():
        if not any(join in " ".join(alert["expr"].split()) for join in URL_JOINS):
            problems.append(f"{alert['alert']}: does not join url from upwatch_endpoint_info")
        if alert.get("annotations", {}).get("url") != "{{ $labels.url }}":
            problems.append(f"{alert['alert']}: no url annotation")
    assert not problems, "\n".join(problems)


def test_alerts_are_the_spec_ones() -> None:
    """Exactly the spec's alerts, severities and `for` durations (one rule per severity where it has two)."""
    found: dict[str, set[tuple[str, str]]] = {}
    for alert in alerts():
        severity = alert.get("labels", {}).get("severity", "endpoint's")
        found.setdefault(alert["alert"], set()).add((severity, alert.get("for", "none")))
    assert found == {
        "EndpointDown": {("endpoint's", "none")},
        "EndpointDownRegional": {("warning", "1m")},
        "EndpointDegraded": {("warning", "5m")},
        "EndpointFlapping": {("endpoint's", "none"), ("warning", "none")},
        "EndpointCertificateExpiring": {("warning", "none"), ("critical", "none")},
        "EndpointCertificateExpired": {("critical", "none")},
        "EndpointErrorBudgetBurn": {("warning", "none"), ("critical", "none")},
        "UpwatchProbesStalled": {("warning", "2m")},
        "UpwatchDown": {("critical", "1m")},
        "UpwatchConfigReloadFailed": {("warning", "5m")},
        "UpwatchVantageImpaired": {("warning", "2m")},
        "UpwatchVantageLost": {("warning", "1m")},
        "HostCpuHigh": {("warning", "5m"), ("critical", "5m")},
        "HostMemoryHigh": {("warning", "5m"), ("critical", "5m")},
        "HostFilesystemSpaceLow": {("warning", "5m"), ("critical", "5m")},
        "HostFilesystemFillingUp": {("critical", "1h")},
        "HostNetworkErrors": {("warning", "5m")},
        "HostDown": {("critical", "5m")},
    }


def test_every_recording_rule_is_named_level_metric_operations() -> None:
    """level:metric:operations, and the file a rule lives in matches what it records."""
    problems = [r["record"] for r in records() if not RECORD_NAME.match(r["record"])]
    assert not problems, f"recording rules not named level:metric:operations: {problems}"
    for file, rule in rules():
        if "record" in rule:
            assert file.endswith("-recording.yml"), f"{rule['record']} is recorded in {file}"


def test_every_alert_and_recording_rule_has_a_unit_test() -> None:
    """Each alert name is in some alert_rule_test, each record name in some promql_expr_test expression."""
    tested_alerts: set[str] = set()
    exprs: list[str] = []
    for path in unit_test_files():
        for group in load(path)["tests"]:
            tested_alerts |= {case["alertname"] for case in group.get("alert_rule_test", [])}
            exprs += [case["expr"] for case in group.get("promql_expr_test", [])]
    untested_alerts = sorted({a["alert"] for a in alerts()} - tested_alerts)
    untested_records = sorted(
        {
            r["record"]
            for r in records()
            if not any(re.search(rf"(?<![\w:]){re.escape(r['record'])}(?![\w:])", expr) for expr in exprs)
        }
    )
    assert not untested_alerts, f"alerts without a promtool test: {untested_alerts}"
    assert not untested_records, f"recording rules without a promtool test: {untested_records}"


def test_unit_test_files_load_existing_rule_files() -> None:
    """promtool only warns about a rule_files entry that matches nothing; here it is an error."""
    for path in unit_test_files():
        for pattern in load(path)["rule_files"]:
            assert sorted(path.parent.glob(pattern)), f"{path.name}: rule_files entry {pattern!r} matches nothing"


# prometheus.yml and targets


def test_prometheus_config_follows_the_spec() -> None:
    """15 s scrape and evaluation, the three jobs and the Alertmanagers from targets/, rules/*.yml."""
    config = load(REPO / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(JOBS)
    for name, job in jobs.items():
        assert job["file_sd_configs"] == [{"files": [f"targets/{name}.yml"]}], name
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["file_sd_configs"] == [{"files": ["targets/alertmanager.yml"]}]


@pytest.mark.parametrize(("job", "targets"), JOBS.items())
def test_committed_targets_are_the_compose_services(job: str, targets: list[str]) -> None:
    """targets/<job>.yml names the compose services (the host gateway for upwatch)."""
    assert load(REPO / "targets" / f"{job}.yml") == [{"targets": targets}]
