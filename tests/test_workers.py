"""Runs executed on workers (decision 0007): worker processes (`--executor processes`) and
the actors of a real local Ray cluster (`--executor ray`, started by the daemon). The same
records as inline, events while the run executes, and the failures: a cancelled run, a
killed worker, a killed daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.runs.sink import StoreSink
from ostinato.daemon.workers.messages import line_batches
from ostinato.daemon.workers.processes import ProcessWorker

from .inprocess import in_process_daemon
from .runs_support import (
    dot,
    events,
    make_fifo,
    next_event,
    of_type,
    process_gone,
    read_fifo,
    read_json,
    run_file,
    run_to_end,
)
from .support import WAIT, DaemonProcess, Wire, start_daemon
from .test_agent_nodes import THREE_TURNS, agent_pipeline

# A bit of everything a worker executes: model nodes, a conditional, a fan-out, a tool
# node, a human gate auto-approved, and a context that flows between them.
EVERYTHING = dot("""\
    digraph everything {
        graph [goal="Compare backends"]
        start [shape=Mdiamond]
        plan [prompt="Plan for: $goal",
              scripted.context_updates="{\\"plan.steps\\": 3}"]
        tool [shape=parallelogram, tool_command="echo tool ran"]
        par [shape=component, max_parallel=2]
        a [prompt="Variant A"]
        b [prompt="Variant B", scripted.usage="7,3"]
        join [shape=tripleoctagon]
        gate [shape=hexagon, label="Ship it?"]
        check [shape=diamond]
        done [shape=Msquare]
        start -> plan -> tool -> par
        par -> a -> join
        par -> b -> join
        join -> gate
        gate -> check [label="[Y] Yes"]
        gate -> done [label="[N] No"]
        check -> done [condition="outcome=success"]
    }""")
# A run that fails: the trace of a failed run ends with the failing call.
FAILING = dot("""\
    digraph failing {
        start [shape=Mdiamond]
        plan [prompt="Plan"]
        work [shape=parallelogram, tool_command="echo broken; exit 3"]
        done [shape=Msquare]
        start -> plan -> work -> done
    }""")
AUTO = {"retry": {"delay_scale": 0}, "human": {"auto_approve": True}}
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_CALL_NUMBER = re.compile(r"call #\d+")
_DURATION = re.compile(r"\b\d+ ms\b")  # a transcript's tool call took that long
# The backends with workers. Ray's tests need the `ray` extra (conftest.py), and run one at a
# time (`make test` distributes by group): each daemon starts a local cluster of 2 CPUs.
BACKENDS = ["processes", pytest.param("ray", marks=[pytest.mark.ray,
                                                    pytest.mark.xdist_group("ray")])]
_VOLATILE = {"created_at", "started_at", "ended_at", "duration_ms", "latency_ms", "timestamp",
             "time", "id", "run_id", "trace_id", "run_dir", "pid"}


def steady(value: Any) -> Any:
    """`value` without what differs between two runs of the same pipeline: ids, times,
    durations."""
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [steady(v) for v in value]
    if isinstance(value, str):
        return _DURATION.sub("<ms>", _TIME.sub("<time>", _ID.sub("<id>", value)))
    return value


async def records(wire: Wire, run_id: str) -> dict[str, Any]:
    """Everything a run left, ids and times aside: its files (and what they hold) and its
    stages, events and calls as the store gives them."""
    detail = await wire.result("run.get", {"run_id": run_id})
    root = Path(detail["run_dir"])
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            text = path.read_text()
            files[str(path.relative_to(root))] = steady(
                json.loads(text) if path.suffix == ".json" else
                [json.loads(line) for line in text.splitlines()] if path.suffix == ".jsonl"
                else text)
    trace = await wire.result("trace.get", {"trace_id": detail["trace_id"]})
    history = [e for e in events(wire, run_id)]
    return {"files": files, "stages": steady(detail["stages"]),
            "calls": steady(trace["calls"]), "events": steady(history),
            "summary": steady({k: detail[k] for k in ("status", "outcome", "completed_nodes",
                                                      "context", "input_tokens",
                                                      "output_tokens", "cost_usd")})}


@contextlib.asynccontextmanager
async def daemon_on(home: Path, executor: str) -> AsyncIterator[tuple[DaemonProcess, Wire]]:
    """A daemon subprocess executing runs on `executor`, and a wire subscribed to them."""
    daemon = await start_daemon(home, "--socket", str(home.parent / f"{executor}.sock"),
                                "--executor", executor, "--workers", "2")
    try:
        wire = await daemon.connect()
        await wire.result("run.subscribe", {"run_id": "*"})
        yield daemon, wire
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


async def workers_of(wire: Wire) -> list[dict[str, Any]]:
    """The workers `daemon.status` says the daemon has started."""
    return (await wire.result("daemon.status"))["executor"]["workers"]


async def started_ahead(wire: Wire) -> list[dict[str, Any]]:
    """The worker a pool of processes starts with the daemon, once `daemon.status` lists
    it: from when its process is spawned, which nothing tells a client (hence the poll)."""
    async with asyncio.timeout(WAIT):
        while not (workers := await workers_of(wire)):
            await asyncio.sleep(0.01)
    return workers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("pipeline", "status"), [(EVERYTHING, "completed"),
                                                  (FAILING, "failed")])
async def test_a_run_on_a_worker_leaves_what_an_inline_run_leaves(
        short_tmp: Path, pipeline: dict[str, str], status: str, backend: str) -> None:
    found = {}
    for executor in ("inline", backend):
        async with daemon_on(short_tmp / executor, executor) as (_, wire):
            ended = await run_to_end(wire, pipeline, settings=AUTO)
            assert ended["status"] == status
            found[executor] = await records(wire, ended["run_id"])
            assert len(await workers_of(wire)) == (executor != "inline")
    inline, worker = found["inline"], found[backend]
    assert worker["summary"] == inline["summary"]
    assert set(worker["files"]) == set(inline["files"])
    assert worker["files"] == inline["files"]
    assert worker["stages"] == inline["stages"] and len(worker["stages"]) >= 3
    assert worker["calls"] == inline["calls"]
    # The same events; concurrent branches may interleave theirs differently.
    def key(event: dict[str, Any]) -> str:
        return json.dumps([event["type"], event["data"]], sort_keys=True)
    assert sorted(map(key, worker["events"])) == sorted(map(key, inline["events"]))
    assert len(worker["events"]) > 10


async def test_the_pool_starts_a_worker_ahead_and_grows_only_when_its_workers_are_busy(
        short_tmp: Path) -> None:
    """A pool of worker processes starts one as the daemon starts, so that the first run
    does not wait for a process; a run goes to an idle worker, and the pool grows (up to
    its size) only while every worker is busy."""
    async with daemon_on(short_tmp / "home", "processes") as (_, wire):
        ahead = await started_ahead(wire)  # before any run
        fifos = [make_fifo(short_tmp / f"announce{i}") for i in range(2)]
        go = short_tmp / "go"
        held = [await wire.result("run.start", {"pipeline": dot(f"""\
            digraph held {{
                start [shape=Mdiamond]
                hold [shape=parallelogram, tool_command="echo $$ > {fifo}; \\
                      while ! test -e {go}; do sleep 0.01; done"]
                done [shape=Msquare]
                start -> hold -> done
            }}""")}) for fifo in fifos]
        tools = [int(await read_fifo(fifo)) for fifo in fifos]  # both held at once
        busy = await workers_of(wire)
        parents = {parent_of(tool) for tool in tools}
        go.touch()
        for run in held:
            await wire.result("run.get", {"run_id": run["run_id"], "wait": True})
        await run_to_end(wire, EVERYTHING, settings=AUTO)
        after = await workers_of(wire)
    assert len(ahead) == 1 and ahead[0]["runs_done"] == 0, ahead
    assert sorted(w["runs"] for w in busy) == [1, 1]  # two busy: a second one started
    assert parents == {w["pid"] for w in busy}  # each held run on its own worker
    assert ahead[0]["pid"] in {w["pid"] for w in busy}  # it took the first run
    assert len(after) == 2 and sum(w["runs_done"] for w in after) == 3  # no third worker


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_recorded_replay_is_served_on_a_worker(short_tmp: Path, backend: str) -> None:
    """The cassette travels with the job: the worker serves every call (the tool's too)."""
    found = {}
    for executor in ("inline", backend):
        async with daemon_on(short_tmp / executor, executor) as (_, wire):
            recorded = await run_to_end(wire, EVERYTHING, settings=AUTO)
            replayed = await run_to_end(wire, EVERYTHING, settings=AUTO, replay={
                "from_run": recorded["run_id"], "mode": "recorded"})
            assert (replayed["status"], replayed["outcome"]) == ("completed", "success")
            found[executor] = await records(wire, replayed["run_id"])
            # Both executed on a worker, the replay too: the same one, idle again when the
            # replay came (an idle worker takes the next run; the pool grows only when every
            # worker is busy).
            workers = await workers_of(wire)
            assert sum(w["runs_done"] for w in workers) == (2 if executor != "inline" else 0)
            assert len(workers) == (executor != "inline")
    inline, worker = found["inline"], found[backend]
    assert worker["calls"] == inline["calls"] and len(worker["calls"]) >= 4
    assert worker["files"] == inline["files"]
    assert worker["summary"] == inline["summary"]


def unordered(files: dict[str, Any]) -> dict[str, Any]:
    """A run's files with the order of its lines and its calls' numbers set aside: an
    agent's tool calls of one turn run at once, and finish (are numbered and written) in
    any order."""
    def line(value: Any) -> str:
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "seq"}
        return _CALL_NUMBER.sub("call #<n>", json.dumps(value, sort_keys=True))
    return {name: sorted(map(line, content)) if isinstance(content, list) else
            sorted(map(line, content.splitlines())) if isinstance(content, str) else content
            for name, content in files.items()}


def parent_of(pid: int) -> int:
    """The parent process of `pid` (/proc/PID/stat's fourth field)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether `ancestor` started `pid`, or started what started it, and so on."""
    while pid > 1:
        pid = parent_of(pid)
        if pid == ancestor:
            return True
    return False


async def exited(pid: int, timeout: float = WAIT) -> None:
    """Return once process `pid` has exited (a pidfd turns readable)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    loop.add_reader(pidfd, lambda: gone.done() or gone.set_result(None))
    try:
        await asyncio.wait_for(gone, timeout)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def started_by(ancestor: int, program: str) -> list[int]:
    """The processes running `program` that `ancestor` started, directly or not."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # gone meanwhile
            command = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace")
            if program in command and descends_from(int(name), ancestor):
                found.append(int(name))
    return found


def blocking(fifo: Path, go: Path) -> dict[str, str]:
    """prep, then a tool that announces its pid in `fifo` and blocks until `go` exists."""
    return dot(f"""\
        digraph blocked {{
            start [shape=Mdiamond]
            prep [prompt="Prepare"]
            slow [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            after [prompt="Wrap up"]
            done [shape=Msquare]
            start -> prep -> slow -> after -> done
        }}""")


@pytest.fixture(params=BACKENDS)
async def on_workers(request: pytest.FixtureRequest, short_tmp: Path) -> Any:
    """A daemon subprocess whose runs execute on two workers of a backend."""
    process = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                 "--executor", request.param, "--workers", "2")
    yield process
    assert await process.stop() == 0, "".join(process.log)
    # A clean stop is quiet: no native stack dump (Ray's failure handler) for its SIGTERM.
    assert not any("SIGTERM received" in line for line in process.log), "".join(process.log)


