"""`${VAR}` in config values: filled in from the environment, and kept out of every problem message.

Defaults nest as in Docker Compose (`${A:-${B:-x}}`); a default is read only when it is used, so
an unset variable in a default not taken is no problem. `$$` is a literal `$`, and a `$` before
anything but `$` or `{` is text. Values from the environment are never expanded again.

A variable holds what the file should not: a secret put in the wrong field (`timeout: ${PASSWORD}`)
must not be printed back by `validate`, the log or the reload response. Problems name such a value
by what was written (`<the value of ${PASSWORD}>`), and a problem that would still show a piece of
it says so instead of showing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .problems import PathKey, printable

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^${}]*)?\}")
_STOPS = re.compile(r"\$")
_NESTED_STOPS = re.compile(r"[$}]")  # in a default, a } not closing a reference of its own closes it
_BRACES = re.compile(r"\$\{|\}")
_TOKEN = re.compile("\x00(\\d+)\x00")
_UNCLOSED = "invalid variable reference: ${ without a closing }"
# A value of the environment is named where it shows as it is from this length on (as its repr, quoted,
# at any length), and a problem about a value it filled in is withheld when a piece of it this long still
# shows (a regex error quoting part of the pattern). Shorter ones are no secret, and looking for them
# would garble messages ("must be true or false" when the value was "true").
_PIECE = 8


@dataclass(frozen=True, slots=True)
class Filled:
    """A string value with variables filled in: the text as written, and what the environment gave."""

    written: str
    text: str  # with the variables filled in
    values: tuple[tuple[str, str], ...]  # (variable, value), each value non-empty

    @property
    def shown(self) -> str:
        """How a problem names the value: `<the value of ${PW}>`, `<the value of 'Bearer ${PW}'>`."""
        if _REFERENCE.fullmatch(self.written) and len(self.written) <= 80:
            return f"<the value of {self.written}>"
        text = self.written if len(self.written) <= 60 else self.written[:57] + "..."
        return f"<the value of {text!r}>"


def expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str], tuple[tuple[str, str], ...]]:
    """`text` with its `${VAR}`s filled in, the problems met (as messages), and the values used."""
    syntax = _Scan(text, env)
    syntax.run(0, nested=False, evaluate=False)  # a mistake in the text first: then what is unset does not matter
    if syntax.problems:
        return text, syntax.problems, ()
    scan = _Scan(text, env)
    out, _ = scan.run(0, nested=False, evaluate=True)
    return out, scan.problems, tuple(dict.fromkeys(scan.used))


class _Scan:
    def __init__(self, text: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.env = env
        self.problems: list[str] = []
        self.used: list[tuple[str, str]] = []

    def run(self, i: int, *, nested: bool, evaluate: bool) -> tuple[str, int]:
        """The text from `i` to its end, or (nested, in a default) to the `}` closing it; and where it stopped."""
        text, parts = self.text, []
        stops = _NESTED_STOPS if nested else _STOPS
        while True:
            m = stops.search(text, i)
            if m is None:
                parts.append(text[i:])
                return "".join(parts), -1 if nested else len(text)
            k = m.start()
            parts.append(text[i:k])
            if text[k] == "}":
                return "".join(parts), k + 1
            if text.startswith("$$", k):
                parts.append("$")
                i = k + 2
            elif text.startswith("${", k):
                value, i = self.reference(k, evaluate=evaluate)
                if i < 0:
                    return "".join(parts), -1
                parts.append(value)
            else:
                parts.append("$")
                i = k + 1

    def reference(self, start: int, *, evaluate: bool) -> tuple[str, int]:
        """The value of the reference `${...}` at `start`, and where the text goes on after it (-1: unclosed)."""
        text = self.text
        close, default_at = text.find("}", start), text.find(":-", start)
        if close < 0 and default_at < 0:
            self.problems.append(_UNCLOSED)
            return "", -1
        if default_at < 0 or 0 <= close < default_at:
            name, default_at = text[start + 2 : close], -1
        else:
            name = text[start + 2 : default_at]
        if not _NAME.fullmatch(name):
            after = _balanced_end(text, start + 2)
            if after < 0:
                self.problems.append(_UNCLOSED)
                return "", -1
            written = printable(text[start + 2 : after - 1])
            self.problems.append(f"invalid variable reference ${{{written}}}: use ${{NAME}} or ${{NAME:-default}}")
            return text[start:after], after
        value = self.env.get(name) if evaluate else ""
        if default_at < 0:
            if value is None:
                self.problems.append(
                    f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
                )
                value = ""
            elif value:
                self.used.append((name, value))
            return value, close + 1
        taken = evaluate and not value
        default, after = self.run(default_at + 2, nested=True, evaluate=taken)
        if after < 0:
            if not self.problems or self.problems[-1] != _UNCLOSED:
                self.problems.append(_UNCLOSED)
            return "", -1
        if taken:
            return default, after
        if value:
            self.used.append((name, value))
        return value or "", after


def _balanced_end(text: str, i: int) -> int:
    """Where the text goes on after the `}` closing a reference whose inside starts at `i` (-1: never closed)."""
    depth = 1
    for m in _BRACES.finditer(text, i):
        depth += 1 if m.group() == "${" else -1
        if depth == 0:
            return m.end()
    return -1


class FilledValues:
    """Where in a document variables were filled in, and with what; conceals those values in problem messages."""

    def __init__(self) -> None:
        self._at: dict[PathKey, Filled] = {}
        self._under: dict[PathKey, list[Filled]] | None = None
        self._whole: dict[str, str] = {}  # every value (and its repr-escaped form) -> its variable
        self._heads: dict[str, list[str]] = {}  # the first _PIECE characters of those -> them

    def add(self, path: PathKey, filled: Filled) -> None:
        """Record the variables filled into the value at `path`."""
        self._at[path] = filled
        self._under = None
        self._whole, self._heads = {}, {}

    def __contains__(self, path: object) -> bool:
        return path in self._at

    def conceal(self, path: PathKey, message: str) -> str:
        """The message of a problem at `path` without any value the environment gave."""
        if not self._at:
            return message
        # Names stand in for values as tokens first, so that no value is looked for inside a name.
        names: list[str] = []

        def token(name: str) -> str:
            names.append(name)
            return f"\x00{len(names) - 1}\x00"

        related = self._related(path)
        for filled in related:  # the value at the problem's path, or in a list or mapping there
            for rendering in _renderings(filled):
                if rendering in message:
                    message = message.replace(rendering, token(filled.shown))
        for value in self._whole_values_in(message):  # wherever it was filled in: a location, a file name
            message = message.replace(value, token(f"<the value of ${{{self._whole[value]}}}>"))
        for filled in related:
            if any(_shows_piece(message, value) for _, value in filled.values):
                return f"{filled.shown} is not valid here (the problem is not shown: it would show part of the value)"
        return _TOKEN.sub(lambda m: names[int(m.group(1))], message)

    def _related(self, path: PathKey) -> list[Filled]:
        if self._under is None:
            self._under = {}
            for at, filled in self._at.items():
                for n in range(len(at) + 1):
                    self._under.setdefault(at[:n], []).append(filled)
        return self._under.get(path, []) if path else []

    def _whole_values_in(self, message: str) -> list[str]:
        """The values of the environment (_PIECE characters or more) found whole in the message, longest first."""
        if not self._whole:
            for filled in self._at.values():
                for name, value in filled.values:
                    for form in (value, repr(value)[1:-1]):
                        if len(form) >= _PIECE and form not in self._whole:
                            self._whole[form] = name
                            self._heads.setdefault(form[:_PIECE], []).append(form)
        windows = {message[i : i + _PIECE] for i in range(len(message) - _PIECE + 1)}
        found = {v for head in windows for v in self._heads.get(head, ()) if v in message}
        return sorted(found, key=len, reverse=True)


def _renderings(filled: Filled) -> list[str]:
    """How messages show a string value: its repr, clipped or whole, or itself (escaped) when long enough."""
    text = filled.text
    forms = [repr(text)]
    if len(text) > 40:
        forms.append(repr(text[:40]) + "...")
    if len(text) >= _PIECE:
        forms.append(printable(text))
    return sorted(forms, key=len, reverse=True)


def _shows_piece(message: str, value: str) -> bool:
    """Whether _PIECE or more consecutive characters of the value (or of its repr) are in the message."""
    for form in {value, repr(value)[1:-1]}:
        if len(form) < _PIECE:
            continue
        pieces = {form[i : i + _PIECE] for i in range(len(form) - _PIECE + 1)}
        if any(message[i : i + _PIECE] in pieces for i in range(len(message) - _PIECE + 1)):
            return True
    return False
