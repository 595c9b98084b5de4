"""Grafana: the provisioning files and the dashboards in grafana/.

Three layers of checks:

- Structure: valid JSON, the four fixed uids and titles, unique panel ids (rows' nested panels
  included), every datasource the provisioned uid or the dashboard's `datasource` variable (never
  a name), the variables, units and descriptions, `$__rate_interval` in rate()s, recording rules
  that exist, and the dashboard links the alert annotations point at.
- Grafana's own published types: every dashboard is pasted as an object literal into a TypeScript
  file and assigned to `@grafana/schema`'s `Dashboard` type (Grafana's dashboard types, pinned in
  package.json to the Grafana release compose.yaml runs), and a second time to that type
  narrowed with Grafana's published per-panel types: each panel's `options` and
  `fieldConfig.defaults.custom` against its panel plugin's `Options` and `FieldConfig` from
  `@grafana/schema`, and each query against the Prometheus query type of
  `@grafana/grafana-foundation-sdk`. `tsc --strict` then rejects wrong types, unknown keys
  (excess-property checks on literals), missing required keys and unknown enum values. The only
  liberty taken: TypeScript enums are read as the union of their values, since JSON has no enums.
  `test_type_check_rejects_broken_dashboards` proves the check fails on broken copies.
- A real Prometheus: the whole bundle (scripts/bundle.py: upwatch with host metrics, Prometheus
  with the repository's rules, Alertmanager) runs on loopback with second-long intervals, probing
  a healthy HTTP endpoint and an HTTPS one that goes down; every panel query and variable query,
  with Grafana's variables substituted, must be accepted by /api/v1/query and return data, except
  the few listed in EMPTY_ALLOWED with their reason.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from helpers import REPO, free_port, native_bundle, program, wait_for
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCE_UID = "upwatch-prometheus"
DATASOURCE_VARIABLE = "${datasource}"
# uid -> (file, title)
EXPECTED = {
    "upwatch-overview": ("overview.json", "upwatch / Overview"),
    "upwatch-endpoint": ("endpoint.json", "upwatch / Endpoint"),
    "upwatch-host": ("host.json", "upwatch / Host"),
    "upwatch-alerts": ("alerts.json", "upwatch / Alerts and incidents"),
}
# The variables each dashboard must have, and whether they take several values.
VARIABLES = {
    "upwatch-overview": {"job": True, "instance": True, "endpoint": True},
    "upwatch-endpoint": {"job": True, "instance": True, "endpoint": False},
    "upwatch-host": {"job": True, "instance": False},
    "upwatch-alerts": {"job": True, "instance": True, "endpoint": True},
}
# The dashboard schema version of the Grafana release compose.yaml runs (12.4).
SCHEMA_VERSION = 42
# Range selectors in panel queries: Grafana's own windows only; fixed windows belong in recording rules.
RANGE_SELECTOR = re.compile(r"\[([^\]]*)\]")
GRAFANA_WINDOWS = {"$__rate_interval", "$__range"}
RECORDING_RULE = re.compile(r"\b[a-z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+\b")
LONG_WINDOW_RULE = re.compile(r"\b[a-z_]+:[a-zA-Z0-9_]+:[a-z0-9_]*?(1d|3d|7d|30d)\b")

LONG_RULE = (
    "long-window recording rule (1d/7d/30d): its group is evaluated every 2 minutes at an offset "
    "Prometheus picks, so a Prometheus started seconds ago may not have evaluated it yet"
)
# Panel queries that may come back empty in the test bundle, by (dashboard uid, panel title, refId).
EMPTY_ALLOWED: dict[tuple[str, str, str], str] = {
    ("upwatch-overview", "Endpoints", "B"): LONG_RULE,
    ("upwatch-overview", "Endpoints", "C"): LONG_RULE,
    ("upwatch-overview", "Endpoints", "D"): LONG_RULE,
    ("upwatch-overview", "Endpoints", "F"): LONG_RULE,
    ("upwatch-overview", "Endpoints", "H"): LONG_RULE,
    ("upwatch-endpoint", "Availability 24h", "A"): LONG_RULE,
    ("upwatch-endpoint", "Availability 30d", "A"): LONG_RULE,
    ("upwatch-endpoint", "Error budget left (30d)", "A"): LONG_RULE,
    ("upwatch-alerts", "MTTR (30 days)", "A"): LONG_RULE,
    ("upwatch-alerts", "Incidents per endpoint per day", "A"): LONG_RULE,
    ("upwatch-alerts", "Incidents and recovery per endpoint", "A"): LONG_RULE,
    ("upwatch-alerts", "Incidents and recovery per endpoint", "B"): LONG_RULE,
    ("upwatch-alerts", "Incidents and recovery per endpoint", "C"): LONG_RULE,
    ("upwatch-alerts", "Incidents and recovery per endpoint", "E"): LONG_RULE,
    ("upwatch-alerts", "Incidents and recovery per endpoint", "G"): LONG_RULE,
    ("upwatch-alerts", "Incidents and recovery per endpoint", "H"): LONG_RULE,
}
# The endpoint the query test selects: HTTPS, with an SLO, and down (so alerts and incidents exist).
FAILING_ENDPOINT = "payments"


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def by_uid() -> dict[str, dict[str, Any]]:
    """The dashboards by uid."""
    return {d["uid"]: d for d in dashboards().values()}


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels nested in collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def query_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that show data (every panel but rows)."""
    return (p for p in all_panels(dashboard) if p["type"] != "row")


