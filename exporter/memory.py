"""Handing memory that Python freed back to the system, where the C library can (glibc's malloc_trim).

Python returns the objects of a replaced config to malloc, which keeps the pages for reuse,
scattered among those still in use: each reload between a large and a small config left some
megabytes behind, and the agent's resident size crept up reload after reload. malloc_trim(0)
releases every free page. It takes milliseconds and releases the GIL, so it runs in a helper
thread, off the event loop. Elsewhere than glibc (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
with contextlib.suppress(OSError, AttributeError):
    _trim = ctypes.CDLL("libc.so.6").malloc_trim


async def release_freed_memory() -> None:
    """Give the system back the free pages malloc holds (glibc only), from a helper thread."""
    if _trim is not None:
        await asyncio.to_thread(_trim, 0)