async def blocked_run(daemon: DaemonProcess, tmp: Path) -> tuple[Wire, str, int, Path]:
    """A run blocked in its tool on a worker: (wire, run id, the tool's pid, its go file).
    The tool's parent is the worker: a process the daemon started (through its local Ray
    cluster's raylet, on `ray`), and one `daemon.status` lists."""
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    fifo, go = make_fifo(tmp / "announce"), tmp / "go"
    started = await wire.result("run.start", {"pipeline": blocking(fifo, go)})
    tool = int(await read_fifo(fifo))
    worker = parent_of(tool)
    assert worker != daemon.process.pid and descends_from(worker, daemon.process.pid)
    assert worker in [found["pid"] for found in await workers_of(wire)]
    return wire, started["run_id"], tool, go


async def test_events_stream_from_a_worker_and_cancel_reaches_it(
        on_workers: DaemonProcess, tmp_path: Path) -> None:
    wire, run_id, tool, _ = await blocked_run(on_workers, tmp_path)
    # Its events arrive while it executes: it is still in its tool.
    await next_event(wire, of_type("StageCompleted", name="prep"))
    await next_event(wire, of_type("StageStarted", name="slow"))
    assert (await wire.result("run.get", {"run_id": run_id}))["status"] == "running"
    cancelled = await wire.result("run.cancel", {"run_id": run_id})
    assert process_gone(tool)  # killed and reaped by its worker before the answer
    assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True)
    assert read_json(cancelled, "checkpoint.json")["current_node"] == "prep"
    [event] = events(wire, run_id, "PipelineCancelled")
    assert event["data"]["reason"] == "cancelled"


