"""Loops with the scripted model: it answers a node's n-th call anew (lists and seeded
draws), a loop that cannot end stops at the default step limit with a clear reason,
`loop_restart` starts a fresh cycle of the same run, and a missing context reference
fails its node with a reason that names it."""

from __future__ import annotations

import pytest

from .inprocess import InProcessDaemon
from .runs_support import FAST, dot, events, run_to_end, stages_of, trace, visits

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]


REVIEW_LOOP = dot("""\
    digraph review {
        start [shape=Mdiamond]
        done [shape=Msquare]
        write [prompt="Write it"]
        review [prompt="Review it", scripted.statuses="fail|fail|success"]
        start -> write -> review
        review -> done [condition="outcome=success"]
        review -> write [condition="outcome=fail"]
    }""")


async def test_a_scripted_node_answers_its_nth_call_across_visits(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, REVIEW_LOOP)
    assert detail["status"] == "completed"
    # Each visit is the review's next call: fail, fail, then success ends the loop.
    assert visits(detail) == ["start", "write", "review", "write", "review", "write",
                              "review", "done"]
    assert [s["status"] for s in stages_of(detail, "review")] == ["fail", "fail", "success"]


COIN = dot("""\
    digraph coin {
        start [shape=Mdiamond]
        done [shape=Msquare]
        flip [prompt="Flip", scripted.pass_probability=0.5]
        start -> flip
        flip -> done [condition="outcome=success"]
        flip -> flip [condition="outcome=fail"]
    }""")


async def test_seeded_draws_differ_per_visit_and_repeat_per_seed(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    flips = []
    for seed in (1, 1, 2, 3):
        detail = await run_to_end(wire, COIN, settings={
            **FAST, "providers": {"scripted": {"seed": seed}}})
        assert detail["status"] == "completed"  # a fair coin comes up heads at last
        flips.append([s["status"] for s in stages_of(detail, "flip")])
    assert flips[0] == flips[1]  # the same seed, the same draws
    assert any(len(f) > 1 for f in flips)  # a visit after a fail draws anew
    assert len({tuple(f) for f in flips}) > 1


FOREVER = dot("""\
    digraph forever {
        start [shape=Mdiamond]
        done [shape=Msquare]
        ask [prompt="Again?", scripted.status=fail]
        check [shape=parallelogram, tool_command="true"]
        start -> ask
        ask -> check [condition="outcome=fail"]
        check -> ask
        ask -> done [condition="outcome=success"]
    }""")


async def test_a_loop_that_cannot_end_stops_at_the_default_step_limit(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, FOREVER, settings={})  # the default settings
    assert detail["status"] == "failed"
    assert detail["failure_reason"].startswith(
        "step limit reached: 200 node executions (settings.max_steps); node 'ask' ran "
        "100 times (a loop whose exit condition never holds?)")
    assert len(detail["stages"]) == 200


RESTART = dot("""\
    digraph restart {
        graph [goal="Ship"]
        start [shape=Mdiamond]
        done [shape=Msquare]
        draft [prompt="Draft, feedback: ${review.response:-none}",
               scripted.context_updates="{\\"draft.seen\\": true}"]
        review [prompt="Review", scripted.statuses="fail|success",
                scripted.responses="too long|fine"]
        start -> draft -> review
        review -> draft [condition="outcome=fail", loop_restart=true]
        review -> done [condition="outcome=success"]
    }""")


async def test_a_loop_restart_starts_a_fresh_cycle_of_the_same_run(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    detail = await run_to_end(wire, RESTART, inputs={"audience": "ops"})
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == ["start", "draft", "review", "draft", "review", "done"]
    restarted = events(wire, detail["run_id"], "LoopRestarted")
    assert [e["data"] for e in restarted] == [
        {"from_node": "review", "to_node": "draft", "restart": 1}]
    # The second cycle began with the initial context: the first review's answer, and the
    # run log its preamble would list, are gone.
    calls = [c for c in trace(detail) if c["node_id"] == "draft"]
    assert [c["request"]["messages"] for c in calls] == [
        [{"role": "system", "content": "Goal: Ship\n- start: success"},
         {"role": "user", "content": "Draft, feedback: none"}],
        [{"role": "system", "content": "Goal: Ship"},
         {"role": "user", "content": "Draft, feedback: none"}]]
    context = detail["context"]
    assert context["audience"] == "ops" and context["internal.restarts"] == 1


MISSING = dot("""\
    digraph missing {
        start [shape=Mdiamond]
        done [shape=Msquare]
        plan [prompt="Plan"]
        build [prompt="Build from ${plan.respons}"]
        start -> plan -> build -> done
    }""")


async def test_a_missing_reference_fails_its_node_and_names_it(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    validation = await wire.result("pipeline.validate", {"pipeline": MISSING})
    assert [d["rule"] for d in validation["diagnostics"]] == ["reference_resolves"]
    detail = await run_to_end(wire, MISSING)
    assert detail["status"] == "failed"
    assert detail["failure_reason"] == (
        "node 'build' prompt refers to ${plan.respons}, which the context does not hold (no "
        "node has set it yet); keys like it: plan.response, last_response, build.response; "
        "write ${plan.respons:-…} to "
        "give a default")
    assert len(stages_of(detail, "build")) == 1  # not retried: it would fail again
    assert [c["node_id"] for c in trace(detail)
            if c["kind"] == "model"] == ["plan"]  # nothing was sent for a broken prompt
