"""The attractor §11.12 cross-feature parity matrix, every row, through the daemon's services
(in process; the row about extensions starts a daemon subprocess with --extension).

Each test names its row. Pipelines are inline DOT; models are the offline scripted provider,
scripted per node with `scripted.*` attributes or per run with provider settings.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import (
    CUSTOM_EXTENSION,
    FAST,
    dot,
    events,
    make_fifo,
    next_event,
    of_type,
    process_gone,
    read_fifo,
    read_json,
    response_to,
    run_file,
    run_to_end,
    send_request,
    stages_of,
    trace,
    visits,
    where,
)
from .support import TEST_EXTENSION, start_daemon


def diagnostics_of(result: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [d for d in result["diagnostics"] if d["rule"] == rule]


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.in_process
async def test_row_parse_a_simple_linear_pipeline(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph linear {
            start [shape=Mdiamond]
            A [prompt="Do A"]
            B [prompt="Do B"]
            done [shape=Msquare]
            start -> A -> B -> done
        }""")
    checked = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert checked["valid"] is True and checked["diagnostics"] == []
    planned = await wire.result("pipeline.plan", {"pipeline": pipeline})
    plan = planned["plan"]
    assert plan["name"] == "linear"
    assert [(n["id"], n["type"]) for n in plan["nodes"]] == [
        ("start", "start"), ("A", "codergen"), ("B", "codergen"), ("done", "exit")]
    # The chained statement is three edges, one per pair.
    assert [(e["source"], e["target"]) for e in plan["edges"]] == [
        ("start", "A"), ("A", "B"), ("B", "done")]
    assert planned["pipeline_hash"] == checked["pipeline_hash"] == plan["pipeline_hash"]


@pytest.mark.in_process
async def test_row_parse_graph_level_attributes(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph attributed {
            graph [goal="Ship the widget", label="Widget pipeline"]
            rankdir=LR
            start [shape=Mdiamond]
            work [prompt="Work on it"]
            done [shape=Msquare]
            start -> work -> done
        }""")
    plan = (await wire.result("pipeline.plan", {"pipeline": pipeline}))["plan"]
    assert plan["attrs"] == {"goal": "Ship the widget", "label": "Widget pipeline",
                             "rankdir": "LR"}
    detail = await run_to_end(wire, pipeline)
    # Initialize mirrors the graph attributes into the context (§3.1).
    assert detail["context"]["graph.goal"] == "Ship the widget"
    assert detail["context"]["graph.label"] == "Widget pipeline"
    assert read_json(detail, "manifest.json")["goal"] == "Ship the widget"


@pytest.mark.in_process
async def test_row_parse_multi_line_node_attributes(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph multiline {
            start [shape=Mdiamond]
            work [
                shape=box,
                label="Work",
                prompt="First line
        second line",
                max_retries=2,
                goal_gate=true
            ]
            done [shape=Msquare]
            start -> work -> done
        }""")
    plan = (await wire.result("pipeline.plan", {"pipeline": pipeline}))["plan"]
    work = next(n for n in plan["nodes"] if n["id"] == "work")
    assert work["attrs"] == {"shape": "box", "label": "Work",
                             "prompt": "First line\nsecond line", "max_retries": 2,
                             "goal_gate": True}
    detail = await run_to_end(wire, pipeline)
    assert detail["status"] == "completed"
    assert run_file(detail, "work", "prompt.md").read_text() == "First line\nsecond line"


# -- validation ---------------------------------------------------------------------------


@pytest.mark.in_process
async def test_row_validate_missing_start_node_is_an_error(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph nostart {
            work [prompt="Work"]
            done [shape=Msquare]
            work -> done
        }""")
    result = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert result["valid"] is False
    [found] = diagnostics_of(result, "start_node")
    assert found["severity"] == "error"
    assert (found["line"], found["col"]) == where(pipeline["source"], "digraph")


@pytest.mark.in_process
async def test_row_validate_missing_exit_node_is_an_error(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph noexit {
            start [shape=Mdiamond]
            work [prompt="Work"]
            start -> work
        }""")
    result = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert result["valid"] is False
    [found] = diagnostics_of(result, "terminal_node")
    assert found["severity"] == "error"
    assert not diagnostics_of(result, "start_node")


