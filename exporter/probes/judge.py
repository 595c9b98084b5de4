"""Expectations: whether a response is what the endpoint expects, as a pure function of the two.

The checks run in a fixed order (status, headers, body size, body content) and the first that fails
is the probe's reason, as in blackbox_exporter; header values and body text never reach a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.probes.failures import Failure
from exporter.probes.spec import ExpectSpec
from exporter.results import FailureReason


@dataclass(frozen=True, slots=True)
class Response:
    """What the judge looks at: the last response's status and headers, and its body once read."""

    status: int
    headers: Sequence[tuple[str, str]]  # (lower-case name, value), in the order received
    body: str | None = None  # decoded text; None while not read (head checks only)
    oversize: str | None = None  # why the body was not read whole ("body larger than ..."), if so

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, by its case-insensitive name."""
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]


def judge(expect: ExpectSpec, response: Response) -> Failure | None:
    """The first expectation the response fails, or None when it meets them all (so far as it was read)."""
    if not expect.status_ok(response.status):
        return Failure(FailureReason.HTTP_STATUS, f"status {response.status}, expected {expect.status_text}")
    for name, pattern in expect.headers:
        values = response.header_values(name)
        if not values:
            return Failure(FailureReason.HEADER, f"header {name} missing", regex=True)
        if not any(pattern.search(value) for value in values):
            return Failure(FailureReason.HEADER, f"header {name} does not match {_short(pattern.pattern)}", regex=True)
    if response.oversize is not None:
        return Failure(FailureReason.BODY, response.oversize)
    text = response.body
    if text is None:
        return None
    if expect.body_contains is not None and expect.body_contains not in text:
        return Failure(FailureReason.BODY, f"body does not contain {_short(expect.body_contains)}", regex=True)
    if expect.body_matches is not None and not expect.body_matches.search(text):
        return Failure(FailureReason.BODY, f"body does not match {_short(expect.body_matches.pattern)}", regex=True)
    if expect.body_not_matches is not None and expect.body_not_matches.search(text):
        return Failure(FailureReason.BODY, f"body matches {_short(expect.body_not_matches.pattern)}", regex=True)
    return None


def needs_body_text(expect: ExpectSpec) -> bool:
    """Whether any check looks at the body's text (otherwise the body is only counted, never decoded to text)."""
    return expect.body_contains is not None or expect.body_matches is not None or expect.body_not_matches is not None


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