@dataclass(frozen=True)
class Query:
    """One panel target."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dashboard, self.panel, self.ref)


def queries(uid: str | None = None) -> list[Query]:
    """Every panel query (of one dashboard)."""
    return [
        Query(d["uid"], panel["title"], t["refId"], t["expr"])
        for d in dashboards().values()
        if uid is None or d["uid"] == uid
        for panel in query_panels(d)
        for t in panel["targets"]
    ]


def recording_rules() -> set[str]:
    """Names recorded by rules/*.yml."""
    return {
        rule["record"]
        for path in sorted((REPO / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


# --- structure ---------------------------------------------------------------------------------


def test_dashboards_are_the_four_with_their_uids_and_titles() -> None:
    found = dashboards()
    assert sorted(found) == sorted(file for file, _ in EXPECTED.values())
    uids = [d["uid"] for d in found.values()]
    assert len(uids) == len(set(uids)), f"duplicate uids: {uids}"
    for uid, (file, title) in EXPECTED.items():
        assert found[file]["uid"] == uid
        assert found[file]["title"] == title
        assert found[file]["id"] is None, "provisioned dashboards carry no instance-specific id"


@pytest.mark.parametrize("file", sorted(file for file, _ in EXPECTED.values()))
def test_panel_ids_are_unique_and_positions_valid(file: str) -> None:
    dashboard = dashboards()[file]
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"{file}: duplicate panel ids {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in all_panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, f"{file}: {panel['title']} off the grid"


def _datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every `datasource` value anywhere in a dashboard, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.datasource", value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{i}]")


@pytest.mark.parametrize("file", sorted(file for file, _ in EXPECTED.values()))
def test_datasources_are_the_provisioned_uid_or_the_variable(file: str) -> None:
    dashboard = dashboards()[file]
    allowed = {DATASOURCE_UID, DATASOURCE_VARIABLE}
    for panel in query_panels(dashboard):
        refs = [("panel", panel.get("datasource"))] + [(t["refId"], t.get("datasource")) for t in panel["targets"]]
        assert panel["targets"], f"{file}: {panel['title']} has no query"
        for where, ref in refs:
            assert isinstance(ref, dict), f"{file}: {panel['title']} ({where}) names no datasource by uid: {ref!r}"
            assert ref.get("type") == "prometheus" and ref.get("uid") in allowed, f"{file}: {panel['title']} {ref}"
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # Grafana's own annotations, on every dashboard
    for where, ref in _datasource_refs(dashboard):
        assert isinstance(ref, dict), f"{file}{where}: a datasource given by name ({ref!r})"
        assert ref == builtin or ref.get("uid") in allowed, f"{file}{where}: {ref}"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert "current" not in datasource, "the default data source (the provisioned one) is the default choice"


@pytest.mark.parametrize("uid", sorted(VARIABLES))
def test_variables(uid: str) -> None:
    variables = {v["name"]: v for v in by_uid()[uid]["templating"]["list"]}
    for name, multi in VARIABLES[uid].items():
        v = variables[name]
        assert v["type"] == "query"
        assert re.fullmatch(r"label_values\(.+, " + name + r"\)", v["query"]), v["query"]
        assert v["datasource"] == {"type": "prometheus", "uid": DATASOURCE_VARIABLE}
        assert v["refresh"] == 2, "refreshed on time range change: endpoints come and go with reloads"
        assert v["multi"] is multi and v["includeAll"] is multi
        if multi:
            # Any value, also none: host alerts have no endpoint label and must show under All.
            assert v["allValue"] == ".*"
    for name, v in variables.items():
        assert name == "datasource" or v.get("description"), f"{uid}: variable {name} has no description"


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_dashboard_settings(uid: str) -> None:
    dashboard = by_uid()[uid]
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert dashboard["refresh"] == "30s"
    assert dashboard["time"]["to"] == "now" and dashboard["time"]["from"].startswith("now-")
    assert "upwatch" in dashboard["tags"]
    assert dashboard["description"]


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_panels_have_descriptions_units_and_grafana_windows(uid: str) -> None:
    dashboard = by_uid()[uid]
    problems = []
    for panel in query_panels(dashboard):
        title = panel["title"]
        if not panel.get("description"):
            problems.append(f"{title}: no description")
        if not panel["fieldConfig"]["defaults"].get("unit"):
            problems.append(f"{title}: no unit")
        refs = [t["refId"] for t in panel["targets"]]
        if len(refs) != len(set(refs)):
            problems.append(f"{title}: duplicate refIds {refs}")
        for t in panel["targets"]:
            for window in RANGE_SELECTOR.findall(t["expr"]):
                if window not in GRAFANA_WINDOWS:
                    problems.append(f"{title} {t['refId']}: range [{window}] (use $__rate_interval or $__range)")
    assert not problems, "\n".join(problems)


def test_recording_rules_used_exist() -> None:
    recorded = recording_rules()
    used = {name for q in queries() for name in RECORDING_RULE.findall(q.expr)}
    assert used, "the dashboards use the recording rules"
    assert not used - recorded, f"not recorded by rules/*.yml: {sorted(used - recorded)}"


def test_alert_dashboard_links_point_at_dashboards_and_variables() -> None:
    dashboards_by_uid = by_uid()
    links = [
        rule["annotations"]["dashboard_url"]
        for path in sorted((REPO / "rules").glob("*alerts.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "dashboard_url" in rule.get("annotations", {})
    ]
    assert links
    for url in links:
        match = re.search(r"/d/([^/?]+)/[^?]*\?var-(\w+)=", url)
        assert match, url
        uid, variable = match.groups()
        assert uid in dashboards_by_uid, url
        names = {v["name"] for v in dashboards_by_uid[uid]["templating"]["list"]}
        assert variable in names, f"{url}: no variable {variable} in {uid}"


def test_empty_allowed_lists_only_long_window_queries() -> None:
    # Each exception must name a real query, and one that reads a long-window rule.
    by_key = {q.key: q for q in queries()}
    for key in EMPTY_ALLOWED:
        assert key in by_key, f"EMPTY_ALLOWED names no query: {key}"
        assert LONG_WINDOW_RULE.search(by_key[key].expr), f"{key} reads no long-window rule: {by_key[key].expr}"


# --- provisioning ------------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"
    assert source["isDefault"] is True
    # $__rate_interval is at least 4 x this: it must be the scrape interval of prometheus.yml.
    scrape = yaml.safe_load((REPO / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def test_dashboard_provisioning() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "upwatch.yml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "upwatch"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["allowUiUpdates"] is False, "the files in the repository are the dashboards"


# --- Grafana's published types (TypeScript) ----------------------------------------------------

PANEL_TYPES = {
    # panel type -> (module under @grafana/schema's raw/composable, has a FieldConfig type)
    "bargauge": ("bargauge/panelcfg/x/BarGaugePanelCfg_types.gen", False),
    "gauge": ("gauge/panelcfg/x/GaugePanelCfg_types.gen", False),
    "stat": ("stat/panelcfg/x/StatPanelCfg_types.gen", False),
    "state-timeline": ("statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen", True),
    "table": ("table/panelcfg/x/TablePanelCfg_types.gen", True),
    "timeseries": ("timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", True),
}


def _types_module() -> str:
    """The TypeScript declarations the dashboards are checked against."""
    imports = [
        'import type { Dashboard, FieldConfig, FieldConfigSource, Panel, RowPanel } from "@grafana/schema";',
        'import type { Dataquery } from "@grafana/grafana-foundation-sdk/prometheus";',
    ]
    members = []
    for i, (kind, (module, has_field_config)) in enumerate(sorted(PANEL_TYPES.items())):
        imports.append(f'import type * as P{i} from "@grafana/schema/dist/esm/raw/composable/{module}";')
        custom = f"P{i}.FieldConfig" if has_field_config else "Record<string, never>"
        members.append(f'  | PluginPanel<"{kind}", P{i}.Options, {custom}>')
    return "\n".join(
        [
            *imports,
            "// JSON has no TypeScript enums: an enum is read as the union of its values; nothing else changes.",
            "type Json<T> = T extends string ? `${T}`",
            "  : T extends number | boolean | null | undefined ? T",
            "  : T extends ReadonlyArray<infer U> ? Array<Json<U>>",
            "  : T extends object ? { [K in keyof T]: Json<T[K]> }",
            "  : T;",
            'type PromQuery = Omit<Dataquery, "_implementsDataqueryVariant">;',
            "type PluginPanel<Kind extends string, Options, Custom> =",
            '  Omit<Panel, "type" | "options" | "fieldConfig" | "targets"> & {',
            "    type: Kind;",
            "    options: Options;",
            '    fieldConfig: Omit<FieldConfigSource, "defaults"> & {',
            '      defaults: Omit<FieldConfig, "custom"> & { custom?: Custom };',
            "    };",
            "    targets: PromQuery[];",
            "  };",
            "type TypedPanel =",
            *members,
            "  ;",
            'type TypedRow = Omit<RowPanel, "panels"> & { panels: TypedPanel[] };',
            'type TypedDashboard = Omit<Dashboard, "panels"> & { panels: Array<TypedPanel | TypedRow> };',
            "",
        ]
    )


def _typescript_file(text: str) -> str:
    """The dashboard JSON twice as object literals: typed as Dashboard, then per panel plugin.

    The first literal starts on line 1, so its error lines are the JSON file's; the second is
    offset by the JSON's line count (the declarations come last: imports may stand anywhere).
    """
    text = text.rstrip("\n")
    return (
        f"export const dashboard: Json<Dashboard> = {text};\n"
        f"export const typed: Json<TypedDashboard> = {text};\n" + _types_module()
    )


def _node_and_tsc() -> list[str]:
    """The command that runs the TypeScript compiler; `npm ci` first when node_modules is not the lock's."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed to type-check the dashboards (Debian: apt-get install nodejs npm)")
    lock = json.loads((REPO / "package-lock.json").read_text())

    def installed() -> bool:
        for path, meta in lock["packages"].items():
            manifest = REPO / path / "package.json"
            if path and (
                not manifest.exists() or json.loads(manifest.read_text())["version"].lstrip("v") != meta["version"]
            ):
                return False
        return True

    if not installed():
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=REPO, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0 or not installed():
            pytest.fail(
                f"`npm ci` (package.json: Grafana's types and TypeScript) failed:\n{proc.stdout}\n{proc.stderr}"
            )
    return [node, str(REPO / "node_modules" / "typescript" / "bin" / "tsc")]


def _first_panel(dashboard: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in all_panels(dashboard) if p["type"] == kind)


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _in_panel(kind: str, path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: _set(path, value)(_first_panel(d, kind))


def _drop_height(d: dict[str, Any]) -> None:
    del _first_panel(d, "stat")["gridPos"]["h"]


# Broken copies of the overview dashboard, each with the text tsc must report.
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown_top_level_key": (_set(["refreshEvery"], "30s"), "'\"refreshEvery\"' does not exist"),
    "schema_version_as_string": (_set(["schemaVersion"], "42"), "Type 'string' is not assignable to type 'number'"),
    "refresh_as_number": (_set(["refresh"], 30), "Type 'number' is not assignable to type 'string'"),
    "unknown_variable_type": (_set(["templating", "list", 1, "type"], "qurey"), '"qurey"'),
    "variable_refresh_out_of_range": (_set(["templating", "list", 1, "refresh"], 5), "Type '5' is not assignable"),
    "missing_grid_height": (_drop_height, "Property 'h' is missing"),
    "unknown_panel_key": (_in_panel("stat", ["tittle"], "x"), "'\"tittle\"' does not exist"),
    "stat_option_bad_value": (_in_panel("stat", ["options", "colorMode"], "valu"), '"valu"'),
    "stat_option_missing": (
        lambda d: _first_panel(d, "stat")["options"].pop("textMode"),
        "Property 'textMode' is missing",
    ),
    "timeseries_custom_unknown_key": (
        _in_panel("timeseries", ["fieldConfig", "defaults", "custom", "lineWidht"], 1),
        "'\"lineWidht\"' does not exist",
    ),
    "table_cell_type_bad_value": (
        _in_panel("table", ["fieldConfig", "defaults", "custom", "cellOptions", "type"], "colour-text"),
        '"colour-text"',
    ),
    "threshold_mode_bad_value": (
        _in_panel("bargauge", ["fieldConfig", "defaults", "thresholds", "mode"], "absolut"),
        '"absolut"',
    ),
    "query_unknown_key": (_in_panel("timeseries", ["targets", 0, "legendformat"], "x"), "'\"legendformat\"' does not"),
    "query_instant_as_string": (
        _in_panel("stat", ["targets", 0, "instant"], "true"),
        "Type 'string' is not assignable to type 'boolean",
    ),
}


@dataclass(frozen=True)
class TypeCheck:
    """tsc's errors per checked file (the dashboard files, then the broken copies)."""

    errors: dict[str, list[str]]


@pytest.fixture(scope="module")
def typecheck(tmp_path_factory: pytest.TempPathFactory) -> TypeCheck:
    tsc = _node_and_tsc()
    work = tmp_path_factory.mktemp("tsc")
    (work / "node_modules").symlink_to(REPO / "node_modules", target_is_directory=True)
    sources: dict[str, str] = {path.name: path.read_text() for path in sorted(DASHBOARDS.glob("*.json"))}
    overview = json.loads(sources["overview.json"])
    for name, (mutate, _) in BROKEN.items():
        broken = copy.deepcopy(overview)
        mutate(broken)
        sources[f"broken-{name}.json"] = json.dumps(broken, indent=2)
    files = {}
    for name, text in sources.items():
        ts = name.removesuffix(".json") + ".ts"
        (work / ts).write_text(_typescript_file(text))
        files[ts] = (name, text.rstrip("\n").count("\n") + 1)
    compiler = {
        "strict": True,
        "noEmit": True,
        "skipLibCheck": True,
        "target": "es2022",
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "types": [],
    }
    (work / "tsconfig.json").write_text(json.dumps({"compilerOptions": compiler, "files": sorted(files)}))
    proc = subprocess.run([*tsc, "-p", str(work)], cwd=work, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    errors: dict[str, list[str]] = {name: [] for name, _ in files.values()}
    for line in output.splitlines():
        match = re.match(r"(\S+\.ts)\((\d+),(\d+)\): (.*)", line)
        if match is None:
            if not line.strip() or line.startswith(" "):  # a continuation of the previous message
                continue
            pytest.fail(f"unexpected tsc output (exit {proc.returncode}):\n{output}")
        ts, row, col, message = match.groups()
        name, lines = files[ts]
        row_in_json, against = int(row), "Dashboard"
        if row_in_json > lines:
            row_in_json, against = row_in_json - lines, "per-panel types"
        errors[name].append(f"{name}:{row_in_json}:{col} ({against}): {message}")
    if proc.returncode != 0 and not any(errors.values()):
        pytest.fail(f"tsc exited {proc.returncode} without an error per file:\n{output}")
    return TypeCheck(errors)


@pytest.mark.parametrize("file", sorted(file for file, _ in EXPECTED.values()))
def test_dashboard_matches_grafana_types(typecheck: TypeCheck, file: str) -> None:
    assert not typecheck.errors[file], "\n".join(typecheck.errors[file])


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_type_check_rejects_broken_dashboards(typecheck: TypeCheck, name: str) -> None:
    errors = typecheck.errors[f"broken-{name}.json"]
    expected = BROKEN[name][1]
    assert any(expected in e for e in errors), f"tsc did not report {expected!r} for {name}; it said:\n" + "\n".join(
        errors
    )


def test_types_are_those_of_the_grafana_that_runs_the_dashboards() -> None:
    compose = REPO / "compose.yaml"
    assert compose.exists(), "compose.yaml (which runs Grafana) is missing"
    image = yaml.safe_load(compose.read_text())["services"]["grafana"]["image"]
    release = image.rpartition(":")[2]
    lock = json.loads((REPO / "package-lock.json").read_text())
    schema = lock["packages"]["node_modules/@grafana/schema"]["version"]
    assert schema == release, f"package.json pins @grafana/schema {schema}, compose.yaml runs {image}"
    versions = {p["pluginVersion"] for d in dashboards().values() for p in query_panels(d)}
    assert versions == {release}, f"panels' pluginVersion {versions} is not the Grafana release {release}"


def test_every_panel_type_has_published_types() -> None:
    kinds = {p["type"] for d in dashboards().values() for p in query_panels(d)}
    assert kinds <= set(PANEL_TYPES), f"add these panel types to PANEL_TYPES: {sorted(kinds - set(PANEL_TYPES))}"


# --- a real Prometheus -------------------------------------------------------------------------


@dataclass
class Bundle:
    """The running bundle and the values the query test gives Grafana's variables."""

    prometheus: str
    variables: dict[str, str]


def instant(prometheus: str, expr: str) -> dict[str, Any]:
    """The JSON answer of an instant query (an error answer included)."""
    return httpx.post(f"{prometheus}/api/v1/query", data={"query": expr}, timeout=10).json()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    program("prometheus")
    program("prometheus-alertmanager")
    tmp: Path = tmp_path_factory.mktemp("grafana-bundle")
    healthy = threading.Event()
    healthy.set()

    web = HTTPServer(host="127.0.0.1", port=free_port())
    web.expect_request("/health").respond_with_data("ok")
    web.expect_request("/slack", method="POST").respond_with_data("ok")  # Alertmanager's notifications
    web.start()
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    tls = HTTPServer(host="127.0.0.1", port=free_port(), ssl_context=context)

    def payments(request: Request) -> Response:
        return Response("ok", status=200) if healthy.is_set() else Response("unavailable", status=503)

    tls.expect_request("/pay").respond_with_handler(payments)
    tls.start()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))

    upwatch_config = tmp / "upwatch.yml"
    upwatch_config.write_text(
        yaml.safe_dump(
            {
                "defaults": {"interval": "1s", "timeout": "500ms", "failure_threshold": 2},
                "endpoints": [
                    {
                        "name": "shop",
                        "url": f"http://127.0.0.1:{web.port}/health",
                        "labels": {"team": "web"},
                        "slo": {"availability": 99.5},
                    },
                    {
                        "name": FAILING_ENDPOINT,
                        "url": f"https://127.0.0.1:{tls.port}/pay",
                        "tls": {"ca_file": str(tmp / "ca.pem")},
                        "labels": {"team": "payments", "severity": "critical"},
                        "slo": {"availability": 99.9},
                    },
                ],
                "host": {"enabled": True},
            }
        )
    )
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack_webhook_url").write_text(f"http://127.0.0.1:{web.port}/slack")
    (secrets / "smtp_password").write_text("unused")
    # Mail goes to a loopback port nobody listens on: refused at once, never off the machine.
    alertmanager_override = {"global": {"smtp_smarthost": f"127.0.0.1:{free_port()}", "smtp_require_tls": False}}
    try:
        with native_bundle(
            tmp,
            upwatch_config=upwatch_config,
            secrets=secrets,
            prometheus_override={
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
            },
            alertmanager_override=alertmanager_override,
        ) as bundle:
            prometheus = bundle.prometheus

            def seen_up() -> bool:
                result = instant(prometheus, f'probe_success{{endpoint="{FAILING_ENDPOINT}"}} == 1')["data"]["result"]
                return bool(result)

            # Let Prometheus see the endpoint up first, so that the incident happens under its eyes.
            wait_for(f"Prometheus to see {FAILING_ENDPOINT} up", seen_up, 30)
            healthy.clear()
            yield Bundle(
                prometheus=prometheus,
                variables={
                    "datasource": DATASOURCE_UID,
                    "job": "upwatch",
                    "instance": f"127.0.0.1:{bundle.ports['upwatch']}",
                    "endpoint": FAILING_ENDPOINT,
                    "severity": ".*",
                },
            )
    finally:
        for server in (web, tls):
            server.clear()
            server.stop()


GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "1m"}
VARIABLE_REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, variables: dict[str, str]) -> str:
    """The query as Grafana sends it, for one choice of every variable."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        known = {**GRAFANA_BUILTINS, **variables}
        if name not in known:
            pytest.fail(f"unknown Grafana variable ${name} in {expr}")
        return known[name]

    return VARIABLE_REFERENCE.sub(value, expr)


def test_substitute() -> None:
    expr = 'rate(x{a=~"$job", b="${instance}", c=~"${endpoint:regex}"}[$__rate_interval]) + y[$__range]'
    assert substitute(expr, {"job": "j", "instance": "i", "endpoint": "e"}) == (
        'rate(x{a=~"j", b="i", c=~"e"}[1m]) + y[1h]'
    )


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_panel_queries_run_on_prometheus_and_return_data(bundle: Bundle, uid: str) -> None:
    checked = queries(uid)
    assert checked
    deadline = time.monotonic() + 60
    while True:
        errors, empty = [], []
        for q in checked:
            expr = substitute(q.expr, bundle.variables)
            answer = instant(bundle.prometheus, expr)
            if answer.get("status") != "success":
                errors.append(f"{q.panel} {q.ref}: {answer.get('error')}\n    {expr}")
            elif not answer["data"]["result"] and q.key not in EMPTY_ALLOWED:
                empty.append(f"{q.panel} {q.ref}: no data\n    {expr}")
        assert not errors, f"{uid}: Prometheus rejected these queries:\n" + "\n".join(errors)
        # Rates need two scrapes and the incident a few probes: poll until the data is there.
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not empty, f"{uid}: these queries returned nothing:\n" + "\n".join(empty)


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_variable_queries_run_on_prometheus(bundle: Bundle, uid: str) -> None:
    for variable in by_uid()[uid]["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        selector, label = match.groups()
        expr = substitute(selector, bundle.variables)
        answer = instant(bundle.prometheus, expr)
        assert answer["status"] == "success", f"{variable['name']}: {answer.get('error')} in {expr}"
        values = {series["metric"].get(label) for series in answer["data"]["result"]}
        assert values and None not in values, f"{variable['name']}: {expr} gives no {label} values"
        assert bundle.variables[variable["name"]] in values
