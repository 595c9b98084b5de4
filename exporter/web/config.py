"""The web config file (`--web.config.file`) in the Prometheus exporter-toolkit format, read strictly.

The same file a node_exporter or Prometheus is started with: `tls_server_config`,
`http_server_config`, `basic_auth_users` (bcrypt hashes) and `rate_limit`. Keys, values and
defaults follow exporter-toolkit's documentation; where Python's TLS cannot do what Go's does, the
value is refused with a problem that says so, never silently ignored. Every problem names the file,
line and key, as the agent's own config's problems do.
"""

from __future__ import annotations

import difflib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from exporter.config.document import Document, read_document
from exporter.config.problems import ConfigError, PathKey
from exporter.config.values import clip, parse_duration, type_name

from .tls import TLSMaterialError, check_material


class ClientAuth(StrEnum):
    """The `client_auth_type` values upwatch serves (Go's names)."""

    NONE = "NoClientCert"
    VERIFY_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY = "RequireAndVerifyClientCert"


# Go's values that accept a client certificate without verifying it. OpenSSL (through Python's ssl)
# verifies every certificate it asks for, so these cannot be served as Go serves them; they are
# refused, naming the secure one, rather than quietly served as something else.
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's names of the cipher suites its crypto/tls offers (tls.CipherSuites()), with OpenSSL's name
# for each one that TLS 1.2 and older negotiate. TLS 1.3's suites are not configurable in Go either:
# they are accepted and leave the TLS 1.3 choice to the library.
CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

# The response headers an operator may set, and the values allowed where only some make sense:
# exporter-toolkit keeps this list closed so that every Prometheus program allows the same ones.
HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

# A bcrypt hash as htpasswd -B and Python's bcrypt write it: $2a$, $2b$, $2x$ or $2y$, a two-digit
# cost, then 22 characters of salt and 31 of hash.
_BCRYPT = re.compile(r"^\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}$")

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
_HTTP_KEYS = ("http2", "headers")
_RATE_KEYS = ("interval", "burst")


@dataclass(frozen=True, slots=True)
class TLSServer:
    """`tls_server_config`: the server's certificate and key, and what it asks of clients."""

    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None
    key: str | None = field(default=None, repr=False)  # a secret
    client_ca_file: Path | None = None
    client_ca: str | None = None
    client_auth: ClientAuth = ClientAuth.NONE
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()  # OpenSSL's names, TLS 1.2 and older; empty: the library's defaults
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """The files the TLS material is read from (read again for each new connection)."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate_limit`: a token bucket over every request: one token per `interval`, at most `burst` saved."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The whole web config file; the empty file means plain HTTP, no authentication, no extra headers."""

    tls: TLSServer | None = None
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    rate_limit: RateLimit | None = None
    http2: bool = True  # accepted for compatibility: upwatch serves HTTP/1.1 only


def parse_web_config(raw: bytes | str, file: str, base_dir: Path) -> WebConfig:
    """A WebConfig from the file's text; relative file names are relative to `base_dir`."""
    data, doc = read_document(raw, file, None, expected="a mapping (exporter-toolkit's web config)", empty_ok=True)
    top = _keys(doc, data, (), _TOP_KEYS)
    tls = _tls(doc, top["tls_server_config"], base_dir) if "tls_server_config" in top else None
    http = _keys(doc, top.get("http_server_config", {}), ("http_server_config",), _HTTP_KEYS)
    config = WebConfig(
        tls=tls,
        headers=_headers(doc, http.get("headers", {})),
        users=_users(doc, top.get("basic_auth_users", {})),
        rate_limit=_rate_limit(doc, top.get("rate_limit")),
        http2=_bool(doc, http, ("http_server_config",), "http2", True),
    )
    if doc.problems:
        raise ConfigError(doc.problems)
    if tls is not None:
        try:
            check_material(tls)
        except TLSMaterialError as exc:
            doc.problem(("tls_server_config", exc.key), str(exc))
            raise ConfigError(doc.problems) from None
    return config