async def test_a_killed_worker_leaves_its_run_interrupted_and_resumable(
        on_workers: DaemonProcess, tmp_path: Path) -> None:
    wire, run_id, tool, go = await blocked_run(on_workers, tmp_path)
    worker = parent_of(tool)
    # What the daemon has received of the run is kept: here, prep's stage and checkpoint
    # (records still in flight die with a Ray worker; resume runs their node again).
    await next_event(wire, of_type("CheckpointSaved", node_id="prep"))
    os.kill(worker, signal.SIGKILL)
    await wire.result("run.get", {"run_id": run_id, "wait": True})
    ended = await wire.result("run.get", {"run_id": run_id})
    assert (ended["status"], ended["resumable"]) == ("interrupted", True)
    assert "worker" in ended["failure_reason"]
    assert ended["completed_nodes"] == ["start", "prep"]
    await exited(tool)  # the daemon swept the tool its dead worker left running
    assert read_json(ended, "manifest.json")["status"] == "interrupted"
    go.touch()
    resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
    assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    detail = await wire.result("run.get", {"run_id": run_id})
    assert detail["completed_nodes"] == ["start", "prep", "slow", "after", "done"]
    # The pool carries on with a new worker.
    again = await run_to_end(wire, blocking(make_fifo(tmp_path / "unused"), go))
    assert again["status"] == "completed"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_daemon_leaves_no_worker_running(short_tmp: Path, backend: str) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    first = await start_daemon(home, "--socket", socket, "--executor", backend)
    wire, run_id, tool, _ = await blocked_run(first, short_tmp)
    worker = parent_of(tool)
    first.process.kill()
    await first.stop()
    # A worker process sees its stdin end: it cancels its runs (their tools too) and
    # leaves. A Ray actor dies with its owner, the daemon's driver (and a local cluster
    # with the daemon); the tool it started, in a session of its own, is left to the next
    # daemon's sweep of a dead daemon's runs, as inline.
    await exited(worker)
    if backend == "processes":
        await exited(tool)
    second = await start_daemon(home, "--socket", socket)
    try:
        await exited(tool)
        wire = await second.connect()
        found = await wire.result("run.get", {"run_id": run_id})
        assert (found["status"], found["resumable"]) == ("interrupted", True)
    finally:
        assert await second.stop() == 0
    with contextlib.suppress(ProcessLookupError):  # a failed test leaves nothing behind
        os.killpg(tool, signal.SIGKILL)


