"""One HTTP/1.x exchange over one connection: an asyncio Protocol with llhttp's parser (httptools).

A probe sends one request and reads one response on a fresh connection, so a general client's
machinery (pools, stream objects, per-chunk tasks) is mostly overhead. Here the connection is a
Protocol: the kernel's events arrive as callbacks, each timestamped on arrival, and the parser runs
in C inside them. The body is counted as it arrives and kept only when a check reads it, decoded
with a bound on its decoded size however it is compressed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from exporter.probes.budget import BodyBudget, BodyClaim
from exporter.probes.decoding import BodyDecoder
from exporter.probes.failures import (
    HandshakeError,
    InvalidResponse,
    NoResponse,
    ProbeError,
)
from exporter.probes.trace import Handshake, ProbeTrace, peer_cert

_READ_LIMIT = 64 * 1024  # header bytes allowed before the headers end
_STATUS_LINE_START = b"HTTP/1."


@dataclass(frozen=True, slots=True)
class Head:
    """A response's status line and headers."""

    status: int
    http_version: float
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value) in the order received

    def get(self, name: str) -> str | None:
        """The first value of a header, if any."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class Body:
    """What was read of a body: its decoded size, and its bytes when kept."""

    size: int  # decoded bytes received (past the limit, as far as reading went)
    data: bytes | None  # None unless kept; never more than the limit
    oversize: bool  # more than the limit arrived, so reading stopped


async def connect(address: str, port: int, trace: ProbeTrace, budget: BodyBudget | None = None) -> HttpConnection:
    """A TCP connection to address:port, its connect phase timed at the kernel's "connected" event.

    Bodies kept on it take their bytes from `budget`, if any.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        trace.start("connect")
        connected: asyncio.Future[float] = loop.create_future()
        try:
            sock.connect((address, port))
            connected.set_result(time.monotonic())
        except BlockingIOError:
            fd = sock.fileno()
            loop.add_writer(fd, _set_time, connected)
            try:
                await connected
            finally:
                loop.remove_writer(fd)
        trace.stop(connected.result())
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        connection = HttpConnection(trace, address, port, budget)
        await loop.create_connection(lambda: connection, sock=sock)
        return connection
    except BaseException:
        sock.close()
        raise


def _set_time(future: asyncio.Future[float]) -> None:
    if not future.done():
        future.set_result(time.monotonic())


