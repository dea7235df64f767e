"""tests.run with trials (a trial set per snapshot: per-trial results, pass_rate) and with a
judge (its votes served from the snapshot's cassette at zero cost in mode recorded, asked
live and charged to the budget otherwise, recorded on the run each judged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import dot, make_fifo, next_event, read_fifo, run_to_end
from .support import Wire
from .tests_run_support import CALL_USD, PRICED, priced, run_tests, snapshot, snapshot_of_run

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]

JUDGED = [{"type": "run_status"},
          {"type": "judge", "rubric": "The answer is polite.", "k": 3}]
# The scripted model answers the judge's three votes (node `$judge`, attempt = vote).
JUDGE_SAYS = {**PRICED, "providers": {"scripted": {"responses": {
    "$judge": ["Polite. VERDICT: PASS", "VERDICT: FAIL", "Fine. VERDICT: PASS"]}}}}


async def test_trials_give_per_trial_results_and_a_pass_rate(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot_of_run(wire, "trials", priced("trials", 2), invariants=[
        {"type": "run_status"}, {"type": "pass_rate", "threshold": 0.3, "confidence": 0.9}])
    result = await run_tests(wire, snapshot_ids=[made["id"]], trials=4, concurrency=2)
    [snap] = result["snapshots"]
    assert (snap["status"], snap["trials"], snap["trials_passed"]) == ("passed", 4, 4)
    assert len(set(snap["run_ids"])) == 4 and snap["trial_set_id"] is not None
    status, rate = snap["invariants"]
    assert [t["index"] for t in status["trials"]] == [0, 1, 2, 3]
    assert [t["run_id"] for t in status["trials"]] == snap["run_ids"]
    assert {t["status"] for t in status["trials"]} == {"passed"}
    assert rate["type"] == "pass_rate" and rate["status"] == "passed"
    assert rate["trials"] is None  # an across-trials check has no per-trial result
    trial_set = await wire.result("trials.get", {"trial_set_id": snap["trial_set_id"]})
    assert [t["run_id"] for t in trial_set["trial_runs"]] == snap["run_ids"]
    # The metrics of a trial set are the means over its trials.
    assert snap["metrics_delta"]["tokens"]["delta"] == 0
    assert snap["metrics_delta"]["cost_usd"]["replay"] == 0.0


async def test_a_flaky_pipeline_fails_its_pass_rate(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    flaky = {**PRICED, "default_provider": "flaky",
             "providers": {"flaky": {"type": "scripted", "fail_rate": 0.5, "seed": 3,
                                     "retry": {"max_attempts": 1}}}}
    made = await snapshot(wire, "flaky", priced("flaky", 1), settings=flaky, invariants=[
        {"type": "run_status"}, {"type": "pass_rate", "threshold": 0.9}])
    result = await run_tests(wire, snapshot_ids=[made["id"]], trials=10, mode="live")
    [snap] = result["snapshots"]
    assert snap["status"] == "failed" and result["status"] == "failed"
    status, rate = snap["invariants"]
    runs = [await wire.result("run.get", {"run_id": t["run_id"]}) for t in status["trials"]]
    # Each trial's result is that trial's run's.
    assert [t["status"] == "passed" for t in status["trials"]] == [
        r["status"] == "completed" for r in runs]
    assert 0 < snap["trials_passed"] < 10
    assert rate["status"] == "failed" and rate["actual"]["passed"] == snap["trials_passed"]
    # With a pass rate, a per-run check feeds the rate instead of failing on its own.
    assert status["status"] == "skipped"


async def judge_calls(wire: Wire, run_id: str) -> list[dict[str, Any]]:
    detail = await wire.result("run.get", {"run_id": run_id})
    trace = await wire.result("trace.get", {"trace_id": detail["trace_id"]})
    return [c for c in trace["calls"] if c["node_id"] == "$judge"]


async def test_a_recorded_judge_is_served_from_the_cassette(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    source = await run_to_end(wire, priced("judged", 1), settings=JUDGE_SAYS)
    # A reeval asks the judge live and records its votes on the run; the snapshot of that
    # run keeps them in its cassette.
    reeval = await wire.result("run.reeval", {"run_id": source["run_id"],
                                              "invariants": JUDGED})
    assert [r["status"] for r in reeval["results"]] == ["passed", "passed"]
    made = await wire.result("snapshot.create", {"name": "judged", "run_id": source["run_id"],
                                                 "invariants": JUDGED})
    result = await run_tests(wire, snapshot_ids=[made["id"]])  # recorded
    [snap] = result["snapshots"]
    assert snap["status"] == "passed" and snap["cost_usd"] == 0.0
    judge = snap["invariants"][1]
    assert judge["actual"]["votes"] == ["PASS", "FAIL", "PASS"]
    calls = await judge_calls(wire, snap["run_ids"][0])  # recorded on the replay
    assert [c["attempt"] for c in calls] == [1, 2, 3]
    assert {c["cost_usd"] for c in calls} == {0.0}


async def test_a_live_judge_is_charged_and_recorded_per_trial(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot(wire, "live-judge", priced("livejudge", 1), settings=JUDGE_SAYS,
                          invariants=JUDGED)
    result = await run_tests(wire, snapshot_ids=[made["id"]], trials=2, mode="live")
    [snap] = result["snapshots"]
    assert snap["status"] == "passed" and snap["trials_passed"] == 2
    judge = snap["invariants"][1]
    assert [t["actual"]["votes"] for t in judge["trials"]] == [["PASS", "FAIL", "PASS"]] * 2
    spent = 0.0
    for run_id in snap["run_ids"]:
        calls = await judge_calls(wire, run_id)
        assert [c["attempt"] for c in calls] == [1, 2, 3]
        spent += sum(c["cost_usd"] for c in calls)
    assert spent > 0
    assert snap["cost_usd"] == pytest.approx(2 * CALL_USD + spent)
    assert result["total_cost_usd"] == snap["cost_usd"]


async def test_a_judge_stops_voting_once_the_budget_is_spent(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot(wire, "no-judge", priced("nojudge", 1), settings=JUDGE_SAYS,
                          invariants=JUDGED)
    after = await snapshot(wire, "after-judge", priced("afterjudge", 1))
    # The replay's call leaves a hair of budget: the judge's first vote is asked (and costs
    # a few cents' millionths), the next two are not.
    # One at a time: the second starts only after the first spent the budget.
    result = await run_tests(wire, snapshot_ids=[made["id"], after["id"]], mode="live",
                             cost_limit_usd=CALL_USD + 1e-6, concurrency=1)
    first, second = result["snapshots"]
    assert (first["status"], second["status"]) == ("budget_exceeded", "skipped")
    assert "judge" in first["message"]
    status, judge = first["invariants"]
    assert status["status"] == "passed"  # the replay itself completed
    assert judge["status"] == "error" and "budget" in judge["message"]
    calls = await judge_calls(wire, first["run_ids"][0])
    assert [(c["attempt"], c["error"]) for c in calls] == [(1, None)]  # no refused call
    assert first["cost_usd"] == pytest.approx(CALL_USD + calls[0]["cost_usd"])
    assert result["total_cost_usd"] == first["cost_usd"]


async def test_a_budget_spent_by_one_trial_stops_the_others_at_their_next_node(
        daemon: InProcessDaemon, tmp_path: Path) -> None:
    """Two trials at once: the first through the tool spends the budget while the other
    waits in it; released, the other stops before its next paid node. On workers, each run
    checks a copy of the budget, which the daemon tells as soon as it is spent."""
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    fifo, go, lock = make_fifo(tmp_path / "announce"), tmp_path / "go", tmp_path / "lock"
    # The first trial to reach `hold` passes; the second announces itself and waits for `go`.
    made = await snapshot(wire, "shared-budget", dot(f"""\
        digraph shared {{
            start [shape=Mdiamond]
            n1 [prompt="One", scripted.usage="1000000,0"]
            hold [shape=parallelogram, tool_command="mkdir {lock} 2>/dev/null && exit 0; \\
                  echo $$ > {fifo}; while ! test -e {go}; do sleep 0.01; done"]
            n2 [prompt="Two", scripted.usage="1000000,0"]
            n3 [prompt="Three", scripted.usage="1000000,0"]
            done [shape=Msquare]
            start -> n1 -> hold -> n2 -> n3 -> done
        }}"""))
    # Both n1 ($2), then the first trial's n2 and n3 ($4): past $3.50 with its last call.
    started = await wire.result("tests.run", {"snapshot_ids": [made["id"]], "mode": "live",
                                              "trials": 2, "concurrency": 2,
                                              "cost_limit_usd": 3.5})
    await read_fifo(fifo)  # the second trial waits in `hold`
    await next_event(wire, lambda event: event["type"] == "PipelineCompleted")
    go.touch()
    result = await wire.result("tests.get", {"test_run_id": started["test_run_id"],
                                             "wait": True})
    assert result["status"] == "budget_exceeded"
    assert result["total_cost_usd"] == pytest.approx(4 * CALL_USD)
    trials = await wire.result("trials.get", {
        "trial_set_id": result["snapshots"][0]["trial_set_id"]})
    assert sorted(t["status"] for t in trials["trial_runs"]) == ["budget_exceeded",
                                                                   "completed"]
