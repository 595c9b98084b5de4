"""Problems found in a config file: where (file, line, column, location) and what."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int
    column: int
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.location}: {self.message}"


class ConfigError(Exception):
    """A config file that cannot be used, with every problem found in it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column, p.location)))
        super().__init__("\n".join(str(p) for p in self.problems))


PathKey = tuple[str | int, ...]  # where in a document: keys and list indexes


def format_location(path: PathKey, names: Mapping[int, str] | None = None) -> str:
    """A dotted location like `endpoints[api].timeout` from a path of keys and indexes."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            label = None
            if names is not None and i == 1 and path[0] == "endpoints":
                label = names.get(part)
            out += f"[{printable(label) if label is not None else part}]"
        else:
            out += ("." if out else "") + printable(part)
    return out or "(root)"


def printable(text: str) -> str:
    """Text with line breaks and other control characters escaped, so that a problem stays on one line."""
    return text if text.isprintable() else repr(text)[1:-1]
