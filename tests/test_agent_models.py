"""Agent nodes with real models: the loop through the official openai and anthropic SDKs
against the fake API, which scripts tool calls as each vendor sends them. The tools run,
their results go back in each vendor's shape, the verdict decides the route, and a recorded
replay repeats it all with no request and no process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .fakes.llm_server import FakeLLMServer, Reply
from .runs_support import FAST, dot, run_file, run_to_end, trace
from .support import Wire
from .test_runs_real_models import VENDORS, verdict

NOTE_SCHEMA = json.dumps({"type": "object", "properties": {"text": {"type": "string"}},
                          "required": ["text"], "additionalProperties": False})
NOTE_ARGV = json.dumps(["sh", "-c", 'echo "$1" >> notes.txt', "note", "{text}"])
PIPELINE = dot(f"""\
    digraph agent {{
        graph [tool.note.description="Append a line to notes.txt",
               tool.note.schema={json.dumps(NOTE_SCHEMA)},
               tool.note.argv={json.dumps(NOTE_ARGV)},
               tool.count.argv="[\\"wc\\", \\"-l\\", \\"notes.txt\\"]"]
        start [shape=Mdiamond]; exit [shape=Msquare]; redo [prompt="Again"]
        work [prompt="Take two notes, then count them", tools="note,count", max_retries=0]
        start -> work
        work -> exit [label="Done", condition="outcome=success"]
        work -> redo [label="Redo", condition="outcome=fail"]
        redo -> exit
    }}""")
AGENT_VENDORS = ["openai-json_schema", "anthropic-tool"]


def settings(server: FakeLLMServer, vendor: str) -> dict[str, Any]:
    entry, model = VENDORS[vendor]
    suffix = "" if entry["type"] == "anthropic" else "/v1"
    return {**FAST, "default_provider": "llm", "providers": {"llm": {
        **entry, "base_url": server.url + suffix, "api_key_env": None, "model": model}}}


def final(vendor: str, answer: dict[str, Any]) -> Reply:
    """The verdict as each vendor's model gives it beside tools: OpenAI's JSON-schema
    content, a call of Anthropic's answer tool."""
    if vendor.startswith("anthropic"):
        return Reply(tool_calls=[("node_outcome", answer)])
    return Reply(structured=answer)


@pytest.mark.parametrize("vendor", AGENT_VENDORS)
async def test_a_real_model_uses_tools_and_its_verdict_chooses_the_route(
        daemon: Any, vendor: str) -> None:
    wire: Wire = await daemon.connect()
    async with FakeLLMServer() as server:
        server.queue(Reply(text="Noting.", tool_calls=[("note", {"text": "a"}),
                                                       ("note", {"text": "b"})]),
                     Reply(tool_calls=[("count", {}), ("nope", {})]),
                     final(vendor, verdict("two notes", label="Done")))
        detail = await run_to_end(wire, PIPELINE, settings=settings(server, vendor))
        assert (detail["status"], detail["outcome"]) == ("completed", "success"), \
            detail["failure_reason"]
        assert [s["node_id"] for s in detail["stages"]] == ["start", "work", "exit"]
        first, second, third = server.requests
        # Every turn offered the tools (and, for Anthropic, the answer tool beside them).
        offered = ["note", "count"] + (["node_outcome"] if vendor.startswith("anthropic")
                                       else [])
        assert first.tool_names() == second.tool_names() == third.tool_names() == offered
        # Each result answered its call, in the vendor's shape; the unknown tool's is an
        # error the model reads.
        ids = [call["id"] for call in trace_calls(detail, "model")[0]["response"]["tool_calls"]]
        assert [(i, c) for i, c, _ in second.tool_results()] == [(ids[0], ""), (ids[1], "")]
        results = third.tool_results()
        assert results[2][1].split() == ["2", "notes.txt"]
        assert results[3][1].startswith("error: there is no tool named 'nope'")
        if vendor.startswith("anthropic"):
            assert results[3][2] is True  # Anthropic has the flag; Chat Completions has not
        assert sorted(run_file(detail, "workspace", "notes.txt").read_text().split()) == [
            "a", "b"]
        assert detail["stages"][1]["outcome"]["preferred_label"] == "Done"
        assert len(trace_calls(detail, "model")) == 3
        assert len(trace_calls(detail, "tool")) == 4
        assert detail["input_tokens"] > 0 and detail["output_tokens"] > 0

        # A recorded replay: no request to the model, no process, the same route.
        before = len(server.requests)
        replay = await wire.result("run.start", {"replay": {"from_run": detail["run_id"],
                                                            "mode": "recorded"},
                                                 "wait": True})
        replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
        assert (replayed["status"], replayed["cost_usd"]) == ("completed", 0.0), \
            replayed["failure_reason"]
        assert len(server.requests) == before
        manifest = json.loads(run_file(replayed, "manifest.json").read_text())
        assert manifest["processes_started"] == 0
        assert [s["node_id"] for s in replayed["stages"]] == ["start", "work", "exit"]


async def test_a_model_that_stops_without_its_verdict_is_asked_for_it(daemon: Any) -> None:
    wire: Wire = await daemon.connect()
    async with FakeLLMServer() as server:
        # Prose instead of the answer tool: one more turn, which allows no tool but the
        # answer, gets the verdict.
        server.queue(Reply(tool_calls=[("count", {})]), Reply(text="I counted them."),
                     Reply(structured=verdict("counted", label="Done")))
        detail = await run_to_end(wire, PIPELINE,
                                  settings=settings(server, "anthropic-tool"))
        assert detail["status"] == "completed", detail["failure_reason"]
        assert server.requests[2].tool_choice() == "node_outcome"
        assert detail["stages"][1]["outcome"]["preferred_label"] == "Done"


def trace_calls(detail: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in trace(detail) if c["kind"] == kind and c["node_id"] == "work"]


def workspace(detail: dict[str, Any]) -> Path:
    return run_file(detail, "workspace")