def long_pipeline(nodes: int) -> dict[str, str]:
    """start -> n1 -> ... -> n`nodes` -> done: enough stages for several batches."""
    steps = [f"n{i}" for i in range(1, nodes + 1)]
    body = "\n".join(f'{step} [prompt="Step {step}"]' for step in steps)
    return dot(f"""\
        digraph long {{
            start [shape=Mdiamond]
            done [shape=Msquare]
            {body}
            {" -> ".join(["start", *steps, "done"])}
        }}""")


@pytest.mark.parametrize("executor", ["inline", "processes"])
async def test_after_every_commit_the_store_and_checkpoint_could_survive_a_crash(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch, executor: str) -> None:
    """A daemon killed right after any of a run's batch commits, or as it hands over a
    stage (inline or on a worker), would leave each stored stage with its own events, and a
    checkpoint no further than the store: what each of those moments leaves is looked at
    as it comes."""
    found: list[tuple[str, list[str], int, int]] = []
    commit, stage_done = StoreSink._commit, StoreSink.stage_done

    async def look(sink: StoreSink, moment: str) -> None:
        # The checkpoint first, then the store: a commit may land between the two reads,
        # and only in this order can it not make a sound state look broken.
        written = short_tmp / "home" / "runs" / sink.run_id / "checkpoint.json"
        checkpoint = json.loads(written.read_text()) if written.exists() else {}
        db = sink.store.db
        bare = await db.fetchall(
            "SELECT node_id FROM stages s WHERE run_id = ? AND NOT EXISTS (SELECT 1 FROM "
            "events e WHERE e.run_id = s.run_id AND e.type = 'StageCompleted' AND "
            "json_extract(e.data_json, '$.name') = s.node_id)", (sink.run_id,))
        stored = await db.fetchone("SELECT coalesce(max(seq), 0) AS seq FROM stages WHERE "
                                   "run_id = ?", (sink.run_id,))
        found.append((moment, [row["node_id"] for row in bare],
                      stored["seq"] if stored else 0, checkpoint.get("stage_seq", 0)))

    async def committed(self: StoreSink, concurrent: bool, run_fields: dict[str, Any]) -> None:
        await commit(self, concurrent, run_fields)
        await look(self, "commit")

    async def handed_over(self: StoreSink, stage: dict[str, Any]) -> None:
        await stage_done(self, stage)
        await look(self, "stage")

    monkeypatch.setattr(StoreSink, "_commit", committed)
    monkeypatch.setattr(StoreSink, "stage_done", handed_over)
    async with in_process_daemon(short_tmp / "home", executor=executor) as daemon:
        wire = await daemon.connect()
        ended = await run_to_end(wire, long_pipeline(149))
    assert ended["status"] == "completed" and len(ended["stages"]) == 151
    commits = [seen for seen in found if seen[0] == "commit" and seen[2]]
    assert len(commits) > 2  # several batches
    for _, bare, stored, checkpointed in found:
        assert bare == [] and checkpointed <= stored


