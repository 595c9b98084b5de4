"""Redaction: URLs and messages cleared of credentials, query strings and header values before anyone sees them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

REDACTED = "<redacted>"


def redact_url(url: str, *, mask: bool = False) -> str:
    """A URL without user info, query string or fragment, safe for labels, logs and pages.

    With `mask`, each of them is replaced by `***` instead of dropped, and the URL is not parsed:
    problem messages show what was written, even a URL too broken to parse.
    """
    if mask:
        url = re.sub(r"^([^:/?#]*://)[^/?#]*@", r"\1***@", url)
        return re.sub(r"[?#].*$", lambda m: m.group(0)[0] + "***", url, flags=re.DOTALL)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


class SecretScrubber:
    """Replaces an endpoint's secrets (URL credentials and query, header values) in text, and bounds its length."""

    def __init__(self, url: str, header_values: Iterable[str], *, max_length: int) -> None:
        parts = urlsplit(url)
        secrets = {parts.username or "", parts.password or "", parts.query, parts.fragment}
        secrets |= {unquote(s) for s in secrets}
        secrets |= set(header_values)
        # One or two characters (a user "u", a header "1") are no secret, and replacing them would garble text.
        self._secrets = sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True)
        self._max_length = max_length

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        if len(text) > self._max_length:
            text = text[: self._max_length - 3] + "..."
        return text
