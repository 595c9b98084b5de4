"""A YAML document as plain data that remembers where each value was written, with ${VAR} filled in."""

from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

from .interpolation import Filled, FilledValues, expand
from .problems import ConfigError, PathKey, Problem, format_location
from .values import clip, type_name

_MAX_NODES = 100_000  # values an alias may expand to, against alias bombs ("billion laughs")
_MAX_DEPTH = 100
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_KINDS = {
    _INT_TAG: "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:null": "nothing (null)",
    _TIMESTAMP_TAG: "a timestamp",
    "tag:yaml.org,2002:binary": "base64 data",
}
# Integers are read as 64-bit ones (none of the file's numbers comes near): 0b and 64 digits, with a sign, at most.
_MAX_INT_TEXT = 100
_INT_RANGE = "integer out of range: must be between -2^63 and 2^63-1"


def read_document(
    raw: bytes | str,
    file: str,
    env: Mapping[str, str] | None,
    *,
    expected: str = "a mapping with an endpoints list",
    empty_ok: bool = False,
) -> tuple[dict[str, object], Document]:
    """The top-level mapping of some YAML and its Document; raises ConfigError when it is not YAML data.

    `env` None leaves `${VAR}` as written (files of other programs' formats); `expected` names the
    top level in problems; `empty_ok` reads an empty file as an empty mapping.
    """
    text = _decode(raw, file)
    doc = Document(file, env)
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc, file)]) from None
    except yaml.YAMLError as exc:  # one line, as every problem is
        raise ConfigError([Problem(file, 1, 1, "(root)", f"invalid YAML: {' '.join(str(exc).split())}")]) from None
    except RecursionError:  # PyYAML's composer recurses once per level
        raise ConfigError([_too_deep(text, file)]) from None
    if node is None:
        if empty_ok:
            return {}, doc
        raise ConfigError([Problem(file, 1, 1, "(root)", f"the file is empty: expected {expected}")])
    try:
        data = doc.convert(node, ())
    except _TooLarge:
        message = f"aliases expand the document by more than {_MAX_NODES} values (alias bomb?)"
        raise ConfigError([Problem(file, 1, 1, "(root)", message)]) from None
    except _RecursiveAlias as exc:
        line, col = exc.mark
        message = "an alias refers to a node that contains it"
        raise ConfigError([Problem(file, line, col, format_location(exc.path), message)]) from None
    except (_TooDeep, RecursionError):
        raise ConfigError([_too_deep(text, file)]) from None
    except yaml.YAMLError as exc:  # e.g. a bad merge key or unknown tag
        message = getattr(exc, "problem", None) or str(exc)
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(file, line, col, "(root)", f"invalid YAML: {message}")]) from None
    if not isinstance(data, dict):
        doc.problem((), f"the top level must be {expected}, got {type_name(data)}")
        raise ConfigError(doc.problems)
    return data, doc


