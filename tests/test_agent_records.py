"""What reads an agent node's records: `tool_called` on agent tool calls, per-node metrics
(`nodes.<id>.turns|model_calls|tool_calls`, run-wide `turns`) and run.diff naming the first
divergent turn or tool call. The runs go through the engine; their agent node records the
calls of the record format (tests/agent_records_support.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.regression.invariants import evaluate, run_metrics
from ostinato.daemon.regression.invariants.metrics import node_metrics
from ostinato.daemon.runs.diff import DiffSide, diff_runs
from ostinato.daemon.runs.diff_turns import in_turn_order
from ostinato.protocol.invariants import node_metric

from .agent_records_support import attr, call, run_agent

MCP_TEXT = {"content": [{"type": "text", "text": "# Notes\nship it"}], "is_error": False}
TIMES = "\N{MULTIPLICATION SIGN}"
FAILED_WC = {"exit_code": 1, "stdout": "", "stderr": "wc: missing.md: No such file"}


def turns(*, notes_words: str = "3 notes.md\n", read_path: str = "notes.md",
          ) -> list[list[dict[str, Any]]]:
    """Three turns: two listings in parallel; a command tool and an MCP read in parallel; a
    command tool that fails."""
    return [
        [call("files__list_directory", server="files", path="."),
         call("files__list_directory", server="files", path="src")],
        [call("word_count", argv=["wc", "-w", "notes.md"], path="notes.md",
              result={"exit_code": 0, "stdout": notes_words, "stderr": ""}),
         call("files__read_text_file", server="files", path=read_path, result=MCP_TEXT)],
        [call("word_count", argv=["wc", "-w", "missing.md"], path="missing.md",
              result=FAILED_WC, error="exit code 1")],
    ]


def pipeline(script: list[list[dict[str, Any]]], *, ids: str = "call",
             finish: str = "in_order", probe: str = "echo probed") -> str:
    """plan (one plain model call) → sum_up (the agent) → probe (the tool node) → exit."""
    return f"""digraph agent {{
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        plan  [shape=box, prompt="Plan it"]
        sum_up [type="test.agent", prompt="Sum up the notes", test.turns={attr(script)},
                  test.ids="{ids}", test.finish="{finish}"]
        probe [shape=parallelogram, tool_command="{probe}"]
        start -> plan -> sum_up -> probe -> exit
    }}"""


async def agent_run(tmp_path: Path, **options: Any) -> tuple[DiffSide, Any]:
    script = options.pop("script", None) or turns()
    return await run_agent(tmp_path, pipeline(script, **options))


@pytest.fixture
async def stored(tmp_path: Path) -> Any:
    return (await agent_run(tmp_path))[1]


async def check(run: Any, invariant: dict[str, Any], **options: Any) -> dict[str, Any]:
    (found,) = await evaluate([invariant], run, **options)
    return found


# -- tool_called --------------------------------------------------------------------------


@pytest.mark.parametrize(("invariant", "status", "count"), [
    ({"tool": "word_count"}, "passed", 2),
    ({"tool": "word_count", "min_count": 3}, "failed", 2),
    ({"tool": "word_count", "max_count": 1}, "failed", 2),
    ({"tool": "word_count", "min_count": 2, "max_count": 2}, "passed", 2),
    ({"tool": "files__read_text_file"}, "passed", 1),
    ({"tool": "files/read_text_file"}, "passed", 1),
    ({"tool": "read_text_file", "server": "files"}, "passed", 1),
    ({"tool": "docs/read_text_file"}, "failed", 0),
    ({"server": "files", "node": "sum_up", "min_count": 3}, "passed", 3),
    ({"tool": "files__delete_file", "max_count": 0}, "passed", 0),
    ({"tool": "files__list_directory", "max_count": 0}, "failed", 2),
    ({"tool": "word_count", "arguments": {"path": "notes.md"}}, "passed", 1),
    ({"tool": "word_count", "arguments": {"path": {"$regex": r"\.md$"}}}, "passed", 2),
    ({"tool": "word_count", "arguments": {"path": {"$contains": "miss"}}}, "passed", 1),
    ({"tool": "word_count", "arguments": {"path": {"$regex": "^src/"}}}, "failed", 0),
    ({"tool": "word_count", "arguments": {"lines": True}}, "failed", 0),
    ({"tool": "files__list_directory", "arguments": {"path": "src"}}, "passed", 1),
    ({"tool": "word_count", "is_error": True}, "passed", 1),
    ({"tool": "word_count", "is_error": True, "min_count": 2}, "failed", 1),
    ({"tool": "word_count", "is_error": False, "exit_code": 0}, "passed", 1),
    ({"tool": "word_count", "exit_code": 1}, "passed", 1),
    ({"node": "sum_up", "is_error": True, "max_count": 0}, "failed", 1),
    ({"command": "wc -w missing", "exit_code": 1}, "passed", 1),  # a command tool's argv
    ({"command": "echo probed", "exit_code": 0}, "passed", 1),  # the tool node's
    ({"node": "probe"}, "passed", 1),
    ({"node": "probe", "tool": "word_count"}, "failed", 0),
    ({"node": "sum_up"}, "passed", 5),
])
async def test_tool_called_counts_the_calls_that_match_every_field(
        stored: Any, invariant: dict[str, Any], status: str, count: int) -> None:
    found = await check(stored, {"type": "tool_called", **invariant})
    assert (found["status"], len(found["actual"])) == (status, count), found["message"]


async def test_a_failed_tool_called_says_what_the_node_did_instead(stored: Any) -> None:
    missing = await check(stored, {"type": "tool_called", "node": "sum_up",
                                   "tool": "files__search_files"})
    assert missing["message"] == (
        "node 'sum_up' tool 'files__search_files': 0 calls, expected at least 1; "
        f"node 'sum_up' called: files__list_directory {TIMES}2, word_count {TIMES}2, "
        "files__read_text_file")
    other_arguments = await check(stored, {"type": "tool_called", "tool": "word_count",
                                           "arguments": {"path": "README.md"}})
    assert other_arguments["message"] == (
        'tool \'word_count\' arguments {"path":"README.md"}: 0 calls, expected at least 1; '
        f'2 calls (word_count {TIMES}2), none also with arguments {{"path":"README.md"}}')
    too_many = await check(stored, {"type": "tool_called", "tool": "files/list_directory",
                                    "max_count": 0})
    assert too_many["message"] == "tool 'files/list_directory': 2 calls, expected none"
    assert too_many["expected"] == {"tool": "files/list_directory", "max_count": 0}
    passed = await check(stored, {"type": "tool_called", "tool": "word_count"})
    assert passed["actual"] == ["word_count", "word_count"]


async def test_argument_matching_needs_the_arguments_recorded(stored: Any) -> None:
    metadata_only = dataclasses.replace(stored, record="metadata_only")
    asked = {"type": "tool_called", "tool": "word_count", "arguments": {"path": "notes.md"}}
    assert (await check(metadata_only, asked))["status"] == "error"
    assert (await check(metadata_only, asked, allow_partial=True))["status"] == "skipped"
    # Names and counts are metadata: they are still checked.
    counted = await check(metadata_only, {"type": "tool_called", "tool": "word_count"})
    assert counted["status"] == "passed"


# -- per-node metrics ---------------------------------------------------------------------


async def test_per_node_metrics_count_turns_model_calls_and_tool_calls(stored: Any) -> None:
    nodes = node_metrics(stored)
    assert nodes["sum_up"] == {"turns": 4, "model_calls": 4, "tool_calls": 5}
    assert nodes["plan"] == {"turns": 1, "model_calls": 1, "tool_calls": 0}  # no agent turn
    assert nodes["probe"] == {"turns": 0, "model_calls": 0, "tool_calls": 1}
    metrics = run_metrics(stored)
    assert (metrics["turns"], metrics["model_calls"], metrics["tool_calls"]) == (5, 5, 6)


@pytest.mark.parametrize(("invariant", "status", "message"), [
    ({"type": "max", "metric": "nodes.sum_up.tool_calls", "value": 5}, "passed",
     "tool_calls of node 'sum_up' is 5, at most 5"),
    ({"type": "max", "metric": "nodes.sum_up.tool_calls", "value": 4}, "failed",
     "tool_calls of node 'sum_up' is 5, above 4"),
    ({"type": "between", "metric": "nodes.sum_up.turns", "min": 2, "max": 3}, "failed",
     "turns of node 'sum_up' is 4, outside [2, 3]"),
    ({"type": "min", "metric": "nodes.plan.model_calls", "value": 1}, "passed",
     "model_calls of node 'plan' is 1, at least 1"),
    ({"type": "max", "metric": "turns", "value": 5}, "passed", "turns is 5, at most 5"),
    ({"type": "max", "metric": "nodes.sumup.turns", "value": 8}, "error",
     "node 'sumup' did not run (nodes that ran: 'start', 'plan', 'sum_up', 'probe', "
     "'exit')"),
    ({"type": "expr", "expression": 'metrics.nodes["sum_up"].tool_calls == 5 && '
                                    "metrics.turns == 5 && 'sum_up' in nodes"},
     "passed", None),
])
async def test_metric_bounds_and_expressions_read_per_node_metrics(
        stored: Any, invariant: dict[str, Any], status: str, message: str | None) -> None:
    found = await check(stored, invariant)
    assert found["status"] == status, found["message"]
    if message is not None:
        assert found["message"] == message


async def test_a_node_id_with_a_dash_or_a_dot_is_read_whole(stored: Any) -> None:
    # Pipelines name nodes as identifiers today; the path reads any id (what lies between
    # `nodes.` and the last dot), and CEL indexes `metrics.nodes` by the id as a string.
    def renamed(record: dict[str, Any], to: str) -> dict[str, Any]:
        return {**record, "node_id": to} if record.get("node_id") == "sum_up" else record

    for node_id in ("sum-up", "v1.2"):
        run = dataclasses.replace(stored, stages=[renamed(s, node_id) for s in stored.stages],
                                  calls=[renamed(c, node_id) for c in stored.calls])
        bound = await check(run, {"type": "max", "metric": f"nodes.{node_id}.tool_calls",
                                  "value": 5})
        assert (bound["status"], bound["actual"]) == ("passed", 5), bound["message"]
        expression = await check(run, {"type": "expr", "expression":
                                        f'metrics.nodes["{node_id}"].turns == 4'})
        assert expression["status"] == "passed", expression["message"]
        called = await check(run, {"type": "tool_called", "node": node_id,
                                   "tool": "word_count", "min_count": 2})
        assert called["status"] == "passed", called["message"]


def test_a_node_metric_path_reads_the_id_from_both_ends() -> None:
    assert node_metric("nodes.sum-up.turns") == ("sum-up", "turns")
    assert node_metric("nodes.v1.2.tool_calls") == ("v1.2", "tool_calls")
    assert node_metric("nodes.nodes.model_calls") == ("nodes", "model_calls")
    assert node_metric("nodes.sum_up.cost_usd") is None
    assert node_metric("nodes.turns") is None
    assert node_metric("context.nodes.a.turns") is None


# -- run.diff -----------------------------------------------------------------------------


async def test_runs_alike_but_for_tool_call_ids_and_finish_order_are_identical(
        tmp_path: Path) -> None:
    a, _ = await agent_run(tmp_path, ids="call")
    b, _ = await agent_run(tmp_path, ids="toolu", finish="reversed")
    seqs = [[c["request"]["tool"] for c in side.calls if c["kind"] == "tool"
             and c["node_id"] == "sum_up"] for side in (a, b)]
    assert seqs[0] != seqs[1]  # recorded in another order, with other ids
    diff = diff_runs(a, b)
    assert diff["identical"] is True, diff["first_divergence"]


async def test_a_changed_tool_result_names_the_turn_and_the_tool_call(tmp_path: Path) -> None:
    a, _ = await agent_run(tmp_path)
    b, _ = await agent_run(tmp_path, script=turns(notes_words="4 notes.md\n"),
                           ids="other", finish="reversed")
    divergence = diff_runs(a, b)["first_divergence"]
    assert (divergence["node_id"], divergence["kind"]) == ("sum_up", "response")
    assert (divergence["turn"], divergence["tool"]) == (2, "word_count")
    assert divergence["a"]["tool_index"] == 0 and divergence["a"]["turn"] == 2
    assert [d["path"] for d in divergence["differences"]] == ["stdout"]
    assert divergence["summary"] == (
        "step 3, node 'sum_up' turn 2, tool call 1 'word_count': stdout differs")


async def test_other_arguments_diverge_at_the_model_turn_that_chose_them(
        tmp_path: Path) -> None:
    a, _ = await agent_run(tmp_path)
    b, _ = await agent_run(tmp_path, script=turns(read_path="README.md"), ids="other")
    divergence = diff_runs(a, b)["first_divergence"]
    assert (divergence["kind"], divergence["turn"], divergence["tool"]) == (
        "response", 2, None)
    assert [d["path"] for d in divergence["differences"]] == ["tool_calls[1].arguments"]
    assert divergence["summary"] == (
        "step 3, node 'sum_up' turn 2, the model turn: tool_calls[1].arguments differs")


async def test_a_tool_error_diverges_as_an_error_of_that_call(tmp_path: Path) -> None:
    script = turns()
    script[2][0] = call("word_count", argv=["wc", "-w", "missing.md"], path="missing.md")
    a, _ = await agent_run(tmp_path)
    b, _ = await agent_run(tmp_path, script=script)
    divergence = diff_runs(a, b)["first_divergence"]
    assert (divergence["kind"], divergence["turn"], divergence["tool"]) == (
        "error", 3, "word_count")
    assert divergence["summary"].startswith(
        "step 3, node 'sum_up' turn 3, tool call 1 'word_count': error, ")


async def test_the_tool_node_keeps_its_old_shape_and_diff(tmp_path: Path) -> None:
    a, _ = await agent_run(tmp_path)
    b, _ = await agent_run(tmp_path, probe="echo probed twice")
    divergence = diff_runs(a, b)["first_divergence"]
    assert (divergence["node_id"], divergence["kind"]) == ("probe", "request")
    assert (divergence["turn"], divergence["tool"]) == (None, None)
    assert divergence["a"] == {"seq": divergence["a"]["seq"], "index": 1, "kind": "tool",
                               "error": None}
    assert divergence["differences"][0]["path"] == "argv[2]"
    assert divergence["summary"] == "step 4, node 'probe': argv[2] differs"


def test_calls_without_a_turn_keep_their_order() -> None:
    plain = [{"seq": n, "kind": kind, "request": {"argv": [str(n)]}}
             for n, kind in enumerate(["model", "tool", "model", "tool"], start=1)]
    assert in_turn_order(plain) == plain
    tool_list = {"seq": 1, "kind": "tool_list", "request": {"server": "files"}}
    model = {"seq": 2, "kind": "model", "request": {"metadata": {"turn": 1}}}
    second = {"seq": 3, "kind": "tool", "request": {"tool": "b", "turn": 1, "index": 1}}
    first = {"seq": 4, "kind": "tool", "request": {"tool": "a", "turn": 1, "index": 0}}
    after = {"seq": 5, "kind": "model", "request": {"metadata": {}}}
    ordered = in_turn_order([tool_list, model, second, first, after])
    assert [c["seq"] for c in ordered] == [1, 2, 4, 3, 5]
