"""Loading a config file: defaults merged into endpoints, cross-checks, files resolved, TLS material loaded."""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from exporter.files import UnreadableFileError, read_regular
from exporter.probes.tls import MaterialFileError, TLSContexts, TLSSetupError, check_material

from .document import Document, read_document
from .models import DEFAULTABLE, Config, Endpoint, EndpointDefaults, share_parts, with_vantage
from .problems import ConfigError, PathKey, Problem, printable
from .status_page import StatusPage
from .values import MIN_INTERVAL, clip, format_duration, parse_duration, type_name

DEFAULT_CONFIG_FILE = "upwatch.yml"
CONFIG_ENV_VAR = "UPWATCH_CONFIG"
# Top-level keys starting with x- are ignored, as in Compose files: a place for YAML anchors.
EXTENSION_PREFIX = "x-"
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # 20,000 endpoints written out in full take about 2 MB
_TOO_LARGE = f"is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a config file"


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *, tls: TLSContexts | None = None
) -> Config:
    """Read, check and return the config in a file; raises ConfigError listing every problem.

    TLS material is loaded into `tls` (a fresh cache if none is given), so that the prober sharing it
    finds every endpoint's SSL context built.
    """
    file = os.fspath(path)
    try:
        raw = read_regular(file, MAX_CONFIG_BYTES, _TOO_LARGE)
    except UnreadableFileError as exc:  # a directory, a pipe, a device: never read
        raise ConfigError([Problem(file, 1, 1, "(file)", str(exc))]) from None
    except OSError as exc:
        raise ConfigError([Problem(file, 1, 1, "(file)", f"cannot read file: {exc.strerror or exc}")]) from None
    return parse_config(raw, file, env=env, base_dir=Path(file).resolve().parent, tls=tls)


def parse_config(
    raw: bytes | str,
    file: str = "<config>",
    *,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    tls: TLSContexts | None = None,
) -> Config:
    """Check and return the config in some YAML text; raises ConfigError listing every problem."""
    data, doc = read_document(raw, file, os.environ if env is None else env)
    config = _validate(data, doc, base_dir or Path.cwd(), tls if tls is not None else TLSContexts())
    if doc.problems or config is None:
        raise ConfigError(doc.problems)
    return config


def _validate(data: dict[str, object], doc: Document, base_dir: Path, tls: TLSContexts) -> Config | None:
    """Validate top level, defaults and each endpoint, collecting every problem."""
    raw_endpoints = data.get("endpoints")
    if raw_endpoints is None:
        raw_endpoints = []
    if isinstance(raw_endpoints, list):
        named: set[str] = set()
        for i, item in enumerate(raw_endpoints):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name or ("endpoints", i, "name") in doc.filled:
                continue  # a name from the environment stays out of locations, as its values stay out of messages
            normal = unicodedata.normalize("NFC", name)
            if normal not in named:
                doc.names[i] = name
                named.add(normal)

    top_model = None
    try:  # the top level; endpoints are checked one by one below
        top_model = Config.model_validate(
            {k: v for k, v in data.items() if k != "endpoints" and not k.startswith(EXTENSION_PREFIX)}
        )
    except ValidationError as exc:
        _report(exc, doc, ())

    defaults = data.get("defaults")
    if not isinstance(defaults, dict):
        defaults = {}
    elif "interval" in defaults and "timeout" in defaults:
        _check_timing(defaults, doc, ("defaults",), {})

    if not isinstance(raw_endpoints, list):
        doc.problem(("endpoints",), f"must be a list of endpoints, got {type_name(raw_endpoints)}")
        return None
    endpoints: list[Endpoint] = []
    first_use: dict[str, int] = {}
    normal_forms: dict[str, str] = {}  # NFC form -> the name first written so: 'é' and 'e' + U+0301 are one name
    shared: dict[tuple[str, str], object] = {}
    vantage = top_model.vantage if top_model is not None else None
    for i, item in enumerate(raw_endpoints):
        path: PathKey = ("endpoints", i)
        if not isinstance(item, dict):
            doc.problem(path, f"each endpoint must be a mapping with name and url, got {type_name(item)}")
            continue
        name = item.get("name")
        if isinstance(name, str):
            same = _first_of_name(name, first_use, normal_forms)
            if same is None:
                first_use[name] = i
                normal_forms.setdefault(unicodedata.normalize("NFC", name), name)
            else:
                line = doc.mark(("endpoints", first_use[same], "name"))[0]
                other_form = "" if same == name else ", written in another Unicode form"
                message = f"duplicate endpoint name {name!r} (first used on line {line}{other_form})"
                doc.problem((*path, "name"), message)
        merged, sources = _merge(defaults, item, path)
        timing_ok = _check_timing(merged, doc, path, sources)
        try:
            endpoint = Endpoint.model_validate(merged)
        except ValidationError as exc:
            _report(exc, doc, path, sources)
            continue
        if top_model is not None:
            _check_body_memory(endpoint, top_model.body_memory_limit, merged, doc, path, sources)
        if timing_ok:
            _check_max_response_time(endpoint, merged, doc, path, sources)
            resolved = _resolve_files(endpoint, doc, path, sources, base_dir)
            if resolved is not None:
                endpoints.append(share_parts(with_vantage(resolved, vantage), shared))
                _load_tls(resolved, doc, path, sources, tls)

    if top_model is not None:
        _check_groups(top_model.status_page, endpoints, first_use, doc)
        if len(endpoints) == len(raw_endpoints):  # else a label may be missing only with the broken endpoints
            _check_group_by(top_model.status_page, endpoints, doc)
    if doc.problems or top_model is None:
        return None
    data_dir = top_model.data_dir
    if data_dir is not None and not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    return top_model.model_copy(update={"endpoints": endpoints, "data_dir": data_dir})


