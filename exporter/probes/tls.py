"""TLS: SSL contexts from an endpoint's `tls` settings (checked at config load, cached), expiry, second looks.

Building a context costs milliseconds (the trust store is parsed), so one is built per distinct TLS
setting and shared by every probe that uses it. The config loader builds each one first, so a bad
file is a config problem at its line; the prober then finds it cached, and a file rotated on disk is
loaded again on the next probe that needs it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from exporter.files import UnreadableFileError, check_regular, read_regular
from exporter.probes.trace import PeerCert, peer_cert

if TYPE_CHECKING:
    from exporter.config import TLSConfig
    from exporter.probes.spec import TLSSpec


class TLSUser(Protocol):
    """What `build_contexts` needs of an endpoint (an Endpoint or a ProbeSpec)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def tls(self) -> TLSConfig | TLSSpec: ...


class TLSSetupError(Exception):
    """An endpoint's TLS material cannot be loaded (bad CA/cert/key file)."""


# A CA bundle of every public root is about 220 KB; a certificate or key file is a few KB.
MAX_MATERIAL_BYTES = 4 * 1024 * 1024
_TOO_LARGE = f"is larger than {MAX_MATERIAL_BYTES // 2**20} MiB: not a certificate or key file"
MaterialFileError = UnreadableFileError  # a TLS file that must not be read (not regular, or too large)


def check_material(status: os.stat_result) -> None:
    """Raise MaterialFileError unless `status` is that of a regular file of at most MAX_MATERIAL_BYTES.

    Checked before any reading: OpenSSL would wait forever on a named pipe and read a device like
    /dev/zero without end.
    """
    check_regular(status, MAX_MATERIAL_BYTES, _TOO_LARGE)


def read_material(path: Path) -> bytes:
    """A TLS file's bytes, read only if it is a regular file and at most MAX_MATERIAL_BYTES of it."""
    return read_regular(path, MAX_MATERIAL_BYTES, _TOO_LARGE)


@dataclass(frozen=True, slots=True)
class _TLSKey:
    """What an SSL context is built from."""

    verify: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None

    def files(self) -> Iterator[tuple[str, Path]]:
        for name in ("ca_file", "cert_file", "key_file"):
            path: Path | None = getattr(self, name)
            if path is not None:
                yield name, path


@dataclass(slots=True)
class _CachedContext:
    stamps: tuple[tuple[int, int, int], ...]  # (inode, mtime_ns, size) of each file, to notice rotated ones
    context: ssl.SSLContext


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> NoReturn:
    # Without a password callback OpenSSL would prompt on the terminal and hang the agent.
    raise _EncryptedKey