class Document:
    """A YAML document turned into plain data, remembering where every value was written."""

    def __init__(self, file: str, env: Mapping[str, str] | None) -> None:
        self.file = file
        self.env = env
        self.value_marks: dict[PathKey, tuple[int, int]] = {}
        self.key_marks: dict[PathKey, tuple[int, int]] = {}
        self.names: dict[int, str] = {}  # endpoint index -> name, for locations like endpoints[api]
        self.filled = FilledValues()  # where ${VAR}s were filled in, kept out of problem messages
        self._pending: list[tuple[int, int, PathKey, str, str | None]] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0  # values met again through an alias; values written once do not count
        self._met: set[int] = set()
        self._explicit: dict[int, int] = {}  # mapping node -> how many of its pairs were written in it (not merged)
        self._unread: set[PathKey] = set()  # values with a problem of their own: no other is reported at them

    def problem(
        self,
        path: PathKey,
        message: str,
        *,
        at_key: bool = False,
        location: str | None = None,
        mark: tuple[int, int] | None = None,
    ) -> None:
        """Record a problem at a path of the document (location defaults to the path)."""
        if path in self._unread:
            return  # the value could not be read: what else is said of it would be about a stand-in
        line, col = mark or self.mark(path, at_key=at_key)
        self._pending.append((line, col, path, message, location))

    def _unreadable(self, path: PathKey, message: str) -> None:
        """A problem with a value as written, which stands for the value from now on."""
        self._unread.discard(path)
        self.problem(path, message)
        self._unread.add(path)

    @property
    def problems(self) -> list[Problem]:
        """Every problem so far, each once; locations name endpoints known by now."""
        return list(
            dict.fromkeys(
                Problem(self.file, line, col, location or self.location(path), self.filled.conceal(path, message))
                for line, col, path, message, location in self._pending
            )
        )

    def location(self, path: PathKey) -> str:
        """A dotted location naming endpoints by their name where they have one."""
        return format_location(path, self.names)

    def mark(self, path: PathKey, *, at_key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the value, or the key, at a path, or of its nearest parent."""
        probe = path
        while True:
            if at_key and probe in self.key_marks:
                return self.key_marks[probe]
            if probe in self.value_marks:
                return self.value_marks[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]

    def convert(self, node: yaml.Node, path: PathKey, active: frozenset[int] = frozenset()) -> object:
        """Plain Python data from a YAML node, recording marks, checking keys and filling ${VAR}s."""
        # Only what aliases add counts: a long file written out in full is no bomb, however many values it has.
        if id(node) in self._met:
            self._nodes += 1
            if self._nodes > _MAX_NODES:
                raise _TooLarge
        else:
            self._met.add(id(node))
        self.value_marks[path] = _mark(node)
        if id(node) in active:  # the node's own mark is its anchor's; the alias's key, if any, is nearer
            raise _RecursiveAlias(path, self.key_marks.get(path, self.value_marks[path]))
        if isinstance(node, yaml.CollectionNode):
            if len(path) >= _MAX_DEPTH:
                raise _TooDeep
            if node.tag not in (_MAP_TAG, _SEQ_TAG):  # e.g. !!set or !!python/object: not plain data
                raise yaml.constructor.ConstructorError(
                    None, None, f"the tag {node.tag!r} is not supported here", node.start_mark
                )
        if isinstance(node, yaml.MappingNode):
            if id(node) not in self._explicit:  # an aliased node is met again already flattened
                self._explicit[id(node)] = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
                self._constructor.flatten_mapping(node)  # `<<` pairs first, then the node's own
            split = len(node.value) - self._explicit[id(node)]
            winners: dict[str, tuple[yaml.Node, yaml.Node]] = {}
            first_seen: dict[str, int] = {}
            for key_node, value_node in node.value[split:]:
                key = self._key(key_node)
                key_mark = _mark(key_node)
                if not isinstance(key, str):
                    if isinstance(key_node, yaml.ScalarNode):
                        message = f"keys must be strings, got {type_name(key)}: quote the key"
                    else:
                        message = f"keys must be strings, got a {key_node.id}"
                    self.problem(path, message, mark=key_mark)
                elif key in first_seen:
                    message = f"duplicate key {key!r} (first written on line {first_seen[key]})"
                    self.problem((*path, key), message, mark=key_mark)
                else:
                    first_seen[key] = key_mark[0]
                    winners[key] = (key_node, value_node)
            # PyYAML's rule: a later pair wins, so the node's own keys beat merged ones and, as flatten_mapping
            # lists several merged mappings last to first, the first of them wins. Bad keys in a merged mapping
            # were reported where it was written.
            for key_node, value_node in reversed(node.value[:split]):
                key = self._key(key_node)
                if isinstance(key, str):
                    winners.setdefault(key, (key_node, value_node))
            out: dict[str, object] = {}
            inner = active | {id(node)}
            for key, (key_node, value_node) in winners.items():
                child = (*path, key)
                self.key_marks[child] = _mark(key_node)
                out[key] = self.convert(value_node, child, inner)
            return out
        if isinstance(node, yaml.SequenceNode):
            inner = active | {id(node)}
            return [self.convert(item, (*path, i), inner) for i, item in enumerate(node.value)]
        if node.tag == _STR_TAG:  # most values: the text as written, no constructor needed
            return self._interpolate(node.value, path)
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: PathKey) -> object:
        """A value other than a string (a number, a boolean, a timestamp); None when it cannot be read."""
        if node.tag == _INT_TAG and len(node.value) > _MAX_INT_TEXT:  # not even converted: Python refuses 4,300 digits
            self._unreadable(path, _INT_RANGE)
            return None
        try:
            value = self._constructor.construct_object(node)
        except yaml.YAMLError:  # e.g. an unknown tag: a problem with the YAML, reported as such
            raise
        except Exception as exc:  # PyYAML's constructors raise whatever they meet: 30 February, !!int "abc"
            kind = _KINDS.get(node.tag, f"a value of tag {node.tag}")
            reason = f": {exc}" if isinstance(exc, ValueError) and node.tag == _TIMESTAMP_TAG else ""
            self._unreadable(path, f"cannot read {clip(node.value)} as {kind}{reason}")
            return None
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            self._unreadable(path, _INT_RANGE)
            return None
        return value

    def _key(self, node: yaml.Node) -> object:
        """A mapping key as data; None for a collection used as a key."""
        return self._constructor.construct_object(node) if isinstance(node, yaml.ScalarNode) else None

    def _interpolate(self, text: str, path: PathKey) -> str:
        if self.env is None or "$" not in text:
            return text
        out, problems, used = expand(text, self.env)
        for message in problems:
            self._unreadable(path, message)
        if used:
            self.filled.add(path, Filled(text, out, used))
        return out


def _compose(text: str) -> yaml.Node | None:
    """The document's node graph, by libyaml (C, ten times faster) where PyYAML has it.

    A document libyaml rejects is composed again by PyYAML's own parser, whose messages are the ones
    users see, so that a problem reads the same whichever parser found it.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _mark(node: yaml.Node) -> tuple[int, int]:
    """Where a node starts, 1-based."""
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _TooLarge(Exception):
    pass


class _TooDeep(Exception):
    pass


class _RecursiveAlias(Exception):
    def __init__(self, path: PathKey, mark: tuple[int, int]) -> None:
        super().__init__(path, mark)
        self.path = path
        self.mark = mark


def _yaml_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    """A YAML syntax error, at the line a reader should look at."""
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark and exc.problem and ("end of stream" in exc.problem or "<stream end>" in exc.problem):
        mark = exc.context_mark  # e.g. an unclosed quote: where it opened, not the end of the file
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if exc.problem and "'\\t'" in exc.problem:
        return Problem(file, line, col, "(root)", "invalid YAML: a tab character here; indent with spaces")
    message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    return Problem(file, line, col, "(root)", f"invalid YAML: {message}")


def _too_deep(text: str, file: str) -> Problem:
    """A problem at the first collection nested more than _MAX_DEPTH levels deep."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events, unlike nodes, come without recursion
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                return Problem(file, line, col, "(root)", f"nested more than {_MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return Problem(file, 1, 1, "(root)", f"nested more than {_MAX_DEPTH} levels deep")


def _decode(raw: bytes | str, file: str) -> str:
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            head = raw[: exc.start]
            line = head.count(b"\n") + 1
            col = exc.start - (head.rfind(b"\n") + 1) + 1
            raise ConfigError(
                [
                    Problem(
                        file, line, col, "(root)", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
                    )
                ]
            ) from None
    if m := _NOT_YAML_TEXT.search(text):
        i, ch = m.start(), m.group()
        before = text[:i]
        line = before.count("\n") + 1
        col = i - (before.rfind("\n") + 1) + 1
        kind = "control character" if ch <= "\x9f" else "character"
        raise ConfigError([Problem(file, line, col, "(root)", f"not a text file: {kind} U+{ord(ch):04X}")])
    return text


# What YAML does not allow in a stream (PyYAML would stop at it with a message of several lines).
_NOT_YAML_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