@pytest.mark.in_process
async def test_row_validate_orphan_node_is_a_warning(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph orphaned {
            start [shape=Mdiamond]
            work [prompt="Work"]
            orphan [prompt="Nobody leads here"]
            done [shape=Msquare]
            start -> work -> done
        }""")
    result = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert result["valid"] is True  # a warning does not refuse the pipeline
    [found] = result["diagnostics"]
    assert (found["rule"], found["severity"], found["node"]) == (
        "reachability", "warning", "orphan")
    assert (found["line"], found["col"]) == where(pipeline["source"], "orphan [")
    assert "orphan" in found["message"]


# -- execution ----------------------------------------------------------------------------


@pytest.mark.in_process
async def test_row_execute_a_linear_three_node_pipeline(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph three {
            start [shape=Mdiamond]
            a [prompt="Step A", scripted.response="alpha"]
            b [prompt="Step B", scripted.response="beta"]
            c [prompt="Step C", scripted.response="gamma"]
            done [shape=Msquare]
            start -> a -> b -> c -> done
        }""")
    detail = await run_to_end(wire, pipeline)
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == ["start", "a", "b", "c", "done"]
    assert all(stage["status"] == "success" and stage["attempt"] == 1
               for stage in detail["stages"])
    for node, prompt, response in (("a", "Step A", "alpha"), ("b", "Step B", "beta"),
                                   ("c", "Step C", "gamma")):
        assert run_file(detail, node, "prompt.md").read_text() == prompt
        assert run_file(detail, node, "response.md").read_text() == response
        status = read_json(detail, node, "status.json")
        assert status["outcome"] == "success"
        assert status["context_updates"]["last_stage"] == node
    assert [(call["node_id"], call["kind"]) for call in trace(detail)] == [
        ("a", "model"), ("b", "model"), ("c", "model")]
    manifest = read_json(detail, "manifest.json")
    assert (manifest["status"], manifest["outcome"]) == ("completed", "success")
    assert manifest["node_count"] == 5 and manifest["start_node"] == "start"
    checkpoint = read_json(detail, "checkpoint.json")
    assert checkpoint["current_node"] == "done"
    assert checkpoint["completed_nodes"] == ["start", "a", "b", "c", "done"]
    assert checkpoint["context"]["last_response"] == "gamma"
    listed = await wire.result("run.list", {})
    assert [r["run_id"] for r in listed["runs"]] == [detail["run_id"]]
    assert listed["runs"][0]["status"] == "completed"


BRANCHING = dot("""\
    digraph branching {
        start [shape=Mdiamond]
        check [prompt="Check the work"]
        celebrate [prompt="Celebrate"]
        repair [prompt="Repair"]
        done [shape=Msquare]
        start -> check
        check -> celebrate [condition="outcome=success"]
        check -> repair [condition="outcome=fail"]
        celebrate -> done
        repair -> done
    }""")