def _keys(doc: Document, value: object, path: PathKey, known: tuple[str, ...]) -> dict[str, object]:
    """A mapping's items, with a problem for each unknown key (empty, with a problem, when not a mapping)."""
    if value is None:  # `tls_server_config:` with nothing under it, as Go's YAML reads it
        return {}
    if not isinstance(value, dict):
        doc.problem(path, f"must be a mapping, got {type_name(value)}")
        return {}
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
            doc.problem((*path, key), f"unknown key {clip(key)}{hint}", at_key=True)
    return {k: v for k, v in value.items() if k in known}


def _string(doc: Document, data: Mapping[str, object], path: PathKey, key: str) -> str | None:
    """A string value, or None when absent, empty or (with a problem) not a string."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        doc.problem((*path, key), f"must be a string, got {type_name(value)}")
        return None
    return value


def _bool(doc: Document, data: Mapping[str, object], path: PathKey, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        doc.problem((*path, key), f"must be true or false, got {type_name(value)}")
        return default
    return value


def _strings(doc: Document, data: Mapping[str, object], path: PathKey, key: str) -> tuple[str, ...] | None:
    """A list of strings, or None when absent."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        doc.problem((*path, key), f"must be a list of strings, got {type_name(value)}")
        return ()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            doc.problem((*path, key, i), f"must be a string, got {type_name(item)}")
    return tuple(item for item in value if isinstance(item, str))


def _tls(doc: Document, value: object, base_dir: Path) -> TLSServer | None:
    path: PathKey = ("tls_server_config",)
    data = _keys(doc, value, path, _TLS_KEYS)
    text = {k: _string(doc, data, path, k) for k in _TLS_KEYS[:7]}
    auth = _client_auth(doc, text["client_auth_type"], path)
    sans = _strings(doc, data, path, "client_allowed_sans")
    low, high = _versions(doc, data, path)
    ciphers = _ciphers(doc, data, path)
    prefer = _bool(doc, data, path, "prefer_server_cipher_suites", True)
    curves = _strings(doc, data, path, "curve_preferences") or ()
    for i, curve in enumerate(curves):
        if curve not in CURVES:
            doc.problem((*path, "curve_preferences", i), f"unknown curve {clip(curve)}; known: {', '.join(CURVES)}")
    if not any(text.values()):
        return None  # nothing that turns TLS on (exporter-toolkit's rule): plain HTTP
    for inline, named in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if text[inline] is not None and text[named] is not None:
            doc.problem((*path, inline), f"give {inline} or {named}, not both")
    for inline, named in (("cert", "cert_file"), ("key", "key_file")):
        if text[inline] is None and text[named] is None:
            doc.problem(path, f"missing one of {inline} or {named}")
    if (text["client_ca_file"] or text["client_ca"]) and auth is ClientAuth.NONE:
        key = "client_ca_file" if text["client_ca_file"] else "client_ca"
        doc.problem((*path, key), "a client CA is set but client_auth_type is NoClientCert: set client_auth_type")
    if sans is not None and auth is ClientAuth.NONE:
        doc.problem((*path, "client_allowed_sans"), "needs client_auth_type RequireAndVerifyClientCert")

    def file(key: str) -> Path | None:
        return None if text[key] is None else base_dir / str(text[key])

    return TLSServer(
        cert_file=file("cert_file"),
        key_file=file("key_file"),
        cert=text["cert"],
        key=text["key"],
        client_ca_file=file("client_ca_file"),
        client_ca=text["client_ca"],
        client_auth=auth,
        client_allowed_sans=sans,
        min_version=low,
        max_version=high,
        ciphers=ciphers,
        prefer_server_cipher_suites=prefer,
        curve_preferences=curves,
    )


