"""snapshot.replay through a real daemon: a recorded replay reproduces the source run at zero
cost from the snapshot's own cassette and changes neither the snapshot nor that run; live
and hybrid replays call the models; trial sets; a replay resumed after a cancel reloads its
cassette through the snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import (
    blocking,
    dot,
    make_fifo,
    next_event,
    of_type,
    read_fifo,
    response_to,
    send_request,
)
from .snapshots_support import (
    BRIEF,
    CONFLICT,
    INPUTS,
    INVALID_PARAMS,
    PRICED,
    REWRITTEN,
    brief_run,
    create,
    error,
    get,
    outputs,
    replay,
)
from .support import Wire

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]

SOURCE_TEXT = "The brief: tides follow the moon."
GATE = dot("""
    digraph gate {
        start [shape=Mdiamond]
        draft [prompt="Draft the notes", scripted.usage="10,10"]
        review [shape=hexagon, label="Ship it?"]
        ship [prompt="Ship the notes", scripted.usage="10,10"]
        done [shape=Msquare]
        start -> draft -> review
        review -> ship [label="[Y] Yes"]
        ship -> done
    }
""")


async def snapshot_of_a_run(wire: Wire) -> tuple[dict[str, Any], dict[str, Any]]:
    run = await brief_run(wire)
    return run, await create(wire, run_id=run["run_id"], name="brief", tags=["smoke"])


async def test_a_recorded_replay_reproduces_the_run_at_zero_cost_and_changes_nothing(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run, snapshot = await snapshot_of_a_run(wire)
    before = await get(wire, snapshot["id"], include_cassette=True)
    source_before = await wire.result("run.get", {"run_id": run["run_id"]})

    replayed = await replay(wire, snapshot["id"], mode="recorded")

    assert (replayed["status"], replayed["outcome"]) == ("completed", "success")
    assert replayed["run_id"] != run["run_id"] and replayed["snapshot_id"] == snapshot["id"]
    assert replayed["cost_usd"] == 0.0  # the source run cost $65
    assert (replayed["input_tokens"], replayed["output_tokens"]) == (15, 25)
    assert replayed["pipeline_hash"] == run["pipeline_hash"]
    assert await outputs(wire, replayed["run_id"]) == await outputs(wire, run["run_id"])
    launch = json.loads((Path(replayed["run_dir"]) / "config" / "launch.json").read_text())
    assert (launch["snapshot_id"], launch["replay_mode"]) == (snapshot["id"], "recorded")
    assert launch["inputs"] == INPUTS
    # Nothing the replay did reached the snapshot or the run it was made from.
    assert await get(wire, snapshot["id"], include_cassette=True) == before
    assert await wire.result("run.get", {"run_id": run["run_id"]}) == source_before
    listed = (await wire.result("run.list", {}))["runs"]
    assert [r["snapshot_id"] for r in listed] == [snapshot["id"], None]

    # Recorded means from the cassette: a changed script is not consulted.
    again = await replay(wire, snapshot["id"], mode="recorded", overrides=REWRITTEN)
    assert (await outputs(wire, again["run_id"]))["write"] == SOURCE_TEXT
    assert again["cost_usd"] == 0.0


async def test_live_and_hybrid_replays_call_the_models(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    _, snapshot = await snapshot_of_a_run(wire)

    live = await replay(wire, snapshot["id"], mode="live", overrides=REWRITTEN)
    assert (live["status"], live["cost_usd"]) == ("completed", 65.0)
    assert (await outputs(wire, live["run_id"]))["write"] == "The brief: tides are wind."

    # Another topic: `research` is asked something the cassette does not hold and goes
    # live ($50); `count` and `write` are asked what it holds and are served from it.
    hybrid = await replay(wire, snapshot["id"], mode="hybrid", inputs={"topic": "waves"})
    assert (hybrid["status"], hybrid["cost_usd"]) == ("completed", 50.0)
    served = await outputs(wire, hybrid["run_id"])
    assert served["research"] == "[scripted] Research waves"
    assert served["write"] == SOURCE_TEXT
    recorded = await replay(wire, snapshot["id"], mode="recorded", inputs={"topic": "waves"})
    assert (recorded["status"], recorded["cost_usd"]) == ("failed", 0.0)
    assert "replay diverged at node 'research'" in recorded["failure_reason"]

    bad = await error(wire, "snapshot.replay", {"id": snapshot["id"], "mode": "live",
                                                "overrides": {"max_parallel": 0}})
    assert bad["code"] == INVALID_PARAMS and bad["data"][0]["loc"] == ["overrides",
                                                                       "max_parallel"]


async def test_a_snapshot_without_cassette_replays_live_only(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    snapshot = await create(wire, name="setup", pipeline=BRIEF, inputs=INPUTS, settings=PRICED)

    refused = await error(wire, "snapshot.replay", {"id": snapshot["id"], "mode": "recorded"})
    assert refused["code"] == CONFLICT
    assert refused["message"] == (
        f"snapshot {snapshot['id']} (setup v1) has no cassette to replay from: it was made "
        "from a pipeline, or from a run recorded metadata_only; replay it with mode live or "
        "hybrid")
    assert (await wire.result("run.list", {}))["runs"] == []  # nothing started
    for mode in ("live", "hybrid"):  # hybrid without a recording: every call live
        replayed = await replay(wire, snapshot["id"], mode=mode)
        assert (replayed["status"], replayed["cost_usd"]) == ("completed", 65.0)


async def test_a_replay_with_trials_is_a_trial_set_of_replays(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    _, snapshot = await snapshot_of_a_run(wire)

    trial_set = await replay(wire, snapshot["id"], mode="recorded", trials=3, concurrency=2)

    assert (trial_set["trials"], trial_set["passed"], trial_set["verdict"]) == (3, 3, "passed")
    assert trial_set["cost_usd"] == 0.0
    for trial in trial_set["trial_runs"]:
        run = await wire.result("run.get", {"run_id": trial["run_id"]})
        assert run["snapshot_id"] == snapshot["id"]
        assert (await outputs(wire, run["run_id"]))["write"] == SOURCE_TEXT


async def test_a_cancelled_replay_resumes_from_the_snapshots_cassette(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    run = await wire.result("run.start", {"pipeline": GATE, "wait": True, "settings": {
        **PRICED, "human": {"auto_approve": True}}})
    assert (run["status"], run["cost_usd"]) == ("completed", 60.0)
    snapshot = await create(wire, run_id=run["run_id"], name="gate")
    asking = {"human": {"auto_approve": False}}  # the replay stops at the gate

    async def waiting_replay() -> str:
        started = await wire.result("snapshot.replay", {"id": snapshot["id"],
                                                        "overrides": asking})
        await next_event(wire, of_type("InterviewStarted", stage="review"))
        cancelled = await wire.result("run.cancel", {"run_id": started["run_id"]})
        assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True)
        return started["run_id"]

    run_id = await waiting_replay()
    resume = await send_request(wire, "run.resume", {"run_id": run_id, "wait": True})
    asked = await next_event(wire, of_type("InterviewStarted", stage="review"))
    person = await daemon.connect()
    await person.result("human.answer", {"run_id": run_id, "answer": "Y",
                                         "question_id": asked["data"]["question"]["question_id"]})
    resumed = (await response_to(wire, resume))["result"]
    assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    assert (resumed["cost_usd"], resumed["snapshot_id"]) == (0.0, snapshot["id"])
    assert (await outputs(wire, run_id))["ship"] == "[scripted] Ship the notes"

    orphan = await waiting_replay()
    await person.result("snapshot.delete", {"id": snapshot["id"], "confirm": True})
    refused = await error(person, "run.resume", {"run_id": orphan})
    assert refused["code"] == CONFLICT and "was deleted" in refused["message"]


async def test_cancelling_a_waiting_replay_request_leaves_the_replay_to_others(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    """$/cancelRequest ends the request that waited on the replay, not the replay: it keeps
    running, and run.cancel from another client answers with its summary."""
    wire = await daemon.connect()
    fifo = make_fifo(short_tmp / "announce")
    snapshot = await create(wire, name="blocked", pipeline=blocking(fifo))
    waiting = await send_request(wire, "snapshot.replay", {"id": snapshot["id"],
                                                           "mode": "live", "wait": True})
    await read_fifo(fifo)  # the replay's tool is running
    await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": waiting}})
    assert (await response_to(wire, waiting))["error"]["code"] == -32800
    [replayed] = (await wire.result("run.list", {"pipeline": "blocking"}))["runs"]
    assert replayed["status"] == "running"
    other = await daemon.connect()
    cancelled = await other.result("run.cancel", {"run_id": replayed["run_id"]})
    assert (cancelled["status"], cancelled["snapshot_id"]) == ("cancelled", snapshot["id"])