@pytest.mark.in_process
async def test_row_execute_with_conditional_branching(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    passed = await run_to_end(wire, BRANCHING)
    assert visits(passed) == ["start", "check", "celebrate", "done"]
    failing = {**FAST, "providers": {"scripted": {"statuses": {"check": "fail"}}}}
    failed = await run_to_end(wire, BRANCHING, settings=failing)
    assert visits(failed) == ["start", "check", "repair", "done"]
    assert stages_of(failed, "check")[0]["status"] == "fail"
    # The fail edge handled the failure: the run itself completes.
    assert (failed["status"], failed["outcome"]) == ("completed", "success")
    assert failed["pipeline_hash"] == passed["pipeline_hash"]


@pytest.mark.in_process
async def test_row_execute_with_retry_on_failure(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    recovering = await run_to_end(wire, dot("""\
        digraph retrying {
            start [shape=Mdiamond]
            flaky [prompt="Try", max_retries=2,
                   scripted.statuses="fail|fail|success", scripted.responses="one|two|three"]
            done [shape=Msquare]
            start -> flaky -> done
        }"""))
    assert (recovering["status"], recovering["outcome"]) == ("completed", "success")
    flaky = stages_of(recovering, "flaky")
    assert [(s["attempt"], s["status"]) for s in flaky] == [
        (1, "fail"), (2, "fail"), (3, "success")]
    retrying = events(wire, recovering["run_id"], "StageRetrying")
    assert [(e["data"]["name"], e["data"]["attempt"]) for e in retrying] == [
        ("flaky", 2), ("flaky", 3)]
    assert run_file(recovering, "flaky", "response.md").read_text() == "three"
    assert [c["attempt"] for c in trace(recovering)] == [1, 2, 3]

    exhausted = await run_to_end(wire, dot("""\
        digraph exhausting {
            start [shape=Mdiamond]
            stubborn [prompt="Try", max_retries=2, scripted.status=fail]
            done [shape=Msquare]
            start -> stubborn -> done
        }"""))
    assert (exhausted["status"], exhausted["outcome"]) == ("failed", "fail")
    assert [(s["attempt"], s["status"]) for s in stages_of(exhausted, "stubborn")] == [
        (1, "fail"), (2, "fail"), (3, "fail")]
    failures = events(wire, exhausted["run_id"], "StageFailed")
    assert [e["data"]["will_retry"] for e in failures] == [True, True, False]
    assert "done" not in exhausted["completed_nodes"]


@pytest.mark.in_process
async def test_row_goal_gate_blocks_exit_when_unsatisfied(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    # `implement` fails until `fix` has run (it checks fix's response file); its fail edge
    # leads straight to the exit, where the gate must send the run to retry_target.
    rerouted = await run_to_end(wire, dot("""\
        digraph gated {
            start [shape=Mdiamond]
            implement [shape=parallelogram, goal_gate=true, retry_target=fix,
                       tool_command="test -e \\"$OSTINATO_STAGE_DIR/../fix/response.md\\""]
            fix [prompt="Fix it"]
            done [shape=Msquare]
            start -> implement
            implement -> done [condition="outcome=fail"]
            implement -> done [condition="outcome=success"]
            fix -> implement
        }"""))
    assert (rerouted["status"], rerouted["outcome"]) == ("completed", "success")
    assert visits(rerouted) == ["start", "implement", "fix", "implement", "done"]
    assert [s["status"] for s in stages_of(rerouted, "implement")] == ["fail", "success"]

    # Without any retry target the run fails at the exit, which never runs.
    stuck = await run_to_end(wire, dot("""\
        digraph stuck {
            start [shape=Mdiamond]
            implement [prompt="Implement", goal_gate=true, scripted.status=fail]
            done [shape=Msquare]
            start -> implement
            implement -> done [condition="outcome=fail"]
        }"""))
    assert (stuck["status"], stuck["outcome"]) == ("failed", "fail")
    assert stuck["failure_reason"] == "goal gate unsatisfied and no retry target"
    assert visits(stuck) == ["start", "implement"]
    assert not run_file(stuck, "done").exists()
    checkpoint = read_json(stuck, "checkpoint.json")
    assert checkpoint["result"]["outcome"] == "fail"


@pytest.mark.in_process
async def test_row_goal_gate_allows_exit_when_all_satisfied(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph satisfied {
            graph [retry_target=first]
            start [shape=Mdiamond]
            first [prompt="First", goal_gate=true]
            second [prompt="Second", goal_gate=true, scripted.status=partial_success]
            done [shape=Msquare]
            start -> first -> second -> done
        }"""))
    # PARTIAL_SUCCESS satisfies a gate (§3.4): no detour to the graph's retry_target.
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == ["start", "first", "second", "done"]
    assert stages_of(detail, "second")[0]["status"] == "partial_success"


@pytest.mark.in_process
async def test_row_wait_human_presents_choices_and_routes(daemon: InProcessDaemon) -> None:
    runner = await daemon.connect()
    human = await daemon.connect()
    await runner.result("run.subscribe", {"run_id": "*"})
    start = await send_request(runner, "run.start", {"pipeline": dot("""\
        digraph reviewed {
            start [shape=Mdiamond]
            draft [prompt="Draft it"]
            review [shape=hexagon, label="Ship the draft?"]
            ship [prompt="Ship"]
            rework [prompt="Rework"]
            done [shape=Msquare]
            start -> draft -> review
            review -> ship [label="[A] Approve"]
            review -> rework [label="[R] Request changes"]
            ship -> done
            rework -> done
        }"""), "settings": FAST, "wait": True})
    asked = await next_event(runner, of_type("InterviewStarted"))
    question = asked["data"]["question"]
    assert question["text"] == "Ship the draft?" and question["node_id"] == "review"
    assert question["options"] == [
        {"key": "A", "label": "[A] Approve", "target": "ship"},
        {"key": "R", "label": "[R] Request changes", "target": "rework"}]
    waiting = await human.result("run.get", {"run_id": asked["run_id"]})
    assert waiting["status"] == "waiting"
    assert waiting["question"]["question_id"] == question["question_id"]
    assert await human.result("human.answer", {
        "run_id": asked["run_id"], "question_id": question["question_id"],
        "answer": "R"}) is None
    summary = (await response_to(runner, start))["result"]
    assert (summary["status"], summary["outcome"]) == ("completed", "success")
    detail = await human.result("run.get", {"run_id": asked["run_id"]})
    assert visits(detail) == ["start", "draft", "review", "rework", "done"]
    assert detail["question"] is None
    assert detail["context"]["human.gate.selected"] == "R"
    assert detail["context"]["human.gate.label"] == "[R] Request changes"
    [answered] = events(runner, asked["run_id"], "InterviewCompleted")
    assert answered["data"]["answer"] == "R"


# -- edge selection -----------------------------------------------------------------------


@pytest.mark.in_process
async def test_row_edge_selection_condition_match_wins_over_weight(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph conditioned {
            start [shape=Mdiamond]
            work [prompt="Work"]
            heavy [prompt="Heavy"]
            zz_matched [prompt="Matched"]
            done [shape=Msquare]
            start -> work
            work -> heavy [weight=100]
            work -> zz_matched [condition="outcome=success"]
            heavy -> done
            zz_matched -> done
        }"""))
    assert visits(detail) == ["start", "work", "zz_matched", "done"]


@pytest.mark.in_process
async def test_row_edge_selection_weight_breaks_ties(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph weighted {
            start [shape=Mdiamond]
            work [prompt="Work"]
            a_light [prompt="Light"]
            z_heavy [prompt="Heavy"]
            done [shape=Msquare]
            start -> work
            work -> a_light [weight=1]
            work -> z_heavy [weight=5]
            a_light -> done
            z_heavy -> done
        }"""))
    assert visits(detail) == ["start", "work", "z_heavy", "done"]


@pytest.mark.in_process
async def test_row_edge_selection_lexical_tiebreak(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph lexical {
            start [shape=Mdiamond]
            work [prompt="Work"]
            zeta [prompt="Zeta"]
            alpha [prompt="Alpha"]
            mid [prompt="Mid"]
            done [shape=Msquare]
            start -> work
            work -> zeta
            work -> alpha
            work -> mid
            zeta -> done
            alpha -> done
            mid -> done
        }"""))
    assert visits(detail) == ["start", "work", "alpha", "done"]


@pytest.mark.in_process
async def test_row_context_updates_are_visible_to_the_next_node(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph contextual {
            start [shape=Mdiamond]
            review [prompt="Review",
                    scripted.context_updates="{\\"review.verdict\\": \\"approved\\"}"]
            router [shape=diamond]
            hold [prompt="Hold"]
            publish [prompt="Publish"]
            done [shape=Msquare]
            start -> review -> router
            router -> hold
            router -> publish [condition="context.review.verdict=approved"]
            hold -> done
            publish -> done
        }"""))
    assert visits(detail) == ["start", "review", "router", "publish", "done"]
    assert detail["context"]["review.verdict"] == "approved"
    assert read_json(detail, "review", "status.json")["context_updates"][
        "review.verdict"] == "approved"


@pytest.mark.in_process
async def test_row_checkpoint_save_and_resume_produces_the_same_result(
        daemon: InProcessDaemon, tmp_path: Path) -> None:
    """Cancelled while a tool blocks, resumed from checkpoint.json: same end as a run that
    was never interrupted. (test_runs_resume.py does the same across a SIGKILL.)"""
    wire = await daemon.connect()
    go, fifo = tmp_path / "go", make_fifo(tmp_path / "announce")
    pipeline = dot(f"""\
        digraph resumable {{
            start [shape=Mdiamond]
            prep [prompt="Prepare", scripted.context_updates="{{\\"prep.token\\": 7}}"]
            gate [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            finish [prompt="Finish"]
            done [shape=Msquare]
            start -> prep -> gate -> finish -> done
        }}""")
    started = await wire.result("run.start", {"pipeline": pipeline, "settings": FAST})
    pid = int(await read_fifo(fifo))  # the tool is running, blocked in sleep
    cancelled = await wire.result("run.cancel", {"run_id": started["run_id"]})
    assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True)
    assert process_gone(pid)
    checkpoint = read_json(cancelled, "checkpoint.json")
    assert (checkpoint["current_node"], checkpoint["next_node"]) == ("prep", "gate")
    assert checkpoint["completed_nodes"] == ["start", "prep"]

    go.touch()
    resumed = await wire.result("run.resume", {"run_id": started["run_id"], "wait": True})
    assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    detail = await wire.result("run.get", {"run_id": started["run_id"]})
    fresh = await run_to_end(wire, pipeline)
    assert visits(detail) == visits(fresh) == ["start", "prep", "gate", "finish", "done"]
    assert detail["completed_nodes"] == fresh["completed_nodes"]
    assert detail["context"] == fresh["context"]
    assert detail["context"]["prep.token"] == 7


# -- transforms ---------------------------------------------------------------------------


@pytest.mark.in_process
async def test_row_stylesheet_applies_model_override_by_shape(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph styled {
            graph [model_stylesheet="* { llm_model: base-model } box { llm_model: box-model }"]
            start [shape=Mdiamond]
            plain [prompt="Plain box"]
            own [prompt="Own model", llm_model="own-model"]
            router [shape=diamond]
            done [shape=Msquare]
            start -> plain -> own -> router -> done
        }""")
    plan = (await wire.result("pipeline.plan", {"pipeline": pipeline}))["plan"]
    models = {n["id"]: n["attrs"].get("llm_model") for n in plan["nodes"]}
    assert models == {"start": "base-model", "plain": "box-model", "own": "own-model",
                      "router": "base-model", "done": "base-model"}
    detail = await run_to_end(wire, pipeline)
    assert [(c["node_id"], c["request"]["model"], c["response"]["model"])
            for c in trace(detail)] == [("plain", "box-model", "box-model"),
                                        ("own", "own-model", "own-model")]


@pytest.mark.in_process
async def test_row_prompt_variable_expansion_of_goal(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph expanded {
            graph [goal="Write a haiku about rivers"]
            start [shape=Mdiamond]
            compose [prompt="Compose for: $goal. Be brief."]
            done [shape=Msquare]
            start -> compose -> done
        }""")
    detail = await run_to_end(wire, pipeline)
    prompt = run_file(detail, "compose", "prompt.md").read_text()
    assert prompt == "Compose for: Write a haiku about rivers. Be brief."
    [call] = trace(detail)
    assert call["request"]["messages"][-1]["content"] == prompt
    # A `goal` variable replaces the graph's goal, in the prompt as in the context.
    other = await run_to_end(wire, pipeline, variables={"goal": "Count the stars"})
    assert run_file(other, "compose", "prompt.md").read_text() == (
        "Compose for: Count the stars. Be brief.")
    assert other["context"]["graph.goal"] == "Count the stars"


@pytest.mark.in_process
async def test_row_parallel_fan_out_and_fan_in(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph fanned {
            start [shape=Mdiamond]
            fan [shape=component]
            b1 [prompt="Branch one", scripted.status=fail]
            b2 [prompt="Branch two"]
            b3 [prompt="Branch three", scripted.context_updates="{\\"score\\": 0.9}"]
            join [shape=tripleoctagon]
            report [prompt="Report"]
            done [shape=Msquare]
            start -> fan
            fan -> b1
            fan -> b2
            fan -> b3
            b1 -> join
            b2 -> join
            b3 -> join
            join -> report -> done
        }"""))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert detail["completed_nodes"] == ["start", "fan", "join", "report", "done"]
    branch_stages = {s["node_id"]: (s["branch"], s["status"]) for s in detail["stages"]
                     if s["branch"]}
    assert branch_stages == {"b1": ("b1", "fail"), "b2": ("b2", "success"),
                             "b3": ("b3", "success")}
    assert stages_of(detail, "fan")[0]["status"] == "partial_success"  # one branch failed
    results = detail["context"]["parallel.results"]
    assert [(r["id"], r["status"], r["stopped_at"]) for r in results] == [
        ("b1", "fail", None), ("b2", "success", "join"), ("b3", "success", "join")]
    # Fan-in ranks by outcome, then score: b3's 0.9 beats b2, b1 failed.
    assert detail["context"]["parallel.fan_in.best_id"] == "b3"
    assert detail["context"]["parallel.fan_in.best_outcome"] == "success"
    # Branch context changes stay in their results, not in the parent context.
    assert "score" not in detail["context"]
    for branch in ("b1", "b2", "b3"):
        assert run_file(detail, branch, "response.md").exists()


@pytest.mark.in_process
async def test_row_custom_handler_registration_and_execution(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    pipeline = dot("""\
        digraph custom {
            start [shape=Mdiamond]
            first [type="test.stamp", stamp.text="hello"]
            second [type="test.stamp", stamp.label="Chosen"]
            a_other [prompt="Other"]
            z_chosen [prompt="Chosen path"]
            done [shape=Msquare]
            start -> first -> second
            second -> a_other [label="Other"]
            second -> z_chosen [label="Chosen"]
            a_other -> done
            z_chosen -> done
        }""")
    # A daemon without the extension does not know the type.
    plain = await daemon.connect()
    unknown = await plain.result("pipeline.validate", {"pipeline": pipeline})
    assert {d["node"] for d in unknown["diagnostics"] if d["rule"] == "type_known"} == {
        "first", "second"}

    extended = await start_daemon(short_tmp / "home2", "--socket", str(short_tmp / "e.sock"),
                                  "--extension", TEST_EXTENSION,
                                  "--extension", CUSTOM_EXTENSION)
    try:
        wire = await extended.connect()
        known = await wire.result("pipeline.validate", {"pipeline": pipeline})
        assert (known["valid"], known["diagnostics"]) == (True, [])
        detail = await run_to_end(wire, pipeline)
        assert (detail["status"], detail["outcome"]) == ("completed", "success")
        assert visits(detail) == ["start", "first", "second", "z_chosen", "done"]
        assert [s["handler"] for s in detail["stages"][1:3]] == ["test.stamp", "test.stamp"]
        assert run_file(detail, "first", "stamp.txt").read_text() == "hello"
        assert run_file(detail, "second", "stamp.txt").read_text() == "second"
        assert detail["context"]["stamp.count"] == 2
        assert detail["context"]["first.stamp"] == "hello"
        assert read_json(detail, "second", "status.json")["notes"] == "stamped second"
        assert [c["node_id"] for c in trace(detail)] == ["z_chosen"]  # no model call
    finally:
        assert await extended.stop() == 0, "".join(extended.log)


@pytest.mark.in_process
async def test_row_pipeline_with_more_than_ten_nodes_completes(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    steps = [f"step{i:02d}" for i in range(1, 11)]
    lines = ["digraph big {", "    start [shape=Mdiamond]", "    done [shape=Msquare]"]
    lines += [f'    {step} [prompt="Do {step}", scripted.response="did {step}"]'
              for step in steps]
    lines += ['    check [shape=parallelogram, tool_command="echo checked"]',
              "    route [shape=diamond]"]
    order = ["start", *steps[:5], "check", *steps[5:], "route", "done"]
    lines += [f"    {a} -> {b}" for a, b in itertools.pairwise(order)]
    lines.append("}")
    detail = await run_to_end(wire, {"source": "\n".join(lines), "format": "dot"})
    assert len(order) == 14
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == detail["completed_nodes"] == order
    assert all(stage["status"] == "success" for stage in detail["stages"])
    assert [c["node_id"] for c in trace(detail)] == [*steps[:5], "check", *steps[5:]]
    assert detail["context"]["check.output"] == "checked\n"
    assert run_file(detail, "step10", "response.md").read_text() == "did step10"
    assert json.loads(run_file(detail, "checkpoint.json").read_text())[
        "current_node"] == "done"
