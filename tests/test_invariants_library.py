"""The invariant library through a real daemon: every invariant type passes on a run built to
meet it and fails on one built to miss it (run.start, then run.reeval); the judge's calls
are recorded on the run and served again; content checks on a metadata-only run; bad
invariants are refused naming the entry."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ostinato.protocol.invariants import ACROSS_TRIALS, Invariant

from .inprocess import InProcessDaemon
from .invariants_support import EVERY_CHECK, bad_run, good_run, module_daemon, reeval
from .runs_support import send_request, trace
from .support import Wire

pytestmark = pytest.mark.asyncio(loop_scope="module")
shared = module_daemon()
INVALID_PARAMS = -32602


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wire(shared_daemon: InProcessDaemon) -> AsyncIterator[Wire]:
    connection = await shared_daemon.connect()
    yield connection
    await connection.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def good(wire: Wire) -> dict[str, Any]:
    return await good_run(wire)


def every_type() -> set[str]:
    """The `type` of every model of the Invariant union."""
    models = typing.get_args(typing.get_args(Invariant)[0])
    return {name for model in models
            for name in typing.get_args(model.model_fields["type"].annotation)}


def by_type(result: dict[str, Any]) -> dict[str, str]:
    return {r["type"]: r["status"] for r in result["results"]}


async def test_every_check_passes_on_the_good_run_and_fails_on_the_bad_one(
        wire: Wire, good: dict[str, Any]) -> None:
    bad = await bad_run(wire)

    passing = await reeval(wire, good["run_id"], EVERY_CHECK)
    failing = await reeval(wire, bad["run_id"], EVERY_CHECK)

    assert [r["status"] for r in passing["results"]] == ["passed"] * len(EVERY_CHECK), [
        r for r in passing["results"] if r["status"] != "passed"]
    assert passing["verdict"] == "passed"
    assert [r["status"] for r in failing["results"]] == ["failed"] * len(EVERY_CHECK), [
        r for r in failing["results"] if r["status"] != "failed"]
    assert failing["verdict"] == "failed"
    # Every per-run type is covered (the across-trials ones: test_invariants_trials.py;
    # the other bound of each seeds/001 pair: below).
    others = {"max_candidates", "min_scenarios", "max_top_i_score"}
    assert every_type() - ACROSS_TRIALS - others == {c["type"] for c in EVERY_CHECK}
    # What the results say, as a user reads them.
    good_results = {r["type"]: r for r in passing["results"]}
    bad_results = {r["type"]: r for r in failing["results"]}
    assert good_results["min_candidates"]["actual"] == 3
    assert bad_results["min_candidates"]["message"] == (
        "the run has 2 candidates (context key 'candidates'), at least 3 expected")
    assert bad_results["min_evaluation_coverage"]["actual"] == round(1 / 14, 6)
    assert good_results["min_evaluation_coverage"]["actual"] == round(5 / 6, 6)
    assert bad_results["no_hard_constraint_violations"]["actual"] == 1
    assert (good_results["max_cost_usd"]["actual"], bad_results["max_cost_usd"]["actual"]) \
        == (90.0, 900.0)
    assert bad_results["max_duration_seconds"]["actual"] >= 1.5
    assert bad_results["jmespath"]["message"].startswith("'scores[0]' on the run's output")
    assert good_results["judge"]["actual"] == {"votes": ["PASS", "PASS", "FAIL"],
                                               "pass": 2, "fail": 1}
    assert bad_results["judge"]["actual"]["votes"] == ["FAIL", "FAIL", "PASS"]
    assert bad_results["node_sequence"]["actual"] == ["start", "design", "evaluate",
                                                      "report"]
    assert bad_results["tool_called"]["message"] == (
        "command 'echo ranked' exit_code 0: 0 calls, expected at least 1; "
        "the run made no tool call")
    assert bad_results["not"]["expected"] == {"not": "error"}


@pytest.mark.parametrize(("check", "status"), [
    ({"type": "max_candidates", "value": 3}, "passed"),
    ({"type": "max_candidates", "value": 2}, "failed"),
    ({"type": "min_scenarios", "value": 2}, "passed"),
    ({"type": "min_scenarios", "value": 3}, "failed"),
    ({"type": "max_top_i_score", "value": 0.8}, "passed"),
    ({"type": "max_top_i_score", "value": 0.7}, "failed"),
    ({"type": "min_candidates", "value": 2, "key": "scenarios"}, "passed"),
    ({"type": "no_hard_constraint_violations", "value": False}, "skipped"),
    ({"type": "min", "metric": "score", "value": 0.72}, "passed"),
    ({"type": "min", "metric": "nodes_visited", "value": 7}, "failed"),
    ({"type": "max", "metric": "context.scenarios", "value": 1}, "failed"),
    ({"type": "between", "metric": "cost_usd", "min": 90, "max": 90}, "passed"),
    ({"type": "between", "metric": "model_calls", "min": 4, "max": 9}, "failed"),
    ({"type": "equals", "path": "node.rank", "value": "ranked c2 first"}, "passed"),
    ({"type": "equals", "path": "node.rank", "value": "ranked c2 first", "strip": False},
     "failed"),
    ({"type": "equals", "path": "context.scenarios", "value": ["s1", "s2"]}, "passed"),
    ({"type": "contains", "value": "c3"}, "failed"),
    ({"type": "regex", "value": "candidate C\\d", "ignore_case": True}, "passed"),
    ({"type": "regex", "value": "^ranked", "path": "node.report"}, "failed"),
    ({"type": "json_schema", "path": "context.candidates",
      "value": {"type": "array", "items": {"required": ["id"]}}}, "passed"),
    ({"type": "json_schema", "path": "node.rank", "value": {"type": "object"}}, "failed"),
    ({"type": "jmespath", "expression": "top", "op": "eq", "value": "c2"}, "passed"),
    ({"type": "jmespath", "expression": "top", "op": "ne", "value": "c2"}, "failed"),
    ({"type": "jmespath", "expression": "scores[1]", "op": "gte", "value": 0.4}, "passed"),
    ({"type": "jmespath", "expression": "scores[1]", "op": "lt", "value": 0.4}, "failed"),
    ({"type": "jmespath", "expression": "length(scores)", "op": "lte", "value": 2},
     "passed"),
    ({"type": "jmespath", "expression": "scores", "op": "contains", "value": 0.4}, "passed"),
    ({"type": "jmespath", "expression": "summary", "op": "contains", "value": "C3"},
     "failed"),
    ({"type": "jmespath", "expression": "top", "op": "regex", "value": "^c\\d$"}, "passed"),
    ({"type": "jmespath", "expression": "summary", "op": "exists"}, "passed"),
    ({"type": "jmespath", "expression": "winner", "op": "exists"}, "failed"),
    ({"type": "jmespath", "expression": "winner", "op": "exists", "value": False}, "passed"),
    ({"type": "not", "check": {"type": "not", "check": {"type": "contains", "value": "c2"}}},
     "passed"),
    ({"type": "node_sequence", "nodes": ["design", "rank", "exit"]}, "passed"),
    ({"type": "node_sequence", "nodes": ["rank", "design"], "mode": "in_order"}, "failed"),
    ({"type": "node_sequence", "nodes": ["report", "design"], "mode": "any_order"}, "passed"),
    ({"type": "node_sequence", "nodes": ["report", "review"], "mode": "any_order"}, "failed"),
    ({"type": "node_visited", "node": "review"}, "failed"),
    ({"type": "tool_called", "node": "rank"}, "passed"),
    ({"type": "tool_called", "node": "report"}, "failed"),
    ({"type": "tool_called", "node": "rank", "exit_code": 1}, "failed"),
    ({"type": "max_tokens", "value": 30, "which": "input"}, "passed"),
    ({"type": "max_tokens", "value": 29, "which": "output"}, "failed"),
    ({"type": "max_latency_ms", "value": 60_000}, "passed"),
    ({"type": "expr", "expression": "metrics.cost_usd > 100.0 || outcome != 'success'"},
     "failed"),
    ({"type": "expr", "expression": "context.rankings[0].candidate == 'c2' && "
                                    "nodes[0] == 'start'"}, "passed"),
    # Cannot be evaluated: errors, with the reason.
    ({"type": "min_candidates", "value": 1, "key": "designs"}, "error"),
    ({"type": "min", "metric": "context.summary_missing", "value": 1}, "error"),
    ({"type": "expr", "expression": "context.nothing_here > 1"}, "error"),
    ({"type": "expr", "expression": "metrics.calls + 1"}, "error"),
    ({"type": "jmespath", "expression": "abs(top)", "op": "gt", "value": 1}, "error"),
    ({"type": "judge", "rubric": "Names c2.", "provider": "nobody"}, "error"),
    # Across trials: not on one run.
    ({"type": "pass_rate", "threshold": 0.5}, "skipped"),
    ({"type": "pass_at_k", "k": 1}, "skipped"),
])
async def test_each_variant_on_the_good_run(wire: Wire, good: dict[str, Any],
                                            check: dict[str, Any], status: str) -> None:
    result = (await reeval(wire, good["run_id"], [check]))["results"][0]
    assert result["status"] == status, result
    assert result["type"] == check["type"] and result["message"]


async def test_errors_and_skips_say_why(wire: Wire, good: dict[str, Any]) -> None:
    result = await reeval(wire, good["run_id"], [
        {"type": "min_candidates", "value": 1, "key": "designs"},
        {"type": "expr", "expression": "metrics.calls + 1"},
        {"type": "pass_rate", "threshold": 0.8}])
    missing, not_bool, across = result["results"]
    assert missing["message"] == "the run's final context has no key 'designs'"
    assert not_bool["message"] == "the expression gave 5, not true or false"
    assert across["expected"] == {"threshold": 0.8, "confidence": 0.95}
    assert "across-trials" in across["message"]
    assert result["verdict"] == "failed"  # errors are no pass; a skip does not count


async def test_an_expression_is_never_python(wire: Wire, good: dict[str, Any],
                                            tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    python = f"__import__('os').system('touch {marker}') == 0"

    result = (await reeval(wire, good["run_id"], [{"type": "expr", "expression": python}]))

    assert result["results"][0]["status"] == "error"
    assert "could not be evaluated" in result["results"][0]["message"]
    assert not marker.exists()


async def test_judge_calls_are_recorded_on_the_run_and_served_again(wire: Wire) -> None:
    run = await good_run(wire, judge=["VERDICT: PASS", "fail", "**Verdict:** PASS"])
    judge = {"type": "judge", "rubric": "The report names the top candidate.", "k": 3}

    first = await reeval(wire, run["run_id"], [judge])

    assert first["results"][0]["status"] == "passed"
    assert first["results"][0]["actual"]["votes"] == ["PASS", "FAIL", "PASS"]
    calls = trace(run)
    judged = [c for c in calls if c["node_id"] == "$judge"]
    assert [(c["seq"], c["attempt"], c["kind"]) for c in judged] == [
        (5, 1, "model"), (6, 2, "model"), (7, 3, "model")]
    assert "The report names the top candidate." in judged[0]["request"]["messages"][1][
        "content"]
    assert all(c["cost_usd"] > 0 for c in judged)
    # The store has them too, and the run's own cost and metrics leave them out.
    detail = await wire.result("run.get", {"run_id": run["run_id"]})
    assert detail["cost_usd"] == run["cost_usd"] == 90.0
    stored = await wire.result("trace.get", {"trace_id": run["trace_id"]})
    assert [c["node_id"] for c in stored["calls"]][-3:] == ["$judge"] * 3
    again = await reeval(wire, run["run_id"], [
        judge, {"type": "min", "metric": "calls", "value": 4},
        {"type": "max", "metric": "calls", "value": 4}])
    assert [r["status"] for r in again["results"]] == ["passed"] * 3

    # The same votes are served from the recording: nothing new is recorded.
    assert again["results"][0]["actual"] == first["results"][0]["actual"]
    assert len(trace(run)) == len(calls)
    # Two more votes: three served, two asked live (and recorded).
    five = await reeval(wire, run["run_id"], [{**judge, "k": 5}])
    assert five["results"][0]["actual"]["votes"] == ["PASS", "FAIL", "PASS", "PASS", "PASS"]
    assert [c["attempt"] for c in trace(run) if c["node_id"] == "$judge"] == [1, 2, 3, 4, 5]


async def test_concurrent_reevals_number_their_judge_calls_apart(wire: Wire) -> None:
    run = await good_run(wire)
    judge = {"type": "judge", "rubric": "The report names the top candidate.", "k": 3}
    sent = [await send_request(wire, "run.reeval",
                               {"run_id": run["run_id"], "invariants": [judge]})
            for _ in range(2)]
    replies = [await wire.response() for _ in sent]
    assert sorted(reply["id"] for reply in replies) == sorted(sent)
    assert all(reply["result"]["results"][0]["status"] == "passed" for reply in replies)
    # Each asked its votes live (neither saw the other's recording): six calls, each with
    # its own place in the trace and the store.
    judged = [c["seq"] for c in trace(run) if c["node_id"] == "$judge"]
    assert sorted(judged) == list(range(5, 11))
    stored = await wire.result("trace.get", {"trace_id": run["trace_id"]})
    assert sorted(c["seq"] for c in stored["calls"]) == list(range(1, 11))


async def test_a_metadata_only_run_answers_all_but_content_checks(wire: Wire) -> None:
    run = await good_run(wire, record="metadata_only")
    content = [c for c in EVERY_CHECK if c["type"] in (
        "equals", "contains", "icontains", "regex", "json_schema", "jmespath", "not",
        "judge")]
    others = [c for c in EVERY_CHECK if c not in content]

    strict = await reeval(wire, run["run_id"], content + others)
    partial = await reeval(wire, run["run_id"], content + others, allow_partial=True)

    n = len(content)
    assert [r["status"] for r in strict["results"]] == ["error"] * n + ["passed"] * len(others)
    assert [r["status"] for r in partial["results"]] == (
        ["skipped"] * n + ["passed"] * len(others))
    assert partial["verdict"] == "passed" and strict["verdict"] == "failed"
    assert all("metadata_only" in r["message"] for r in strict["results"][:n])
    assert not [c for c in trace(run) if c["node_id"] == "$judge"]  # no judge was asked


async def test_bad_invariants_are_refused_naming_the_entry(wire: Wire,
                                                           good: dict[str, Any]) -> None:
    bad_entries = [
        ({"type": "regex", "value": "(unclosed"}, "not a valid regular expression"),
        ({"type": "json_schema", "value": {"type": "thing"}}, "not a valid JSON Schema"),
        ({"type": "jmespath", "expression": "a[?", "op": "exists"},
         "not a valid JMESPath expression"),
        ({"type": "expr", "expression": "metrics.calls >"}, "not a valid CEL expression"),
        ({"type": "judge", "rubric": "good", "k": 0}, "greater than or equal to 1"),
        ({"type": "pass_rate", "threshold": 1.5}, "less than or equal to 1"),
        ({"type": "min", "metric": "speed", "value": 1}, "metric must be one of"),
    ]
    for entry, words in bad_entries:
        reply = await wire.request("run.reeval", {
            "run_id": good["run_id"], "invariants": [{"type": "run_status"}, entry]})
        assert reply["error"]["code"] == INVALID_PARAMS, reply
        first = reply["error"]["data"][0]
        assert first["loc"][:3] == ["invariants", 1, entry["type"]], first
        assert words in first["msg"], first
