"""Bounds on params: free-form JSON (inputs, variables' neighbours, settings, invariant
values) nested too deep, integers past what the store and the engine hold, and settings
out of any sane range are -32602 naming the field, never -32603; the daemon carries on."""

from __future__ import annotations

import json
from typing import Any

from .runs_support import FAST, dot, run_to_end
from .support import DaemonProcess, Wire

INVALID_PARAMS = -32602
MAX_DEPTH = 64  # docs/protocol.md, "Bounds"
PIPELINE = dot("""\
    digraph bounded {
        start [shape=Mdiamond]
        ask [prompt="Say something"]
        done [shape=Msquare]
        start -> ask -> done
    }""")


def nested(levels: int) -> str:
    """A marker that request() replaces with JSON nested `levels` deep (a list of lists)."""
    return f"@nested:{levels}@"


def negated(times: int) -> dict[str, Any]:
    """A `contains` check inside `times` `not` checks."""
    check: dict[str, Any] = {"type": "contains", "path": "node.ask", "value": "x"}
    for _ in range(times):
        check = {"type": "not", "check": check}
    return check


async def request(wire: Wire, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send `params` with each nested() marker replaced (no JSON library writes 900 levels)
    and return the reply."""
    text = json.dumps(params)
    while "@nested:" in text:
        start = text.index('"@nested:')
        end = text.index('@"', start) + 2
        levels = int(text[start + 9:end - 2])
        text = text[:start] + "[" * levels + "1" + "]" * levels + text[end:]
    wire._next_id += 1
    body = f'{{"jsonrpc": "2.0", "id": {wire._next_id}, "method": "{method}", "params": {text}}}'
    await wire.send_raw(wire.frame(body.encode()))
    reply = await wire.response()
    assert reply["id"] == wire._next_id, reply
    return reply


async def test_out_of_bounds_params_are_invalid_params(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, PIPELINE)
    snapshot = await wire.result("snapshot.create", {"run_id": run["run_id"], "name": "b"})
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("run.start", {"pipeline": PIPELINE, "inputs": {"x": nested(300)}}, ["inputs"]),
        ("run.start", {"pipeline": PIPELINE, "inputs": {"x": nested(900)}}, ["inputs"]),
        ("run.start", {"pipeline": PIPELINE, "inputs": {"x": nested(MAX_DEPTH)}}, ["inputs"]),
        ("run.start", {"pipeline": PIPELINE, "settings": {"max_parallel": 2**64 - 1}},
         ["settings", "max_parallel"]),
        ("run.start", {"pipeline": PIPELINE, "settings": {"retry": {"delay_scale": 1e308}}},
         ["settings", "retry", "delay_scale"]),
        ("run.start", {"pipeline": PIPELINE, "inputs": {"n": 2**64 - 1}}, ["inputs"]),
        ("snapshot.create", {"name": "deep", "pipeline": PIPELINE,
                             "inputs": {"x": nested(300)}}, ["inputs"]),
        ("snapshot.replay", {"id": snapshot["id"], "inputs": {"x": nested(300)}}, ["inputs"]),
        ("run.reeval", {"run_id": run["run_id"], "invariants": [],
                        "inputs": {"x": nested(300)}}, ["inputs"]),
        ("run.reeval", {"run_id": run["run_id"], "invariants": [
            {"type": "equals", "path": "node.ask", "value": nested(300)}]},
         ["invariants", 0, "equals", "value"]),
        ("pipeline.validate", {"pipeline": PIPELINE, "inputs": {"x": nested(300)}},
         ["inputs"]),
        ("trace.get", {"trace_id": run["trace_id"], "limit": 2**63}, ["limit"]),
        ("trace.get", {"trace_id": run["trace_id"], "after_seq": 2**63}, ["after_seq"]),
        ("tests.run", {"all": True, "max_snapshots": 2**63}, ["max_snapshots"]),
        ("snapshot.create", {"run_id": run["run_id"], "name": "nots",
                             "invariants": [negated(200)]}, ["invariants", 0, "not"]),
    ]
    wrong = {}
    for method, params, where in cases:
        reply = await request(wire, method, params)
        error = reply.get("error") or {}
        if error.get("code") != INVALID_PARAMS or where not in [
                e["loc"][:len(where)] for e in error["data"]]:
            wrong[f"{method} {where}"] = reply
    assert wrong == {}
    # Just inside the bounds is served.
    deepest = await request(wire, "run.start", {"pipeline": PIPELINE, "wait": True,
                                                "settings": FAST,
                                                "inputs": {"x": nested(MAX_DEPTH - 1)}})
    assert deepest["result"]["status"] == "completed", deepest
    detail = await wire.result("run.get", {"run_id": deepest["result"]["run_id"]})
    assert json.dumps(detail["context"]["x"]).count("[") == MAX_DEPTH - 1
    assert (await wire.result("daemon.status"))["pid"] == daemon.process.pid


async def test_initialize_bounds_the_fields_of_other_protocols_too(
        daemon: DaemonProcess) -> None:
    """initialize takes fields it does not know (LSP's, MCP's): they are bounded alike."""
    wire = await daemon.connect(initialize=False)
    reply = await request(wire, "initialize", {"processId": 2**63})
    assert reply["error"]["code"] == INVALID_PARAMS
    assert [e["loc"][0] for e in reply["error"]["data"]] == ["processId"]
    reply = await request(wire, "initialize", {"processId": 1, "trace": nested(300)})
    assert reply["error"]["code"] == INVALID_PARAMS
    assert "nested deeper than 64 levels" in reply["error"]["data"][0]["msg"]
    assert await wire.initialize(trace="off")
