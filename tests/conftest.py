"""Fixtures shared by several test files."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Nginx, nginx

# The files that take minutes each (real stacks, the soak's smoke run), longest first: sent to the
# xdist workers before the others (--dist loadfile hands out files in collection order), so that
# the suite ends with short files filling in rather than one long file starting last.
LONG_FILES = (
    "test_quorum_e2e.py",
    "test_flapping_e2e.py",
    "test_soak_smoke.py",
    "test_bundle_e2e.py",
    "test_restart_e2e.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the long files first (see LONG_FILES); the order within each file stays as written."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: the rest keep their order


@pytest.fixture
def nginx_target(tmp_path: Path) -> Iterator[Nginx]:
    """A real local HTTP server (nginx) for probes: `/` is 200 at once, `/sleep` takes 50 ms."""
    with nginx(tmp_path / "nginx") as server:
        yield server


@pytest.fixture(autouse=True)
def machine_share(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test marked `exclusive` runs while no other test runs, in any xdist worker; the others share.

    An exclusive test loads the machine's CPUs on purpose: beside it, tests with tight timings
    would fail for want of CPU, and it would measure them rather than itself. Every test holds a
    shared lock on one file of the session while it runs; an exclusive test waits for an exclusive
    lock, which it gets at a moment when no other test runs, and the others wait until it is done.
    (Module-scoped fixtures of other files, set up outside any test, are not held back.)
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders share this one
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with (root / "machine.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