def _first_of_name(name: str, first_use: Mapping[str, int], normal_forms: Mapping[str, str]) -> str | None:
    """The name, as first written, of an earlier endpoint with this name (in any Unicode normal form); or None."""
    if name in first_use:
        return name
    return normal_forms.get(unicodedata.normalize("NFC", name))


def _check_groups(page: StatusPage, endpoints: list[Endpoint], written: Mapping[str, int], doc: Document) -> None:
    """The page's groups have names of their own and name endpoints that exist, are on the page, and in no other group.

    `written` holds the name of every endpoint in the file, even of one with problems (which is not
    in `endpoints`), so that a group naming it is not reported too.
    """
    hidden = {ep.name for ep in endpoints if not ep.status_page}
    group_lines: dict[str, int] = {}
    placed: dict[str, tuple[str, int]] = {}  # endpoint name -> its group and the line it was listed on
    for g, group in enumerate(page.groups):
        where: PathKey = ("status_page", "groups", g)
        if group.name in group_lines:
            message = f"duplicate group name {group.name!r} (first used on line {group_lines[group.name]})"
            doc.problem((*where, "name"), message)
        else:
            group_lines[group.name] = doc.mark((*where, "name"))[0]
        for k, name in enumerate(group.endpoints):
            at: PathKey = (*where, "endpoints", k)
            if name not in written:
                close = difflib.get_close_matches(name, written, n=1)
                doc.problem(at, f"unknown endpoint {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            elif name in hidden:
                doc.problem(at, f"endpoint {name!r} has status_page: false, so it cannot be in a group")
            elif name in placed:
                first_group, line = placed[name]
                doc.problem(at, f"endpoint {name!r} is already in group {first_group!r} (line {line})")
            else:
                placed[name] = (group.name, doc.mark(at)[0])


def _check_group_by(page: StatusPage, endpoints: list[Endpoint], doc: Document) -> None:
    """The label the page groups by is one some endpoint has: one that none has is most likely a typo."""
    label = page.group_by
    if label is None or not endpoints or any(label in ep.labels for ep in endpoints):
        return
    in_use = sorted({name for ep in endpoints for name in ep.labels})
    close = difflib.get_close_matches(label, in_use, n=1)
    message = f"no endpoint has the label {label!r}"
    if close:
        message += f" (did you mean {close[0]!r}?)"
    elif in_use:
        message += f"; labels in use: {', '.join(in_use)}"
    doc.problem(("status_page", "group_by"), message)


def _merge(
    defaults: dict[str, object], item: dict[str, object], path: PathKey
) -> tuple[dict[str, object], dict[PathKey, PathKey]]:
    """An endpoint with defaults filled in, and where in the file each merged key came from."""
    merged: dict[str, object] = {}
    sources: dict[PathKey, PathKey] = {}
    for key, value in defaults.items():
        if key in DEFAULTABLE:  # other keys are reported when the defaults are checked
            merged[key] = value
            sources[(key,)] = ("defaults", key)
    for key, value in item.items():
        base = merged.get(key)
        sources[(key,)] = (*path, key)
        if isinstance(base, dict) and isinstance(value, dict) and key in _MERGED_MAPPINGS:
            for sub in base:
                sources[(key, sub)] = ("defaults", key, sub)
            for sub in value:
                sources[(key, sub)] = (*path, key, sub)
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged, sources


_MERGED_MAPPINGS = ("headers", "labels", "expect", "tls")


def _source(loc: PathKey, sources: Mapping[PathKey, PathKey], path: PathKey) -> PathKey:
    """Where in the file the value at `loc` (inside an endpoint) was written."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return (*sources[loc[:n]], *loc[n:])
    return (*path, *loc)


def _check_timing(
    merged: Mapping[str, object], doc: Document, path: PathKey, sources: Mapping[PathKey, PathKey]
) -> bool:
    """Timeout must be shorter than interval (bad durations are reported elsewhere).

    The problem is reported at the timeout if it was written at `path` (an endpoint, or the
    defaults), else at the interval written there; if neither was, at the defaults (problems are
    de-duplicated, so once for all endpoints).
    """
    try:
        interval = parse_duration(merged.get("interval", _BUILTIN_INTERVAL))
        timeout = parse_duration(merged.get("timeout", _BUILTIN_TIMEOUT))
    except ValueError:
        return False
    if timeout < interval:
        return True
    if interval < MIN_INTERVAL:  # reported as too short: longer than the timeout it must be too, but first that
        return False

    (t_here, t_from), (i_here, i_from) = (_origin((key,), merged, sources, path) for key in ("timeout", "interval"))
    if t_here:
        key, message = (
            "timeout",
            f"must be shorter than interval ({format_duration(interval)}{'' if i_here else i_from})",
        )
        message += f", got {format_duration(timeout)}"
    elif i_here:
        key, message = "interval", f"must be longer than timeout ({format_duration(timeout)}{t_from})"
        message += f", got {format_duration(interval)}"
    else:
        if "interval" not in merged or "timeout" not in merged:  # one from the defaults, one built in
            _check_timing({k: merged[k] for k in ("interval", "timeout") if k in merged}, doc, ("defaults",), {})
        return False
    doc.problem((*path, key), message)
    return False


_BUILTIN_INTERVAL = format_duration(Endpoint.model_fields["interval"].default)
_BUILTIN_TIMEOUT = format_duration(Endpoint.model_fields["timeout"].default)


def _resolve_files(
    endpoint: Endpoint, doc: Document, path: PathKey, sources: Mapping[PathKey, PathKey], base_dir: Path
) -> Endpoint | None:
    """TLS file paths made absolute (relative to the config file) and checked to be regular files; None on a problem."""
    tls = endpoint.tls
    update: dict[str, Path] = {}
    found_problem = False

    def problem(key: str, message: str) -> None:
        nonlocal found_problem
        found_problem = True
        _problem_at_source(doc, ("tls", key), message, sources, path)

    for key in ("ca_file", "cert_file", "key_file"):
        value: Path | None = getattr(tls, key)
        if value is None:
            continue
        full = value if value.is_absolute() else base_dir / value
        try:
            check_material(full.stat())
        except FileNotFoundError:
            problem(key, f"file not found: {printable(str(full))}")
        except OSError as exc:  # e.g. a name too long
            problem(key, f"cannot use file {clip(str(full))}: {exc.strerror}")
        except MaterialFileError as exc:  # a directory, a pipe, a device: never opened
            problem(key, f"cannot use file {printable(str(full))}: it {exc}")
        update[key] = full
    if tls.key_file is not None and tls.cert_file is None:
        problem("key_file", "key_file needs cert_file")
    if found_problem:
        return None
    if not update:
        return endpoint
    return endpoint.model_copy(update={"tls": tls.model_copy(update=update)})


def _load_tls(
    endpoint: Endpoint, doc: Document, path: PathKey, sources: Mapping[PathKey, PathKey], tls: TLSContexts
) -> None:
    """Build the endpoint's SSL context now, so that a file that does not load is a problem at its line."""
    try:
        tls.load(endpoint.tls)
    except TLSSetupError as exc:
        doc.problem(_source(("tls",), sources, path), str(exc), location=doc.location((*path, "tls")))


def _check_max_response_time(
    endpoint: Endpoint, merged: Mapping[str, object], doc: Document, path: PathKey, sources: Mapping[PathKey, PathKey]
) -> None:
    """A response-time limit at or above the timeout can never fail a probe: the timeout strikes first.

    Reported, as the timeout and interval are, at the limit if the endpoint wrote it, else at the
    endpoint's own timeout, else at the defaults (once for all endpoints).
    """
    limit, timeout = endpoint.expect.max_response_time, endpoint.timeout
    if limit is None or limit < timeout:
        return
    timeout_here, timeout_from = _origin(("timeout",), merged, sources, path)
    if _origin(("expect", "max_response_time"), merged, sources, path)[0]:
        where: PathKey = (*path, "expect", "max_response_time")
        shown = f"{format_duration(timeout)}{'' if timeout_here else timeout_from}"
        message = f"must be shorter than timeout ({shown}), got {format_duration(limit)}"
    elif timeout_here:
        where = (*path, "timeout")
        message = f"must be longer than expect.max_response_time ({format_duration(limit)} from defaults)"
        message += f", got {format_duration(timeout)}"
    else:  # both from the defaults (or the timeout built in): once, there
        where = ("defaults", "expect", "max_response_time")
        shown = f"{format_duration(timeout)}{'' if 'timeout' in merged else timeout_from}"
        message = f"must be shorter than timeout ({shown}), got {format_duration(limit)}"
    doc.problem(where, message)


def _check_body_memory(
    ep: Endpoint,
    budget: int,
    merged: Mapping[str, object],
    doc: Document,
    path: PathKey,
    sources: Mapping[PathKey, PathKey],
) -> None:
    """A body that a check reads must fit in body_memory_limit, or its probe could never finish."""
    if ep.body_size_limit <= budget or not (
        ep.expect.body_contains or ep.expect.body_matches or ep.expect.body_not_matches
    ):
        return
    if "body_size_limit" in merged:  # else the built-in 10MiB: reported once, at body_memory_limit
        message = f"must be at most body_memory_limit ({budget} bytes) for an endpoint with body checks"
        return doc.problem(_source(("body_size_limit",), sources, path), f"{message}, got {ep.body_size_limit}")
    doc.problem(("body_memory_limit",), f"must be at least body_size_limit ({ep.body_size_limit} bytes), got {budget}")


def _origin(
    loc: PathKey, merged: Mapping[str, object], sources: Mapping[PathKey, PathKey], path: PathKey
) -> tuple[bool, str]:
    """Whether the value at `loc` of an endpoint was written at `path`; else how a message says where it came from."""
    if loc[0] not in merged:
        return False, " by default"
    return _source(loc, sources, path)[: len(path)] == path, " from defaults"


def _problem_at_source(
    doc: Document, loc: PathKey, message: str, sources: Mapping[PathKey, PathKey], path: PathKey
) -> None:
    """A problem with the value at `loc` of an endpoint, where it was written.

    A value from the defaults is reported there, once (problems are de-duplicated), not for every endpoint.
    """
    where = _source(loc, sources, path)
    doc.problem(where, message, location=doc.location(where if where[0] == "defaults" else (*path, *loc)))


_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "path_type": "must be a file path (a string)",
}


