"""`python -m exporter` runs the upwatch command line."""

from __future__ import annotations

from .cli import main

# Guarded: a "spawn" worker process imports the main module of its parent.
if __name__ == "__main__":
    main()
