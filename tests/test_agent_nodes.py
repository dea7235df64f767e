"""Agent nodes through a real daemon: a codergen node with tools runs a loop of model turns
and tool calls (real processes in the run's workspace), every turn and call recorded, and a
recorded replay reproduces it with no process started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .runs_support import FAST, dot, events, run_file, run_to_end, trace
from .support import Wire

NOTE_SCHEMA = json.dumps({"type": "object", "properties": {"text": {"type": "string"}},
                          "required": ["text"], "additionalProperties": False})


def agent_pipeline(sentinel: Path, turns: list[dict[str, Any]], extra: str = "",
                   node_extra: str = "") -> dict[str, str]:
    """A pipeline whose `work` node may call `note` (appends its text to notes.txt and its
    pid to `sentinel`, a file outside the home) and `count` (wc -l of notes.txt)."""
    note_argv = json.dumps(["sh", "-c", 'echo "$1" >> notes.txt; echo $$ >> "$SENTINEL"',
                            "note", "{text}"])
    return dot(f"""\
        digraph agent {{
            graph [tool.note.description="Append a line to notes.txt",
                   tool.note.schema={json.dumps(NOTE_SCHEMA)},
                   tool.note.argv={json.dumps(note_argv)},
                   tool.note.env={json.dumps(json.dumps({"SENTINEL": str(sentinel)}))},
                   tool.count.argv="[\\"wc\\", \\"-l\\", \\"notes.txt\\"]",
                   tool.count.description="Count the lines of notes.txt" {extra}]
            start [shape=Mdiamond]; exit [shape=Msquare]
            work [prompt="Take notes", tools="note,count",
                  scripted.turns={json.dumps(json.dumps(turns))},
                  scripted.response="Three notes taken" {node_extra}]
            start -> work -> exit
        }}""")


def note(text: str) -> dict[str, Any]:
    return {"name": "note", "arguments": {"text": text}}


COUNT = {"name": "count"}
THREE_TURNS = [{"text": "Two notes.", "tools": [note("a"), note("b")]},
               {"tools": [COUNT, COUNT]},
               {"tools": [note("c"), note("d")]}]


def by_turn(calls: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(kind, turn or sorted tool names) per turn: tool calls finish in any order."""
    out: list[tuple[str, Any]] = []
    for call in calls:
        if call["kind"] == "model":
            out.append(("model", call["request"]["metadata"]["turn"]))
        elif out and out[-1][0] == "tools":
            out[-1][1].append(call["request"]["tool"])
            out[-1][1].sort()
        else:
            out.append(("tools", [call["request"]["tool"]]))
    return out