def _file_stamps(key: _TLSKey) -> tuple[tuple[int, int, int], ...]:
    stamps = []
    for name, path in key.files():
        try:
            st = path.stat()
            check_material(st)  # before OpenSSL opens it
        except OSError as exc:
            raise TLSSetupError(f"cannot read {name} {path}: {exc.strerror or exc}") from None
        except MaterialFileError as exc:
            raise TLSSetupError(f"cannot use {name} {path}: it {exc}") from None
        stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def _build_context(key: _TLSKey) -> ssl.SSLContext:
    """An SSL context for one TLS config; raises TLSSetupError naming the bad file."""
    if key.verify:
        try:
            context = ssl.create_default_context(cafile=key.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TLSSetupError(f"cannot load ca_file {key.ca_file}: {_load_error_text(exc)}") from None
    else:
        # PROTOCOL_TLS_CLIENT keeps Python's secure defaults (TLS 1.2+, good ciphers) without a trust store.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if key.cert_file is not None:
        _load_client_cert(context, key.cert_file, key.key_file)
    return context


def _load_client_cert(context: ssl.SSLContext, cert_file: Path, key_file: Path | None) -> None:
    try:
        pem = read_material(cert_file)
    except OSError as exc:
        raise TLSSetupError(f"cannot read cert_file {cert_file}: {exc.strerror or exc}") from None
    except MaterialFileError as exc:
        raise TLSSetupError(f"cannot use cert_file {cert_file}: it {exc}") from None
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TLSSetupError(f"cert_file {cert_file} holds no PEM certificate") from None
    # OpenSSL does not say which file is bad; the certificate was checked above, so blame the key.
    key_name = f"key_file {key_file}" if key_file is not None else f"cert_file {cert_file}"
    try:
        context.load_cert_chain(cert_file, key_file, password=_refuse_password)
    except _EncryptedKey:
        raise TLSSetupError(f"{key_name}: the private key is encrypted; upwatch needs an unencrypted key") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSSetupError(f"{key_name}: the private key does not match the certificate") from None
        raise TLSSetupError(f"{key_name}: no valid PEM private key ({_load_error_text(exc)})") from None
    except OSError as exc:
        raise TLSSetupError(f"cannot read {key_name}: {exc.strerror or exc}") from None


def _load_error_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class TLSContexts:
    """SSL contexts per distinct TLS setting, rebuilt when their files change on disk."""

    def __init__(self) -> None:
        self._contexts: dict[_TLSKey, _CachedContext] = {}

    def load(self, tls: TLSConfig | TLSSpec) -> ssl.SSLContext:
        """The context for a TLS setting, built now if its files are new or changed; raises TLSSetupError."""
        return self.context(tls, strict=True)

    def context(self, tls: TLSConfig | TLSSpec, *, strict: bool = False, verify: bool | None = None) -> ssl.SSLContext:
        """The cached context for a TLS setting (with `verify` overriding its own), rebuilt when its files change.

        Not `strict`, a file that no longer loads (a certificate being rotated may be half written) keeps the
        last good context in use; raises TLSSetupError only when there is none.
        """
        verifying = tls.verify if verify is None else verify
        key = _TLSKey(
            verify=verifying,
            ca_file=tls.ca_file if verifying else None,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
        )
        cached = self._contexts.get(key)
        try:
            stamps = _file_stamps(key)
            if cached is not None and cached.stamps == stamps:
                return cached.context
            context = _build_context(key)
        except TLSSetupError:
            if cached is None or strict:
                raise
            return cached.context
        self._contexts[key] = _CachedContext(stamps, context)
        return context

    def clear(self) -> None:
        """Forget every context."""
        self._contexts.clear()


def build_contexts(tls: TLSContexts, endpoints: Iterable[TLSUser], log: Any) -> None:
    """Build the SSL contexts of the HTTPS endpoints into `tls` ahead of their first probes (a few ms each)."""
    for endpoint in endpoints:
        if endpoint.url.startswith("https:"):
            try:
                tls.context(endpoint.tls)
            except TLSSetupError as exc:  # the probe reports it; the config was checked at load
                log.warning("tls setup failed", endpoint=endpoint.name, error=str(exc))


def cert_expiry(cert: PeerCert | None) -> float | None:
    """The certificate's notAfter, unix seconds; None without one or when it does not parse."""
    if cert is None:
        return None
    if cert.not_after is not None:
        return cert.not_after
    # Only unverified certificates get here; the library costs 14 MB of memory, so only then.
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(cert.der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


async def unverified_cert(context: ssl.SSLContext, address: str, port: int, server_name: str | None) -> PeerCert | None:
    """The leaf certificate from a non-verifying handshake (`context` must not verify), to report its expiry."""
    _, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=server_name)
    try:
        return peer_cert(writer.get_extra_info("ssl_object"))
    finally:
        writer.transport.abort()


async def read_after_handshake(context: ssl.SSLContext, address: str, port: int, server_name: str | None) -> None:
    """Handshake, send nothing and wait for a byte: raises the server's alert if it rejects the handshake late.

    In TLS 1.3 a server judges the client certificate only after the client considers the handshake done
    and has sent its request; its alert then often races with a reset (the request was never read) and is
    lost. A handshake that sends nothing lets the alert arrive intact. The caller bounds the wait.
    """
    reader, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=server_name)
    try:
        await reader.read(1)
    finally:
        writer.transport.abort()
