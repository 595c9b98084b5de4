"""Undoing a response's content codings (gzip, deflate) with a bound on the decoded size, whatever the ratio."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from exporter.probes.failures import InvalidResponse

MAX_CODINGS = 2  # stacked content codings decoded (gzip of gzip); a third is refused as a decompression bomb
_INFLATE_STEP = 64 * 1024  # most bytes one decompression step may produce


class _Inflater:
    """One content coding (gzip or deflate), decompressed a bounded step at a time."""

    def __init__(self, coding: str) -> None:
        self._raw_fallback = coding == "deflate"  # servers send both zlib-wrapped and raw deflate
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding != "deflate" else zlib.MAX_WBITS)
        self._started = False

    def step(self, data: bytes) -> tuple[bytes, bool]:
        """Decompress at most one step of `data`'s output; the output and whether input is left over."""
        try:
            out = self._inflater.decompress(data, _INFLATE_STEP)
        except zlib.error:
            if self._raw_fallback and not self._started:
                self._raw_fallback = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.step(data)
            raise
        self._started = True
        return out, bool(self._inflater.unconsumed_tail) or len(out) == _INFLATE_STEP

    @property
    def tail(self) -> bytes:
        return self._inflater.unconsumed_tail


class BodyDecoder:
    """Undoes a response's content codings, never producing much more than it was asked for.

    A few kilobytes of gzip can stand for gigabytes; each layer here produces at most one step of
    output at a time and stops as soon as the caller's room is passed, so a bomb costs the limit, not
    its decoded size. Unknown codings are left as they are (the checks then see the encoded bytes).
    """

    def __init__(self, codings: Sequence[str]) -> None:
        known = [c for c in codings if c in ("gzip", "x-gzip", "deflate")]
        if len(known) > MAX_CODINGS:
            raise InvalidResponse(f"cannot decode the response body: more than {MAX_CODINGS} stacked content codings")
        self._layers = [_Inflater("gzip" if c == "x-gzip" else c) for c in reversed(known)]

    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded output of `data`, at most room + 1 bytes (one past the room says "too large")."""
        sink = bytearray()
        try:
            self._push(0, data, room, sink)
        except zlib.error as exc:
            raise InvalidResponse(f"cannot decode the response body: {exc}") from None
        return bytes(sink)

    def _push(self, index: int, data: bytes, room: int, sink: bytearray) -> None:
        """Run `data` through layer `index` and those after it into `sink`, stopping once the room is passed."""
        if index == len(self._layers):
            sink += data[: room + 1 - len(sink)]
            return
        layer = self._layers[index]
        pending = data
        while len(sink) <= room:
            produced, more = layer.step(pending)
            pending = layer.tail
            if produced:
                self._push(index + 1, produced, room, sink)
            if not more:
                break
