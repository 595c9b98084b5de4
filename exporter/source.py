"""Where `serve` reads its config from and listens on: the options' values as the agent takes them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE

DEFAULT_LISTEN = ":9877"


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Which config file the agent reads, and whether the user named it."""

    path: Path
    explicit: bool


def config_source(option: str | None, env: Mapping[str, str] | None = None) -> ConfigSource:
    """--config, else $UPWATCH_CONFIG, else ./upwatch.yml (which may not exist)."""
    env = os.environ if env is None else env
    if option:
        return ConfigSource(Path(option), True)
    if env.get(CONFIG_ENV_VAR):
        return ConfigSource(Path(env[CONFIG_ENV_VAR]), True)
    return ConfigSource(Path(DEFAULT_CONFIG_FILE), False)


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, :PORT or [IPv6]:PORT as (host, port); an empty host means every address."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid listen address {text!r}: use HOST:PORT or :PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"invalid listen address {text!r}: write IPv6 addresses as [ADDR]:PORT")
    return host, int(port_text)
