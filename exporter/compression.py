"""gzip of the HTTP server's bodies (/metrics, the status page's family), in one place."""

from __future__ import annotations

from collections.abc import Iterable

try:
    # ISA-L's deflate: a gzip of the exposition text in a quarter of zlib's CPU time, for 3 % more bytes
    # (bench/compression.py). Like zlib, it releases the GIL while it compresses.
    from isal import isal_zlib as _deflate
except ImportError:  # no isal wheel for this machine, so pyproject's marker leaves it out: the standard library's
    import zlib as _deflate  # type: ignore[no-redef]


def gzip_pieces(pieces: Iterable[bytes]) -> bytes:
    """One gzip stream of the pieces, compressed one after the other (never joined first)."""
    # Level 1: the exposition text compresses about 16x even so, in both codecs. wbits 31: a gzip stream.
    stream = _deflate.compressobj(1, _deflate.DEFLATED, 31)
    out = [stream.compress(piece) for piece in pieces]
    out.append(stream.flush())
    return b"".join(out)
