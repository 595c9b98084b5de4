"""How upwatch starts Python child processes of its own: the probe workers and the config loader."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def python_module_command(module: str) -> list[str]:
    """This interpreter running `module` as a script: a fresh process, never a fork of this threaded one.

    `-P` keeps the working directory off the child's module path, so that the `exporter` package it
    finds is the one on `child_environment()`'s path: this one.
    """
    return [sys.executable, "-P", "-m", module]


def child_environment() -> dict[str, str]:
    """This process's environment, with the directory this `exporter` package was imported from first on the path."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else os.pathsep.join((root, path))}
