"""trace.get and trace.list: the ordered model and tool calls of real runs, with totals."""

from __future__ import annotations

import pytest

from .inprocess import InProcessDaemon
from .runs_support import FAST, dot, run_to_end, trace
from .support import published

pytestmark = pytest.mark.in_process

NOT_FOUND = -32001
# Scripted calls priced at $1 per input token and $2 per output token: costs are visible.
PRICED = {**FAST, "pricing": {"models": {"scripted/*": {"input_per_mtok": 1_000_000,
                                                        "output_per_mtok": 2_000_000}}}}

MIXED = dot("""
    digraph mixed {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        plan  [prompt="Plan the work", scripted.usage="10,20"]
        build [shape=parallelogram, tool_command="echo built"]
        write [prompt="Write it up", scripted.response="All done", scripted.usage="7,3"]
        start -> plan -> build -> write -> exit
    }
""")
PROVIDER_FAILS = dot("""
    digraph broken {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        plan  [prompt="Plan", scripted.usage="4,6"]
        call  [prompt="Ask a provider nobody configured", llm_provider="nowhere"]
        start -> plan -> call -> exit
    }
""")
TOOL_FAILS = dot("""
    digraph tool_fails {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        plan  [prompt="Plan"]
        check [shape=parallelogram, tool_command="echo checking; exit 3", max_retries=0]
        start -> plan -> check -> exit
    }
""")
# A node's answer that no edge accepts: the run fails in the engine, after a call that
# succeeded.
NO_WAY_ON = dot("""
    digraph no_way_on {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        plan  [prompt="Plan", scripted.status="fail"]
        start -> plan
        plan -> exit [condition="outcome=success"]
    }
""")
# A conditional that loops until the step limit: no call at all.
LOOPS = dot("""
    digraph loops {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        route [shape=diamond]
        start -> route
        route -> route [condition="outcome=success"]
        route -> exit  [condition="outcome=fail"]
    }
""")
NO_CALLS = dot("""
    digraph quiet {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        route [shape=diamond]
        start -> route -> exit
    }
""")


async def test_a_trace_holds_every_call_in_order_with_totals(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, MIXED, settings=PRICED)

    got = published("trace.get", await wire.result("trace.get", {"trace_id": run["trace_id"]}))

    assert got["trace_id"] == run["trace_id"]
    assert got["run"]["run_id"] == run["run_id"]
    assert got["run"]["status"] == "completed" and got["run"]["pipeline_name"] == "mixed"
    calls = got["calls"]
    assert [(c["seq"], c["node_id"], c["kind"]) for c in calls] == [
        (1, "plan", "model"), (2, "build", "tool"), (3, "write", "model")]
    plan, build, write = calls
    assert plan["request"]["messages"][-1] == {"role": "user", "content": "Plan the work"}
    assert plan["response"]["text"] == "[scripted] Plan the work"
    assert (plan["input_tokens"], plan["output_tokens"], plan["cost_usd"]) == (10, 20, 50)
    assert plan["finish_reason"] == "stop" and plan["error"] is None and plan["attempt"] == 1
    assert build["request"]["argv"][-1] == "echo built"
    assert build["response"]["stdout"] == "built\n" and build["finish_reason"] == "exit"
    assert write["response"]["text"] == "All done" and write["cost_usd"] == 7 + 2 * 3
    assert [c["created_at"] for c in calls] == sorted(c["created_at"] for c in calls)
    # The same calls as the run directory's trace.jsonl, and what the run's totals say.
    assert [c["id"] for c in calls] == [line["id"] for line in trace(run)]
    assert got["totals"] == {
        "calls": 3, "model_calls": 2, "tool_calls": 1, "error_calls": 0,
        "input_tokens": 17, "output_tokens": 23, "cost_usd": 63.0,
        "latency_ms": sum(c["latency_ms"] for c in calls),
        "first_call_at": plan["created_at"], "last_call_at": write["created_at"],
        "last_finish_reason": "stop"}
    assert (run["input_tokens"], run["output_tokens"], run["cost_usd"]) == (17, 23, 63.0)
    assert got["next_after_seq"] is None

    listed = published("trace.list", await wire.result("trace.list", {"run_id": run["run_id"]}))
    assert listed["run_id"] == run["run_id"]
    assert listed["traces"] == [{"trace_id": run["trace_id"], "run_id": run["run_id"],
                                 **got["totals"]}]


