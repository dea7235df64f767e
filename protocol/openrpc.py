"""Generates the OpenRPC document and the per-method JSON Schemas from the registry.

`python -m ostinato.protocol.openrpc DIR` writes them; tests compare DIR with a fresh
generation so that schemas/ can never drift from the models.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import PROTOCOL_VERSION
from .catalog import client_methods, server_notifications
from .registry import MethodSpec, Registry

OPENRPC_VERSION = "1.3.2"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _components(specs: list[MethodSpec]) -> tuple[dict[Any, Any], dict[str, Any]]:
    models: list[type[BaseModel]] = []
    for spec in specs:
        for model in (spec.params, spec.result):
            if model is not None and model not in models:
                models.append(model)
    refs, top = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/components/schemas/{model}")
    return refs, top.get("$defs", {})


def _params(spec: MethodSpec, schemas: dict[str, Any], ref: dict[str, str]) -> list[dict]:
    name = ref["$ref"].rsplit("/", 1)[-1]
    model_schema = schemas[name]
    required = set(model_schema.get("required", []))
    return [
        {"name": field, "required": field in required, "schema": schema,
         **({"description": schema["description"]} if "description" in schema else {})}
        for field, schema in model_schema.get("properties", {}).items()
    ]


def _method(spec: MethodSpec, refs: dict[Any, Any], schemas: dict[str, Any],
            notification_from: str | None = None) -> dict[str, Any]:
    method: dict[str, Any] = {
        "name": spec.name,
        "summary": spec.summary,
        "paramStructure": "by-name",
        "params": _params(spec, schemas, refs[(spec.params, "validation")]),
    }
    if spec.result is not None:
        method["result"] = {"name": f"{spec.name} result",
                            "schema": refs[(spec.result, "validation")]}
    if notification_from:
        method["x-direction"] = notification_from
    return method


def openrpc_document(methods: Registry | None = None,
                     notifications: Registry | None = None) -> dict[str, Any]:
    """The OpenRPC document for `methods` (by default the whole contract)."""
    methods = methods if methods is not None else client_methods()
    notifications = notifications if notifications is not None else server_notifications()
    specs = [*methods, *notifications]
    refs, schemas = _components(specs)
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Ostinato daemon",
            "version": PROTOCOL_VERSION,
            "description": "JSON-RPC 2.0 over stdio, unix socket or TCP; Content-Length or "
                           "newline-delimited framing. See docs/protocol.md.",
        },
        "methods": [_method(spec, refs, schemas) for spec in methods]
        + [_method(spec, refs, schemas, "server-to-client") for spec in notifications],
        "components": {"schemas": schemas},
    }


def method_schema(spec: MethodSpec) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) of one method's params and result."""
    models = [spec.params] + ([spec.result] if spec.result is not None else [])
    refs, top = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/$defs/{model}")
    properties: dict[str, Any] = {"params": refs[(spec.params, "validation")]}
    if spec.result is not None:
        properties["result"] = refs[(spec.result, "validation")]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"ostinato:method:{spec.name}",
        "title": spec.name,
        "description": spec.summary,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "$defs": top.get("$defs", {}),
    }


def schema_filename(name: str) -> str:
    """File name of a method's schema: `$/progress` becomes `progress.json`."""
    return name.replace("$/", "").replace("/", ".") + ".json"


def render(document: Any) -> bytes:
    """Stable, reviewable JSON for checked-in files."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def generated_files() -> dict[str, bytes]:
    """Every file of schemas/, by path relative to it."""
    from .mcp_tools import tool_definitions

    files = {"openrpc.json": render(openrpc_document()),
             "mcp-tools.json": render({"tools": tool_definitions()})}
    for spec in [*client_methods(), *server_notifications()]:
        files[f"methods/{schema_filename(spec.name)}"] = render(method_schema(spec))
    return files


def write(directory: Path) -> list[str]:
    """Write the generated files under `directory`, removing stale method schemas."""
    files = generated_files()
    (directory / "methods").mkdir(parents=True, exist_ok=True)
    for stale in (directory / "methods").glob("*.json"):
        if f"methods/{stale.name}" not in files:
            stale.unlink()
    for relative, content in files.items():
        (directory / relative).write_bytes(content)
    return sorted(files)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")
    for name in write(target):
        print(target / name)
