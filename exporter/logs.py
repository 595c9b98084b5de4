"""One place that sets up structlog: JSON off a TTY, readable console output on one."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The level and format chosen on the command line, for the worker processes to log alike."""

    level: str = "info"
    format: str | None = None  # None: console on a TTY, else JSON


def configure_logging(level: str = "info", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process; `fmt` None picks console on a TTY, else JSON."""
    out = stream or sys.stderr
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write per line, newline included: worker processes share the main process's
        # stderr, and a line written in two parts (print() does, unbuffered) could interleave.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """A bound logger with some context."""
    return structlog.get_logger(**context)
