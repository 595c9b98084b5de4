"""Rendezvous (highest-random-weight) hashing: which of N buckets owns a name.

Each (name, bucket) pair gets a pseudo-random weight from a stable hash and the name goes to the
bucket of highest weight. Going from N to N+1 buckets moves only the names whose new bucket wins,
about 1/(N+1) of them, and all of them onto the new bucket; nothing moves between old buckets.
Used to spread endpoints over probe worker processes; the same function can split them over agents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

_T = TypeVar("_T")


def rendezvous_weight(name: str, bucket: int) -> int:
    """The weight of `bucket` for `name`: the same in every process and run (never Python's salted hash())."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, key=bucket.to_bytes(8, "big")).digest()
    return int.from_bytes(digest, "big")


def rendezvous_bucket(name: str, buckets: int) -> int:
    """The bucket in 0..buckets-1 that owns `name`."""
    if buckets < 1:
        raise ValueError("need at least one bucket")
    return max(range(buckets), key=lambda b: rendezvous_weight(name, b))


def partition(items: Iterable[_T], buckets: int, name: Callable[[_T], str]) -> list[list[_T]]:
    """`items` split over `buckets` by rendezvous hashing of `name(item)`, each bucket in the items' order."""
    out: list[list[_T]] = [[] for _ in range(buckets)]
    for item in items:
        out[rendezvous_bucket(name(item), buckets)].append(item)
    return out
