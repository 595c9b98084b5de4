"""The main process's probes: its prober loaded on first use (`serve` without workers), and `upwatch probe`'s."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from .config import Config, Endpoint
from .probes.budget import BodyBudget
from .probes.tls import TLSContexts
from .results import ProbeResult

if TYPE_CHECKING:
    from .probes.http import HttpProber
    from .probes.spec import ProbeSpec


class InProcessProber:
    """The main process's prober, loaded on its first probe: while workers probe, this process never loads it."""

    def __init__(self, tls: TLSContexts) -> None:
        self._tls = tls
        self._prober: HttpProber | None = None
        self.budget = BodyBudget()  # its probes' kept bodies, bounded by the config's body_memory_limit

    def load(self) -> HttpProber:
        """The prober, loaded now if need be (importing it blocks for tens of milliseconds, far more on a busy host)."""
        if self._prober is None:
            from .probes.http import HttpProber

            self._prober = HttpProber(self._tls, budget=self.budget)
        return self._prober

    async def probe(self, endpoint: Endpoint | ProbeSpec, deadline: float | None = None) -> ProbeResult:
        """Probe with the prober, loading it first if need be."""
        prober = self._prober
        if prober is None:
            # The caller set the deadline before the load: the time it took is not the endpoint's.
            loop = asyncio.get_running_loop()
            began = loop.time()
            prober = self.load()
            if deadline is not None:
                deadline += loop.time() - began
        return await prober.probe(endpoint, deadline)

    def retain(self, names: Collection[str]) -> None:
        """See HttpProber.retain."""
        if self._prober is not None:
            self._prober.retain(names)

    async def aclose(self) -> None:
        """See HttpProber.aclose."""
        if self._prober is not None:
            await self._prober.aclose()


async def probe_once(config: Config, names: Sequence[str] = (), tls: TLSContexts | None = None) -> list[ProbeResult]:
    """Probe the named endpoints (all when none are named) once now, in config order.

    `tls` is the cache the config was loaded with, so that the probes find their SSL contexts built.
    """
    from .probes.http import HttpProber

    endpoints = [config.endpoint(n) for n in names] if names else list(config.probed)
    prober = HttpProber(tls, budget=BodyBudget(config.body_memory_limit))
    limit = asyncio.Semaphore(config.max_concurrent_probes)

    async def one(ep: Endpoint) -> ProbeResult:
        async with limit:
            return await prober.probe(ep)

    try:
        return list(await asyncio.gather(*(one(ep) for ep in endpoints)))
    finally:
        await prober.aclose()
