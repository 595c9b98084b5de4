"""Probe results: what one probe of one endpoint found."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

PHASES: tuple[str, ...] = ("resolve", "connect", "tls", "processing", "transfer")


class FailureReason(StrEnum):
    """Why a probe failed; one per failed probe (the `reason` label)."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    BODY = "body"
    HEADER = "header"
    TOO_SLOW = "too_slow"
    PROTOCOL = "protocol"
    ERROR = "error"


def _empty_phases() -> Mapping[str, float]:
    return MappingProxyType(dict.fromkeys(PHASES, 0.0))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe; a failing target is a result, never an exception."""

    endpoint: str
    success: bool
    started_at: float  # wall clock (time.time()) when the probe began
    duration_seconds: float  # whole probe, all redirects included
    reason: FailureReason | None = None  # set exactly when success is False
    message: str = ""  # human-readable detail of the failure, free of secrets
    status_code: int = 0  # last response's status, 0 when none arrived
    http_version: float = 0.0  # 1.0, 1.1, 2.0; 0 when no response
    content_length: int = -1  # Content-Length of the last response, -1 if unknown
    body_bytes: int = 0  # body bytes read from the last response
    redirects: int = 0
    ssl: bool = False  # the last response came over TLS
    cert_expiry_timestamp: float | None = None  # leaf certificate notAfter, unix seconds
    failed_due_to_regex: bool = False
    phases: Mapping[str, float] = field(default_factory=_empty_phases)

    def __post_init__(self) -> None:
        if self.success != (self.reason is None):
            raise ValueError("a failed result needs a reason and a good one none")

    @property
    def finished_at(self) -> float:
        """Wall-clock time when the probe finished."""
        return self.started_at + self.duration_seconds