def _report(
    exc: ValidationError, doc: Document, path: PathKey, sources: Mapping[PathKey, PathKey] | None = None
) -> None:
    """Turn pydantic's errors into problems with file positions and plain messages."""
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(err["loc"])
        kind = err["type"]
        bad_key = bool(loc) and loc[-1] == "[key]"  # e.g. a bad label name
        if bad_key:
            loc = loc[:-1]
        where = _source(loc, sources, path) if sources is not None else (*path, *loc)
        if sources is not None and where and where[0] == "defaults":
            continue  # reported once, when the defaults were checked
        location = doc.location((*path, *loc))
        inp = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown key {key!r}"
            known = _known_keys((*path, *loc[:-1]))
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            elif known:
                message += f"; known keys: {', '.join(known)}"
            doc.problem(where, message, at_key=True, location=location)
            continue
        if kind == "missing":
            doc.problem(where[:-1], f"missing required key {loc[-1]!r}", location=doc.location((*path, *loc[:-1])))
            continue
        if kind == "value_error":
            message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        elif kind in _MESSAGES:
            message = f"{_MESSAGES[kind]}, got {type_name(inp)}"
            if isinstance(inp, (str, int, float)) and not isinstance(inp, bool):
                message += f" {inp!r}"
        elif kind in _BOUNDS:
            bound = next(iter(err.get("ctx", {}).values()), "?")
            message = f"must be {_BOUNDS[kind]} {bound}, got {inp!r}"
        else:
            message = err["msg"][:1].lower() + err["msg"][1:]
        doc.problem(where, message, at_key=bad_key, location=location)


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _known_keys(path: PathKey) -> list[str]:
    """Valid keys of the mapping at a path, for "did you mean" hints: the fields of the model found there."""
    named = [p for p in path if isinstance(p, str)]
    model: type[BaseModel] | None = Config
    if named[:1] == ["endpoints"]:
        model, named = Endpoint, named[1:]
    elif named[:1] == ["defaults"]:
        model, named = EndpointDefaults, named[1:]
    for part in named:
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model a field holds (`Expect`, `TLSConfig | None`, `tuple[StatusGroup, ...]`); None for values, mappings."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType, Annotated, tuple, list):
        for arg in get_args(annotation):
            if (model := _model_in(arg)) is not None:
                return model
    return None
