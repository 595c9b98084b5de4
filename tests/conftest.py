"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Nginx, nginx


@pytest.fixture
def nginx_target(tmp_path: Path) -> Iterator[Nginx]:
    """A real local HTTP server (nginx) for probes: `/` is 200 at once, `/sleep` takes 50 ms."""
    with nginx(tmp_path / "nginx") as server:
        yield server
