"""Interrupting runs: a SIGKILLed daemon's run resumes on the next daemon to the result of an
uninterrupted run, leaving no torn file behind; run.cancel stops a run blocked in a tool,
kills the tool and leaves the run resumable.

The slow node is a tool that announces its pid through a FIFO the test reads (so the test
knows, without polling, that the run is inside it) and then blocks in `sleep 30`, unless a
`go` file the test controls exists: after the interruption the test creates it, so the
resumed node completes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .runs_support import (
    FAST,
    check_files_parse,
    dot,
    events,
    make_fifo,
    next_event,
    of_type,
    process_gone,
    read_fifo,
    read_json,
    run_to_end,
    trace,
    visits,
)
from .support import WAIT, DaemonProcess, start_daemon

CONFLICT, NOT_FOUND = -32004, -32001
# The scripted provider at a real price, so that a call served from a recording (free) and
# a live one can be told apart.
PRICED = {**FAST, "pricing": {"models": {"scripted/*": {"input_per_mtok": 3.0,
                                                        "output_per_mtok": 15.0}}}}

# Every test here runs once on each executor, the daemons it starts itself included.
pytestmark = pytest.mark.usefixtures("every_daemon_on")


def blocking_pipeline(go: Path, fifo: Path) -> dict[str, str]:
    return dot(f"""\
        digraph interrupted {{
            graph [goal="Survive a crash"]
            start [shape=Mdiamond]
            prep [prompt="Prepare for: $goal",
                  scripted.context_updates="{{\\"prep.items\\": [1, 2, 3]}}"]
            slow [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            check [shape=diamond]
            after [prompt="Wrap up", scripted.response="wrapped"]
            skipped [prompt="Never"]
            done [shape=Msquare]
            start -> prep -> slow -> check
            check -> after [condition="outcome=success"]
            check -> skipped [condition="outcome=fail"]
            after -> done
            skipped -> done
        }}""")


def kill_orphan(pid: int) -> None:
    """The tool outlives a SIGKILLed daemon (it has its own session): end it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


async def kill_mid_run(home: Path, socket: str, pipeline: dict[str, str],
                       fifo: Path, settled: Callable[[dict[str, Any]], bool] | None = None,
                       **params: Any) -> dict[str, Any]:
    """Start a daemon and a run (more run.start `params` given), SIGKILL the daemon while
    the tool blocks (and, given `settled`, once it holds for the run's summary: work beside
    the tool is committed within a few ms of its end); the run's run.start summary."""
    first = await start_daemon(home, "--socket", socket)
    wire = await first.connect()
    started = await wire.result("run.start", {"pipeline": pipeline, "settings": FAST,
                                              **params})
    pid = int(await read_fifo(fifo))  # prep is done, the tool is blocked
    if settled is not None:
        async with asyncio.timeout(WAIT):
            while not settled(started):
                await asyncio.sleep(0.01)
    first.process.kill()
    assert await first.stop() == -signal.SIGKILL
    kill_orphan(pid)
    return started


async def test_a_run_killed_with_its_daemon_resumes_to_the_uninterrupted_result(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = blocking_pipeline(go, fifo)
    started = await kill_mid_run(home, socket, pipeline, fifo)

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        run_id = started["run_id"]
        found = await wire.result("run.get", {"run_id": run_id})
        assert (found["status"], found["resumable"]) == ("interrupted", True)
        assert found["completed_nodes"] == ["start", "prep"]
        assert found["current_node"] == "prep"
        assert visits(found) == ["start", "prep"]  # the killed node left no stage
        assert read_json(found, "manifest.json")["status"] == "interrupted"
        listed = await wire.result("run.list", {"status": ["interrupted"]})
        assert [r["run_id"] for r in listed["runs"]] == [run_id]

        await wire.result("run.subscribe", {"run_id": run_id})
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert (resumed["status"], resumed["outcome"], resumed["resumable"]) == (
            "completed", "success", False)
        [event] = events(wire, run_id, "PipelineResumed")
        assert (event["data"]["from_node"], event["data"]["next_node"]) == ("prep", "slow")
        detail = await wire.result("run.get", {"run_id": run_id})

        fresh = await run_to_end(wire, pipeline)
        assert fresh["pipeline_hash"] == detail["pipeline_hash"]
        assert (detail["status"], detail["outcome"]) == (fresh["status"], fresh["outcome"])
        assert detail["completed_nodes"] == fresh["completed_nodes"] == [
            "start", "prep", "slow", "check", "after", "done"]
        assert visits(detail) == visits(fresh)  # prep did not run twice
        assert [s["seq"] for s in detail["stages"]] == list(range(1, 7))
        assert detail["context"] == fresh["context"]
        # The totals count the calls of both daemons' parts of the run.
        assert (detail["input_tokens"], detail["output_tokens"]) == (
            fresh["input_tokens"], fresh["output_tokens"])
        assert fresh["input_tokens"] > 0
        assert detail["context"]["prep.items"] == [1, 2, 3]
        manifest = read_json(detail, "manifest.json")
        assert (manifest["status"], manifest["outcome"]) == ("completed", "success")
        again = await wire.request("run.resume", {"run_id": run_id})
        assert again["error"]["code"] == CONFLICT
    finally:
        assert await second.stop() == 0, "".join(second.log)

    # No torn file anywhere in the home, the killed daemon's included.
    checked = check_files_parse(home)
    killed = Path(detail["run_dir"])
    assert {home / "run_manifest.jsonl", killed / "checkpoint.json", killed / "trace.jsonl",
            killed / "manifest.json", killed / "prep" / "status.json",
            killed / "config" / "launch.json"} <= set(checked)
    assert not list(home.rglob("*.tmp"))  # no write was left half-done


async def test_a_checkpoint_behind_the_store_resumes_by_running_the_node_again(
        short_tmp: Path) -> None:
    """The daemon can die after a stage is in the store and before the checkpoint after it
    is written (or be cancelled while that stage's write is in flight). Such a run resumes
    from the checkpoint it has: the node runs again, as a new stage."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = blocking_pipeline(go, fifo)
    started = await kill_mid_run(home, socket, pipeline, fifo)
    # Put the checkpoint back where it stood before prep ended: prep's stage is recorded,
    # the checkpoint does not know it.
    path = Path(started["run_dir"]) / "checkpoint.json"
    checkpoint = json.loads(path.read_text())
    assert checkpoint["completed_nodes"] == ["start", "prep"]
    checkpoint.update(current_node="start", next_node="prep", completed_nodes=["start"],
                      completed_count=1,
                      node_outcomes={"start": "success"},
                      stage_seq=checkpoint["stage_seq"] - 1)
    path.write_text(json.dumps(checkpoint))

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"],
                                                   "wait": True})
        assert (resumed["status"], resumed["outcome"], resumed["failure_reason"]) == (
            "completed", "success", None)
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        assert [(s["seq"], s["node_id"]) for s in detail["stages"]] == list(enumerate(
            ["start", "prep", "prep", "slow", "check", "after", "done"], 1))
        assert detail["completed_nodes"] == ["start", "prep", "slow", "check", "after",
                                             "done"]
    finally:
        assert await second.stop() == 0, "".join(second.log)


async def test_cancel_kills_a_blocked_tool_and_leaves_the_run_resumable(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    go, fifo = tmp_path / "go", make_fifo(tmp_path / "announce")
    started = await wire.result("run.start", {"pipeline": blocking_pipeline(go, fifo),
                                              "settings": FAST})
    run_id = started["run_id"]
    pid = int(await read_fifo(fifo))
    assert not process_gone(pid)
    await next_event(wire, of_type("StageStarted", name="slow"))

    cancelled = await wire.result("run.cancel", {"run_id": run_id})
    # run.cancel answers once the run has stopped and the tool's process group was killed
    # and reaped.
    assert process_gone(pid)
    assert (cancelled["status"], cancelled["resumable"], cancelled["outcome"]) == (
        "cancelled", True, None)
    assert cancelled["ended_at"] is not None
    await next_event(wire, of_type("PipelineCancelled", reason="cancelled"))
    detail = await wire.result("run.get", {"run_id": run_id})
    assert visits(detail) == ["start", "prep"] and detail["current_node"] == "prep"
    assert read_json(detail, "manifest.json")["status"] == "cancelled"
    checkpoint = read_json(detail, "checkpoint.json")
    assert (checkpoint["current_node"], checkpoint["next_node"]) == ("prep", "slow")
    again = await wire.request("run.cancel", {"run_id": run_id})
    assert again["error"]["code"] == NOT_FOUND
    assert (await wire.result("daemon.status"))["active_runs"] == 0


def fanout_pipeline(go: Path, fifo: Path) -> dict[str, str]:
    """Three branches run one at a time; the last blocks until `go` exists."""
    return dot(f"""\
        digraph fanned {{
            start [shape=Mdiamond]
            par [shape=component, max_parallel=1]
            a [prompt="Variant A"]
            b [prompt="Variant B", scripted.usage="7,3"]
            slow [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            join [shape=tripleoctagon]
            done [shape=Msquare]
            start -> par
            par -> a -> join
            par -> b -> join
            par -> slow -> join
            join -> done
        }}""")


async def test_a_run_killed_mid_fan_out_runs_only_the_unfinished_branches_again(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = fanout_pipeline(go, fifo)
    started = await kill_mid_run(home, socket, pipeline, fifo)
    checkpoint = json.loads((Path(started["run_dir"]) / "checkpoint.json").read_text())
    assert checkpoint["next_node"] == "par"
    assert checkpoint["parallel"] == {"node": "par", "branches_done": 2, "branches": 3,
                                      "journal": "branches.jsonl"}

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"],
                                                   "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        fresh = await run_to_end(wire, pipeline)
    finally:
        assert await second.stop() == 0, "".join(second.log)
    # a and b ran once, before the crash; only slow ran after it.
    assert sorted(visits(detail)) == sorted(visits(fresh))
    assert visits(detail).count("a") == visits(detail).count("b") == 1
    assert detail["completed_nodes"] == fresh["completed_nodes"] == [
        "start", "par", "join", "done"]
    results = detail["context"]["parallel.results"]
    assert [(r["id"], r["status"]) for r in results] == [
        (r["id"], r["status"]) for r in fresh["context"]["parallel.results"]]
    assert (detail["input_tokens"], detail["output_tokens"]) == (
        fresh["input_tokens"], fresh["output_tokens"])
    check_files_parse(home)


async def record_priced(home: Path, socket: str, pipeline: dict[str, str]) -> dict[str, Any]:
    """A completed run of `pipeline` at a price (the recording a replay serves), on a
    daemon of its own; its run.get detail."""
    daemon = await start_daemon(home, "--socket", socket)
    try:
        original = await run_to_end(await daemon.connect(), pipeline, settings=PRICED)
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)
    assert (original["status"], original["outcome"]) == ("completed", "success")
    return original


async def resume_to_end(home: Path, socket: str, run_id: str, go: Path,
                        replayed: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """On a new daemon, unblock the tool (`go`) and resume the run to its end; the run's
    detail and that of the run it replays (`replayed`)."""
    daemon = await start_daemon(home, "--socket", socket)
    try:
        wire = await daemon.connect()
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": run_id})
        original = await wire.result("run.get", {"run_id": replayed})
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)
    return detail, original


def served_model_calls(detail: dict[str, Any], original: dict[str, Any]) -> list[str]:
    """The nodes of the replay's model calls, each checked to be the recording's answer at
    no cost."""
    recorded = {c["node_id"]: c for c in trace(original) if c["kind"] == "model"}
    replayed = [c for c in trace(detail) if c["kind"] == "model"]
    assert all(c["cost_usd"] == 0.0 for c in replayed)  # every one from the recording
    assert all(c["response"]["text"] == recorded[c["node_id"]]["response"]["text"]
               for c in replayed)
    assert detail["cost_usd"] == 0.0
    return [c["node_id"] for c in replayed]


async def test_a_replay_resumed_behind_its_store_serves_the_rerun_node_from_its_recording(
        short_tmp: Path) -> None:
    """A hybrid replay killed in its live tool, with its checkpoint behind the store (prep's
    served call recorded, the checkpoint not yet knowing prep). The resume runs prep again:
    the recording serves it again, as it serves `after`; only the changed tool is live."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    fifo = make_fifo(short_tmp / "announce")
    recorded_go, replay_go = short_tmp / "go", short_tmp / "go-replay"
    recorded_go.touch()
    original = await record_priced(home, socket, blocking_pipeline(recorded_go, fifo))
    # The tool's command names another file: the recording has no call for it (live).
    started = await kill_mid_run(home, socket, blocking_pipeline(replay_go, fifo), fifo,
                                 settings=PRICED, replay={"from_run": original["run_id"],
                                                          "mode": "hybrid"})
    path = Path(started["run_dir"]) / "checkpoint.json"
    checkpoint = json.loads(path.read_text())
    assert [entry["node"] for entry in checkpoint["logs"]] == ["start", "prep"]
    # The checkpoint written after start: prep's context updates and call not yet in it.
    context = {key: value for key, value in checkpoint["context"].items()
               if not key.startswith(("prep.", "last_"))}
    context.update(current_node="start", outcome="success")
    checkpoint.update(current_node="start", next_node="prep", completed_nodes=["start"],
                      completed_count=1, node_outcomes={"start": "success"},
                      stage_seq=checkpoint["stage_seq"] - 1, context=context,
                      calls={"start": 1}, call_seq=checkpoint["call_seq"] - 1,
                      logs=checkpoint["logs"][:1])
    path.write_text(json.dumps(checkpoint))

    detail, original = await resume_to_end(home, socket, started["run_id"], replay_go,
                                           original["run_id"])
    assert detail["completed_nodes"] == original["completed_nodes"]
    assert detail["context"] == original["context"]
    # prep twice (the abandoned call and its re-run), after once: all from the recording.
    assert served_model_calls(detail, original) == ["prep", "prep", "after"]
    assert original["cost_usd"] > 0  # priced: a live call would have cost


async def test_a_replay_killed_mid_fan_out_serves_the_unfinished_branch_again(
        short_tmp: Path) -> None:
    """A hybrid replay killed while one branch blocks in its live tool: that branch's model
    call, made before the tool, is open in the checkpoint. The resume runs the branch again
    and its recording serves the call again."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    fifo = make_fifo(short_tmp / "announce")
    recorded_go, replay_go = short_tmp / "go", short_tmp / "go-replay"
    recorded_go.touch()

    def fan(go: Path) -> dict[str, str]:
        return dot(f"""\
            digraph fan {{
                start [shape=Mdiamond]
                par [shape=component, max_parallel=2]
                x [prompt="Explore"]
                slow [shape=parallelogram,
                      tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
                b [prompt="Build"]
                join [shape=tripleoctagon]
                done [shape=Msquare]
                start -> par
                par -> x
                par -> b
                x -> slow -> join
                b -> join
                join -> done
            }}""")

    def x_call_open(started: dict[str, Any]) -> bool:
        """b's end is checkpointed (within a few ms of it), and with it x's call, open."""
        path = Path(started["run_dir"]) / "checkpoint.json"
        checkpoint = json.loads(path.read_text()) if path.exists() else {}
        made = [c["seq"] for c in trace(started) if c["node_id"] == "x"]
        return bool(made) and made[0] in checkpoint.get("open_calls", ())

    original = await record_priced(home, socket, fan(recorded_go))
    started = await kill_mid_run(home, socket, fan(replay_go), fifo, x_call_open,
                                 settings=PRICED,
                                 replay={"from_run": original["run_id"], "mode": "hybrid"})
    checkpoint = json.loads((Path(started["run_dir"]) / "checkpoint.json").read_text())
    [x_call] = [c["seq"] for c in trace(started) if c["node_id"] == "x"]
    assert x_call in checkpoint["open_calls"]

    detail, original = await resume_to_end(home, socket, started["run_id"], replay_go,
                                           original["run_id"])
    assert detail["completed_nodes"] == original["completed_nodes"]
    # x twice (abandoned, and made again): every call from the recording.
    assert served_model_calls(detail, original).count("x") == 2


async def test_a_replay_interrupted_twice_mid_fan_out_still_serves_the_cut_short_branch(
        short_tmp: Path) -> None:
    """Two branches block in live tools; the daemon is killed, the resume lets one finish
    and is killed again while the other blocks once more. The calls the first interruption
    cut short stay open across the second, so the third daemon's recording serves the
    branch again rather than asking the model."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    fifos = {name: make_fifo(short_tmp / f"announce-{name}") for name in ("x", "c")}

    def fan(go: dict[str, Path]) -> dict[str, str]:
        tools = "\n".join(
            f'slow_{name} [shape=parallelogram, tool_command="test -e {go[name]} && exit 0;'
            f' echo $$ > {fifos[name]}; exec sleep 30"]' for name in ("x", "c"))
        return dot(f"""\
            digraph fan {{
                start [shape=Mdiamond]
                par [shape=component, max_parallel=3]
                x [prompt="Explore"]
                c [prompt="Compare"]
                b [prompt="Build"]
                {tools}
                join [shape=tripleoctagon]
                done [shape=Msquare]
                start -> par
                par -> x
                par -> b
                par -> c
                x -> slow_x -> join
                c -> slow_c -> join
                b -> join
                join -> done
            }}""")

    recorded_go = {name: short_tmp / f"go-{name}" for name in ("x", "c")}
    replay_go = {name: short_tmp / f"go-replay-{name}" for name in ("x", "c")}
    for path in recorded_go.values():
        path.touch()
    original = await record_priced(home, socket, fan(recorded_go))

    async def kill_when_blocked(daemon: DaemonProcess, names: tuple[str, ...]) -> None:
        pids = [int(await read_fifo(fifos[name])) for name in names]
        daemon.process.kill()
        assert await daemon.stop() == -signal.SIGKILL
        for pid in pids:
            kill_orphan(pid)

    second = await start_daemon(home, "--socket", socket)
    started = await (await second.connect()).result("run.start", {
        "pipeline": fan(replay_go), "settings": PRICED,
        "replay": {"from_run": original["run_id"], "mode": "hybrid"}})
    await kill_when_blocked(second, ("x", "c"))
    replay_go["x"].touch()
    third = await start_daemon(home, "--socket", socket)
    wire = await third.connect()
    await wire.result("run.subscribe", {"run_id": started["run_id"]})
    await wire.result("run.resume", {"run_id": started["run_id"]})
    # x's branch is recorded and checkpointed: only c's calls are open in that checkpoint.
    await next_event(wire, of_type("ParallelBranchCompleted", branch="x"))
    await kill_when_blocked(third, ("c",))

    detail, original = await resume_to_end(home, socket, started["run_id"], replay_go["c"],
                                           original["run_id"])
    # c twice cut short, then done: every call from the recording.
    assert served_model_calls(detail, original).count("c") == 3
