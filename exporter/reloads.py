"""Reload requests merged: however many arrive while a reload runs, one more reload follows it.

A reload reads the file in a child process and applies it, a fraction of a second or more; a
SIGHUP storm (a script in a loop, a deploy tool sending one per file) used to queue one reload per
signal, run back to back for minutes. Each request needs a reload that starts after it, so that
what it wrote is read: while one runs, every request joins the single reload queued after it,
which reads the file when it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ReloadRequests(Generic[T]):
    """Runs `reload` for requests, one at a time, merging the requests that wait into one run."""

    def __init__(self, reload: Callable[[], Awaitable[T]]) -> None:
        self._reload = reload
        self._running: asyncio.Task[T] | None = None
        self._queued: asyncio.Task[T] | None = None

    def request(self) -> asyncio.Task[T]:
        """The run that answers a request made now: a new one, or the one queued after the run in progress."""
        if self._queued is not None:
            return self._queued
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(), name="config-reload")
            return self._running
        self._queued = asyncio.create_task(self._run_after(self._running), name="config-reload")
        return self._queued

    async def __call__(self) -> T:
        """Request a run and wait for its outcome (a caller that gives up does not cancel it for the others)."""
        return await asyncio.shield(self.request())

    async def _run(self) -> T:
        return await self._reload()

    async def _run_after(self, running: asyncio.Task[T]) -> T:
        await asyncio.wait([running])
        # From here on this run is in progress: a request now needs a run after this one.
        self._running, self._queued = self._queued, None
        return await self._reload()

    async def cancel(self) -> None:
        """Cancel the run in progress and the one queued, and wait for them to end."""
        tasks = [t for t in (self._queued, self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
