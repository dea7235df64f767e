"""run.reeval through a real daemon: invariants checked against stored runs without running
anything, scenario drift, bad requests, and `ostinato reeval` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import FAST, dot, listing, next_event, of_type, run_to_end
from .support import DaemonProcess, Wire, published

NOT_FOUND, INVALID_PARAMS, CONFLICT = -32001, -32602, -32004
PRICED = {**FAST, "pricing": {"models": {"scripted/*": {"input_per_mtok": 1_000_000,
                                                        "output_per_mtok": 2_000_000}}}}

SOURCE = """
    digraph brief {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        research [prompt="Research $topic", scripted.usage="10,20",
                  scripted.context_updates="{\\"sources\\": [\\"atlas\\", \\"hansard\\"]}"]
        count [shape=parallelogram, tool_command="echo 3 sources found"]
        write [prompt="Write the brief", scripted.usage="5,5",
               scripted.response="The brief: tides follow the moon. Sources: atlas."]
        start -> research -> count -> write -> exit
    }
"""
BRIEF = dot(SOURCE)
EDITED = dot(SOURCE.replace("Write the brief", "Write the brief, shorter"))
FAILS = dot("""digraph fails { start [shape=Mdiamond]; a [prompt="a", scripted.status=fail];
               exit [shape=Msquare]; start -> a -> exit }""")
INPUTS = {"topic": "tides"}


async def brief(wire: Wire, **params: Any) -> dict[str, Any]:
    """A completed run of BRIEF: cost $50 + $15 = $65 under PRICED."""
    params.setdefault("settings", PRICED)
    run = await run_to_end(wire, BRIEF, inputs=INPUTS, **params)
    assert (run["status"], run["cost_usd"]) == ("completed", 65.0), run
    return run


async def reeval(wire: Wire, run_id: str, invariants: list[dict[str, Any]],
                 **params: Any) -> dict[str, Any]:
    return published("run.reeval", await wire.result(
        "run.reeval", {"run_id": run_id, "invariants": invariants, **params}))


def statuses(result: dict[str, Any]) -> list[str]:
    return [r["status"] for r in result["results"]]


@pytest.mark.in_process
async def test_every_check_passes_on_a_run_that_meets_it(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief(wire)
    before = listing(daemon.home)

    result = await reeval(wire, run["run_id"], [
        {"type": "run_status", "value": "COMPLETED", "description": "seeds/001 spelling"},
        {"type": "run_status", "value": ["completed", "failed"], "outcome": "success"},
        {"type": "contains", "value": "follow the moon"},
        {"type": "contains", "value": "3 sources", "path": "node.count"},
        {"type": "contains", "value": "Research tides", "path": "node.research"},
        {"type": "contains", "value": "hansard", "path": "context.sources"},
        {"type": "contains", "value": "tides", "path": "context.topic"},
        {"type": "max_cost_usd", "value": 65},
    ])

    assert result["verdict"] == "passed", result
    assert statuses(result) == ["passed"] * 8
    assert result["counts"] == {"passed": 8, "failed": 0, "error": 0, "skipped": 0}
    assert result["run_id"] == run["run_id"] and result["record"] == "full"
    assert result["drift"] == [] and result["warnings"] == []
    first = result["results"][0]
    assert first == {"type": "run_status", "description": "seeds/001 spelling",
                     "status": "passed", "expected": {"status": "completed"},
                     "actual": {"status": "completed"},
                     "message": "the run ended completed (success)"}
    output = result["results"][2]
    assert output["actual"] == "The brief: tides follow the moon. Sources: atlas."
    assert "node 'write'" in output["message"]
    assert result["results"][-1]["actual"] == 65.0
    # Nothing ran, nothing was written: the home holds the same files.
    assert listing(daemon.home) - before <= {"daemon.log"}
    assert (await wire.result("run.list", {}))["runs"][0]["run_id"] == run["run_id"]


@pytest.mark.in_process
async def test_every_check_fails_on_a_run_that_misses_it(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief(wire)

    result = await reeval(wire, run["run_id"], [
        {"type": "run_status", "value": "failed"},
        {"type": "run_status", "outcome": "fail"},
        {"type": "contains", "value": "follows the sun"},
        {"type": "contains", "value": "Brief", "path": "node.write"},  # case-sensitive
        {"type": "max_cost_usd", "value": 64.99},
        {"type": "max_cost_usd", "value": 100},
    ])

    assert result["verdict"] == "failed"
    assert statuses(result) == ["failed"] * 5 + ["passed"]
    wrong_status, wrong_outcome, missing, _, too_dear, _ = result["results"]
    assert wrong_status["expected"] == {"status": "failed"}
    assert wrong_status["actual"] == {"status": "completed"}
    assert wrong_status["message"] == "the run ended completed (success), expected failed"
    assert wrong_outcome["actual"] == {"status": "completed", "outcome": "success"}
    assert missing["message"] == "the run's output (node 'write') does not contain " \
                                 "'follows the sun'"
    assert (too_dear["expected"], too_dear["actual"]) == (64.99, 65.0)
    assert too_dear["message"] == "the run cost $65, over the $64.99 limit"
    assert result["counts"] == {"passed": 1, "failed": 5, "error": 0, "skipped": 0}


@pytest.mark.in_process
async def test_a_failed_run_and_checks_that_cannot_be_evaluated(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    failed = await run_to_end(wire, FAILS)
    assert failed["status"] == "failed"

    result = await reeval(wire, failed["run_id"], [
        {"type": "run_status", "value": "failed", "outcome": "fail"},
        {"type": "contains", "value": "x", "path": "context.no_such_key"},
        {"type": "contains", "value": "x", "path": "node.start"},
        {"type": "contains", "value": "x", "path": "node.never"},
    ])

    assert statuses(result) == ["passed", "error", "error", "error"]
    assert result["verdict"] == "failed"  # a check that could not be evaluated is no pass
    messages = [r["message"] for r in result["results"][1:]]
    assert messages == ["the run's final context has no key 'no_such_key'",
                        "node 'start' made no model or tool call",
                        "node 'never' did not run"]
    assert result["warnings"] == [f"run {failed['run_id']} ended failed (the model reported "
                                  "fail): the checks see what it recorded until then"]


@pytest.mark.in_process
async def test_a_context_value_moved_to_artifacts_is_searched_whole(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    big = dot("""digraph big { start [shape=Mdiamond]; exit [shape=Msquare];
                 dump [shape=parallelogram,
                       tool_command="head -c 110000 /dev/zero | tr '\\\\0' x; echo END-MARK"];
                 start -> dump -> exit }""")
    run = await run_to_end(wire, big)
    assert run["status"] == "completed", run
    assert "artifact_ref" in run["context"]["tool.output"]  # over 100 KB: left the context

    result = await reeval(wire, run["run_id"], [
        {"type": "contains", "value": "END-MARK", "path": "context.tool.output"},
        {"type": "contains", "value": "END-MARK", "path": "context.dump.output"},
        {"type": "contains", "value": "END-MARK"}])

    assert statuses(result) == ["passed"] * 3, result
    assert result["results"][0]["actual"].endswith("xxEND-MARK\n")
    assert len(result["results"][0]["actual"]) <= 202  # shown cut around the match


@pytest.mark.in_process
async def test_drift_warns_and_fails_under_strict_scenario(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief(wire)
    checks = [{"type": "run_status"}]

    same = await reeval(wire, run["run_id"], checks, pipeline=BRIEF, inputs=INPUTS)
    assert [(d["subject"], d["drifted"]) for d in same["drift"]] == [
        ("pipeline", False), ("inputs", False)]
    assert same["drift"][0]["given_hash"] == run["pipeline_hash"]
    assert same["warnings"] == [] and same["verdict"] == "passed"

    edited = await reeval(wire, run["run_id"], checks, pipeline=EDITED)
    assert [(d["subject"], d["drifted"]) for d in edited["drift"]] == [("pipeline", True)]
    assert edited["drift"][0]["run_hash"] == run["pipeline_hash"]
    assert edited["verdict"] == "passed"  # a warning only
    assert len(edited["warnings"]) == 1
    assert edited["warnings"][0].startswith("scenario drift: the pipeline given is not the one "
                                            "the run ran")

    other_inputs = await reeval(wire, run["run_id"], checks, inputs={"topic": "waves"})
    assert [(d["subject"], d["drifted"]) for d in other_inputs["drift"]] == [("inputs", True)]
    assert other_inputs["verdict"] == "passed"
    assert "the inputs given are not the run's" in other_inputs["warnings"][0]

    strict = await reeval(wire, run["run_id"], checks, pipeline=EDITED, strict_scenario=True)
    assert strict["verdict"] == "failed"
    assert statuses(strict) == ["passed"]  # the checks themselves still pass
    assert strict["warnings"][0].endswith("; strict_scenario fails the reeval")
    strict_same = await reeval(wire, run["run_id"], checks, pipeline=BRIEF, inputs=INPUTS,
                               strict_scenario=True)
    assert strict_same["verdict"] == "passed"


@pytest.mark.in_process
async def test_a_metadata_only_run_cannot_answer_content_checks(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief(wire, record="metadata_only")
    checks = [{"type": "run_status"}, {"type": "contains", "value": "moon"},
              {"type": "contains", "value": "tides", "path": "context.topic"},
              {"type": "max_cost_usd", "value": 65}]

    strict = await reeval(wire, run["run_id"], checks)
    assert strict["record"] == "metadata_only"
    assert statuses(strict) == ["passed", "error", "error", "passed"]
    assert strict["verdict"] == "failed"
    assert "recorded `metadata_only`" in strict["results"][1]["message"]
    assert "allow_partial" in strict["results"][1]["message"]

    partial = await reeval(wire, run["run_id"], checks, allow_partial=True)
    assert statuses(partial) == ["passed", "skipped", "skipped", "passed"]
    assert partial["verdict"] == "passed"
    assert partial["counts"]["skipped"] == 2


@pytest.mark.in_process
async def test_bad_requests_are_refused_clearly(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief(wire)
    run_id = run["run_id"]
    unknown = "01a20000-0000-7000-8000-000000000000"

    missing = await wire.request("run.reeval", {"run_id": unknown,
                                                "invariants": [{"type": "run_status"}]})
    assert missing["error"]["code"] == NOT_FOUND and unknown in missing["error"]["message"]

    snapshot = await wire.request("run.reeval", {"run_id": run_id, "snapshot_id": "s-1"})
    assert snapshot["error"]["code"] == NOT_FOUND
    assert snapshot["error"]["message"].startswith("no snapshot s-1 (")  # not this one

    def first_error(reply: dict[str, Any]) -> dict[str, Any]:
        assert reply["error"]["code"] == INVALID_PARAMS, reply
        return reply["error"]["data"][0]

    unknown_type = first_error(await wire.request("run.reeval", {
        "run_id": run_id, "invariants": [{"type": "run_status"}, {"type": "max_tokenz"}]}))
    assert unknown_type["loc"] == ["invariants", 1]
    assert "'max_tokenz'" in unknown_type["msg"] and "'contains'" in unknown_type["msg"]

    bad_path = first_error(await wire.request("run.reeval", {
        "run_id": run_id, "invariants": [{"type": "contains", "value": "x", "path": "nodes"}]}))
    assert bad_path["loc"] == ["invariants", 0, "contains", "path"]
    assert "`output`, `node.<node_id>` or `context.<key>`" in bad_path["msg"]

    no_value = first_error(await wire.request("run.reeval", {
        "run_id": run_id, "invariants": [{"type": "max_cost_usd"}]}))
    assert (no_value["loc"], no_value["type"]) == (["invariants", 0, "max_cost_usd", "value"],
                                                   "missing")

    typo = first_error(await wire.request("run.reeval", {
        "run_id": run_id, "invariants": [{"type": "run_status", "valeu": "completed"}]}))
    assert typo["type"] == "extra_forbidden"

    for both_or_neither in ({"invariants": [], "snapshot_id": "s-1"}, {}):
        error = first_error(await wire.request("run.reeval",
                                               {"run_id": run_id, **both_or_neither}))
        assert "exactly one of `invariants` or `snapshot_id`" in error["msg"]


@pytest.mark.in_process
async def test_a_run_still_going_is_not_reevaluated(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    gate = dot("""digraph gate { start [shape=Mdiamond]; exit [shape=Msquare];
                  ask [shape=hexagon, label="Go?"]; start -> ask; ask -> exit [label="Yes"] }""")
    await wire.result("run.subscribe", {"run_id": "*"})
    started = await wire.result("run.start", {"pipeline": gate})
    # The store says `waiting` before the question is published; nobody answers it.
    await next_event(wire, of_type("InterviewStarted"))

    reply = await wire.request("run.reeval", {"run_id": started["run_id"],
                                              "invariants": [{"type": "run_status"}]})

    assert reply["error"]["code"] == CONFLICT
    assert "is waiting" in reply["error"]["message"]
    await wire.result("run.cancel", {"run_id": started["run_id"]})


def ostinato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ostinato.clients.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


async def test_cli_reeval_shows_each_check_and_exits_by_verdict(daemon: DaemonProcess,
                                                                tmp_path: Path) -> None:
    wire = await daemon.connect()
    run = await brief(wire)
    socket = ("--socket", daemon.socket)
    checks = tmp_path / "checks.json"
    checks.write_text(json.dumps([
        {"type": "run_status", "value": "completed"},
        {"type": "contains", "value": "follows the sun", "description": "the key claim"},
        {"type": "max_cost_usd", "value": 100}]))

    failing = ostinato("reeval", run["run_id"], "--invariants", str(checks), *socket,
                       cwd=tmp_path)
    assert failing.returncode == 1, failing.stderr
    lines = failing.stdout.splitlines()
    assert lines[0] == f"run {run['run_id']}: failed (2 passed, 1 failed)"
    assert lines[1].startswith("  ✓ run_status") and "completed (success)" in lines[1]
    assert lines[2].startswith("  ✗ contains (the key claim)")
    assert "does not contain 'follows the sun'" in lines[2]
    assert lines[3].startswith("  ✓ max_cost_usd")

    pipeline = tmp_path / "brief.dot"
    pipeline.write_text(EDITED["source"])
    passing = ostinato("reeval", run["run_id"], "--invariants", '[{"type": "run_status"}]',
                       "--pipeline", str(pipeline), "--json", *socket, cwd=tmp_path)
    assert passing.returncode == 0, passing.stderr
    result = json.loads(passing.stdout)
    assert result["verdict"] == "passed" and result["drift"][0]["drifted"] is True

    strict = ostinato("reeval", run["run_id"], "--invariants", '[{"type": "run_status"}]',
                      "--pipeline", str(pipeline), "--strict-scenario", *socket, cwd=tmp_path)
    assert strict.returncode == 1
    assert "warning: scenario drift" in strict.stdout

    bad = ostinato("reeval", run["run_id"], "--invariants", '[{"type": "nope"}]', *socket,
                   cwd=tmp_path)
    assert bad.returncode == 2
    assert "invariants.0:" in bad.stderr and "'nope'" in bad.stderr
