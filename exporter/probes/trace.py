"""Phase timing of one probe (blackbox_exporter's resolve, connect, tls, processing, transfer) through httpcore.

httpcore resolves and connects in one step; the network backend here resolves names itself so that
the DNS lookup and the TCP connect are timed apart, and wraps each stream to time its TLS handshake
and keep the peer's certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from exporter.results import PHASES


@dataclass(slots=True)
class Handshake:
    """Where a TLS handshake went and what it gave, to look again at a server that failed the probe."""

    address: str
    port: int
    server_name: str | None
    seconds: float = 0.0
    version: str | None = None  # "TLSv1.3" once complete
    peer_cert: bytes | None = None  # DER leaf certificate once complete


class ProbeTrace:
    """Phase timings and TLS facts of one probe; phases never overlap, so they sum to at most the duration."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.last_phase: str | None = None  # the phase running when a timeout struck
        self.handshake: Handshake | None = None  # the current hop's TLS handshake, if any
        self._open: tuple[str, float] | None = None

    def start(self, phase: str) -> None:
        """End the running phase, if any, and start timing `phase`."""
        self.stop()
        self._open = (phase, time.monotonic())
        self.last_phase = phase

    def stop(self, now: float | None = None) -> None:
        """End the running phase (at `now`, default the present)."""
        if self._open is not None:
            phase, began = self._open
            self.totals[phase] += (time.monotonic() if now is None else now) - began
            self._open = None

    async def on_event(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's `trace` extension: marks when a request goes out and its response headers are in."""
        if name.endswith(".send_request_headers.started"):
            self.start("processing")
        elif name.endswith(".receive_response_headers.complete"):
            self.start("transfer")


class ResolveError(httpcore.ConnectError):
    """A failed DNS lookup; a ConnectError so that httpx maps it like any connect failure."""


class HandshakeError(httpcore.ConnectError):
    """A TLS handshake that failed for any cause."""


class TimedStream(httpcore.AsyncNetworkStream):
    """A TCP stream that times its TLS handshake and keeps the peer's certificate."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, trace: ProbeTrace, address: str, port: int) -> None:
        self._inner = inner
        self._trace = trace
        self._address = address
        self._port = port

    # The `timeout` parameters are httpcore's interface; httpx passes None, the probe's deadline rules.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        handshake = self._trace.handshake = Handshake(self._address, self._port, server_hostname)
        self._trace.start("tls")
        began = time.monotonic()
        try:
            stream = await self._inner.start_tls(ssl_context, server_hostname=server_hostname, timeout=timeout)
        except httpcore.ConnectError as exc:
            # The TCP connection stood, so whatever broke the handshake (even a reset) is a TLS failure.
            raise HandshakeError("tls handshake failed") from exc
        finally:
            self._trace.stop()
            handshake.seconds = time.monotonic() - began
        ssl_object = stream.get_extra_info("ssl_object")
        handshake.version = ssl_object.version() if ssl_object is not None else None
        handshake.peer_cert = peer_cert(ssl_object)
        return stream

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class TimedBackend(httpcore.AsyncNetworkBackend):
    """Resolves names itself, so that DNS lookup and TCP connect are timed apart."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, trace: ProbeTrace) -> None:
        self._inner = inner
        self._trace = trace

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._trace.start("resolve")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ResolveError(f"dns lookup of {host} failed: {exc.strerror or exc}") from exc
        finally:
            self._trace.stop()
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._trace.start("connect")
        try:
            error: httpcore.ConnectError | None = None
            # One address after the other, in the resolver's order: `localhost` may give ::1 first while the
            # server listens on 127.0.0.1 only.
            for address in addresses:
                try:
                    stream = await self._inner.connect_tcp(
                        address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
                    continue
                return TimedStream(stream, self._trace, address, port)
            raise error or ResolveError(f"dns lookup of {host} returned no address")
        finally:
            self._trace.stop()

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class ProbeTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request, response and error mapping) over a connection pool of our making."""

    def __init__(self, pool: httpcore.AsyncConnectionPool, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no public way to plug in a network backend, so its pool (a private attribute) is replaced;
        # this is the only private httpx name used here.
        self._pool = pool


def peer_cert(ssl_object: Any) -> bytes | None:
    """The peer's leaf certificate (DER) of a TLS connection, if any."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None
