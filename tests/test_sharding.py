"""Rendezvous hashing: stable, balanced, and minimal movement when a bucket is added."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest

from exporter.sharding import partition, rendezvous_bucket

NAMES = [f"endpoint-{i}" for i in range(10_000)]


def test_stable_across_processes() -> None:
    # A fresh interpreter (with its own hash() salt) assigns the same buckets.
    here = [rendezvous_bucket(n, 5) for n in NAMES[:200]]
    code = "from exporter.sharding import rendezvous_bucket as b; print([b(f'endpoint-{i}', 5) for i in range(200)])"
    env = {"PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert there.strip() == str(here)


def test_known_values() -> None:
    # Pinned, so that a change of the hash (which would move every endpoint of every agent) is deliberate.
    assert [rendezvous_bucket(f"endpoint-{i}", 4) for i in range(12)] == [1, 2, 1, 1, 1, 3, 2, 1, 3, 0, 2, 1]


@pytest.mark.parametrize("buckets", range(2, 9))
def test_balanced(buckets: int) -> None:
    sizes = Counter(rendezvous_bucket(n, buckets) for n in NAMES)
    even = len(NAMES) / buckets
    assert set(sizes) == set(range(buckets))
    # As even as chance allows: each bucket within 3.5 standard deviations of a fair binomial split,
    # 3.5 % of even for 2 buckets, 9 % for 8 (a biased hash would be far outside).
    sigma = math.sqrt(len(NAMES) * (1 / buckets) * (1 - 1 / buckets))
    assert all(abs(size - even) < 3.5 * sigma for size in sizes.values()), sizes


@pytest.mark.parametrize("buckets", range(1, 8))
def test_adding_a_bucket_moves_few_names_and_only_onto_it(buckets: int) -> None:
    before = {n: rendezvous_bucket(n, buckets) for n in NAMES}
    after = {n: rendezvous_bucket(n, buckets + 1) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    assert all(after[n] == buckets for n in moved)  # only onto the new bucket
    share = len(moved) / len(NAMES)
    assert abs(share - 1 / (buckets + 1)) < 0.02, share


def test_partition_keeps_order_and_every_item() -> None:
    parts = partition(NAMES[:1000], 3, name=str)
    assert sorted(n for part in parts for n in part) == sorted(NAMES[:1000])
    for i, part in enumerate(parts):
        assert part == [n for n in NAMES[:1000] if rendezvous_bucket(n, 3) == i]


def test_one_bucket_and_none() -> None:
    assert {rendezvous_bucket(n, 1) for n in NAMES[:100]} == {0}
    with pytest.raises(ValueError):
        rendezvous_bucket("x", 0)
