"""The JSON Schema of the config file, for editors (yaml-language-server) and `upwatch schema`."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .host import (
    DeviceFilter,
    DiskstatsOptions,
    FilesystemOptions,
    HostCollectors,
    HostConfig,
    HostPaths,
    NetclassOptions,
)
from .loader import EXTENSION_PREFIX
from .models import Config, Endpoint, Expect, TLSConfig
from .status_page import Announcement, StatusPage

SCHEMA_ID = "https://upwatch.dev/schema/upwatch.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (yaml-language-server)."""
    schema = Config.model_json_schema()
    # pydantic writes defaults as Python values (30.0, {"low": 200, ...}); an editor should show what a user writes.
    examples: list[tuple[dict[str, Any], BaseModel]] = [
        (schema, Config()),
        (schema["$defs"]["Endpoint"], Endpoint.model_construct(name="", url="")),
        (schema["$defs"]["Expect"], Expect()),
        (schema["$defs"]["TLSConfig"], TLSConfig()),
        (schema["$defs"]["HostConfig"], HostConfig()),
        (schema["$defs"]["HostCollectors"], HostCollectors()),
        (schema["$defs"]["HostPaths"], HostPaths()),
        (schema["$defs"]["FilesystemOptions"], FilesystemOptions()),
        (schema["$defs"]["DiskstatsOptions"], DiskstatsOptions()),
        (schema["$defs"]["DeviceFilter"], DeviceFilter()),
        (schema["$defs"]["NetclassOptions"], NetclassOptions()),
        (schema["$defs"]["StatusPage"], StatusPage()),
        (schema["$defs"]["Announcement"], Announcement.model_construct(title="")),
    ]
    for model_schema, example in examples:
        written = example.model_dump(mode="json")
        for name, prop in model_schema["properties"].items():
            if "default" in prop and name in written:
                prop["default"] = written[name]
    for prop in schema["$defs"]["EndpointDefaults"]["properties"].values():
        prop.pop("default", None)  # an absent key means "no default", not null
    schema["patternProperties"] = {f"^{EXTENSION_PREFIX}": {"description": "ignored: a place for YAML anchors"}}
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID}
    out.update(schema)
    out["title"] = "upwatch config"
    return out


def json_schema_text() -> str:
    """The JSON Schema as stable, indented JSON text."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
