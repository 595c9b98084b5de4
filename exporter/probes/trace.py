"""Phase timing of one probe (blackbox_exporter's resolve, connect, tls, processing, transfer) and TLS facts.

Every timestamp is taken where the event happens (the connection is made, the first response byte is
handed over by the event loop, the last body byte arrives), never after a task got scheduled, so a busy
loop does not add its own delays to a phase.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

from exporter.results import PHASES


@dataclass(frozen=True, slots=True)
class PeerCert:
    """A server's leaf certificate: DER, and its expiry when OpenSSL already parsed it (a verified chain)."""

    der: bytes
    not_after: float | None = None  # unix seconds


@dataclass(slots=True)
class Handshake:
    """Where a TLS handshake went and what it gave, to look again at a server that failed the probe."""

    address: str
    port: int
    server_name: str | None
    seconds: float = 0.0
    version: str | None = None  # "TLSv1.3" once complete
    peer_cert: PeerCert | None = None  # the leaf certificate once complete


class ProbeTrace:
    """Phase timings and TLS facts of one probe; phases never overlap, so they sum to at most the duration."""

    __slots__ = ("_open", "handshake", "last_phase", "totals")

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.last_phase: str | None = None  # the phase running when a timeout struck
        self.handshake: Handshake | None = None  # the current hop's TLS handshake, if any
        self._open: tuple[str, float] | None = None

    def start(self, phase: str, at: float | None = None) -> None:
        """End the running phase, if any, and start timing `phase` (at `at`, default the present)."""
        now = time.monotonic() if at is None else at
        self.stop(now)
        self._open = (phase, now)
        self.last_phase = phase

    def stop(self, at: float | None = None) -> None:
        """End the running phase (at `at`, default the present)."""
        if self._open is not None:
            phase, began = self._open
            self.totals[phase] += max(0.0, (time.monotonic() if at is None else at) - began)
            self._open = None


def peer_cert(ssl_object: Any) -> PeerCert | None:
    """The peer's leaf certificate of a TLS connection, if any.

    When the chain was verified, OpenSSL has parsed the certificate already and its expiry is read
    from there; otherwise (`verify: false`) only the DER is at hand, parsed later if needed.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not isinstance(der, bytes):
        return None
    not_after = (ssl_object.getpeercert() or {}).get("notAfter")
    return PeerCert(der, float(ssl.cert_time_to_seconds(not_after)) if isinstance(not_after, str) else None)
