"""Probe worker processes: with `workers` of 1 or more, probing runs in them and the main process records and serves.

| module    | holds                                                                                  |
| --------- | -------------------------------------------------------------------------------------- |
| `pool`    | `WorkerPool` (main process): start, assign by rendezvous hashing, take results, restart |
| `process` | `worker_main` (worker process): its own loop, prober and scheduler; batched results     |
| `wire`    | the messages on the pipes between them and their framing                               |
"""


# Nothing is imported here: a worker process imports `process` alone, without the main process's
# machinery (pydantic, the config, the store) that `pool` brings in.
