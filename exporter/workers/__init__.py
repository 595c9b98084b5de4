"""Probe worker processes: with `workers` of 2 or more, probing runs in them and the main process records and serves.

| module    | holds                                                                                  |
| --------- | -------------------------------------------------------------------------------------- |
| `pool`    | `WorkerPool` (main process): start, assign by rendezvous hashing, take results, restart |
| `process` | `worker_main` (worker process): its own loop, prober and scheduler; batched results     |
| `wire`    | the messages on the pipes between them and their framing                               |
"""

from __future__ import annotations

from .pool import NO_WORKERS, WorkerPool, WorkerStatus

__all__ = ["NO_WORKERS", "WorkerPool", "WorkerStatus"]