async def test_a_loop_of_three_turns_with_parallel_calls_is_recorded_and_replayed_without_processes(
        daemon: Any, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    sentinel = tmp_path / "pids"
    detail = await run_to_end(wire, agent_pipeline(sentinel, THREE_TURNS))
    assert (detail["status"], detail["outcome"]) == ("completed", "success"), \
        detail["failure_reason"]
    calls = [c for c in trace(detail) if c["node_id"] == "work"]
    assert by_turn(calls) == [("model", 1), ("tools", ["note", "note"]), ("model", 2),
                              ("tools", ["count", "count"]), ("model", 3),
                              ("tools", ["note", "note"]), ("model", 4)]
    # The tools ran in the run's workspace, and each turn's results went to the next turn.
    workspace = run_file(detail, "workspace")
    assert sorted((workspace / "notes.txt").read_text().split()) == ["a", "b", "c", "d"]
    turn_3 = calls[6]["request"]["messages"]
    results = [m["content"] for m in turn_3 if m["role"] == "tool"]
    assert results == ["", "", "2 notes.txt\n", "2 notes.txt\n"]
    assert [m["tool_call_id"] for m in turn_3 if m["role"] == "tool"] == [
        c["id"] for m in turn_3 if m["role"] == "assistant" for c in m["tool_calls"]]
    tool_calls = [c for c in calls if c["kind"] == "tool"]
    assert sorted((c["request"]["turn"], c["request"]["index"]) for c in tool_calls) == [
        (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert all(c["response"]["exit_code"] == 0 and c["error"] is None for c in tool_calls)
    assert (run_file(detail, "work", "response.md").read_text()) == "Three notes taken"
    transcript = run_file(detail, "work", "transcript.md").read_text()
    assert transcript.count("## turn") == 10 and "$ wc -l notes.txt" in transcript
    manifest = json.loads(run_file(detail, "manifest.json").read_text())
    assert manifest["processes_started"] == 6
    assert len(events(wire, detail["run_id"], "ToolProcessStarted")) == 6
    pids = sentinel.read_text().split()
    assert len(pids) == 4

    replay = await wire.result("run.start", {"replay": {"from_run": detail["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    assert (replayed["status"], replayed["outcome"]) == ("completed", "success"), \
        replayed["failure_reason"]
    # Nothing was started: not by the engine's count, not by its events, not by the OS.
    assert json.loads(run_file(replayed, "manifest.json").read_text())[
        "processes_started"] == 0
    assert events(wire, replay["run_id"], "ToolProcessStarted") == []
    assert sentinel.read_text().split() == pids
    assert not (run_file(replayed, "workspace") / "notes.txt").exists()
    assert by_turn([c for c in trace(replayed) if c["node_id"] == "work"]) == by_turn(calls)
    assert run_file(replayed, "work", "transcript.md").read_text().count("## turn") == 10


async def test_a_tool_that_times_out_is_a_tool_error_the_model_reads(
        daemon: Any, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    pipeline = agent_pipeline(tmp_path / "pids", [{"tools": [{"name": "slow"}]}],
                              extra=', tool.slow.argv="[\\"sleep\\", \\"30\\"]", '
                                    'tool.slow.timeout=200ms',
                              node_extra=', tools="slow"')
    detail = await run_to_end(wire, pipeline)
    assert detail["status"] == "completed", detail["failure_reason"]
    slow, final = [c for c in trace(detail) if c["node_id"] == "work"][1:]
    assert slow["response"]["timed_out"] is True
    assert slow["error"] == "timed out after 0.2 s" and slow["latency_ms"] < 5000
    told = [m for m in final["request"]["messages"] if m["role"] == "tool"]
    assert told[0]["is_error"] is True and told[0]["content"].startswith(
        "error: timed out after 0.2 s")


async def test_a_pre_hook_vetoes_a_call_hooks_are_recorded_and_replayed_with_their_calls(
        daemon: Any, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    pre = 'case "$OSTINATO_TOOL_NAME" in count) echo "no counting" >&2; exit 3;; esac'
    post = "cat >> audit.jsonl; echo >> audit.jsonl"
    pipeline = agent_pipeline(tmp_path / "pids", [{"tools": [note("a"), COUNT]}],
                              extra=f", tool_hooks.pre={json.dumps(pre)}, "
                                    f"tool_hooks.post={json.dumps(post)}")
    detail = await run_to_end(wire, pipeline)
    assert detail["status"] == "completed", detail["failure_reason"]
    calls = {c["request"]["tool"]: c for c in trace(detail) if c["kind"] == "tool"}
    # What the hooks did is part of the call they surround.
    assert {tool: {which: hook["exit_code"] for which, hook in c["response"]["hooks"].items()}
            for tool, c in calls.items()} == {"note": {"pre": 0, "post": 0}, "count": {"pre": 3}}
    assert calls["count"]["response"]["refused"] == (
        "the pre-hook vetoed this call (exit code 3): no counting")
    assert calls["count"]["response"]["hooks"]["pre"]["stderr"] == "no counting\n"
    # The post-hook got the call and its result on stdin, the model's arguments included.
    audit = [json.loads(line) for line in
             (run_file(detail, "workspace") / "audit.jsonl").read_text().splitlines() if line]
    assert [(a["tool"], a["arguments"], a["result"]["exit_code"]) for a in audit] == [
        ("note", {"text": "a"}, 0)]

    # A recorded replay serves each call with its hooks: none runs, nothing differs.
    replay = await wire.result("run.start", {"replay": {"from_run": detail["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    assert json.loads(run_file(replayed, "manifest.json").read_text())[
        "processes_started"] == 0
    assert not (run_file(replayed, "workspace") / "audit.jsonl").exists()
    diff = await wire.result("run.diff", {"a": detail["run_id"], "b": replay["run_id"]})
    assert diff["identical"] is True, diff["first_divergence"]


async def test_tool_errors_fail_makes_a_failing_tool_fail_the_node(
        daemon: Any, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    pipeline = agent_pipeline(tmp_path / "pids", [{"tools": [{"name": "missing"}]}],
                              node_extra=", tool_errors=fail, max_retries=0")
    detail = await run_to_end(wire, pipeline)
    assert detail["status"] == "failed"
    assert detail["failure_reason"] == (
        "tool 'missing' failed (tool_errors=fail): error: there is no tool named 'missing'; "
        "the tools are: note, count")


async def test_the_last_turn_allows_no_tool_so_the_model_answers(
        daemon: Any, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    pipeline = agent_pipeline(tmp_path / "pids", [{"tools": [note(str(n))]} for n in range(5)],
                              node_extra=", max_turns=3")
    detail = await run_to_end(wire, pipeline, settings=FAST)
    assert detail["status"] == "completed", detail["failure_reason"]
    turns = [c for c in trace(detail) if c["kind"] == "model"]
    assert [t["request"].get("tool_choice") for t in turns] == [None, None, "none"]
    assert turns[-1]["request"]["messages"][-1]["content"].startswith(
        "You have no tool calls left")
    assert turns[-1]["response"]["text"] == "Three notes taken"
