"""Agent-shaped records for the tests of what reads them (invariants, metrics, run.diff).

`test.agent` is a node type whose handler records, through the real `Executor.record_call`,
the calls an agent node records (docs/decisions/0006, the record format of issue 17): one
`model` call per turn (a `ModelRequest` with tools and `metadata.turn`, a `ModelResponse`
with `tool_calls`), then one `tool` call per tool call, in completion order. Its script is
the node's `test.turns`: a JSON list of turns, each a list of tool calls
`{name, arguments, server?, argv?, result?, error?}`; a last model turn without tool calls
answers. `test.ids` prefixes the vendor's tool-call ids (two live runs differ in them);
`test.finish` = `reversed` records each turn's tool calls in reverse order (as parallel
calls may finish). `run_agent` runs a pipeline through the engine and returns what the store
would keep, as run.diff (`DiffSide`) and the invariants (`StoredRun`) read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ostinato.daemon.engine.executor import Executor
from ostinato.daemon.engine.handlers.base import NodeRun
from ostinato.daemon.engine.handlers.registry import default_handlers
from ostinato.daemon.engine.load import load_pipeline
from ostinato.daemon.engine.outcome import Outcome, Status
from ostinato.daemon.engine.providers.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolSpec,
    Usage,
)
from ostinato.daemon.engine.providers.runtime import ProviderPool
from ostinato.daemon.engine.rundir import RunDirectory
from ostinato.daemon.ids import utc_now, uuid7
from ostinato.daemon.regression.invariants import StoredRun
from ostinato.daemon.runs.diff import DiffSide
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

from .runs_support import RecordingSink

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OBJECT = {"type": "object", "properties": {}}


def attr(value: Any) -> str:
    """A DOT attribute value holding `value` as JSON text."""
    return json.dumps(json.dumps(value))


def call(name: str, server: str | None = None, result: dict[str, Any] | None = None,
         error: str | None = None, argv: list[str] | None = None,
         **arguments: Any) -> dict[str, Any]:
    """One scripted tool call of a turn."""
    entry: dict[str, Any] = {"name": name, "arguments": arguments}
    for key, value in (("server", server), ("result", result), ("error", error),
                       ("argv", argv)):
        if value is not None:
            entry[key] = value
    return entry


class ScriptedAgent:
    """The node type `test.agent`: records the calls of an agent loop from its script."""

    async def execute(self, run: NodeRun) -> Outcome:
        turns: list[list[dict[str, Any]]] = json.loads(str(run.node.get("test.turns", "[]")))
        prefix = str(run.node.get("test.ids", "call"))
        reverse = run.node.get("test.finish") == "reversed"
        names = sorted({c["name"] for turn in turns for c in turn})
        tools = [ToolSpec(name=name, description=f"the {name} tool", schema=OBJECT)
                 for name in names]
        messages = [Message(role="user", content=str(run.node.get("prompt", "Go")))]
        for number, turn in enumerate([*turns, []], start=1):
            request = ModelRequest(provider="scripted", model="agent", messages=list(messages),
                                   node_id=run.node.id, attempt=run.attempt, tools=tools,
                                   metadata={"turn": number})
            tool_calls = tuple(ToolCall(id=f"{prefix}-{number}-{index}", name=c["name"],
                                        arguments=json.dumps(c["arguments"]))
                               for index, c in enumerate(turn))
            response = ModelResponse(text="" if turn else "done", tool_calls=tool_calls,
                                     usage=Usage(input_tokens=10, output_tokens=5),
                                     finish_reason="tool_calls" if turn else "stop",
                                     provider="scripted", model="agent")
            run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="model",
                                     request=request.to_dict(), response=response.to_dict(),
                                     input_tokens=10, output_tokens=5, finish_reason="stop")
            messages.append(response.assistant_message())
            order = list(enumerate(turn))
            for index, scripted in reversed(order) if reverse else order:
                self._record_tool(run, number, index, scripted, tool_calls[index].id)
            messages += [Message(role="tool", content=json.dumps(c.get("result")),
                                 tool_call_id=tool_calls[index].id,
                                 is_error=c.get("error") is not None)
                         for index, c in order]
        return Outcome(Status.SUCCESS, notes="done")

    @staticmethod
    def _record_tool(run: NodeRun, turn: int, index: int, scripted: dict[str, Any],
                     call_id: str) -> None:
        metadata: dict[str, Any] = {"call_id": call_id}
        if "argv" in scripted:
            metadata["argv"] = scripted["argv"]
        request: dict[str, Any] = {"tool": scripted["name"]}
        if "server" in scripted:
            request["server"] = scripted["server"]
        request.update(arguments=scripted["arguments"], turn=turn, index=index,
                       metadata=metadata)
        default = {"exit_code": 0, "stdout": "ok\n", "stderr": ""}
        error = scripted.get("error")
        run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="tool",
                                 request=request, response=scripted.get("result", default),
                                 error=error, finish_reason="error" if error else "exit")


async def run_agent(tmp_path: Path, source: str, *,
                    settings: dict[str, Any] | None = None) -> tuple[DiffSide, StoredRun]:
    """Run a DOT pipeline (its `test.agent` nodes included) through the engine; what the
    store would keep of it, as run.diff and the invariants read it."""
    handlers = default_handlers()
    handlers.register("test.agent", ScriptedAgent())
    loaded = load_pipeline(PipelineRef(source=source, format="dot"), EXAMPLES,
                           known_types=handlers.known_types())
    assert loaded.graph is not None and loaded.valid, loaded.diagnostics
    graph = loaded.graph
    run_settings = RunSettings.model_validate(
        {"retry": {"delay_scale": 0, "jitter": False}, **(settings or {})})
    pool = ProviderPool({"default": run_settings.default_provider,
                         "providers": run_settings.providers, "pricing": run_settings.pricing})
    run_id, trace_id = uuid7(), uuid7()
    run_dir = RunDirectory(tmp_path / "runs" / run_id)
    run_dir.create()
    sink = RecordingSink()
    executor = Executor(run_id=run_id, trace_id=trace_id, graph=graph, run_dir=run_dir,
                        handlers=handlers, providers=pool, interviewer=None, sink=sink,
                        settings=run_settings)
    started = utc_now()
    try:
        result = await executor.run({})
    finally:
        await pool.aclose()
    run = {"id": run_id, "trace_id": trace_id, "pipeline_hash": graph.digest(),
           "pipeline_name": graph.name, "status": result.status,
           "outcome": result.outcome.value, "failure_reason": result.failure_reason or None,
           "inputs": {}, "settings": run_settings.model_dump(mode="json"),
           "run_dir": f"runs/{run_id}", "created_at": started, "started_at": started,
           "ended_at": utc_now()}
    return (DiffSide(run, sink.stages, sink.calls, dag=graph.dag),
            StoredRun(run=run, stages=sink.stages, calls=sink.calls, context={}))
