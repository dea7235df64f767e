"""The checked-in schemas/ are exactly what the protocol models generate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ostinato.daemon.main import build_dispatcher
from ostinato.protocol.catalog import client_methods
from ostinato.protocol.openrpc import generated_files

from .support import REPO, DaemonProcess

SCHEMAS = REPO / "schemas"


def test_checked_in_schemas_are_current() -> None:
    expected = generated_files()
    on_disk = {str(p.relative_to(SCHEMAS)): p.read_bytes()
               for p in SCHEMAS.rglob("*.json")}
    stale = sorted(name for name in expected if on_disk.get(name) != expected[name])
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, (
        f"schemas/ is stale (run `make schemas`): changed {stale}, not generated {extra}")


@pytest.mark.parametrize("path", sorted((SCHEMAS / "methods").glob("*.json")),
                         ids=lambda p: p.stem)
def test_every_method_schema_is_valid_draft_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_contract_method_has_a_handler_and_a_schema() -> None:
    dispatcher = build_dispatcher([])
    names = {spec.name for spec in client_methods()}
    assert names == {spec.name for spec in dispatcher.registry}
    document = json.loads((SCHEMAS / "openrpc.json").read_text())
    assert names <= {method["name"] for method in document["methods"]}


async def test_rpc_discover_returns_the_checked_in_document(tmp_path: Path) -> None:
    from .support import spawn_stdio

    process, wire = await spawn_stdio(tmp_path / "home")
    await wire.initialize()
    discovered = await wire.result("rpc.discover")
    assert discovered == json.loads((SCHEMAS / "openrpc.json").read_text())
    await wire.result("shutdown")
    await wire.send({"jsonrpc": "2.0", "method": "exit"})
    assert await process.wait() == 0


async def test_responses_validate_against_the_published_schemas(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    for method in ("daemon.status", "rpc.discover", "shutdown"):
        schema = json.loads((SCHEMAS / "methods" / f"{method}.json").read_text())
        result_schema = {**schema["properties"]["result"], "$defs": schema["$defs"]}
        jsonschema.validate(await wire.result(method), result_schema)
