"""tests.run through the daemon: a cost budget that runs out in the middle of a snapshot,
stop_on_first_failure, pass/fail/error counts, metric deltas against the reference, trials,
progress and events, tests.get / tests.list / tests.cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from .inprocess import InProcessDaemon
from .runs_support import (
    FAILING,
    NOT_A_LIST,
    ONE_KEY,
    blocking,
    make_fifo,
    read_fifo,
    runs_done_on_workers,
)
from .tests_run_support import (
    CALL_USD,
    FAILS,
    PASSES,
    priced,
    run_tests,
    snapshot,
    snapshot_of_run,
    statuses,
)

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]


async def test_a_budget_that_runs_out_in_the_third_snapshot_stops_there(
        daemon: InProcessDaemon, executor: str) -> None:
    wire = await daemon.connect()
    # One snapshot at a time (concurrency 1), so where the budget runs out is known: four
    # snapshots of three $1 calls each, under a $7.50 limit: the first two spend $6;
    # the third's first call brings it to $7 and its second to $8, past the limit, so its
    # third node never starts; the fourth never starts at all.
    made = [await snapshot(wire, f"budget-{i}", priced(f"budget{i}")) for i in range(4)]
    limit = 7.5
    before = await runs_done_on_workers(wire)
    result = await run_tests(wire, snapshot_ids=[s["id"] for s in made], mode="live",
                             cost_limit_usd=limit, concurrency=1)
    # On a pool, the three runs executed on workers, each checking a copy of the budget.
    assert await runs_done_on_workers(wire) - before == (3 if executor != "inline" else 0)
    assert result["status"] == "budget_exceeded"
    assert statuses(result) == ["passed", "passed", "budget_exceeded", "skipped"]
    assert result["summary"] == {"total": 4, "passed": 2, "failed": 0, "errors": 0,
                                 "skipped": 1, "budget_exceeded": 1}
    first, second, third, fourth = result["snapshots"]
    for kept in (first, second):  # the results of the first two are kept whole
        assert kept["cost_usd"] == pytest.approx(3 * CALL_USD)
        assert [c["status"] for c in kept["invariants"]] == ["passed"]
        assert len(kept["run_ids"]) == 1
    assert third["cost_usd"] == pytest.approx(2 * CALL_USD)
    assert "budget" in third["message"]
    replay = await wire.result("run.get", {"run_id": third["run_ids"][0]})
    assert replay["status"] == "budget_exceeded"
    assert [s["node_id"] for s in replay["stages"] if s["node_id"].startswith("n")] == [
        "n1", "n2"]
    assert fourth["run_ids"] == [] and "budget" in fourth["message"]
    assert [c["status"] for c in fourth["invariants"]] == ["skipped"]
    # Nothing started after the limit was reached: at most one call's cost over it.
    assert limit <= result["total_cost_usd"] <= limit + CALL_USD
    assert result["total_cost_usd"] == pytest.approx(8 * CALL_USD)
    assert result["cost_limit_usd"] == limit
    again = await wire.result("tests.get", {"test_run_id": result["test_run_id"]})
    assert again == result


async def test_stop_on_first_failure_skips_the_rest(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = [await snapshot(wire, "sof-pass", priced("sofpass", 1)),
            await snapshot(wire, "sof-fail", priced("soffail", 1), invariants=FAILS),
            await snapshot(wire, "sof-after", priced("sofafter", 1))]
    ids = [s["id"] for s in made]
    # One at a time: the failure is known before the third snapshot could start.
    stopped = await run_tests(wire, snapshot_ids=ids, mode="live", stop_on_first_failure=True,
                              concurrency=1)
    assert stopped["status"] == "failed"
    assert statuses(stopped) == ["passed", "failed", "skipped"]
    assert "stop_on_first_failure" in stopped["snapshots"][2]["message"]
    assert stopped["snapshots"][2]["run_ids"] == []
    failed = stopped["snapshots"][1]
    assert [c["status"] for c in failed["invariants"]] == ["passed", "failed"]
    assert failed["message"].startswith("contains")
    # Without the flag every snapshot runs.
    every = await run_tests(wire, snapshot_ids=ids, mode="live")
    assert statuses(every) == ["passed", "failed", "passed"]
    assert every["summary"] == {"total": 3, "passed": 2, "failed": 1, "errors": 0,
                                "skipped": 0, "budget_exceeded": 0}


async def test_passed_failed_and_errored_snapshots_are_counted_apart(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    good = await snapshot_of_run(wire, "count-good", priced("countgood", 2), tags=["suite"])
    bad = await snapshot_of_run(wire, "count-bad", priced("countbad", 2), invariants=FAILS,
                                tags=["suite"])
    # Made from a pipeline alone: no cassette, so a recorded replay cannot start.
    broken = await snapshot(wire, "count-broken", priced("countbroken", 2), tags=["suite"])
    result = await run_tests(wire, tags=["suite"])  # mode recorded, the default
    by_name = {s["name"]: s for s in result["snapshots"]}
    assert {name: s["status"] for name, s in by_name.items()} == {
        "count-good": "passed", "count-bad": "failed", "count-broken": "error"}
    assert result["summary"] == {"total": 3, "passed": 1, "failed": 1, "errors": 1,
                                 "skipped": 0, "budget_exceeded": 0}
    assert result["status"] == "error"  # errors outrank failures: the verdict is unsure
    assert "cassette" in by_name["count-broken"]["message"]
    assert by_name["count-broken"]["snapshot_id"] == broken["id"]
    assert {good["id"], bad["id"]} <= {s["snapshot_id"] for s in result["snapshots"]}
    assert result["total_cost_usd"] == 0.0  # recorded: served from the cassettes


async def test_metrics_delta_compares_the_replay_with_the_reference(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot_of_run(wire, "deltas", priced("deltas", 2))
    baseline = made["reference"]["metrics"]
    assert baseline["cost_usd"] == pytest.approx(2 * CALL_USD)
    recorded = await run_tests(wire, snapshot_ids=[made["id"]])
    deltas = recorded["snapshots"][0]["metrics_delta"]
    # Served from the cassette: the same work at no cost.
    assert deltas["cost_usd"] == {"baseline": baseline["cost_usd"], "replay": 0.0,
                                  "delta": -baseline["cost_usd"]}
    for same in ("tokens", "calls", "model_calls", "stages", "nodes_visited"):
        assert deltas[same]["delta"] == 0, same
        assert deltas[same]["replay"] == deltas[same]["baseline"] == baseline[same]
    assert "status" not in deltas and "outcome" not in deltas  # not numbers
    live = await run_tests(wire, snapshot_ids=[made["id"]], mode="live")
    assert live["snapshots"][0]["metrics_delta"]["cost_usd"]["delta"] == 0.0
    assert live["total_cost_usd"] == pytest.approx(2 * CALL_USD)
    # A snapshot of a pipeline alone has no reference to compare with.
    alone = await snapshot(wire, "no-reference", priced("noreference", 1))
    result = await run_tests(wire, snapshot_ids=[alone["id"]], mode="live")
    assert result["snapshots"][0]["metrics_delta"] == {}


async def test_a_selection_that_matches_nothing_is_refused(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot(wire, "lonely", priced("lonely", 1))
    missing = await wire.request("tests.run", {"snapshot_ids": [made["id"], "nope"]})
    assert missing["error"]["code"] == -32001 and "nope" in missing["error"]["message"]
    no_tag = await wire.request("tests.run", {"tags": ["no-such-tag"]})
    assert no_tag["error"]["code"] == -32001
    both = await wire.request("tests.run", {"all": True, "tags": ["x"]})
    assert both["error"]["code"] == -32602
    neither = await wire.request("tests.run", {})
    assert neither["error"]["code"] == -32602
    # More tags than a snapshot can hold: refused as such, not an internal error.
    many = await wire.request("tests.run", {"tags": [f"t{i}" for i in range(3000)]})
    assert many["error"]["code"] == -32602
    unknown = await wire.request("tests.get", {"test_run_id": "nope"})
    assert unknown["error"]["code"] == -32001


async def test_max_snapshots_and_latest_versions(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await snapshot(wire, "v-a", priced("va", 1), tags=["v"], invariants=FAILS)
    newer = await snapshot(wire, "v-a", priced("va", 1), tags=["v"])  # version 2
    other = await snapshot(wire, "v-b", priced("vb", 1), tags=["v"])
    every = await run_tests(wire, tags=["v"], mode="live")
    assert {(s["name"], s["version"]) for s in every["snapshots"]} == {("v-a", 2),
                                                                         ("v-b", 1)}
    assert {s["snapshot_id"] for s in every["snapshots"]} == {newer["id"], other["id"]}
    one = await run_tests(wire, all=True, max_snapshots=1, mode="live")
    assert one["summary"]["total"] == 1
    assert one["selector"] == {"all": True, "max_snapshots": 1}


async def test_a_failing_replay_without_invariants_fails(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot(wire, "implicit", FAILING, invariants=[])
    result = await run_tests(wire, snapshot_ids=[made["id"]], mode="live")
    checks = result["snapshots"][0]["invariants"]
    assert result["status"] == "failed"
    assert [(c["type"], c["status"]) for c in checks] == [("run_status", "failed")]
    assert checks[0]["description"].startswith("implicit")


async def test_tests_list_pages_newest_first(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = await snapshot(wire, "listed", priced("listed", 1), invariants=PASSES)
    ids = [(await run_tests(wire, snapshot_ids=[made["id"]], mode="live"))["test_run_id"]
           for _ in range(3)]
    first = await wire.result("tests.list", {"limit": 2})
    assert [t["test_run_id"] for t in first["test_runs"]] == ids[::-1][:2]
    assert first["test_runs"][0]["summary"]["passed"] == 1
    rest = await wire.result("tests.list", {"limit": 2, "cursor": first["next_cursor"]})
    assert [t["test_run_id"] for t in rest["test_runs"]] == [ids[0]]
    assert rest["next_cursor"] is None
    failed = await wire.result("tests.list", {"status": ["failed"]})
    assert failed["test_runs"] == []
    for cursor in ("not-a-cursor", NOT_A_LIST, ONE_KEY):
        bad = await wire.request("tests.list", {"cursor": cursor})
        assert bad["error"]["code"] == -32602, cursor


async def test_progress_and_events_as_snapshots_finish(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = [await snapshot(wire, f"prog-{i}", priced(f"prog{i}", 1)) for i in range(3)]
    watcher = await daemon.connect()  # another client, subscribed to every test run
    await watcher.result("tests.subscribe", {"test_run_id": "*"})
    # One at a time, so the events alternate (tests/test_tests_run_parallel.py: side by side).
    result = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                             "mode": "live", "wait": True, "concurrency": 1,
                                             "workDoneToken": "tok"})
    progress = [n["params"]["value"] for n in wire.notifications
                if n["method"] == "$/progress" and n["params"]["token"] == "tok"]
    assert [p["kind"] for p in progress] == ["begin", "report", "report", "report", "end"]
    assert [p["percentage"] for p in progress[1:4]] == [33, 66, 100]
    assert progress[1]["message"] == "1/3 prog-0 v1: passed"
    assert result["status"] in progress[-1]["message"]
    # The caller was subscribed to its own test run's events before the answer.
    events = [n["params"] for n in wire.notifications if n["method"] == "tests/event"]
    assert [e["type"] for e in events] == ["SnapshotStarted", "SnapshotFinished"] * 3 + [
        "TestRunFinished"]
    assert [e["seq"] for e in events] == list(range(1, 8))
    assert {e["test_run_id"] for e in events} == {result["test_run_id"]}
    finished = [e["data"] for e in events if e["type"] == "SnapshotFinished"]
    assert finished == result["snapshots"]
    assert events[-1]["data"]["summary"] == result["summary"]
    seen = []
    while len(seen) < 7:
        message = await watcher.recv()
        if message.get("method") == "tests/event":
            seen.append(message["params"])
    assert seen == events


@pytest.mark.parametrize("trials", [1, 3])
async def test_cancel_stops_the_replay_in_progress_and_keeps_what_finished(
        daemon: InProcessDaemon, short_tmp: Path, trials: int) -> None:
    wire = await daemon.connect()
    fifo = make_fifo(short_tmp / "announce")
    made = [await snapshot(wire, "cancel-quick", priced("cancelquick", 1)),
            await snapshot(wire, "cancel-blocked", blocking(fifo)),
            await snapshot(wire, "cancel-never", priced("cancelnever", 1))]
    started = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                              "mode": "live", "trials": trials,
                                              "concurrency": 1})
    assert started["status"] == "running"
    assert statuses(started) == ["pending"] * 3
    await read_fifo(fifo)  # the second snapshot's tool is running
    cancelled = await wire.result("tests.cancel", {"test_run_id": started["test_run_id"]})
    assert cancelled["status"] == "cancelled"
    assert statuses(cancelled) == ["passed", "skipped", "skipped"]
    assert "cancelled" in cancelled["snapshots"][1]["message"]
    # Every run the cut-off snapshot started was cancelled (a trial set starts no more).
    blocked = (await wire.result("run.list", {"pipeline": "blocking"}))["runs"]
    assert {r["status"] for r in blocked} == {"cancelled"}
    assert sorted(cancelled["snapshots"][1]["run_ids"]) == sorted(r["run_id"] for r in blocked)
    assert len(blocked) <= trials
    again = await wire.request("tests.cancel", {"test_run_id": started["test_run_id"]})
    assert again["error"]["code"] == -32004