@pytest.mark.parametrize("executor", ["inline", "processes"])
async def test_the_checkpoint_never_names_a_stage_the_store_lacks(short_tmp: Path,
                                                                 executor: str) -> None:
    """Inline and on a worker, stages are committed in batches and each checkpoint written
    after its stage's commit: at the end, checkpoint and store agree."""
    async with in_process_daemon(short_tmp / "home", executor=executor) as daemon:
        wire = await daemon.connect()
        ended = await run_to_end(wire, long_pipeline(59))
        checkpoint = read_json(ended, "checkpoint.json")
        assert checkpoint["finished"] and checkpoint["stage_seq"] == len(ended["stages"]) == 61
        assert run_file(ended, "n59", "response.md").exists()


async def test_a_worker_without_the_home_sends_the_run_files(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that cannot see the home (a Ray node on another machine) writes the run's
    files to a copy of its directory and sends every write: the home ends up as an inline
    run leaves it, and the copy is gone. (Ray says which workers are on another node; here
    every worker process is told it is.)"""
    monkeypatch.setattr(ProcessWorker, "ships_files", True)
    copies = short_tmp / "worker-tmp"
    copies.mkdir()
    monkeypatch.setenv("TMPDIR", str(copies))  # where the worker makes its copy
    # An agent's tools write its workspace behind the run directory's back: sent too.
    agent = agent_pipeline(short_tmp / "pids", THREE_TURNS)
    found: dict[str, list[dict[str, Any]]] = {"inline": [], "processes": []}
    for executor in found:
        async with in_process_daemon(short_tmp / executor, executor=executor) as daemon:
            wire = await daemon.connect()
            await wire.result("run.subscribe", {"run_id": "*"})
            for pipeline in (EVERYTHING, agent):
                ended = await run_to_end(wire, pipeline, settings=AUTO)
                found[executor].append(await records(wire, ended["run_id"]))
    for inline, worker in zip(found["inline"], found["processes"], strict=True):
        assert unordered(worker["files"]) == unordered(inline["files"])
        assert len(worker["files"]) > 5 and worker["stages"] == inline["stages"]
        assert unordered({"calls": worker["calls"]}) == unordered({"calls": inline["calls"]})
    notes = found["processes"][1]["files"]["workspace/notes.txt"]
    assert sorted(notes.split()) == ["a", "b", "c", "d"]
    assert list(copies.iterdir()) == []


async def test_a_worker_without_the_home_resumes_from_the_files_it_is_sent(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its worker killed, a run resumes on a worker without the home: the job carries the
    run's files, and the home's record goes on where it stopped."""
    monkeypatch.setattr(ProcessWorker, "ships_files", True)
    async with in_process_daemon(short_tmp / "home", executor="processes") as daemon:
        wire = await daemon.connect()
        await wire.result("run.subscribe", {"run_id": "*"})
        fifo, go = make_fifo(short_tmp / "announce"), short_tmp / "go"
        started = await wire.result("run.start", {"pipeline": blocking(fifo, go)})
        run_id = started["run_id"]
        tool = int(await read_fifo(fifo))
        await next_event(wire, of_type("CheckpointSaved", node_id="prep"))
        os.kill(parent_of(tool), signal.SIGKILL)
        await wire.result("run.get", {"run_id": run_id, "wait": True})
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": run_id})
        root = Path(detail["run_dir"])
        journal = [json.loads(line)["node"] for line in
                   (root / "journal.jsonl").read_text().splitlines()]
        assert journal == detail["completed_nodes"] == ["start", "prep", "slow", "after",
                                                        "done"]
        trace = [json.loads(line) for line in (root / "trace.jsonl").read_text().splitlines()]
        assert [c["node_id"] for c in trace if c["kind"] == "model"] == ["prep", "after"]
        assert (root / "after" / "response.md").exists()


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
async def test_a_ray_cluster_that_is_not_there_interrupts_the_run_at_once(
        short_tmp: Path) -> None:
    """Nothing listens at --ray-address: the run ends interrupted, resumable, saying so, in
    far less time than ray.init's own retries (minutes); the daemon goes on."""
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--executor", "ray", "--ray-address", "127.0.0.1:1")
    try:
        wire = await daemon.connect()
        ended = await wire.result("run.start", {"pipeline": FAILING, "wait": True})
        assert (ended["status"], ended["resumable"]) == ("interrupted", True)
        assert "Ray cluster at 127.0.0.1:1" in ended["failure_reason"]
        assert "refused" in ended["failure_reason"]
        assert (await wire.result("daemon.status"))["executor"]["workers"] == []
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
async def test_a_run_cancelled_while_the_cluster_starts_leaves_one_cluster(
        short_tmp: Path) -> None:
    """The first run starts the local cluster; cancelled meanwhile, the cluster still comes
    up, once: the next run uses it."""
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--executor", "ray", "--workers", "1")
    try:
        wire = await daemon.connect()
        started = await wire.result("run.start", {"pipeline": FAILING})
        cancelled = await wire.result("run.cancel", {"run_id": started["run_id"]})
        assert cancelled["status"] == "cancelled"
        ended = await run_to_end(wire, EVERYTHING, settings=AUTO)
        assert ended["status"] == "completed"
        assert len(started_by(daemon.process.pid, "gcs_server")) == 1
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
async def test_a_cluster_joined_by_address_whose_workers_are_on_another_node(
        short_tmp: Path) -> None:
    """The daemon joins a running cluster by address (docs/scale-out.md): two Ray nodes on
    this machine, the head without CPUs, so that every worker runs on the other node. Ray
    says that node is not the daemon's, so its workers send the run's files with their
    records, as on another machine, and the home ends up as an inline run leaves it."""
    from ray.cluster_utils import Cluster

    def two_nodes() -> Cluster:
        small = 80 * 1024 * 1024  # object store bytes: the runs put nothing in it
        cluster = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "object_store_memory": small})
        cluster.add_node(num_cpus=2, object_store_memory=small)
        cluster.wait_for_nodes()
        return cluster

    async with in_process_daemon(short_tmp / "inline") as inline_daemon:
        wire = await inline_daemon.connect()
        inline = await records(wire, (await run_to_end(wire, EVERYTHING,
                                                       settings=AUTO))["run_id"])
    cluster = two_nodes()  # on the main thread: Ray's nodes install signal handlers
    try:
        daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                    "--executor", "ray", "--ray-address", cluster.address)
        try:
            wire = await daemon.connect()
            ended = await run_to_end(wire, EVERYTHING, settings=AUTO)
            on_ray = await records(wire, ended["run_id"])
            status = await wire.result("daemon.status")
        finally:
            assert await daemon.stop() == 0, "".join(daemon.log)
    finally:
        cluster.shutdown()
    assert ended["status"] == "completed"
    [worker] = [w for w in status["executor"]["workers"] if w["runs_done"]]
    elsewhere = [line for line in daemon.log if "another node than the daemon's" in line]
    assert elsewhere and worker["node"][:12] in elsewhere[0], "".join(daemon.log)
    assert unordered(on_ray["files"]) == unordered(inline["files"])
    assert len(on_ray["files"]) > 5 and on_ray["stages"] == inline["stages"]
    assert unordered({"calls": on_ray["calls"]}) == unordered({"calls": inline["calls"]})


