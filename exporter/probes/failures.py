"""Why a probe failed: one of the contract's reasons and a short message, from whatever was raised."""

from __future__ import annotations

import errno
import ssl
from dataclasses import dataclass

import httpx

from exporter.probes.trace import HandshakeError, ResolveError
from exporter.results import FailureReason


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
        # httpcore re-raises `from None` with the original as its argument, so suppressed
        # contexts and exception arguments are followed too.
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
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
        # "Want read/write" only mean "call again": anyio leaves them behind as contexts.
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            return Failure(FailureReason.TLS, f"{prefix}: {_ssl_reason(e)}")
    if handshake:
        return Failure(FailureReason.TLS, f"{prefix}: {_os_error_text(chain) or 'connection closed by the server'}")
    for e in chain:
        if isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS:
            dropped = e.errno in (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE)
            return Failure(FailureReason.CONNECT, _CONNECT_ERRNOS[e.errno], dropped=dropped)
    for e in chain:
        if isinstance(e, ConnectionError):
            return Failure(FailureReason.CONNECT, f"connection error: {e.strerror or type(e).__name__}")
    for e in chain:
        if isinstance(e, httpx.RemoteProtocolError):
            text = str(e)
            if text.startswith("Server disconnected without sending a response"):
                return Failure(FailureReason.PROTOCOL, "server closed the connection without a response", dropped=True)
            return Failure(FailureReason.PROTOCOL, f"invalid HTTP response: {_lower_first(text).rstrip('.')}")
        if isinstance(e, httpx.DecodingError):
            return Failure(FailureReason.PROTOCOL, f"cannot decode the response body: {_lower_first(str(e))}")
        if isinstance(e, httpx.UnsupportedProtocol):
            return Failure(FailureReason.PROTOCOL, f"unsupported redirect target: {_lower_first(str(e))}")
        if isinstance(e, httpx.LocalProtocolError):
            # Its text may quote a request header value, so it is left out.
            return Failure(FailureReason.ERROR, "invalid request: httpx refused to send it")
        if isinstance(e, httpx.ConnectError):
            return Failure(FailureReason.CONNECT, f"connect failed: {_lower_first(str(e)) or 'unknown error'}")
        if isinstance(e, httpx.NetworkError):
            return Failure(FailureReason.CONNECT, f"connection error: {_lower_first(str(e)) or type(e).__name__}")
        if isinstance(e, OSError) and e.strerror:
            return Failure(FailureReason.CONNECT, f"connection error: {e.strerror}")
    return Failure(FailureReason.ERROR, f"unexpected error: {type(exc).__name__}: {exc}".rstrip(": "))


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


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
