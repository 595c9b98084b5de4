"""The event loop the agent runs on: uvloop where it is installed, else the standard one.

bench/http_clients.py measured the probe engine on both: uvloop takes about a third less CPU per
HTTP probe, so `serve`, its worker processes and `probe` use it; everything works on either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of the fastest event loop available here."""
    try:
        import uvloop
    except ImportError:  # not built for this platform: the standard loop does the same work
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a new loop from `loop_factory`, like `asyncio.run`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
