"""Config files written by a careless operator or a hostile one: secrets in the wrong field, numbers too big
for Python, names that hide what they are, nested ${VAR} defaults, an interval that burns a core.

Each is checked against the real loader and the real `upwatch` command (validate, serve, schema).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers import UPWATCH, free_port, running, wait_for
from pytest_httpserver import HTTPServer

from exporter.cli import main
from exporter.config import ConfigError, parse_config
from exporter.config.problems import printable

CONFIGS = Path(__file__).resolve().parent / "configs"
SECRET = "hunter2-Tr0ub4dor"
LONG_SECRET = "s3cr3t-" + "abcdefghij" * 6  # longer than the 40 characters messages clip values to
ENV = {"PW": SECRET, "LONG": LONG_SECRET, "PATTERN": "abcdefghijk)", "B": "from-b"}
DURATION_HINT = "use a number and a unit (ms, s, m, h, d, w), e.g. 30s"
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

Expected = tuple[int, int, str, str]  # line, column, location, message


def problems_of(source: str, env: dict[str, str] = ENV) -> list[Expected]:
    """The problems parse_config finds in a source, as (line, column, location, message)."""
    with pytest.raises(ConfigError) as info:
        parse_config(source, "bad.yml", env=env, base_dir=CONFIGS)
    return [(p.line, p.column, p.location, p.message) for p in info.value.problems]


def ep(*lines: str) -> str:
    """A file with one endpoint `a` (lines 2 and 3) and these lines (from line 4) added to it."""
    return "endpoints:\n  - name: a\n    url: http://x\n" + "".join(f"    {line}\n" for line in lines)


def y(text: str) -> str:
    """YAML written indented in this file, dedented."""
    return textwrap.dedent(text).lstrip("\n")


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


# -- 5: a value from the environment is never printed back ------------------------------------------------

PW = "<the value of ${PW}>"

SECRET_IN_THE_WRONG_FIELD = [
    pytest.param(
        ep('timeout: "${PW}"'),
        [(4, 14, "endpoints[a].timeout", f"invalid duration {PW}: {DURATION_HINT}")],
        id="timeout",
    ),
    pytest.param(
        ep('method: "${PW}"'),
        [(4, 13, "endpoints[a].method", f"must be one of {METHODS}, got {PW}")],
        id="method",
    ),
    pytest.param(
        ep('expect: {status: "${PW}"}'),
        [(4, 22, "endpoints[a].expect.status", f"invalid status {PW}: use 200, '2xx' or '200-299'")],
        id="expect-status",
    ),
    pytest.param(
        ep('expect: {status: [200, "${PW}"]}'),
        [(4, 22, "endpoints[a].expect.status", f"invalid status {PW}: use 200, '2xx' or '200-299'")],
        id="expect-status-in-a-list",
    ),
    pytest.param(
        ep('expect: {body_matches: "(${PW}"}'),
        [
            (
                4,
                28,
                "endpoints[a].expect.body_matches",
                "invalid regular expression <the value of '(${PW}'>: missing ), unterminated subpattern at position 0",
            )
        ],
        id="body-matches",
    ),
    pytest.param(
        ep('expect: {body_matches: "(?P=${PATTERN}"}'),
        [
            (
                4,
                28,
                "endpoints[a].expect.body_matches",
                "<the value of '(?P=${PATTERN}'> is not valid here "
                "(the problem is not shown: it would show part of the value)",
            )
        ],
        id="regex-error-quoting-part-of-it",
    ),
    pytest.param(
        ep('interval: "${LONG}"'),
        [(4, 15, "endpoints[a].interval", f"invalid duration <the value of ${{LONG}}>: {DURATION_HINT}")],
        id="long-value-clipped",
    ),
    pytest.param(
        ep('interval: "1${PW}"'),
        [(4, 15, "endpoints[a].interval", f"invalid duration <the value of '1${{PW}}'>: {DURATION_HINT}")],
        id="part-of-a-value",
    ),
    pytest.param(
        ep('body_size_limit: "${PW}"', 'max_redirects: "${PW}"', 'follow_redirects: "${PW}"'),
        [
            (
                4,
                22,
                "endpoints[a].body_size_limit",
                f"invalid size {PW}: use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB",
            ),
            (5, 20, "endpoints[a].max_redirects", f"must be an integer, got a string {PW}"),
            (6, 23, "endpoints[a].follow_redirects", f"must be true or false, got a string {PW}"),
        ],
        id="size-integer-boolean",
    ),
    pytest.param(
        ep('tls: {ca_file: "${PW}.pem"}'),
        [(4, 20, "endpoints[a].tls.ca_file", f"file not found: {CONFIGS}/<the value of '${{PW}}.pem'>")],
        id="file-name",
    ),
    pytest.param(
        y("""
            defaults: {timeout: "${PW}"}
            endpoints: [{name: a, url: "http://x"}]
            """),
        [(1, 21, "defaults.timeout", f"invalid duration {PW}: {DURATION_HINT}")],
        id="in-the-defaults",
    ),
    pytest.param(
        y("""
            endpoints:
              - {name: "${PW}", url: "http://x", timeout: 1d}
              - {name: "${PW}", url: "http://x y"}
            """),
        [
            (2, 47, "endpoints[0].timeout", "must be shorter than interval (30s by default), got 1d"),
            (3, 12, "endpoints[1].name", f"duplicate endpoint name {PW} (first used on line 2)"),
            (3, 26, "endpoints[1].url", "invalid URL 'http://x y': contains whitespace"),
        ],
        id="a-name-is-not-shown-in-locations-either",
    ),
    pytest.param(
        ep('url: "http://x/${PW}?q=1 y"'.replace("url", "body"), 'headers: {"X-${PW}": "v"}').replace(
            "url: http://x", 'url: "http://h/${PW}?q=1 y"'
        ),
        [
            (3, 10, "endpoints[a].url", f"invalid URL 'http://h/{PW}?***': contains whitespace"),
            (5, 15, "endpoints[a].headers.X-${PW}", "invalid header name 'X-${PW}'"),
        ],
        id="keys-are-written-text",
    ),
]


@pytest.mark.parametrize(("source", "expected"), SECRET_IN_THE_WRONG_FIELD)
def test_a_secret_in_the_wrong_field_is_named_not_shown(source: str, expected: list[Expected]) -> None:
    problems = problems_of(source)
    assert problems == expected
    for secret in (SECRET, LONG_SECRET[:12], "abcdefghijk"):
        assert all(secret not in f"{location} {message}" for _, _, location, message in problems)


def test_a_secret_that_is_valid_where_it_landed_is_used_as_such() -> None:
    # Not every misplaced value is a problem: a valid one is taken, and nothing is printed at all.
    config = parse_config(ep('timeout: "${T}"'), env={"T": "5s"})
    assert config.endpoints[0].timeout == 5.0


def test_values_from_defaults_written_in_the_file_are_shown() -> None:
    # ${X:-default} with X unset: the default is text of the file, no secret.
    assert problems_of(ep('timeout: "${UNSET:-soon}"')) == [
        (4, 14, "endpoints[a].timeout", f"invalid duration 'soon': {DURATION_HINT}")
    ]


def test_validate_text_and_json_never_print_the_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text(ep('timeout: "${PW}"', 'method: "${PW}"', 'expect: {status: "${PW}", body_matches: "(${PW}"}'))
    code, out = run("validate", str(cfg), env={"PW": SECRET})
    assert code == 1
    assert out.splitlines() == [
        f"{cfg}:4:14: endpoints[a].timeout: invalid duration {PW}: {DURATION_HINT}",
        f"{cfg}:5:13: endpoints[a].method: must be one of {METHODS}, got {PW}",
        f"{cfg}:6:22: endpoints[a].expect.status: invalid status {PW}: use 200, '2xx' or '200-299'",
        f"{cfg}:6:45: endpoints[a].expect.body_matches: invalid regular expression <the value of '(${{PW}}'>: "
        "missing ), unterminated subpattern at position 0",
    ]
    code, out = run("validate", "--format", "json", str(cfg), env={"PW": SECRET})
    assert code == 1 and SECRET not in out
    (report,) = json.loads(out)["files"]
    assert [p["message"] for p in report["problems"]][:2] == [
        f"invalid duration {PW}: {DURATION_HINT}",
        f"must be one of {METHODS}, got {PW}",
    ]


def test_serve_logs_a_bad_config_without_the_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text(ep('timeout: "${PW}"'))
    args = [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}", "--log-format", "json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, "PW": SECRET})
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [e["problem"] for e in events if e["event"] == "invalid config"] == [
        f"{cfg}:4:14: endpoints[a].timeout: invalid duration {PW}: {DURATION_HINT}"
    ]
    assert SECRET not in done.stderr + done.stdout


def test_a_reload_rejected_answers_and_logs_without_the_secret(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("fine")
    cfg = tmp_path / "upwatch.yml"
    good = f"endpoints:\n  - name: a\n    url: '{httpserver.url_for('/')}'\n    interval: 300ms\n    timeout: 200ms\n"
    cfg.write_text(good)
    port, log = free_port(), tmp_path / "upwatch.log"
    args = [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", "--log-format", "json"]
    args.append("--web.enable-lifecycle")
    with running(args, f"http://127.0.0.1:{port}/-/ready", env={"PW": SECRET}, log=log) as proc:
        cfg.write_text(good + '    method: "${PW}"\n    expect: {body_matches: "(${PW}"}\n')
        answer = httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=30)
        assert answer.status_code == 500
        assert f"{cfg}:6:13: endpoints[a].method: must be one of {METHODS}, got {PW}" in answer.text
        proc.send_signal(signal.SIGHUP)  # the same, by signal: logged only
        wait_for("the second rejection logged", lambda: log.read_text().count("config reload rejected") >= 4, 30)
    assert SECRET not in answer.text
    assert SECRET not in log.read_text()


# -- 8: numbers Python will not convert, files that cannot be written ----------------------------------------

BIG = "9" * 5000
UNREADABLE_VALUES = [
    pytest.param(
        f"max_concurrent_probes: {BIG}",
        (2, 24, "max_concurrent_probes", "integer out of range: must be between -2^63 and 2^63-1"),
        id="5000-digits",
    ),
    pytest.param(
        "max_concurrent_probes: 0x" + "f" * 2000,
        (2, 24, "max_concurrent_probes", "integer out of range: must be between -2^63 and 2^63-1"),
        id="2000-hex-digits",
    ),
    pytest.param(
        "max_concurrent_probes: 9223372036854775808",
        (2, 24, "max_concurrent_probes", "integer out of range: must be between -2^63 and 2^63-1"),
        id="2^63",
    ),
    pytest.param(
        "status_page: {announcements: [{title: t, starts: 2025-02-30T00:00:00Z}]}",
        (
            2,
            50,
            "status_page.announcements[0].starts",
            "cannot read '2025-02-30T00:00:00Z' as a timestamp: day is out of range for month",
        ),
        id="30-february",
    ),
    pytest.param(
        'max_concurrent_probes: !!int "abc"',
        (2, 24, "max_concurrent_probes", "cannot read 'abc' as an integer"),
        id="tagged-int",
    ),
    pytest.param(
        'max_concurrent_probes: !!bool "maybe"',
        (2, 24, "max_concurrent_probes", "cannot read 'maybe' as true or false"),
        id="tagged-bool",
    ),
    pytest.param(
        'max_concurrent_probes: !!timestamp "x"',
        (2, 24, "max_concurrent_probes", "cannot read 'x' as a timestamp"),
        id="tagged-timestamp",
    ),
]


@pytest.mark.parametrize(("line", "expected"), UNREADABLE_VALUES)
def test_values_python_cannot_convert_are_one_problem_each(line: str, expected: Expected) -> None:
    assert problems_of(f"endpoints: []\n{line}\n") == [expected]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            f'timeout: "{BIG}s"',
            (4, 14, "endpoints[a].timeout", f"duration {BIG[:40]!r}... is too long: at most 365d"),
            id="duration-of-5000-digits",
        ),
        pytest.param(
            f"timeout: {'9' * 307}s",
            (4, 14, "endpoints[a].timeout", f"duration {'9' * 40!r}... is too long: at most 365d"),
            id="duration-near-the-largest-float",
        ),
        pytest.param(
            "interval: 366d",
            (4, 15, "endpoints[a].interval", "duration '366d' is too long: at most 365d"),
            id="duration-over-a-year",
        ),
        pytest.param(
            "degraded_after: 0.5ms",
            (4, 21, "endpoints[a].degraded_after", "duration '0.5ms' is too short: at least 1ms"),
            id="duration-under-a-millisecond",
        ),
        pytest.param(
            f'body_size_limit: "{BIG}"',
            (4, 22, "endpoints[a].body_size_limit", f"size {BIG[:40]!r}... is too large"),
            id="size-of-5000-digits",
        ),
        pytest.param(
            f'expect: {{status: "{BIG}"}}',
            (
                4,
                22,
                "endpoints[a].expect.status",
                f"status {BIG!r} is not an HTTP status code (100-599)",
            ),
            id="status-of-5000-digits",
        ),
        pytest.param(
            f"failure_threshold: {BIG}",
            (4, 24, "endpoints[a].failure_threshold", "integer out of range: must be between -2^63 and 2^63-1"),
            id="threshold-of-5000-digits",
        ),
    ],
)
def test_huge_numbers_in_endpoint_fields(line: str, expected: Expected) -> None:
    assert problems_of(ep(line)) == [expected]


def test_validate_a_5000_digit_integer_is_a_problem_not_an_internal_error(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text(f"endpoints: []\nmax_concurrent_probes: {BIG}\n")
    done = subprocess.run([*UPWATCH, "validate", str(cfg)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout == (
        f"{cfg}:2:24: max_concurrent_probes: integer out of range: must be between -2^63 and 2^63-1\n"
    )


def test_serve_refuses_a_5000_digit_integer_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text(f"endpoints:\n  - name: a\n    url: http://127.0.0.1:1/\n    failure_threshold: {BIG}\n")
    args = [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}", "--log-format", "json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    problem = f"{cfg}:4:24: endpoints[a].failure_threshold: integer out of range: must be between -2^63 and 2^63-1"
    assert done.stderr.splitlines()[-1] == problem
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/dev/full", "Error: cannot write /dev/full: No space left on device"),
        ("/nonexistent/x.json", "Error: cannot write /nonexistent/x.json: No such file or directory"),
    ],
)
def test_schema_to_a_file_that_cannot_be_written(target: str, message: str) -> None:
    done = subprocess.run([*UPWATCH, "schema", "-o", target], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")


@pytest.mark.parametrize(
    "args",
    [
        ["schema"],
        ["validate", "{good}"],
        ["validate", "{bad}"],  # 2, not 1: the file was not judged to anyone who could read it
        ["validate", "--format", "json", "{good}", "{bad}"],
        ["--version"],
        ["validate", "--help"],
    ],
    ids=["schema", "validate-valid", "validate-invalid", "validate-json", "version", "help"],
)
def test_a_full_standard_output_is_one_error_line(args: list[str], tmp_path: Path) -> None:
    """Every command whose output cannot be written says so in one line and exits 2, never with a traceback."""
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text("endpoints:\n- {name: a, url: 'http://127.0.0.1:1/'}\n")
    bad.write_text("endpoints:\n- {name: a, url: 'http://127.0.0.1:1/', timeout: 1x}\n" * 200)
    args = [a.format(good=good, bad=bad) for a in args]
    with open("/dev/full", "w") as full:
        done = subprocess.run([*UPWATCH, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, "Error: cannot write standard output: No space left on device\n")


def _special_file(kind: str, tmp_path: Path) -> str:
    """A config path that is not a regular file (or is too large to be a config)."""
    if kind == "device":
        return "/dev/zero"  # read with a plain read_bytes(), it never ends
    path = tmp_path / f"{kind}.yml"
    if kind == "named-pipe":
        os.mkfifo(path)  # opened for reading with a plain open(), it blocks until a writer comes
    elif kind == "directory":
        path.mkdir()
    else:
        with path.open("wb") as big:
            big.truncate(17 * 1024 * 1024)
    return str(path)


SPECIAL_FILES = [
    ("device", "is not a regular file (a character device)"),
    ("named-pipe", "is not a regular file (a named pipe)"),
    ("directory", "is a directory"),
    ("too-large", "is larger than 16 MiB: not a config file"),
]


@pytest.mark.parametrize(("kind", "problem"), SPECIAL_FILES, ids=[k for k, _ in SPECIAL_FILES])
def test_validate_refuses_a_config_that_is_not_a_regular_file(kind: str, problem: str, tmp_path: Path) -> None:
    file = _special_file(kind, tmp_path)
    done = subprocess.run([*UPWATCH, "validate", file], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, f"{file}:1:1: (file): {problem}\n")


@pytest.mark.parametrize(("kind", "problem"), SPECIAL_FILES, ids=[k for k, _ in SPECIAL_FILES])
def test_serve_refuses_a_config_that_is_not_a_regular_file(kind: str, problem: str, tmp_path: Path) -> None:
    file = _special_file(kind, tmp_path)
    command = [*UPWATCH, "serve", "--config", file, "--listen", "127.0.0.1:0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{file}:1:1: (file): {problem}\n" in done.stderr
    assert "Traceback" not in done.stderr


# -- 9: names that hide what they are ------------------------------------------------------------------------

NAMES_THAT_HIDE = [
    pytest.param("a\u009bb", "U+009B CONTROL SEQUENCE INTRODUCER", id="csi"),
    pytest.param("a\u202eb", "U+202E RIGHT-TO-LEFT OVERRIDE", id="bidi-override"),
    pytest.param("a\u2028b", "U+2028 LINE SEPARATOR", id="line-separator"),
    pytest.param("zw\u200b", "U+200B ZERO WIDTH SPACE", id="zero-width-space"),
    pytest.param("a\u00a0b", "U+00A0 NO-BREAK SPACE", id="no-break-space"),
    pytest.param("a\u2066b", "U+2066 LEFT-TO-RIGHT ISOLATE", id="bidi-isolate"),
    pytest.param("a\ufeffb", "U+FEFF ZERO WIDTH NO-BREAK SPACE", id="bom"),
    pytest.param("a\x1b[31mb", "U+001B ESCAPE", id="escape"),
    pytest.param("a\tb", "U+0009 CHARACTER TABULATION", id="tab"),
    pytest.param("a\ue000b", "U+E000 (private use)", id="private-use"),
]


def quoted(text: str) -> str:
    """A YAML double-quoted string holding `text`, every character outside ASCII as an escape."""
    return '"' + "".join(ch if " " <= ch <= "~" and ch not in '"\\' else f"\\u{ord(ch):04x}" for ch in text) + '"'


@pytest.mark.parametrize(("name", "named"), NAMES_THAT_HIDE)
def test_endpoint_names_must_show_as_they_are(name: str, named: str) -> None:
    source = f"endpoints:\n  - name: {quoted(name)}\n    url: http://x\n"
    assert problems_of(source) == [
        (
            2,
            11,
            f"endpoints[{printable(name)}].name",
            f"invalid endpoint name {name!r}: {named} is not allowed in a name",
        )
    ]


@pytest.mark.parametrize(("name", "named"), NAMES_THAT_HIDE)
def test_label_values_and_group_names_must_show_as_they_are(name: str, named: str) -> None:
    source = y(f"""
        endpoints:
          - {{name: a, url: "http://x", labels: {{team: {quoted(name)}}}}}
        status_page:
          groups: [{{name: {quoted(name)}, endpoints: [a]}}]
        """)
    problems = problems_of(source)
    assert problems[0] == (2, 47, "endpoints[a].labels.team", f"{named} is not allowed in a label value")
    (line, column, location, message) = problems[1]
    assert (line, column, location) == (4, 19, "status_page.groups[0].name")
    assert named.split()[0] in message  # "U+202E RIGHT-TO-LEFT OVERRIDE is not allowed in a name", or a control


def test_two_names_alike_are_one_name_however_written() -> None:
    # 'zw' and 'zw' + U+200B were two endpoints; U+200B is now refused. And 'é' written precomposed or as
    # e + U+0301 is one name in two Unicode forms: a duplicate, not a second endpoint that looks the same.
    source = 'endpoints:\n  - {name: "caf\\u00e9", url: "http://x"}\n  - {name: "cafe\\u0301", url: "http://x"}\n'
    assert problems_of(source) == [
        (
            3,
            12,
            "endpoints[1].name",
            "duplicate endpoint name 'cafe\u0301' (first used on line 2, written in another Unicode form)",
        )
    ]


def test_ordinary_unicode_is_welcome_in_names_labels_and_page_text() -> None:
    source = y("""
        endpoints:
          - {name: "Zahlungen Köln", url: "http://x", labels: {team: "支払い"}}
        status_page:
          title: "Statut des services 🟢"
          groups: [{name: "Paiements", endpoints: ["Zahlungen Köln"]}]
          announcements:
            - title: "Wartung am Montag 👨\u200d🔧"
              message: "עברית עם סימן כיוון \u200f ודי"
        """)
    config = parse_config(source, env={})
    assert config.endpoints[0].name == "Zahlungen Köln"
    assert config.endpoints[0].labels == {"team": "支払い"}
    (announcement,) = config.status_page.announcements
    assert "\u200d" in announcement.title and "\u200f" in (announcement.message or "")


# -- 10: nested ${VAR} defaults, as Compose reads them ----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        pytest.param("${A:-${B}}", {"A": "a", "B": "b"}, "a", id="outer-set"),
        pytest.param("${A:-${B}}", {"B": "b"}, "b", id="outer-unset"),
        pytest.param("${A:-${B}}", {"A": "", "B": "b"}, "b", id="outer-empty"),
        pytest.param("${A:-${B:-x}}", {}, "x", id="two-levels"),
        pytest.param("${A:-${B:-${C:-deep}}}", {"C": "c"}, "c", id="three-levels"),
        pytest.param("${A:-${B}}", {"A": "a"}, "a", id="an-unused-default-may-name-an-unset-variable"),
        pytest.param("${A:-x${B}y}-${C:-z}", {"B": "b"}, "xby-z", id="text-around-nested"),
        pytest.param("${A:-$${B}}", {}, "${B}", id="escape-in-a-default"),
        pytest.param("${A:-}}", {}, "}", id="a-brace-after-an-empty-default-is-text"),
        pytest.param("${A:-${B}}", {"B": "${C}"}, "${C}", id="values-are-not-expanded-again"),
    ],
)
def test_nested_defaults(template: str, env: dict[str, str], expected: str) -> None:
    config = parse_config(ep(f"headers: {{X-Value: '{template}'}}"), env=env)
    assert config.endpoints[0].headers["X-Value"] == expected


UNCLOSED = "invalid variable reference: ${ without a closing }"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("${A:-${B}", UNCLOSED, id="nested-unclosed"),
        pytest.param("${A:-${B:-x}", UNCLOSED, id="nested-default-unclosed"),
        pytest.param("${A:-x", UNCLOSED, id="default-unclosed"),
        pytest.param("${A-${B}}", "invalid variable reference ${A-${B}}: use ${NAME} or ${NAME:-default}", id="dash"),
        pytest.param("${A:-${1B}}", "invalid variable reference ${1B}: use ${NAME} or ${NAME:-default}", id="inner"),
        pytest.param(
            "${A:-${B}}",
            "environment variable B is not set (write ${B:-default} for a fallback)",
            id="the-default-taken-names-an-unset-variable",
        ),
    ],
)
def test_nested_defaults_mistakes(template: str, message: str) -> None:
    assert problems_of(ep(f"headers: {{X-Value: '{template}'}}"), env={}) == [
        (4, 24, "endpoints[a].headers.X-Value", message)
    ]


def test_nested_default_filled_from_a_variable_is_concealed_too() -> None:
    assert problems_of(ep('timeout: "${UNSET:-${PW}}"')) == [
        (4, 14, "endpoints[a].timeout", f"invalid duration <the value of '${{UNSET:-${{PW}}}}'>: {DURATION_HINT}")
    ]


# -- 12: a floor under the interval ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            ep("interval: 1ms", "timeout: 1ms"),
            [(4, 15, "endpoints[a].interval", "must be at least 100ms, got 1ms")],
            id="1ms",
        ),
        pytest.param(
            ep("interval: 99ms"),
            [(4, 15, "endpoints[a].interval", "must be at least 100ms, got 99ms")],
            id="just-under-with-the-default-timeout",
        ),
        pytest.param(
            "defaults: {interval: 10ms}\nendpoints: [{name: a, url: 'http://x'}, {name: b, url: 'http://y'}]\n",
            [(1, 22, "defaults.interval", "must be at least 100ms, got 10ms")],
            id="in-the-defaults-once",
        ),
    ],
)
def test_interval_floor(source: str, expected: list[Expected]) -> None:
    assert problems_of(source) == expected


def test_interval_at_the_floor_is_accepted() -> None:
    config = parse_config(ep("interval: 100ms", "timeout: 50ms"), env={})
    assert config.endpoints[0].interval == 0.1


def test_validate_names_the_interval_floor_at_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "upwatch.yml"
    cfg.write_text(ep("interval: 1ms", "timeout: 1ms"))
    code, out = run("validate", str(cfg))
    assert (code, out) == (1, f"{cfg}:4:15: endpoints[a].interval: must be at least 100ms, got 1ms\n")
