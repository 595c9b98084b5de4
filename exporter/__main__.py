"""`python -m exporter` runs the upwatch command line."""

from __future__ import annotations

from .cli import main

main()