async def test_a_long_trace_comes_in_pages(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, MIXED)
    whole = await wire.result("trace.get", {"trace_id": run["trace_id"]})

    pages, after = [], 0
    while after is not None:
        page = await wire.result("trace.get", {"trace_id": run["trace_id"], "limit": 2,
                                               "after_seq": after})
        pages.append([c["seq"] for c in page["calls"]])
        assert page["totals"] == whole["totals"]  # always over the whole trace
        after = page["next_after_seq"]

    assert pages == [[1, 2], [3]]


async def test_a_failed_model_call_ends_the_partial_trace_with_an_error(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, PROVIDER_FAILS)
    assert run["status"] == "failed"

    got = await wire.result("trace.get", {"trace_id": run["trace_id"]})

    assert [(c["node_id"], c["finish_reason"]) for c in got["calls"]] == [
        ("plan", "stop"), ("call", "error")]
    last = got["calls"][-1]
    assert last["response"] is None and "nowhere" in last["error"]
    assert last["request"]["messages"][-1]["content"] == "Ask a provider nobody configured"
    assert got["totals"]["error_calls"] == 1
    assert got["totals"]["last_finish_reason"] == "error"
    assert got["run"]["failure_reason"].startswith("model call failed")
    listed = await wire.result("trace.list", {"run_id": run["run_id"]})
    assert listed["traces"][0]["last_finish_reason"] == "error"


async def test_a_failed_tool_ends_the_trace_with_an_error(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, TOOL_FAILS)
    assert run["status"] == "failed"

    got = await wire.result("trace.get", {"trace_id": run["trace_id"]})

    last = got["calls"][-1]
    assert (last["node_id"], last["kind"], last["finish_reason"], last["error"]) == (
        "check", "tool", "error", "exit code 3")
    assert last["response"]["exit_code"] == 3 and last["response"]["stdout"] == "checking\n"


async def test_a_run_that_fails_without_a_failing_call_ends_its_trace_with_an_error(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    for pipeline, settings, node, reason, calls in (
            (NO_WAY_ON, FAST, "plan", "the model reported fail", 1),
            (LOOPS, {**FAST, "max_steps": 5}, "route", "step limit reached", 0)):
        run = await run_to_end(wire, pipeline, settings=settings)
        assert run["status"] == "failed"

        got = await wire.result("trace.get", {"trace_id": run["trace_id"]})
        last = got["calls"][-1]
        assert (last["kind"], last["node_id"], last["finish_reason"]) == ("run", node, "error")
        assert last["error"] == run["failure_reason"] and reason in last["error"]
        assert [c["kind"] for c in got["calls"][:-1]] == ["model"] * calls
        # The entry is how the run ended, not a call: the totals count calls only.
        assert got["totals"]["calls"] == calls and got["totals"]["error_calls"] == 0
        assert got["totals"]["last_finish_reason"] == "error"
        assert trace(run)[-1] == {**last, "run_id": run["run_id"],
                                  "trace_id": run["trace_id"]}

    # A recorded replay of the failed run serves its calls, fails the same way, and its
    # trace ends the same.
    original = await run_to_end(wire, NO_WAY_ON)
    replay = await wire.result("run.start", {"replay": {"from_run": original["run_id"]},
                                             "wait": True})
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    assert (replayed["status"], replayed["failure_reason"]) == (
        "failed", original["failure_reason"])
    assert [(c["kind"], c["finish_reason"]) for c in trace(replayed)] == [
        ("model", "stop"), ("run", "error")]
    diff = await wire.result("run.diff", {"a": original["run_id"], "b": replay["run_id"]})
    assert diff["identical"] and diff["first_divergence"] is None


async def test_a_run_without_calls_has_an_empty_trace(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, NO_CALLS)
    assert run["status"] == "completed"

    got = await wire.result("trace.get", {"trace_id": run["trace_id"]})
    assert got["run"]["run_id"] == run["run_id"] and got["calls"] == []
    assert got["totals"]["calls"] == 0 and got["totals"]["last_finish_reason"] is None

    listed = await wire.result("trace.list", {"run_id": run["run_id"]})
    assert [(t["trace_id"], t["calls"]) for t in listed["traces"]] == [(run["trace_id"], 0)]


async def test_unknown_traces_and_runs_are_not_found(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    unknown = "01a20000-0000-7000-8000-000000000000"
    for method, params in (("trace.get", {"trace_id": unknown}),
                           ("trace.list", {"run_id": unknown})):
        reply = await wire.request(method, params)
        assert reply["error"]["code"] == NOT_FOUND, reply
        assert unknown in reply["error"]["message"]
    bad = await wire.request("trace.get", {"trace_id": unknown, "limit": 0})
    assert bad["error"]["code"] == -32602
