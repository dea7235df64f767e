"""The manager loop (attractor §4.11) through the daemon: a `stack.manager_loop` node
supervises a child run linked to its parent both ways, in lockstep, one child node per
cycle; the child's end, the stop condition, max_cycles and the model's decisions end the
node; steering reaches the child's requests; cancel, shutdown, kill -9, resume and replay
treat the pair as one.

Child pipelines are files (`stack.child_dotfile` is a path); a child that must block uses a
tool that announces its pid through a FIFO and sleeps until a `go` file exists, as in
test_runs_resume.py.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import (
    FAST,
    INVALID_PIPELINE,
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
    when,
)
from .support import Wire, start_daemon
from .test_runs_resume import kill_orphan

CONFLICT = -32004
PRICED = {**FAST, "pricing": {"models": {"scripted/*": {"input_per_mtok": 3.0,
                                                        "output_per_mtok": 15.0}}}}

CHILD = """\
digraph child {
    start [shape=Mdiamond]
    one [prompt="Step one"]
    two [prompt="Step two"]
    three [prompt="Step three"]
    done [shape=Msquare]
    start -> one -> two -> three -> done
}
"""
CHILD_NODES = ["start", "one", "two", "three", "done"]

FAILING_CHILD = """\
digraph failing_child {
    start [shape=Mdiamond]
    one [prompt="Step one"]
    two [prompt="Step two", scripted.status="fail", max_retries=0]
    done [shape=Msquare]
    start -> one -> two -> done
}
"""


def blocking_child(go: Path, fifo: Path) -> str:
    """A child whose node `slow` announces its pid in `fifo` and blocks until `go` exists."""
    return f"""\
