"""The agent's own web server settings: `--web.config.file` in the Prometheus exporter-toolkit format.

| module   | holds                                                                             |
| -------- | --------------------------------------------------------------------------------- |
| `config` | `WebConfig` and its parts, `parse_web_config`: strict, every problem at its line    |
| `tls`    | the server's SSL context from `tls_server_config`, rebuilt when its files change     |
| `access` | `WebAccess`: the file re-read per request; basic auth (bcrypt), rate limit, headers |
|          | `read_web_config`: read and check the file once (`serve` at start, `validate`)     |
"""

from __future__ import annotations

from .access import Refusal, WebAccess, WebConfigFile, read_web_config
from .config import WebConfig, parse_web_config
from .tls import ServingContext

__all__ = [
    "Refusal",
    "ServingContext",
    "WebAccess",
    "WebConfig",
    "WebConfigFile",
    "parse_web_config",
    "read_web_config",
]