class HttpConnection(asyncio.Protocol):
    """One connection and the response being read on it; errors are kept and raised to the awaiting probe."""

    # The response being read: set by `_reset_response`, at start and by every `send`.
    _head_only: bool
    _limit: int
    _keep: bool
    _head: Head | None
    _headers: list[tuple[str, str]]
    _header_bytes: int
    _interim: bool
    _until_close: bool
    _keep_alive: bool
    _complete: bool
    _oversize: bool
    _done_at: float | None
    _decoder: BodyDecoder | None
    _size: int
    _kept: bytearray
    _received: int
    _start: bytes  # the response's first bytes, to tell a broken HTTP/1.x reply from another protocol
    _parked: list[bytes] | None  # body chunks that arrived while the budget had no room: reading is paused
    _end_at: float | None  # when the response ended, while parked chunks are still to be taken in

    def __init__(self, trace: ProbeTrace, address: str, port: int, budget: BodyBudget | None = None) -> None:
        self.address = address
        self.port = port
        self.ssl_object: ssl.SSLObject | None = None
        self._trace = trace
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._parser: httptools.HttpResponseParser | None = None
        self._now = 0.0  # when the data being parsed arrived
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._budget = budget
        self._claim: BodyClaim | None = None
        self._reset_response(head_only=False, limit=0, keep=False)

    # -- the probe's side

    async def start_tls(self, context: ssl.SSLContext, server_name: str | None) -> None:
        """Upgrade to TLS, timing the handshake and keeping the certificate; raises HandshakeError."""
        assert self._transport is not None
        handshake = self._trace.handshake = Handshake(self.address, self.port, server_name)
        self._trace.start("tls")
        began = time.monotonic()
        try:
            transport = await self._loop.start_tls(self._transport, self, context, server_hostname=server_name)
        except ssl.SSLCertVerificationError:
            raise
        except (OSError, ssl.SSLError, ConnectionError, EOFError) as exc:
            # The TCP connection stood, so whatever broke the handshake (even a reset) is a TLS failure.
            raise HandshakeError("tls handshake failed") from exc
        finally:
            ended = time.monotonic()
            self._trace.stop(ended)
            handshake.seconds = ended - began
        if transport is None:
            raise HandshakeError("tls handshake failed") from ConnectionResetError(errno.ECONNRESET, "closed")
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.ssl_object = ssl_object
        handshake.version = ssl_object.version() if ssl_object is not None else None
        handshake.peer_cert = peer_cert(ssl_object)

    def send(self, request: bytes, *, head_only: bool, limit: int, keep: bool) -> None:
        """Send a request and start reading its response (keeping at most `limit` decoded body bytes if `keep`)."""
        assert self._transport is not None
        self._reset_response(head_only=head_only, limit=limit, keep=keep)
        self._parser = httptools.HttpResponseParser(self)
        self._transport.write(request)
        self._trace.start("processing")

    async def head(self) -> Head:
        """Wait for the response's status line and headers."""
        await self._wait(lambda: self._head is not None)
        assert self._head is not None
        return self._head

    async def body(self) -> Body:
        """Wait for the end of the body (or for the limit to be passed)."""
        await self._wait(lambda: self._complete or self._oversize)
        data = bytes(self._kept) if self._keep and not self._oversize else None
        return Body(self._size, data, self._oversize)

    @property
    def body_size(self) -> int:
        """Decoded body bytes of the current response received so far."""
        return self._size

    @property
    def waiting_for_budget(self) -> bool:
        """Whether reading is paused until the body budget has room."""
        return self._claim is not None and self._claim.waiting

    @property
    def completed_at(self) -> float | None:
        """When the last byte of the response arrived, if it did."""
        return self._done_at

    @property
    def answered(self) -> bool:
        """Whether any byte of a response to the current request arrived."""
        return self._received > 0

    @property
    def reusable(self) -> bool:
        """Whether another request may follow on this connection (the response was whole and keep-alive)."""
        return self._complete and self._keep_alive and not self._closed and self._error is None

    def close(self) -> None:
        """Close the connection at once (a probe never waits for a polite shutdown)."""
        self._parser = None
        self._release()
        if self._transport is not None and not self._closed:
            self._transport.abort()

    async def _wait(self, check: Callable[[], bool]) -> None:
        while not check():
            if self._error is not None:
                raise self._error
            if self._closed and self._end_at is None:
                raise NoResponse("server closed the connection without a response")
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._error is not None and not check():
            raise self._error

    # -- the loop's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        self._now = time.monotonic()
        if len(self._start) < len(_STATUS_LINE_START):
            self._start += data[: len(_STATUS_LINE_START) - len(self._start)]
        self._received += len(data)
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("invalid HTTP response: the server switched protocols"))
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._fail(InvalidResponse(f"invalid HTTP response: {self._parser_text(exc)}"))
        # Checked once this read is parsed: a read may hold short headers and the start of a large body.
        if self._head is None and self._received > _READ_LIMIT:
            self._fail(InvalidResponse(f"invalid HTTP response: headers longer than {_READ_LIMIT} bytes"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        now = time.monotonic()
        if self._parser is not None and not self._complete and self._error is None and self._end_at is None:
            if self._head is not None and exc is None and self._until_close:
                self._end(now)  # a body without length or chunks ends where the connection does
            elif exc is not None:
                self._error = exc
            elif self._head is None and self._received == 0:
                self._error = NoResponse("server closed the connection without a response")
            elif self._head is None:
                self._error = InvalidResponse("invalid HTTP response: connection closed in the middle of the headers")
            else:
                self._error = InvalidResponse("invalid HTTP response: connection closed before the body was complete")
        self._parser = None
        self._wake()

    # httptools' callbacks, inside feed_data

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > _READ_LIMIT:  # long headers that arrived in one read with their end
            self._fail(InvalidResponse(f"invalid HTTP response: headers longer than {_READ_LIMIT} bytes"))
            return
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # an interim response: the real one follows
            self._headers = []
            self._interim = True
            return
        self._interim = False
        head = Head(status, _version(parser.get_http_version()), tuple(self._headers))
        self._head = head
        self._trace.start("transfer", self._now)
        self._keep_alive = parser.should_keep_alive()
        length = head.get("content-length")
        chunked = "chunked" in (head.get("transfer-encoding") or "").lower()
        self._until_close = length is None and not chunked and status not in (204, 304)
        codings = [c.strip().lower() for c in (head.get("content-encoding") or "").split(",") if c.strip()]
        if codings:
            try:
                self._decoder = BodyDecoder(codings)
            except InvalidResponse as exc:
                self._fail(exc)
                return
        if self._keep and not self._head_only and self._budget is not None:
            known = not codings and length is not None and length.strip().isdigit()
            try:
                self._claim = self._budget.claim(min(int(length), self._limit) if known else self._limit)  # type: ignore[arg-type]
            except ValueError as exc:
                self._fail(ProbeError(str(exc)))
                return
        if self._head_only:
            self._finish(self._now)
            self._parser = None
        self._wake()

    def on_body(self, chunk: bytes) -> None:
        if self._parked is not None:
            self._parked.append(chunk)
        else:
            self._absorb(chunk)

    def _absorb(self, chunk: bytes) -> None:
        """Take a body chunk in if the budget has room for what it keeps; else park it and pause reading."""
        claim = self._claim
        if claim is None or self._oversize or self._error is not None:
            self._take_in(chunk)
            return
        if self._decoder is not None:  # its decoded size is known only once decoded: the whole claim, at once
            need = claim.most - claim.held
        else:
            need = len(chunk) if self._size + len(chunk) <= self._limit else 0
        if claim.take(need):
            self._take_in(chunk)
            return
        self._parked = [chunk]
        claim.on_grant = lambda: self._loop.call_soon(self._granted)
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def _granted(self) -> None:
        """The budget granted the first parked chunk: take the parked chunks in, and read on."""
        parked, self._parked = self._parked, None
        if parked is None:
            return
        self._take_in(parked[0])
        rest = parked[1:]
        while rest and self._parked is None:
            self._absorb(rest.pop(0))
        if self._parked is not None:
            self._parked.extend(rest)
            return
        if self._end_at is not None and not self._complete and self._error is None and not self._oversize:
            self._finish(self._end_at)
        if self._transport is not None and not self._closed and self._parser is not None:
            self._transport.resume_reading()
        self._wake()

    def _take_in(self, chunk: bytes) -> None:
        if self._oversize or self._error is not None:
            return
        room = self._limit - self._size
        if self._decoder is not None:
            try:
                chunk = self._decoder.feed(chunk, room)
            except InvalidResponse as exc:
                self._fail(exc)
                return
        self._size += len(chunk)
        if self._size > self._limit:
            self._oversize = True
            self._trace.stop(self._now)
            self.close()
            self._wake()
            return
        if self._keep:
            self._kept += chunk

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._head is not None and not self._complete:
            self._end(self._now)
            self._wake()

    # -- helpers

    def _reset_response(self, *, head_only: bool, limit: int, keep: bool) -> None:
        self._release()
        self._parked = None
        self._end_at = None
        self._head_only = head_only
        self._limit = limit
        self._keep = keep
        self._head = None
        self._headers = []
        self._header_bytes = 0
        self._interim = False
        self._until_close = False
        self._keep_alive = False
        self._complete = False
        self._oversize = False
        self._done_at = None
        self._decoder = None
        self._size = 0
        self._kept = bytearray()
        self._received = 0
        self._start = b""

    def _release(self) -> None:
        """Give the kept body's bytes back to the budget (the response is done with, however it ended)."""
        if self._claim is not None:
            self._claim.release()
            self._claim = None
            self._kept = bytearray()

    def _end(self, at: float) -> None:
        """The response ended at `at`: finished now, or once the parked chunks are taken in."""
        if self._parked is not None:
            self._end_at = at
        else:
            self._finish(at)

    def _finish(self, at: float) -> None:
        self._complete = True
        self._done_at = at
        self._trace.stop(at)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._parser = None
        self.close()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _parser_text(self, exc: BaseException) -> str:
        """What the parser found wrong; a reply that does not begin like HTTP/1.x is said to be another protocol."""
        if self._head is None and not _STATUS_LINE_START.startswith(self._start[: len(_STATUS_LINE_START)]):
            return "the reply is not HTTP/1.x (no status line: an HTTP/0.9 server or another protocol)"
        text = str(exc).strip().rstrip(".") or type(exc).__name__
        return text[:1].lower() + text[1:]


def _version(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
