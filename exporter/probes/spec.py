"""What the prober needs of an endpoint, as plain frozen data: cheap to send to a worker process.

A worker process only probes, so it should not pay for the config machinery (pydantic, YAML, the
host collectors): the main process turns each `Endpoint` into a `ProbeSpec` (`Endpoint.probe_spec`)
and sends that. The prober reads nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ExpectSpec:
    """What a good response looks like (see `config.Expect`)."""

    status: tuple[tuple[int, int], ...] = ((200, 299),)  # inclusive ranges
    status_text: str = "2xx"  # as the config wrote them, for messages
    body_contains: str | None = None
    body_matches: re.Pattern[str] | None = None
    body_not_matches: re.Pattern[str] | None = None
    headers: tuple[tuple[str, re.Pattern[str]], ...] = ()
    max_response_time: float | None = None

    def status_ok(self, status: int) -> bool:
        """Whether the status is one of the expected ones."""
        return any(low <= status <= high for low, high in self.status)


@dataclass(frozen=True, slots=True)
class TLSSpec:
    """TLS settings of an https endpoint (see `config.TLSConfig`)."""

    verify: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One endpoint as the scheduler and the prober see it."""

    name: str
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    interval: float = 30.0
    timeout: float = 10.0
    follow_redirects: bool = True
    max_redirects: int = 10
    body_size_limit: int = 10 * 1024 * 1024
    tls: TLSSpec = TLSSpec()
    expect: ExpectSpec = ExpectSpec()
