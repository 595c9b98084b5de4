"""Who may use the agent's HTTP server, per the web config in force: basic auth, rate limit, extra headers, TLS.

As exporter-toolkit does, the file is read again for every request (and every new TLS connection),
so that a user added or removed, or a renewed certificate, takes effect at once; here it is parsed
again only when its bytes changed. A file that turns bad while the agent runs fails closed: every
request answers 500 and new TLS handshakes are refused until it is fixed, and the problems are
logged once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from exporter.config.loader import MAX_CONFIG_BYTES
from exporter.config.problems import ConfigError, Problem
from exporter.files import Stamp, UnreadableFileError, read_regular, settled, stamp

from .config import RateLimit, TLSServer, WebConfig, parse_web_config
from .tls import TLSMaterialError, build_context, material_digest, refusing_context, sans_allowed

# bcrypt results remembered (by a digest of user, hash and password): a scraper sends the same
# credentials every few seconds, and each check costs tens of milliseconds of CPU by design.
AUTH_CACHE_SIZE = 100
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the web config does not let through: status, text, extra headers."""

    status: int
    text: str
    headers: Headers = ()


class WebConfigUnusable(Exception):
    """The web config file cannot be read or no longer parses (the problems are logged)."""


def read_web_config(path: Path) -> tuple[WebConfig, bytes]:
    """The web config file's settings (TLS files loaded) and bytes; ConfigError with every problem when it is bad."""
    try:
        raw = _read(path)
    except (OSError, UnreadableFileError) as exc:
        problem = Problem(str(path), 1, 1, "(root)", f"cannot read the web config file: {_why(exc)}")
        raise ConfigError([problem]) from None
    return parse_web_config(raw, str(path), path.parent), raw


class WebConfigFile:
    """The web config file, read again when its stamp changed (or it changed lately), parsed when its bytes did."""

    def __init__(self, path: Path, config: WebConfig, raw: bytes, log: Any) -> None:
        self.path = path
        self._stamp: Stamp = ""  # not yet seen: the first use reads the file
        self._raw = raw
        self._config: WebConfig | None = config
        self._log = log
        self._said = ""  # the last failure logged, so that a broken file is reported once, not per request

    @classmethod
    def open(cls, path: Path, log: Any) -> WebConfigFile:
        """Read and check the file now; ConfigError with every problem when it is bad."""
        config, raw = read_web_config(path)
        return cls(path, config, raw, log)

    def current(self) -> WebConfig:
        """The config as the file says now; WebConfigUnusable when it cannot be read or is bad.

        Every request asks, so the file is read only when its stamp (inode, size, mtime) changed or
        it changed in the last seconds, when an edit may not show in the stamp yet.
        """
        seen = stamp(self.path)
        if seen != self._stamp or not settled(seen):
            self._stamp = seen
            self._reread()
        if self._config is None:
            raise WebConfigUnusable(self._said)
        return self._config

    def _reread(self) -> None:
        try:
            raw = _read(self.path)
        except (OSError, UnreadableFileError) as exc:
            self._stamp = ""  # read again next time
            self._fail(f"cannot read the web config file: {_why(exc)}")
        if raw != self._raw:
            self._raw = raw
            try:
                self._config = parse_web_config(raw, str(self.path), self.path.parent)
            except ConfigError as exc:
                self._config = None
                self._fail(str(exc))
            self._log.info("web config changed", file=str(self.path))
            self._said = ""

    def _fail(self, what: str) -> Any:
        if what != self._said:
            self._said = what
            for line in what.splitlines():
                self._log.error("web config unusable; refusing requests until it is fixed", problem=line)
        raise WebConfigUnusable(what)


def _read(path: Path) -> bytes:
    """The web config file's bytes: a regular file of at most MAX_CONFIG_BYTES (a pipe would block every request)."""
    return read_regular(
        path, MAX_CONFIG_BYTES, f"is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a web config file"
    )


def _why(exc: OSError | UnreadableFileError) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


