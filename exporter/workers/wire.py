"""What the main process and a probe worker say to each other over their pipes, and how it is framed.

Each message is a 4-byte big-endian length and a pickle. Both ends are upwatch processes started
together (the pipes never leave the machine), so pickle is safe here and the cheapest codec.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import mmap
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exporter.probes.budget import DEFAULT_BODY_BUDGET
from exporter.probes.spec import ProbeSpec
from exporter.results import ProbeResult
from exporter.scheduler import SkipCause

# Indexes into the counters a worker shares with the main process (two uint64 in a shared file mapping):
# probes started, and probes cancelled (their result will never come, by design). The main
# process subtracts the results it received; what is left when a worker dies was lost with it.
STARTED, CANCELLED = 0, 1
COUNTERS_BYTES = 16

_LENGTH = struct.Struct("!I")
MAX_MESSAGE_BYTES = 1 << 30

# ProbeResult's `phases` is a read-only MappingProxyType, which does not pickle: results cross as
# tuples of their fields, with mappings as plain dicts, and are rebuilt on the other side.
_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ProbeResult))


@dataclass(frozen=True, slots=True)
class Assignment:
    """Main to worker: what changed in the endpoints this worker probes, and its share of the probe cap."""

    upsert: tuple[ProbeSpec, ...]  # new or changed endpoints, as the prober takes them
    remove: tuple[str, ...]  # names of endpoints it no longer probes
    max_concurrency: int
    # Names of endpoints that another process probed until this loop time: their new loops
    # count the ticks missed since then as skipped.
    resume_from: Mapping[str, float]
    # Names of endpoints new to the workers since this loop time: a first tick that passed while
    # the worker was starting runs at once, late, rather than being skipped.
    due_from: Mapping[str, float] = dataclasses.field(default_factory=dict)
    body_memory_limit: int = DEFAULT_BODY_BUDGET  # the worker's own body budget


@dataclass(frozen=True, slots=True)
class Batch:
    """Worker to main: results and skipped ticks since the last batch, and results it had to drop."""

    results: tuple[tuple[object, ...], ...]  # encoded with encode_result
    skipped: tuple[tuple[str, int, SkipCause], ...]
    dropped: int  # results thrown away since the last batch because the pipe was backed up


def encode_result(result: ProbeResult) -> tuple[object, ...]:
    """A result as a picklable tuple of its fields."""
    return tuple(
        dict(value) if isinstance(value, MappingProxyType) else value
        for value in (getattr(result, name) for name in _RESULT_FIELDS)
    )


def decode_result(fields: tuple[object, ...]) -> ProbeResult:
    """The result `encode_result` made the tuple of."""
    values = {
        name: MappingProxyType(value) if isinstance(value, dict) else value
        for name, value in zip(_RESULT_FIELDS, fields, strict=True)
    }
    return ProbeResult(**values)  # type: ignore[arg-type]


def frame(message: Assignment | Batch) -> bytes:
    """The bytes that carry one message."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> Assignment | Batch | None:
    """The next message; None at the end of the stream (the other process closed it or died)."""
    try:
        header = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        if length > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {length} bytes is too large")
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    message = pickle.loads(payload)
    if not isinstance(message, (Assignment, Batch)):
        raise TypeError(f"unexpected message {type(message).__name__}")
    return message


def open_counters(fd: int) -> ctypes.Array[ctypes.c_uint64]:
    """The two counters a worker shares with the main process, mapped from the file `fd` (COUNTERS_BYTES long)."""
    shared = mmap.mmap(fd, COUNTERS_BYTES)
    return (ctypes.c_uint64 * 2).from_buffer(shared)
