"""The server's TLS: an SSL context from `tls_server_config`, rebuilt for new connections when its files change.

exporter-toolkit reads the certificate and key again for every handshake, so a renewed certificate
is served without a restart; here each new connection compares the files' bytes with those the
current context was built from and builds a new context when they differ. A context that cannot be
built (a half-written key, say) refuses the handshake rather than serving the old material or
plain HTTP, and is logged once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.files import settled, stamp

if TYPE_CHECKING:
    from .config import TLSServer


class TLSMaterialError(Exception):
    """TLS material that does not load, with the `tls_server_config` key it came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check_material(tls: TLSServer) -> None:
    """Build the context once, so that a file that does not load is a problem at its key; TLSMaterialError."""
    build_context(tls)


def build_context(tls: TLSServer) -> ssl.SSLContext:
    """A server SSL context for `tls`, reading its files now; TLSMaterialError naming the key at fault."""
    from .config import ClientAuth

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = tls.min_version
        ctx.maximum_version = tls.max_version
    except (ValueError, ssl.SSLError) as exc:
        raise TLSMaterialError("min_version", f"this OpenSSL cannot serve these TLS versions: {exc}") from None
    if tls.ciphers:
        try:
            ctx.set_ciphers(":".join(tls.ciphers))
        except ssl.SSLError:
            raise TLSMaterialError("cipher_suites", "none of these cipher suites is in this OpenSSL") from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    with _pem_file(tls.cert, tls.cert_file) as cert, _pem_file(tls.key, tls.key_file) as key:
        _must_read(cert, "cert_file" if tls.cert_file else "cert")
        _must_read(key, "key_file" if tls.key_file else "key")
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as exc:
            where = "cert_file" if tls.cert_file else "cert"
            raise TLSMaterialError(where, f"the certificate and key do not load as a pair: {_reason(exc)}") from None
    if tls.client_auth is not ClientAuth.NONE:
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth is ClientAuth.REQUIRE_AND_VERIFY else ssl.CERT_OPTIONAL
        try:
            if tls.client_ca_file is not None:
                _must_read(tls.client_ca_file, "client_ca_file")
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            elif tls.client_ca is not None:
                ctx.load_verify_locations(cadata=tls.client_ca)
            else:  # as Go does without client CAs: the system's trusted roots
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (ssl.SSLError, ValueError) as exc:
            where = "client_ca_file" if tls.client_ca_file else "client_ca"
            raise TLSMaterialError(where, f"no CA certificate loads from it: {_reason(exc)}") from None
    return ctx


def material_digest(tls: TLSServer) -> bytes:
    """A digest of the TLS settings and of the stamp of every file they name (see exporter.files.stamp).

    Asked at every new connection: a file's bytes are read only while it changed in the last
    seconds, when an edit may not show in its stamp yet.
    """
    h = hashlib.sha256(repr(tls).encode())
    h.update((tls.key or "").encode())
    for path in tls.files:
        seen = stamp(path)
        h.update(repr(seen).encode())
        if not settled(seen):
            try:
                h.update(path.read_bytes())
            except OSError as exc:
                h.update(f"unreadable: {exc.errno}".encode())
    return h.digest()


def _must_read(path: Path, key: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise TLSMaterialError(key, f"cannot read {path}: {exc.strerror}") from None


@contextmanager
def _pem_file(inline: str | None, path: Path | None) -> Iterator[Path]:
    """The path to load PEM from: the named file, or the inline text in a private temporary file."""
    if inline is None:
        assert path is not None
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="upwatch-tls-") as folder:  # mode 0700: the key is a secret
        file = Path(folder) / "pem"
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(inline)
        yield file


# OpenSSL's reasons for a certificate or key that does not load, said plainly.
_REASONS = {
    "PEM lib": "not PEM text of the right kind",
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    "NO_CERTIFICATE_OR_CRL_FOUND": "no certificate in it",
}


def _reason(exc: Exception) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return next((plain for needle, plain in _REASONS.items() if needle in text), text)


class ServingContext(ssl.SSLContext):
    """The SSL context the server listens with: each new connection gets the current one's SSL object.

    asyncio (and uvloop) make a connection's SSL object with `wrap_bio` on the context the server was
    started with; this one hands the call to `current()`, which rebuilds when the material changed.
    """

    _current: Callable[[], ssl.SSLContext]

    def __new__(cls, current: Callable[[], ssl.SSLContext]) -> ServingContext:
        """A listening context that defers to `current()` for each connection."""
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._current = current
        return self

    def __init__(self, current: Callable[[], ssl.SSLContext]) -> None:
        pass

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        """The new connection's SSL object, from the context in force now."""
        return self._current().wrap_bio(*args, **kwargs)


def refusing_context() -> ssl.SSLContext:
    """A context with no certificate: every handshake with it fails."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


def sans_allowed(peercert: object, allowed: tuple[str, ...]) -> bool:
    """Whether a verified client certificate (from getpeercert()) has a SAN in `allowed`: DNS, IP, email or URI."""
    if not isinstance(peercert, dict):
        return False
    wanted = {_normal(a) for a in allowed}
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI", "IP Address") and _normal(str(value).strip()) in wanted:
            return True
    return False


def _normal(text: str) -> str:
    """An IP address in one spelling (Python writes IPv6 SANs in full, in capitals); other text as it is."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text
