"""The `upwatch` command line: the only place that prints or exits."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, loop
from .app import Agent
from .config import Config, ConfigError, Problem, json_schema_text, load_config
from .logs import LOG_FORMATS, LOG_LEVELS, LogSettings, configure_logging, get_logger
from .probes.tls import TLSContexts
from .probing import probe_once
from .results import PHASES, ProbeResult
from .source import DEFAULT_LISTEN, config_source, parse_listen

FORMATS = click.Choice(["text", "json"])


# Errors of a write to an output that cannot take it (a full disk, /dev/full, a closed pipe, a dead terminal).
_OUTPUT_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE))
OUTPUT_FAILED = 2  # exit status when the output cannot be written: not a verdict on the config (that is 1)


class _Commands(click.Group):
    """The command group, which turns an output that cannot be written into one line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line; a standard output that cannot be written is an error line, never a traceback."""
        try:
            return super().main(*args, **kwargs)
        except OSError as exc:
            if exc.filename is not None or exc.errno not in _OUTPUT_ERRNOS:
                raise
            _output_failed("standard output", exc)


def _output_failed(where: str, exc: OSError) -> NoReturn:
    """Say on stderr that `where` cannot be written, and exit with OUTPUT_FAILED."""
    if where == "standard output":  # what is still buffered would fail again, with a traceback, as Python exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    click.echo(f"Error: cannot write {where}: {exc.strerror or exc}", err=True)
    sys.exit(OUTPUT_FAILED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="upwatch")
def main() -> None:
    """upwatch: HTTP endpoint probes and host metrics for Prometheus."""


@main.command()
@click.option(
    "--config", "config_file", metavar="FILE", help="Config file [default: $UPWATCH_CONFIG or ./upwatch.yml]."
)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT", help="Address to serve on.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option(
    "--log-format", type=click.Choice(LOG_FORMATS), default=None, help="[default: console on a TTY, else json]"
)
@click.option(
    "--web.config.file",
    "web_config_file",
    metavar="FILE",
    help="Web config (Prometheus exporter-toolkit format): TLS, basic auth, response headers.",
)
@click.option(
    "--web.enable-lifecycle",
    "lifecycle",
    is_flag=True,
    help="Reload the config on POST or PUT /-/reload (without it: 403). SIGHUP reloads either way.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="UPWATCH_DATA_DIR",
    metavar="DIR",
    help="Keep states, incidents in progress and counters here across restarts "
    "[default: $UPWATCH_DATA_DIR, else the config's data_dir, else not kept].",
)
def serve(
    config_file: str | None,
    listen: str,
    log_level: str,
    log_format: str | None,
    web_config_file: str | None,
    lifecycle: bool,
    data_dir: Path | None,
) -> None:
    """Probe the configured endpoints on schedule and serve /metrics."""
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    log_settings = LogSettings(log_level, log_format)
    configure_logging(log_settings.level, log_settings.format)
    log = get_logger()
    source = config_source(config_file)

    async def run() -> None:
        access = None
        if web_config_file is not None:
            from .web import WebAccess, WebConfigFile

            access = WebAccess(WebConfigFile.open(Path(web_config_file), log), log)
        agent = Agent(
            source=source,
            listen=address,
            log=log,
            log_settings=log_settings,
            access=access,
            lifecycle=lifecycle,
            data_dir=data_dir,
        )
        await agent.run()

    try:
        loop.run(run())
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("invalid config", problem=str(problem))
        click.echo(str(exc), err=True)
        sys.exit(1)
    except OSError as exc:
        log.error("cannot start", error=str(exc), listen=listen)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _check_file(path: str, tls: TLSContexts | None = None) -> tuple[Config | None, list[Problem]]:
    """Load one file, TLS material included (into `tls`, when given); never raises."""
    try:
        return load_config(path, tls=tls), []
    except ConfigError as exc:
        return None, list(exc.problems)
    except Exception as exc:  # a bug must still not show a traceback to the user
        return None, [Problem(path, 1, 1, "(root)", f"internal error while reading the file: {exc!r}")]


@main.command()
@click.argument("files", nargs=-1, metavar="[FILE ...]")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option(
    "--web.config.file",
    "web_config_file",
    metavar="FILE",
    help="Also check this web config file (see serve), TLS files included, as serve would load it.",
)
def validate(files: tuple[str, ...], fmt: str, web_config_file: str | None) -> None:
    """Check config files; print every problem as FILE:LINE:COL: LOCATION: MESSAGE."""
    paths = list(files) or [str(config_source(None).path)]
    reports = []
    failed = False
    for path in paths:
        config, problems = _check_file(path)
        failed = failed or bool(problems)
        reports.append((path, config, problems))
    web_summary, web_problems = _check_web_config(web_config_file) if web_config_file else ("", [])
    failed = failed or bool(web_problems)
    if fmt == "json":
        out = [
            {
                "file": path,
                "valid": not problems,
                "endpoints": len(config.endpoints) if config else None,
                **(_shard_json(config) if config and config.shard else {}),
                "problems": [dataclasses.asdict(p) for p in problems],
            }
            for path, config, problems in reports
        ]
        document: dict[str, object] = {"valid": not failed, "files": out}
        if web_config_file:
            document["web_config"] = {
                "file": web_config_file,
                "valid": not web_problems,
                "problems": [dataclasses.asdict(p) for p in web_problems],
            }
        click.echo(json.dumps(document, indent=2))
    else:
        for path, config, problems in reports:
            for problem in problems:
                click.echo(str(problem))
            if config is not None:
                click.echo(f"{path}: valid ({_count(len(config.endpoints), 'endpoint')}{_shard_text(config)})")
        for problem in web_problems:
            click.echo(str(problem))
        if web_config_file and not web_problems:
            click.echo(f"{web_config_file}: valid web config ({web_summary})")
    sys.exit(1 if failed else 0)


def _check_web_config(path: str) -> tuple[str, list[Problem]]:
    """What a web config file sets up (`TLS, 2 basic auth users`), and its problems; never raises."""
    from .web import read_web_config
    from .web.config import ClientAuth

    try:
        config = read_web_config(Path(path))[0]
    except ConfigError as exc:
        return "", list(exc.problems)
    except Exception as exc:  # a bug must still not show a traceback to the user
        return "", [Problem(path, 1, 1, "(root)", f"internal error while reading the file: {exc!r}")]
    parts = ["plain HTTP"]
    if config.tls is not None:
        parts = ["TLS"] if config.tls.client_auth is ClientAuth.NONE else [f"TLS, {config.tls.client_auth}"]
    parts.append(_count(len(config.users), "basic auth user") if config.users else "no basic auth")
    if config.headers:
        parts.append(_count(len(config.headers), "response header"))
    if config.rate_limit is not None:
        parts.append("rate limit")
    return ", ".join(parts), []


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shard_text(config: Config) -> str:
    """`; shard 1 of 3 probes 34` when the config names a shard, else nothing."""
    if config.shard is None:
        return ""
    return f"; shard {config.shard.index} of {config.shard.total} (counting from 0) probes {len(config.probed)}"


def _shard_json(config: Config) -> dict[str, object]:
    """The shard and the names of the endpoints it probes, for `validate --format json`."""
    assert config.shard is not None
    return {
        "shard": {"index": config.shard.index, "total": config.shard.total},
        "probed": [ep.name for ep in config.probed],
    }


def _cert_days(result: ProbeResult) -> float | None:
    if result.cert_expiry_timestamp is None:
        return None
    return (result.cert_expiry_timestamp - time.time()) / 86400


def _result_json(result: ProbeResult) -> dict[str, object]:
    days = _cert_days(result)
    return {
        "endpoint": result.endpoint,
        "success": result.success,
        "status_code": result.status_code or None,
        "duration_seconds": round(result.duration_seconds, 6),
        "reason": str(result.reason) if result.reason else None,
        "message": result.message or None,
        "cert_days_left": round(days, 2) if days is not None else None,
        "http_version": result.http_version or None,
        "redirects": result.redirects,
        "phases": {k: round(v, 6) for k, v in result.phases.items()},
    }


def _table(results: list[ProbeResult]) -> str:
    header = ["ENDPOINT", "RESULT", "STATUS", "DURATION", "REASON", "CERT DAYS", *(p.upper() for p in PHASES)]
    rows = [header]
    for r in results:
        days = _cert_days(r)
        reason = f"{r.reason}: {r.message}" if r.reason else ""
        rows.append(
            [
                r.endpoint,
                "ok" if r.success else "FAILED",
                str(r.status_code or "-"),
                f"{r.duration_seconds * 1000:.1f}ms",
                reason or "-",
                f"{days:.1f}" if days is not None else "-",
                *(f"{r.phases.get(p, 0.0) * 1000:.1f}ms" for p in PHASES),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


@main.command()
@click.option(
    "--config", "config_file", metavar="FILE", help="Config file [default: $UPWATCH_CONFIG or ./upwatch.yml]."
)
@click.argument("endpoints", nargs=-1, metavar="[ENDPOINT ...]")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def probe(config_file: str | None, endpoints: tuple[str, ...], fmt: str) -> None:
    """Probe each (or each named) endpoint once now; exit 0 only if all succeed.

    Without names, the endpoints of this agent's shard (all of them when the config names none).
    """
    source = config_source(config_file)
    tls = TLSContexts()
    config, problems = _check_file(str(source.path), tls)
    if config is None:
        for problem in problems:
            click.echo(str(problem), err=True)
        sys.exit(2)
    known = {ep.name for ep in config.endpoints}
    unknown = [n for n in endpoints if n not in known]
    if unknown:
        names = ", ".join(map(repr, unknown))
        listed = ", ".join(sorted(known)) or "none"
        raise click.UsageError(f"no endpoint named {names} in {source.path}; known: {listed}")
    if not endpoints and not config.probed:
        click.echo(f"{source.path}: no endpoints to probe{_shard_text(config)}", err=True)
        sys.exit(0)
    results = loop.run(probe_once(config, endpoints, tls))
    if fmt == "json":
        where = {"vantage": config.vantage} if config.vantage is not None else {}
        click.echo(json.dumps([{**_result_json(r), **where} for r in results], indent=2))
    else:
        if config.vantage is not None:
            click.echo(f"vantage: {config.vantage}")
        click.echo(_table(results))
    sys.exit(0 if all(r.success for r in results) else 1)


@main.command()
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file instead of stdout."
)
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the config file (for editors)."""
    text = json_schema_text()
    try:
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text)
    except OSError as exc:
        _output_failed("standard output" if output is None else click.format_filename(output), exc)