async def test_the_channel_reads_whole_lines_however_they_arrive() -> None:
    """Messages come in reads that cut lines anywhere: the daemon gets each whole line once,
    a message longer than a read included, and none of a line a dying worker cut short."""
    long = json.dumps({"op": "file", "data": "x" * 200_000}).encode()
    sent = [b'{"op":"event","n":1}', long, b'{"op":"event","n":2}', b'{"op":"ended"}']
    stream = b"\n".join(sent) + b"\n" + b'{"op":"eve'  # the worker died mid-line
    reader = asyncio.StreamReader()
    for start in range(0, len(stream), 7_001):
        reader.feed_data(stream[start:start + 7_001])
    reader.feed_eof()
    received = [line async for batch in line_batches(reader) for line in batch]
    assert received == sent


async def test_what_a_worker_logs_reaches_the_daemons_log(on_workers: DaemonProcess) -> None:
    """What the engine logs on a worker (here a model call it retries, at INFO) is in the
    daemon's log, named for its worker, as an inline run's would be."""
    wire = await on_workers.connect()
    flaky = {"default_provider": "flaky", "retry": {"delay_scale": 0},
             "providers": {"flaky": {"type": "scripted", "fail_rate": 1.0, "seed": 3,
                                     "retry": {"max_attempts": 2}}}}
    detail = await run_to_end(wire, dot("""\
        digraph flaky {
            start [shape=Mdiamond]
            ask [prompt="Try me"]
            done [shape=Msquare]
            start -> ask -> done
        }"""), settings=flaky)
    assert detail["status"] == "failed"
    retried = [line for line in on_workers.log if "flaky: try 1 of 2 failed" in line]
    assert retried and all(re.search(r"INFO ostinato.workers: (ray )?worker \d+: ", line)
                           for line in retried), "".join(on_workers.log)
