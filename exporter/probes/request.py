"""A request's target and bytes: where a URL (or a redirect's Location) sends a probe, and what it says there."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from yarl import URL

from exporter.probes.failures import InvalidRequest, UnsupportedRedirect
from exporter.probes.resolve import ip_literal

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: what to connect to, what to ask for, and the credentials the URL carries."""

    scheme: str
    host: str  # to resolve and connect to: IDNA-encoded, IPv6 without brackets
    port: int
    request_target: str  # path and query, percent-encoded
    host_header: str
    credentials: tuple[str, str] | None
    literal: bool  # the host is an IP address: nothing to look up

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: what decides whether a redirect stays on the same site."""
        return self.scheme, self.host, self.port


def parse_target(url: URL) -> Target:
    """A Target from a URL; raises UnsupportedRedirect for a scheme or host a probe cannot go to."""
    scheme = url.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsupportedRedirect(f"unsupported redirect target: scheme {scheme or 'none'!r} is not http or https")
    host = url.raw_host
    if not host:
        raise UnsupportedRedirect("unsupported redirect target: the location has no host")
    port = url.port or DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    credentials = (url.user or "", url.password or "") if url.raw_user is not None else None
    return Target(scheme, host, port, url.raw_path_qs or "/", host_header, credentials, ip_literal(host))


def build_request(method: str, target: Target, headers: Sequence[tuple[str, str]], body: bytes | None) -> bytes:
    """The request's bytes; raises InvalidRequest (without the offending value) if a header cannot be sent."""
    lines = [f"{method} {target.request_target} HTTP/1.1", f"Host: {target.host_header}"]
    names = {name.lower() for name, _ in headers}
    for name, value in headers:
        if "\r" in value or "\n" in value or "\0" in value or not name or any(c in name for c in ":\r\n\0 "):
            raise InvalidRequest(f"invalid request: header {name[:40]!r} holds a character HTTP forbids")
        lines.append(f"{name}: {value}")
    if target.credentials is not None and "authorization" not in names:
        token = base64.b64encode(":".join(target.credentials).encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequest("invalid request: a header holds characters outside latin-1") from None
    return head + body if body else head
