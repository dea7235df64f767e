"""The daemon starts without the libraries only some requests need (issue 15: the first
command, which starts the home's daemon, must not wait for them): CEL, lark, JMESPath,
JSON Schema and the provider SDKs are imported by the first request that uses them."""

from __future__ import annotations

from .support import DaemonProcess

HEAVY = ("celpy", "lark", "jmespath", "jsonschema", "openai", "anthropic")
PIPELINE = {"format": "dot", "source": 'digraph G { start [shape=Mdiamond]; '
                                       'done [shape=Msquare]; start -> done }'}
RUN_ID = "01a20000-0000-7000-8000-000000000000"  # no such run: only the params matter


def loaded(names: list[str]) -> set[str]:
    """Which of HEAVY are among the imported module names."""
    return {name for name in HEAVY if name in names}


async def test_heavy_libraries_wait_for_the_requests_that_need_them(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()  # initialize
    await wire.result("daemon.status")
    assert loaded((await wire.result("test.modules"))["names"]) == set()

    checked = await wire.result("pipeline.validate", {"pipeline": PIPELINE})
    assert checked["valid"], checked
    reeval = await wire.request("run.reeval", {"run_id": RUN_ID, "invariants": [
        {"type": "expr", "expression": "status == 'completed'"},
        {"type": "jmespath", "expression": "answer", "op": "exists"},
        {"type": "json_schema", "value": {"type": "object"}}]})
    assert reeval["error"]["code"] == -32001, reeval  # valid params, unknown run
    after = loaded((await wire.result("test.modules"))["names"])
    assert after == {"celpy", "lark", "jmespath", "jsonschema"}
    await wire.close()
