"""Why a probe failed: the errors the exchange raises, and one contract reason with a short, secret-free message."""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.redact import SecretScrubber
from exporter.results import FailureReason

MAX_MESSAGE = 300


class ProbeError(Exception):
    """Something the exchange found wrong; `reason` and the text say what, for `classify`."""

    reason = FailureReason.ERROR


class ResolveError(ProbeError):
    """A failed DNS lookup."""

    reason = FailureReason.DNS


class HandshakeError(ProbeError):
    """A TLS handshake that failed for any cause; the cause is chained."""

    reason = FailureReason.TLS


class InvalidResponse(ProbeError):
    """The server's bytes are not an HTTP/1.x response (or one cut short)."""

    reason = FailureReason.PROTOCOL


class NoResponse(ProbeError):
    """The server closed the connection before sending a single byte of response."""

    reason = FailureReason.PROTOCOL


class UnsupportedRedirect(ProbeError):
    """A redirect to somewhere a probe does not go (another scheme, a broken Location)."""

    reason = FailureReason.PROTOCOL


class InvalidRequest(ProbeError):
    """The request cannot be sent as configured (a header with a line break, say); its values stay out."""


@dataclass(slots=True)
class Failure:
    """Why a probe failed, and what the prober may do about it (look at the certificate, try the handshake again)."""

    reason: FailureReason
    message: str
    regex: bool = False
    unverified: bool = False  # the server's certificate failed verification
    dropped: bool = False  # the server reset or closed the connection before any response


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything that caused it, outermost first."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


_CONNECT_ERRNOS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by peer (broken pipe)",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EHOSTDOWN: "host down",
    errno.ENETDOWN: "network down",
    errno.ETIMEDOUT: "connect timed out",
    errno.EADDRNOTAVAIL: "address not available",
}
_DROPPED = (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE)


def classify(exc: BaseException) -> Failure:
    """The failure reason and a short message for an exception raised while probing."""
    chain = exception_chain(exc)
    for e in chain:
        if isinstance(e, ResolveError):
            return Failure(FailureReason.DNS, str(e))
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = e.verify_message or _ssl_reason(e)
            return Failure(FailureReason.TLS, f"certificate verify failed: {detail}", unverified=True)
    handshake = any(isinstance(e, HandshakeError) for e in chain)
    prefix = "tls handshake failed" if handshake else "tls error"
    for e in chain:
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            return Failure(FailureReason.TLS, f"{prefix}: {_ssl_reason(e)}")
    if handshake:
        return Failure(FailureReason.TLS, f"{prefix}: {_os_error_text(chain) or 'connection closed by the server'}")
    for e in chain:
        if isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS:
            return Failure(FailureReason.CONNECT, _CONNECT_ERRNOS[e.errno], dropped=e.errno in _DROPPED)
    for e in chain:
        if isinstance(e, NoResponse):
            return Failure(e.reason, str(e), dropped=True)
        if isinstance(e, ProbeError):
            return Failure(e.reason, str(e))
        if isinstance(e, ConnectionError):
            return Failure(FailureReason.CONNECT, f"connection error: {e.strerror or type(e).__name__}")
        if isinstance(e, OSError) and e.strerror:
            return Failure(FailureReason.CONNECT, f"connection error: {e.strerror}")
    return Failure(FailureReason.ERROR, f"unexpected error: {type(exc).__name__}: {exc}".rstrip(": "))


def public_message(failure: Failure, url: str, header_values: Iterable[str]) -> str:
    """The failure's message with the endpoint's secrets (URL credentials and query, header values) replaced."""
    return SecretScrubber(url, header_values, max_length=MAX_MESSAGE)(failure.message)


def _os_error_text(chain: list[BaseException]) -> str | None:
    for e in chain:
        if isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS:
            return _CONNECT_ERRNOS[e.errno]
    return None


def _ssl_reason(e: ssl.SSLError) -> str:
    if isinstance(e, ssl.SSLEOFError) or e.reason == "UNEXPECTED_EOF_WHILE_READING":
        return "connection closed by the server"
    if e.reason:
        return e.reason.lower().replace("_", " ")
    return e.strerror or str(e) or type(e).__name__