class _Bucket:
    """A token bucket: one token per `interval` seconds, at most `burst` kept."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(float(self.limit.burst), self._tokens + (now - self._at) / self.limit.interval)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class WebAccess:
    """The web config's rules applied to requests and connections."""

    def __init__(self, file: WebConfigFile, log: Any) -> None:
        self._file = file
        self._log = log
        self._cache: dict[bytes, bool] = {}
        self._bcrypt = asyncio.Lock()  # one bcrypt at a time: each takes a core for tens of milliseconds
        self._dummies: dict[bytes, bytes] = {}  # cost -> a hash of a random password, for unknown users
        self._bucket: _Bucket | None = None
        first = file.current()
        self.tls = first.tls  # TLS or not is decided at start, as exporter-toolkit does
        self._tls_digest = b""
        self._tls_context: ssl.SSLContext | None = None
        self._tls_said = ""

    async def admit(self, headers: list[tuple[bytes, bytes]]) -> tuple[Headers, Refusal | None]:
        """The extra response headers, and a refusal when the request may not go through."""
        try:
            config = self._file.current()
        except WebConfigUnusable:
            return (), Refusal(500, "500: Internal Server Error (the web config is unusable; see the log)\n")
        if config.rate_limit is None:
            self._bucket = None
        elif self._bucket is None or self._bucket.limit != config.rate_limit:
            self._bucket = _Bucket(config.rate_limit)
        if self._bucket is not None and not self._bucket.take():
            return config.headers, Refusal(429, "429: Too Many Requests\n")
        if not config.users or await self._authorized(config, _basic_auth(headers)):
            return config.headers, None
        return config.headers, Refusal(401, "401: Unauthorized\n", (("www-authenticate", "Basic"),))

    async def _authorized(self, config: WebConfig, credentials: tuple[str, bytes] | None) -> bool:
        if credentials is None:
            return False
        user, password = credentials
        hashed = config.users.get(user)
        known = hashed is not None
        if hashed is None:
            # An unknown user costs a bcrypt check as a known one does, so that timing does not tell
            # which user names exist: against a hash of a random password, at the highest cost in use.
            hashed = await self._dummy(max(h[4:6] for h in config.users.values()))
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        ok = self._cache.get(key)
        if ok is None:
            async with self._bcrypt:
                ok = await asyncio.to_thread(_check, password, hashed)
            if len(self._cache) >= AUTH_CACHE_SIZE:
                for old in list(self._cache)[: AUTH_CACHE_SIZE // 10]:  # the oldest tenth
                    del self._cache[old]
            self._cache[key] = ok
        return ok and known

    async def _dummy(self, cost: bytes) -> bytes:
        if cost not in self._dummies:
            salt = bcrypt.gensalt(int(cost))
            self._dummies[cost] = await asyncio.to_thread(bcrypt.hashpw, secrets.token_bytes(16), salt)
        return self._dummies[cost]

    def ssl_context(self) -> ssl.SSLContext:
        """The SSL context for a new connection: rebuilt when the TLS settings or files changed."""
        try:
            tls = self._file.current().tls
        except WebConfigUnusable:
            return refusing_context()
        if tls is None:
            self._say_tls("tls_server_config was removed: TLS connections are refused until it is back")
            return refusing_context()
        digest = material_digest(tls)
        if digest != self._tls_digest:
            self._tls_digest = digest
            self._tls_context = self._build(tls)
        return self._tls_context or refusing_context()

    def allowed_sans(self) -> tuple[str, ...] | None:
        """The client certificate SANs allowed now (None: any verified certificate)."""
        try:
            tls = self._file.current().tls
        except WebConfigUnusable:
            return ()
        return tls.client_allowed_sans if tls is not None else ()

    def peer_allowed(self, peercert: object) -> bool:
        """Whether a connection's verified client certificate passes `client_allowed_sans`."""
        allowed = self.allowed_sans()
        return allowed is None or sans_allowed(peercert, allowed)

    def _build(self, tls: TLSServer) -> ssl.SSLContext | None:
        try:
            context = build_context(tls)
        except TLSMaterialError as exc:
            self._say_tls(f"tls_server_config.{exc.key}: {exc}")
            return None
        if self._tls_said:
            self._log.info("TLS material loads again", file=str(self._file.path))
        self._tls_said = ""
        return context

    def _say_tls(self, what: str) -> None:
        if what != self._tls_said:
            self._tls_said = what
            self._log.error("TLS material unusable; refusing TLS handshakes", file=str(self._file.path), problem=what)


def _check(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # e.g. a password over bcrypt's 72 bytes: not the one hashed
        return False


def _basic_auth(headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes] | None:
    """User and password of an `Authorization: Basic` header; None when there is none or it is malformed."""
    value = next((v for k, v in headers if k == b"authorization"), None)
    if value is None:
        return None
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
