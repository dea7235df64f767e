"""The readers of agent records on runs the agent loop really made (a daemon, scripted turns,
real tool processes): run.diff of two such runs, and run.reeval's tool_called and per-node
metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs_support import run_to_end
from .support import Wire
from .test_agent_nodes import THREE_TURNS, agent_pipeline


async def test_two_runs_of_an_agent_diff_alike_and_a_changed_turn_is_named(
        daemon: Any, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    a = await run_to_end(wire, agent_pipeline(tmp_path / "a", THREE_TURNS))
    b = await run_to_end(wire, agent_pipeline(tmp_path / "b", THREE_TURNS))
    assert a["status"] == b["status"] == "completed", (a["failure_reason"], b["failure_reason"])
    same = await wire.result("run.diff", {"a": a["run_id"], "b": b["run_id"]})
    assert same["identical"] is True, same["first_divergence"]

    # The count tool counts bytes now: the same turns, another result in turn 2.
    bytes_count = ', tool.count.argv="[\\"wc\\", \\"-c\\", \\"notes.txt\\"]"'
    c = await run_to_end(wire, agent_pipeline(tmp_path / "c", THREE_TURNS, extra=bytes_count))
    assert c["status"] == "completed", c["failure_reason"]
    diff = await wire.result("run.diff", {"a": a["run_id"], "b": c["run_id"]})
    divergence = diff["first_divergence"]
    assert (divergence["node_id"], divergence["turn"], divergence["tool"],
            divergence["kind"]) == ("work", 2, "count", "response"), divergence
    assert divergence["summary"] == (
        "step 2, node 'work' turn 2, tool call 1 'count': stdout differs")


async def test_reeval_counts_an_agent_nodes_tool_calls_and_turns(daemon: Any,
                                                                 tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    run = await run_to_end(wire, agent_pipeline(tmp_path / "pids", THREE_TURNS))
    assert run["status"] == "completed", run["failure_reason"]
    checks: list[dict[str, Any]] = [
        {"type": "tool_called", "node": "work", "tool": "note", "min_count": 4,
         "max_count": 4, "is_error": False},
        {"type": "tool_called", "tool": "note", "arguments": {"text": {"$regex": "^[cd]$"}},
         "min_count": 2},
        {"type": "tool_called", "command": "wc -l notes.txt", "exit_code": 0, "min_count": 2},
        {"type": "tool_called", "tool": "count", "max_count": 0},  # fails: called twice
        {"type": "between", "metric": "nodes.work.turns", "min": 4, "max": 4},
        {"type": "max", "metric": "nodes.work.tool_calls", "value": 6},
        {"type": "expr", "expression": "metrics.nodes.work.model_calls == 4 && "
                                       "metrics.turns == 4 && metrics.tool_calls == 6"},
    ]
    result = await wire.result("run.reeval", {"run_id": run["run_id"], "invariants": checks})
    statuses = [(r["status"], r["message"]) for r in result["results"]]
    assert [s for s, _ in statuses] == ["passed", "passed", "passed", "failed", "passed",
                                        "passed", "passed"], statuses
    assert statuses[3][1] == "tool 'count': 2 calls, expected none"