digraph blocking_child {{
    start [shape=Mdiamond]
    one [prompt="Step one"]
    slow [shape=parallelogram,
          tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
    three [prompt="Step three"]
    done [shape=Msquare]
    start -> one -> slow -> three -> done
}}
"""


def child_file(root: Path, source: str = CHILD, name: str = "child.dot") -> Path:
    """The child pipeline as a file (the manager names it by path)."""
    path = root / name
    path.write_text(source)
    return path


def parent(child: Path, boss: str = "", after: str = "", name: str = "parent") -> dict[str, str]:
    """start -> boss (a manager of `child`, with `boss` attributes) -> report -> done;
    `after`: more statements."""
    return dot(f"""\
        digraph {name} {{
            graph [stack.child_dotfile="{child}"]
            start [shape=Mdiamond]
            boss [shape=house{", " + boss if boss else ""}]
            report [prompt="Report"]
            done [shape=Msquare]
            start -> boss -> report -> done
            {after}
        }}""")


def steering(actions: list[str], message: str = "Be brief") -> str:
    """A manager whose model decides each cycle: `actions`, one per call."""
    script = json.dumps(json.dumps(actions))  # a JSON list, quoted for DOT
    return (f'manager.actions="observe,steer,wait", prompt="Watch the run", '
            f'scripted.action={script}, scripted.message="{message}"')


async def child_of(wire: Wire, detail: dict[str, Any]) -> dict[str, Any]:
    """The run.get detail of the parent's one child."""
    [child_id] = detail["children"]
    return await wire.result("run.get", {"run_id": child_id})


def child_context(detail: dict[str, Any]) -> dict[str, Any]:
    """The stack.* values of a context."""
    return {k: v for k, v in (detail["context"] or {}).items() if k.startswith("stack.")}


def system_messages(detail: dict[str, Any]) -> dict[str, str]:
    """The system message of each model call of a run, by node."""
    return {c["node_id"]: next((m["content"] for m in c["request"]["messages"]
                                if m["role"] == "system"), "")
            for c in trace(detail) if c["kind"] == "model"}


# -- supervision --------------------------------------------------------------------------


@pytest.mark.in_process
async def test_a_manager_supervises_its_child_run_to_completion(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    detail = await run_to_end(wire, parent(child_file(short_tmp)))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert detail["completed_nodes"] == ["start", "boss", "report", "done"]
    child = await child_of(wire, detail)
    assert (child["status"], child["outcome"]) == ("completed", "success")
    assert child["completed_nodes"] == CHILD_NODES
    assert child["pipeline_name"] == "child"

    # Linked both ways, in the store and in the run directories.
    assert child["parent_run_id"] == detail["run_id"] and detail["parent_run_id"] is None
    assert child["children"] == []
    assert read_json(child, "manifest.json")["parent"] == {
        "run_id": detail["run_id"], "node": "boss", "run_dir": f"runs/{detail['run_id']}"}
    assert read_json(detail, "manifest.json")["parent"] is None
    assert read_json(detail, "boss", "child.json") == {
        "run_id": child["run_id"], "run_dir": f"runs/{child['run_id']}"}
    assert Path(child["run_dir"]) == daemon.home / "runs" / child["run_id"]
    listed = await wire.result("run.list", {})
    assert {r["run_id"]: r["parent_run_id"] for r in listed["runs"]} == {
        detail["run_id"]: None, child["run_id"]: detail["run_id"]}

    # One cycle per child node: four boundaries (start .. three), then its end.
    assert child_context(detail) == {
        "stack.child.status": "completed",
        "stack.child.outcome": "success", "stack.child.current_node": "done",
        "stack.child.completed_nodes": 5, "stack.child.failure_reason": "",
        "stack.manager.cycles": 5}
    [started] = events(wire, detail["run_id"], "ChildRunStarted")
    assert started["data"] == {"name": "boss", "child_run_id": child["run_id"],
                               "run_dir": f"runs/{child['run_id']}"}
    cycles = events(wire, detail["run_id"], "ManagerCycle")
    assert [(e["data"]["cycle"], e["data"]["completed_nodes"], e["data"]["child_status"])
            for e in cycles] == [(1, 1, "running"), (2, 2, "running"), (3, 3, "running"),
                                 (4, 4, "running"), (5, 5, "completed")]
    [boss] = [s for s in detail["stages"] if s["node_id"] == "boss"]
    assert boss["status"] == "success"
    # The child's end was recorded before the manager's stage ended.
    assert when(child["ended_at"]) <= when(boss["ended_at"])
    check_files_parse(daemon.home)


@pytest.mark.in_process
async def test_a_failing_child_fails_the_manager_node_and_its_fail_edge_routes(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    child_path = child_file(short_tmp, FAILING_CHILD)
    failed = await run_to_end(wire, parent(child_path))
    assert (failed["status"], failed["outcome"]) == ("failed", "fail")
    child = await child_of(wire, failed)
    assert (child["status"], child["outcome"]) == ("failed", "fail")
    assert child["completed_nodes"] == ["start", "one", "two"]
    assert failed["failure_reason"].startswith(f"child run {child['run_id']} failed")
    assert failed["completed_nodes"] == ["start", "boss"]
    assert child_context(failed)["stack.child.status"] == "failed"

    routed = await run_to_end(wire, parent(child_path, after="""
            fixup [prompt="Fix it"]
            boss -> fixup [condition="outcome=fail"]
            fixup -> done"""))
    assert (routed["status"], routed["outcome"]) == ("completed", "success")
    assert routed["completed_nodes"] == ["start", "boss", "fixup", "done"]
    context = child_context(routed)
    assert (context["stack.child.status"], context["stack.child.outcome"],
            context["stack.child.current_node"]) == ("failed", "fail", "two")
    assert context["stack.child.failure_reason"]
    assert context["stack.manager.cycles"] == 3


@pytest.mark.in_process
async def test_each_visit_and_attempt_of_a_manager_has_a_child_of_its_own(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    retried = await run_to_end(wire, parent(child_file(short_tmp, FAILING_CHILD),
                                            "max_retries=1"))
    assert visits(retried) == ["start", "boss", "boss"]
    assert len(retried["children"]) == 2
    for child_id in retried["children"]:
        child = await wire.result("run.get", {"run_id": child_id})
        assert (child["status"], child["parent_run_id"]) == ("failed", retried["run_id"])
    # The last attempt's child is the one the node's child.json names.
    assert read_json(retried, "boss", "child.json")["run_id"] == retried["children"][1]

    looped = await run_to_end(wire, dot(f"""\
        digraph looped {{
            graph [stack.child_dotfile="{child_file(short_tmp)}"]
            start [shape=Mdiamond]
            boss [shape=house]
            check [prompt="Check", scripted.preferred_label="[\\"again\\", \\"done\\"]"]
            done [shape=Msquare]
            start -> boss -> check
            check -> boss [label="again"]
            check -> done [label="done"]
        }}"""))
    assert looped["completed_nodes"] == ["start", "boss", "check", "boss", "check", "done"]
    assert len(looped["children"]) == 2
    assert read_json(looped, "boss", "child.json")["run_id"] == looped["children"][1]
    for child_id in looped["children"]:
        child = await wire.result("run.get", {"run_id": child_id})
        assert child["completed_nodes"] == CHILD_NODES

@pytest.mark.in_process
async def test_the_stop_condition_stops_the_child_and_the_manager_succeeds(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, parent(
        child_file(short_tmp), 'manager.stop_condition="stack.child.current_node=two"'))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert detail["completed_nodes"] == ["start", "boss", "report", "done"]
    child = await child_of(wire, detail)
    assert (child["status"], child["resumable"]) == ("cancelled", True)
    # It stopped at the boundary after `two`: `three` never started.
    assert child["completed_nodes"] == ["start", "one", "two"]
    assert visits(child) == ["start", "one", "two"]
    context = child_context(detail)
    assert (context["stack.child.current_node"], context["stack.manager.cycles"]) == ("two", 3)
    [boss] = [s for s in detail["stages"] if s["node_id"] == "boss"]
    assert boss["outcome"]["notes"] == "stop condition satisfied"


@pytest.mark.in_process
async def test_max_cycles_fails_the_node_and_stops_the_child(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, parent(child_file(short_tmp), "manager.max_cycles=2"))
    assert (detail["status"], detail["outcome"]) == ("failed", "fail")
    assert detail["failure_reason"] == "max cycles exceeded (2)"
    child = await child_of(wire, detail)
    assert child["status"] == "cancelled"
    assert child["completed_nodes"] == ["start", "one"]
    assert child_context(detail)["stack.manager.cycles"] == 2


@pytest.mark.in_process
async def test_steering_reaches_the_childs_next_requests_and_stop_ends_it(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    # Cycle 1 (after start): continue; 2 (after one): steer; 3 (after two): stop.
    detail = await run_to_end(wire, parent(child_file(short_tmp),
                                           steering(["continue", "steer", "stop"])))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    child = await child_of(wire, detail)
    assert child["status"] == "cancelled"
    assert child["completed_nodes"] == ["start", "one", "two"]
    systems = system_messages(child)
    assert list(systems) == ["one", "two"]
    assert "supervisor" not in systems["one"]
    assert systems["two"].endswith("Instructions from the run's supervisor: Be brief")
    assert child["context"]["stack.instructions"] == "Be brief"
    assert child_context(detail)["stack.manager.message"] == "Be brief"
    [boss] = [s for s in detail["stages"] if s["node_id"] == "boss"]
    assert boss["outcome"]["notes"].startswith("stopped by the manager")
    # The manager's three decisions are three calls of its node, in its parent's trace.
    decisions = [c for c in trace(detail) if c["node_id"] == "boss"]
    assert len(decisions) == 3
    assert all("manager_decision" in json.dumps(c["request"]["output"]) for c in decisions)
    [steered] = events(wire, detail["run_id"], "ManagerSteered")
    assert steered["data"] == {"name": "boss", "cycle": 2, "message": "Be brief"}
    [told] = events(wire, child["run_id"], "ManagerSteered")
    assert told["data"] == {"message": "Be brief"}

    # Steered and left to finish, every later node of the child carries the instructions.
    finished = await run_to_end(wire, parent(child_file(short_tmp),
                                             steering(["steer", "continue"], "Use bullets")))
    child = await child_of(wire, finished)
    assert (child["status"], child["outcome"]) == ("completed", "success")
    systems = system_messages(child)
    assert all(systems[n].endswith("supervisor: Use bullets") for n in ("one", "two", "three"))


# -- kill -9, resume ----------------------------------------------------------------------


async def kill_while_blocked(home: Path, socket: str, pipeline: dict[str, str], fifo: Path,
                             **params: Any) -> dict[str, Any]:
    """Start a daemon and a run of `pipeline`, SIGKILL the daemon once a tool announced
    itself in `fifo` (and end the orphaned tool); the run's run.start summary."""
    first = await start_daemon(home, "--socket", socket)
    wire = await first.connect()
    started = await wire.result("run.start", {"pipeline": pipeline, "settings": FAST,
                                              **params})
    pid = int(await read_fifo(fifo))
    first.process.kill()
    assert await first.stop() == -signal.SIGKILL
    kill_orphan(pid)
    return started


async def test_a_manager_and_its_child_survive_a_kill_9_and_resume_as_one(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = parent(child_file(short_tmp, blocking_child(go, fifo)),
                      steering(["continue", "steer", "continue"]))
    # Killed while the child blocks in `slow`, after the manager steered it (cycle 2).
    started = await kill_while_blocked(home, socket, pipeline, fifo)

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        run_id = started["run_id"]
        found = await wire.result("run.get", {"run_id": run_id})
        assert (found["status"], found["resumable"]) == ("interrupted", True)
        assert found["completed_nodes"] == ["start"]
        [child_id] = found["children"]
        child = await wire.result("run.get", {"run_id": child_id})
        assert (child["status"], child["resumable"]) == ("interrupted", True)
        assert child["completed_nodes"] == ["start", "one"]
        assert child["context"]["stack.instructions"] == "Be brief"

        await wire.result("run.subscribe", {"run_id": "*"})
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": run_id})
        assert detail["children"] == [child_id]  # the same child, not a second one
        child = await wire.result("run.get", {"run_id": child_id})
        assert events(wire, child_id, "PipelineResumed")
        # The manager node ran again and took up the child it had (the event says so).
        assert [e["data"]["child_run_id"] for e in events(wire, run_id, "ChildRunStarted")] \
            == [child_id]
        listed = await wire.result("run.list", {})
        assert len(listed["runs"]) == 2

        fresh = await run_to_end(wire, pipeline)
        fresh_child = await child_of(wire, fresh)
    finally:
        assert await second.stop() == 0, "".join(second.log)

    assert (child["status"], child["outcome"]) == ("completed", "success")
    assert visits(child) == visits(fresh_child) == ["start", "one", "slow", "three", "done"]
    assert detail["completed_nodes"] == fresh["completed_nodes"] == [
        "start", "boss", "report", "done"]
    assert child["completed_nodes"] == fresh_child["completed_nodes"]
    assert detail["context"] == fresh["context"]  # no run id in it: the same context
    assert child["context"] == fresh_child["context"]
    assert (child["input_tokens"], child["output_tokens"]) == (
        fresh_child["input_tokens"], fresh_child["output_tokens"])
    # The manager's decisions: two before the kill, the other two after it, as the third
    # and fourth calls of its node (the scripted answers by call say so).
    decisions = [c["response"]["structured"]["action"] for c in trace(detail)
                 if c["node_id"] == "boss"]
    assert decisions == [c["response"]["structured"]["action"] for c in trace(fresh)
                         if c["node_id"] == "boss"] == ["continue", "steer", "continue",
                                                        "continue"]
    # The instructions given before the kill still reach the child's later requests.
    assert system_messages(child)["three"] == system_messages(fresh_child)["three"]
    assert system_messages(child)["three"].endswith("supervisor: Be brief")
    check_files_parse(home)


# -- cancel, shutdown ---------------------------------------------------------------------


@pytest.mark.in_process
async def test_cancelling_the_parent_stops_its_child_and_both_resume(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    started = await wire.result("run.start", {
        "pipeline": parent(child_file(short_tmp, blocking_child(go, fifo))),
        "settings": FAST})
    run_id = started["run_id"]
    pid = int(await read_fifo(fifo))  # the child blocks in `slow`
    started_child = await next_event(wire, of_type("ChildRunStarted"))
    child_id = started_child["data"]["child_run_id"]

    cancelled = await wire.result("run.cancel", {"run_id": run_id})
    assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True)
    assert process_gone(pid)  # the child's tool was killed with it
    child = await wire.result("run.get", {"run_id": child_id})
    assert (child["status"], child["resumable"]) == ("cancelled", True)
    assert child["completed_nodes"] == ["start", "one"]
    assert read_json(child, "manifest.json")["status"] == "cancelled"
    assert (await wire.result("daemon.status"))["active_runs"] == 0

    go.touch()
    resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
    assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    detail = await wire.result("run.get", {"run_id": run_id})
    assert detail["children"] == [child_id]
    child = await wire.result("run.get", {"run_id": child_id})
    assert (child["status"], child["outcome"]) == ("completed", "success")
    assert visits(child) == ["start", "one", "slow", "three", "done"]
    assert child_context(detail)["stack.manager.cycles"] == 5


async def test_a_daemon_shutdown_leaves_parent_and_child_interrupted_and_resumable(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = parent(child_file(short_tmp, blocking_child(go, fifo)))
    first = await start_daemon(home, "--socket", socket)
    wire = await first.connect()
    started = await wire.result("run.start", {"pipeline": pipeline, "settings": FAST})
    pid = int(await read_fifo(fifo))
    assert await first.stop() == 0, "".join(first.log)
    assert process_gone(pid)

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        found = await wire.result("run.get", {"run_id": started["run_id"]})
        assert (found["status"], found["resumable"]) == ("interrupted", True)
        [child_id] = found["children"]
        child = await wire.result("run.get", {"run_id": child_id})
        assert (child["status"], child["resumable"]) == ("interrupted", True)
        assert read_json(child, "manifest.json")["status"] == "interrupted"
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"],
                                                   "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        assert detail["children"] == [child_id]
        child = await wire.result("run.get", {"run_id": child_id})
        assert (child["status"], child["outcome"]) == ("completed", "success")
        assert visits(child) == ["start", "one", "slow", "three", "done"]
    finally:
        assert await second.stop() == 0, "".join(second.log)


@pytest.mark.in_process
async def test_cancelling_the_child_fails_its_manager(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    started = await wire.result("run.start", {
        "pipeline": parent(child_file(short_tmp, blocking_child(go, fifo))),
        "settings": FAST})
    await read_fifo(fifo)
    child_id = (await next_event(wire, of_type("ChildRunStarted")))["data"]["child_run_id"]
    await wire.result("run.cancel", {"run_id": child_id})
    await next_event(wire, lambda e: e["run_id"] == started["run_id"]
                     and e["type"] == "PipelineFailed")
    detail = await wire.result("run.get", {"run_id": started["run_id"]})
    assert (detail["status"], detail["outcome"]) == ("failed", "fail")
    assert detail["failure_reason"] == f"child run {child_id} cancelled: cancelled"


@pytest.mark.parametrize(("stop", "ended_as", "cycles"), [
    ("", ("completed", "success"), 5),
    # Stopped by its manager at the boundary after `two`: the resumed child reports that
    # boundary again, and the manager stops it again.
    (', manager.stop_condition="stack.child.current_node=two"', ("cancelled", None), 3),
], ids=["completed", "stopped"])
async def test_a_parent_resumed_after_its_child_ended_takes_the_childs_end_as_it_was(
        short_tmp: Path, stop: str, ended_as: tuple[str, str | None], cycles: int) -> None:
    """The daemon can die after the child's end is recorded and before the manager node's
    checkpoint: the resumed manager finds the child ended and takes its end as an
    uninterrupted run would have. Made deterministic by killing the daemon in a tool after
    the manager, then putting the parent's checkpoint back to where it stood before it."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = dot(f"""\
        digraph parent {{
            graph [stack.child_dotfile="{child_file(short_tmp)}"]
            start [shape=Mdiamond]
            boss [shape=house, {steering(["continue", "steer", "continue"])}{stop}]
            slow [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            report [prompt="Report on ${{stack.child.status}}"]
            done [shape=Msquare]
            start -> boss -> slow -> report -> done
        }}""")
    started = await kill_while_blocked(home, socket, pipeline, fifo)
    path = Path(started["run_dir"]) / "checkpoint.json"
    checkpoint = json.loads(path.read_text())
    assert checkpoint["completed_nodes"] == ["start", "boss"]
    context = {key: value for key, value in checkpoint["context"].items()
               if not key.startswith("stack.")}
    context.update(current_node="start", outcome="success")
    checkpoint.update(current_node="start", next_node="boss", completed_nodes=["start"],
                      completed_count=1, stage_seq=checkpoint["stage_seq"] - 1,
                      context=context, calls={"start": 1}, call_seq=0, via=0,
                      logs=checkpoint["logs"][:1])
    path.write_text(json.dumps(checkpoint))

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        [child_id] = (await wire.result("run.get", {"run_id": started["run_id"]}))["children"]
        ended = await wire.result("run.get", {"run_id": child_id})
        assert (ended["status"], ended["outcome"]) == ended_as
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"],
                                                   "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        child = await wire.result("run.get", {"run_id": child_id})
        fresh = await run_to_end(wire, pipeline)
        fresh_child = await child_of(wire, fresh)
    finally:
        assert await second.stop() == 0, "".join(second.log)
    assert detail["children"] == [child_id]
    assert child["stages"] == ended["stages"]  # not run again
    assert (child["status"], child["outcome"]) == ended_as
    assert (fresh_child["status"], fresh_child["outcome"]) == ended_as
    assert visits(detail) == ["start", "boss", "boss", "slow", "report", "done"]
    assert detail["completed_nodes"] == fresh["completed_nodes"]
    assert detail["context"] == fresh["context"]
    assert detail["context"]["stack.manager.message"] == "Be brief"
    assert detail["context"]["stack.manager.cycles"] == cycles
    assert child["context"] == fresh_child["context"]
    assert child["completed_nodes"] == fresh_child["completed_nodes"]


# -- replay -------------------------------------------------------------------------------


def launch_of(detail: dict[str, Any]) -> dict[str, Any]:
    return read_json(detail, "config", "launch.json")


@pytest.mark.in_process
async def test_a_recorded_replay_of_a_parent_replays_its_child_exactly_at_no_cost(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    original = await run_to_end(wire, parent(child_file(short_tmp),
                                             steering(["continue", "steer", "continue"])),
                                settings=PRICED)
    original_child = await child_of(wire, original)
    assert original["cost_usd"] > 0 and original_child["cost_usd"] > 0

    replay = await wire.result("run.start", {"replay": {"from_run": original["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    assert (replay["status"], replay["outcome"]) == ("completed", "success"), replay
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    replayed_child = await child_of(wire, replayed)
    assert replayed_child["run_id"] != original_child["run_id"]
    assert replayed_child["parent_run_id"] == replayed["run_id"]
    assert (launch_of(replayed_child)["replay_of"], launch_of(replayed_child)["replay_mode"]) \
        == (original_child["run_id"], "recorded")
    assert replayed["cost_usd"] == replayed_child["cost_usd"] == 0.0
    assert all(c["cost_usd"] == 0.0 for c in [*trace(replayed), *trace(replayed_child)])
    assert len(trace(replayed)) == len(trace(original))
    assert len(trace(replayed_child)) == len(trace(original_child))
    for a, b in ((original, replayed), (original_child, replayed_child)):
        assert b["completed_nodes"] == a["completed_nodes"]
        assert visits(b) == visits(a)
        diff = await wire.result("run.diff", {"a": a["run_id"], "b": b["run_id"]})
        assert diff["identical"], diff["first_divergence"]
    assert replayed["context"] == original["context"]
    assert replayed_child["context"] == original_child["context"]
    assert system_messages(replayed_child) == system_messages(original_child)

    # Live: a fresh child, its calls made again (at a price).
    live = await wire.result("run.start", {"replay": {"from_run": original["run_id"],
                                                      "mode": "live"}, "wait": True})
    assert (live["status"], live["outcome"]) == ("completed", "success")
    lived = await wire.result("run.get", {"run_id": live["run_id"]})
    live_child = await child_of(wire, lived)
    assert launch_of(live_child)["replay_of"] is None
    assert live_child["cost_usd"] == original_child["cost_usd"] > 0
    assert live_child["completed_nodes"] == original_child["completed_nodes"]
    diff = await wire.result("run.diff", {"a": original_child["run_id"],
                                          "b": live_child["run_id"]})
    assert diff["identical"], diff["first_divergence"]


@pytest.mark.in_process
async def test_a_recorded_replay_without_a_recorded_child_is_a_conflict(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    # The recording: a pipeline whose `boss` is a plain LLM node, no manager.
    original = await run_to_end(wire, dot("""\
        digraph parent {
            start [shape=Mdiamond]
            boss [prompt="Watch the run"]
            report [prompt="Report"]
            done [shape=Msquare]
            start -> boss -> report -> done
        }"""))
    replay = await run_to_end(wire, parent(child_file(short_tmp)),
                              replay={"from_run": original["run_id"], "mode": "recorded"})
    assert (replay["status"], replay["outcome"]) == ("failed", "fail")
    assert "the recording has no child run for manager node 'boss:1:1'" in \
        replay["failure_reason"]
    assert replay["children"] == []
    hybrid = await run_to_end(wire, parent(child_file(short_tmp)),
                              replay={"from_run": original["run_id"], "mode": "hybrid"})
    assert (hybrid["status"], hybrid["outcome"]) == ("completed", "success")
    child = await child_of(wire, hybrid)
    assert launch_of(child)["replay_of"] is None  # hybrid: the child runs live
    assert child["completed_nodes"] == CHILD_NODES


# -- lint ---------------------------------------------------------------------------------


@pytest.mark.in_process
async def test_validate_warns_of_a_manager_without_a_child_and_refuses_a_bad_stop_condition(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    orphan = dot("""\
        digraph lonely {
            start [shape=Mdiamond]
            boss [shape=house]
            done [shape=Msquare]
            start -> boss -> done
        }""")
    checked = await wire.result("pipeline.validate", {"pipeline": orphan})
    assert checked["valid"] is True
    assert [(d["rule"], d["severity"], d["node"]) for d in checked["diagnostics"]] == [
        ("manager_child_pipeline", "warning", "boss")]
    # It runs, and its manager node fails saying why.
    ran = await run_to_end(wire, orphan)
    assert (ran["status"], ran["failure_reason"]) == (
        "failed", "no child pipeline: set stack.child_dotfile on the graph or the node")
    assert ran["children"] == []
    # A child pipeline that does not load fails the node at once (no retry), saying why.
    missing = short_tmp / "missing.dot"
    ran = await run_to_end(wire, parent(missing, "max_retries=2"))
    assert (ran["status"], ran["failure_reason"]) == (
        "failed", f"child run of {missing}: invalid pipeline: cannot read '{missing}': "
                  "No such file or directory")
    assert visits(ran) == ["start", "boss"] and ran["children"] == []

    bad = parent(child_file(short_tmp), 'manager.stop_condition="stack.child.status=="')
    checked = await wire.result("pipeline.validate", {"pipeline": bad})
    assert checked["valid"] is False
    assert [(d["rule"], d["severity"], d["node"]) for d in checked["diagnostics"]] == [
        ("manager_stop_condition_syntax", "error", "boss")]
    refused = await wire.request("run.start", {"pipeline": bad})
    assert refused["error"]["code"] == INVALID_PIPELINE
    assert len((await wire.result("run.list", {}))["runs"]) == 2  # none was made of it


async def test_a_cycle_cut_short_by_a_kill_9_is_done_again_before_the_child_goes_on(
        short_tmp: Path) -> None:
    """Killed while the manager decides (the child waits at its boundary after `start`, the
    manager's model answers slowly): the resumed child goes on only once the manager has
    had that cycle, so its steer still reaches `one`, as in an uninterrupted run."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    pipeline = parent(child_file(short_tmp),
                      steering(["steer", "continue"]) + ', llm_provider="slow"')
    quick = {**FAST, "providers": {"slow": {"type": "scripted"}}}
    slow = {**FAST, "providers": {"slow": {"type": "scripted", "latency_ms": 30_000}}}
    first = await start_daemon(home, "--socket", socket)
    wire = await first.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    started = await wire.result("run.start", {"pipeline": pipeline, "settings": slow})
    await next_event(wire, of_type("ManagerCycle", cycle=1))  # then it asks its model
    first.process.kill()
    assert await first.stop() == -signal.SIGKILL
    # The resumed run's model answers at once (its settings are the recorded ones).
    launch = Path(started["run_dir"]) / "config" / "launch.json"
    launch.write_text(json.dumps({**json.loads(launch.read_text()), "settings": quick}))

    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        [child_id] = (await wire.result("run.get", {"run_id": started["run_id"]}))["children"]
        child = await wire.result("run.get", {"run_id": child_id})
        assert (child["status"], child["completed_nodes"]) == ("interrupted", ["start"])
        resumed = await wire.result("run.resume", {"run_id": started["run_id"],
                                                   "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        child = await wire.result("run.get", {"run_id": child_id})
        fresh = await run_to_end(wire, pipeline, settings=quick)
        fresh_child = await child_of(wire, fresh)
    finally:
        assert await second.stop() == 0, "".join(second.log)
    assert system_messages(child) == system_messages(fresh_child)
    assert system_messages(child)["one"].endswith("supervisor: Be brief")
    assert child["context"] == fresh_child["context"]
    assert detail["context"] == fresh["context"]
    decisions = [c["response"]["structured"]["action"] for c in trace(detail)
                 if c["node_id"] == "boss" and c["response"]]
    assert decisions == ["steer", "continue", "continue", "continue"]