def _client_auth(doc: Document, text: str | None, path: PathKey) -> ClientAuth:
    if text is None:
        return ClientAuth.NONE
    try:
        return ClientAuth(text)
    except ValueError:
        pass
    where = (*path, "client_auth_type")
    if text in _UNVERIFIED_CLIENT_AUTH:
        doc.problem(
            where,
            f"{text} (a client certificate accepted without verifying it) is not supported: "
            "use RequireAndVerifyClientCert with client_ca_file",
        )
    else:
        known = ", ".join(ClientAuth)
        doc.problem(where, f"invalid client_auth_type {clip(text)}; one of {known}")
    return ClientAuth.NONE


def _versions(doc: Document, data: Mapping[str, object], path: PathKey) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    out = []
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = _string(doc, data, path, key) or default
        if name not in TLS_VERSIONS:
            doc.problem((*path, key), f"unknown TLS version {clip(name)}; one of {', '.join(TLS_VERSIONS)}")
            name = default
        out.append(TLS_VERSIONS[name])
    low, high = out
    if low > high:
        doc.problem((*path, "min_version"), "min_version is above max_version")
    return low, high


def _ciphers(doc: Document, data: Mapping[str, object], path: PathKey) -> tuple[str, ...]:
    names = _strings(doc, data, path, "cipher_suites") or ()
    out = []
    for i, name in enumerate(names):
        if name not in CIPHER_SUITES:
            doc.problem((*path, "cipher_suites", i), f"unknown cipher suite {clip(name)} (use Go's names)")
        elif (openssl := CIPHER_SUITES[name]) is not None:
            out.append(openssl)
    return tuple(out)


def _headers(doc: Document, value: object) -> tuple[tuple[str, str], ...]:
    path: PathKey = ("http_server_config", "headers")
    data = _keys(doc, value, path, tuple(HEADERS))
    out = []
    for name, text in data.items():
        if isinstance(text, int) and not isinstance(text, bool):
            text = str(text)  # `X-XSS-Protection: 1`, as YAML reads it
        if not isinstance(text, str):
            doc.problem((*path, name), f"must be a string, got {type_name(text)}")
            continue
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            doc.problem((*path, name), f"invalid value {clip(text)} for {name}; one of {', '.join(allowed)}")
        elif text and not text.isprintable():
            doc.problem((*path, name), "must be one line of printable text")
        elif text:  # blank: unset
            out.append((name, text))
    return tuple(out)


def _users(doc: Document, value: object) -> dict[str, bytes]:
    path: PathKey = ("basic_auth_users",)
    if value is None:
        return {}
    if not isinstance(value, dict):
        doc.problem(path, f"must be a mapping of user names to bcrypt hashes, got {type_name(value)}")
        return {}
    out = {}
    for user, hashed in value.items():
        if not isinstance(hashed, str):
            doc.problem((*path, user), f"must be a bcrypt hash (a string), got {type_name(hashed)}")
            continue
        m = _BCRYPT.match(hashed)
        if m is None:
            # Never the value itself: it may be a password written where its hash belongs.
            doc.problem((*path, user), "not a bcrypt hash ($2y$10$ and 53 characters, e.g. from htpasswd -nBC 10)")
        elif not 4 <= int(m.group(1)) <= 31:
            doc.problem((*path, user), f"bcrypt cost {int(m.group(1))} is out of range (4 to 31)")
        else:
            out[user] = hashed.encode()
    return out


def _rate_limit(doc: Document, value: object) -> RateLimit | None:
    path: PathKey = ("rate_limit",)
    data = _keys(doc, value, path, _RATE_KEYS)
    interval = data.get("interval", 0)
    seconds = 0.0
    if interval not in (0, "0", "0s", None):
        try:
            seconds = parse_duration(interval)
        except ValueError as exc:
            doc.problem((*path, "interval"), str(exc))
    burst = data.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        doc.problem((*path, "burst"), f"must be a whole number, 0 or more, got {type_name(burst)}")
        burst = 0
    if seconds and not burst:
        doc.problem((*path, "burst"), "must be 1 or more while interval is set (0 would refuse every request)")
    return RateLimit(seconds, burst) if seconds else None
