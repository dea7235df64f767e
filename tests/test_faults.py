"""The fault suite (issue 13): a daemon SIGKILLed at random points of its runs, a full disk,
damaged run files and starts that fail.

After every fault the home must hold what a user relies on: runs that were running are
interrupted and resumable, a resume finishes with the result of an uninterrupted run without
asking the model again for work the checkpoint kept, every JSON file parses, the database
passes its integrity check, and no temporary file outlives the next start.

The full disk is a small tmpfs (mounting one needs root; CI runs as root, elsewhere those
tests skip) filled with a file, then freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .runs_support import (
    FAST,
    check_files_parse,
    dot,
    make_fifo,
    read_fifo,
    response_to,
    run_to_end,
    send_request,
    trace,
    visits,
)
from .support import TEST_EXTENSION, WAIT, DaemonProcess, Wire, daemon_argv, start_daemon
from .test_runs_resume import blocking_pipeline, kill_orphan

NOT_FOUND, CONFLICT, STORAGE_FULL = -32001, -32004, -32006
TERMINAL = {"PipelineCompleted", "PipelineFailed", "PipelineCancelled"}
KILLS, SEED = 6, 13  # a bounded number of kills, at points a seeded generator picks
# Every model call takes a few milliseconds, so that a kill lands in the middle of a run.
SLOW = {**FAST, "providers": {"scripted": {"latency_ms": 4}}}
WORK = dot("""\
    digraph faults {
        graph [goal="Outlive faults"]
        start [shape=Mdiamond]
        plan [prompt="Plan: $goal", scripted.context_updates="{\\"plan.steps\\": 3}"]
        par [shape=component]
        left [prompt="Left"]
        right [prompt="Right"]
        join [shape=tripleoctagon]
        write [prompt="Write"]
        review [prompt="Review"]
        polish [prompt="Polish"]
        done [shape=Msquare]
        start -> plan -> par
        par -> left -> join
        par -> right -> join
        join -> write -> review -> polish -> done
    }""")


# -- helpers --------------------------------------------------------------------------------

def integrity(home: Path) -> str:
    """sqlite's integrity check of the home's database (no daemon may be running)."""
    with contextlib.closing(sqlite3.connect(home / "ostinato.db")) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def torn_files(home: Path) -> list[Path]:
    """The JSON files, and JSON-lines files with a line, under `home` that do not parse."""
    torn = []
    for path in home.rglob("*.json*"):
        lines = [path.read_bytes()] if path.suffix == ".json" else (
            path.read_bytes().splitlines() if path.suffix == ".jsonl" else [])
        try:
            for line in lines:
                json.loads(line)
        except ValueError:
            torn.append(path)
    return torn

def temporary_files(home: Path) -> list[Path]:
    """What write_atomic calls cut short leave: `.{name}.{pid}.tmp`."""
    return sorted(home.rglob(".*.tmp"))


def model_calls(detail: dict[str, Any]) -> Counter[str]:
    """How many calls each node made, as the run's trace.jsonl says: a call a kill cut off
    before its node was checkpointed is made again under the same seq (the node runs again,
    run-directory.md), so a seq counts once; a node asked again after its checkpoint would
    make a call of a new seq."""
    made = {(call["node_id"], call["seq"]) for call in trace(detail) if call["kind"] != "run"}
    return Counter(node for node, _ in made)


async def killed(daemon: DaemonProcess) -> None:
    """SIGKILL the daemon and reap it."""
    daemon.process.kill()
    assert await daemon.stop() == -signal.SIGKILL


async def kill_at_event(daemon: DaemonProcess, wire: Wire, runs: set[str], k: int) -> None:
    """SIGKILL the daemon once the k-th run/event has reached the client (or earlier, once
    every run in `runs` has ended)."""
    seen = [n for n in wire.notifications if n.get("method") == "run/event"]
    ended = {n["params"]["run_id"] for n in seen if n["params"]["type"] in TERMINAL}
    count = len(seen)
    while count < k and not runs <= ended:
        message = await wire.recv()
        if message.get("method") == "run/event":
            count += 1
            if message["params"]["type"] in TERMINAL:
                ended.add(message["params"]["run_id"])
    await killed(daemon)


async def runs_killed_inside_a_tool(home: Path, short_tmp: Path,
                                    count: int = 1) -> list[dict[str, Any]]:
    """Start `count` runs that wait inside a tool node, then SIGKILL their daemon (and the
    tools it left): what `run.start` answered for each."""
    socket, go = str(short_tmp / "d.sock"), short_tmp / "go"
    daemon = await start_daemon(home, "--socket", socket)
    wire = await daemon.connect()
    started, pids = [], []
    for n in range(count):
        fifo = make_fifo(short_tmp / f"announce-{n}")
        started.append(await wire.result("run.start", {
            "pipeline": blocking_pipeline(go, fifo), "settings": FAST}))
        pids.append(int(await read_fifo(fifo)))
    await killed(daemon)
    for pid in pids:
        kill_orphan(pid)
    return started


async def spawn(home: Path, *args: str) -> tuple[int | None, str]:
    """Start a daemon that is expected not to get ready: its exit code (None if it was
    still running after WAIT seconds, then killed) and its stderr."""
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--home", str(home), *args), stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), WAIT)
    except TimeoutError:
        process.kill()
        _, stderr = await process.communicate()
        return None, stderr.decode()
    return process.returncode, stderr.decode()


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    disk = short_tmp / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to its last byte with one file; returns it (unlink it to free)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
    with open(filler, "ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:  # the last pages, one at a time
            handle.write(b"\0" * 4096)
    return filler


# -- kill -9 at random points ---------------------------------------------------------------

async def test_runs_killed_at_random_points_resume_to_the_uninterrupted_result(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    rng = random.Random(SEED)
    kept: dict[str, set[str]] = {}  # run -> nodes a checkpoint had completed at a kill
    cut_short = 0  # runs a kill interrupted
    for _ in range(KILLS):
        daemon = await start_daemon(home, "--socket", socket)
        assert not temporary_files(home), "the start leaves no temporary file"
        wire = await daemon.connect()
        await wire.result("run.subscribe", {"run_id": "*"})
        listed = (await wire.result("run.list", {"limit": 1000}))["runs"]
        assert {r["status"] for r in listed} <= {"completed", "interrupted"}, listed
        interrupted = [r["run_id"] for r in listed if r["status"] == "interrupted"]
        assert all(r["resumable"] for r in listed if r["status"] == "interrupted")
        cut_short += len(interrupted)
        for run_id in interrupted:
            await wire.result("run.resume", {"run_id": run_id})
        started = await wire.result("run.start", {"pipeline": WORK, "settings": SLOW})
        await kill_at_event(daemon, wire, {started["run_id"], *interrupted},
                            rng.randint(1, 60))
        for run_id in {started["run_id"], *interrupted}:
            checkpoint = home / "runs" / run_id / "checkpoint.json"
            kept_there = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
            if not kept_there.get("finished", True):  # the kill cut this run short
                kept.setdefault(run_id, set()).update(kept_there["completed_nodes"])
        assert integrity(home) == "ok"
        # A node's status.json is written in place (rundir.write_status): the kill may cut
        # short only that of a node its checkpoint does not hold, which resume runs again.
        # Every other file parses, whatever the kill cut short.
        for torn in torn_files(home):
            run_id, node = torn.relative_to(home / "runs").parts[0:2]
            assert torn.name == "status.json", torn
            checkpoint = json.loads((home / "runs" / run_id / "checkpoint.json").read_bytes())
            assert node not in checkpoint["completed_nodes"], torn

    daemon = await start_daemon(home, "--socket", socket)
    try:
        assert not temporary_files(home)
        wire = await daemon.connect()
        reference = await run_to_end(wire, WORK, settings=SLOW)
        listed = (await wire.result("run.list", {"limit": 1000}))["runs"]
        assert len(listed) == KILLS + 1
        cut_short += sum(r["status"] == "interrupted" for r in listed)
        assert cut_short >= KILLS // 2, "the kills landed in the middle of runs"
        for summary in listed:
            if summary["status"] == "interrupted":
                await wire.result("run.resume", {"run_id": summary["run_id"], "wait": True})
            detail = await wire.result("run.get", {"run_id": summary["run_id"]})
            assert (detail["status"], detail["outcome"]) == ("completed", "success"), detail
            assert detail["completed_nodes"] == reference["completed_nodes"]
            assert detail["context"] == reference["context"]
            # What a checkpoint kept at a kill was never asked of the model again.
            calls, expected = model_calls(detail), model_calls(reference)
            for node in kept.get(summary["run_id"], set()):
                assert calls[node] == expected[node], (summary["run_id"], node, calls)
            assert set(calls) == set(expected)
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)
    assert integrity(home) == "ok"
    check_files_parse(home)
    assert not temporary_files(home)


async def test_temporary_files_of_a_killed_write_are_removed_at_the_next_start(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    [started] = await runs_killed_inside_a_tool(home, short_tmp)
    # What a daemon killed inside write_atomic leaves: its temp file, never renamed.
    run_dir = Path(started["run_dir"])
    (run_dir / "artifacts").mkdir()
    left = [run_dir / ".checkpoint.json.4242.tmp", run_dir / ".manifest.json.4242.tmp",
            run_dir / "artifacts" / ".01a2.json.4242.tmp"]
    for path in left:
        path.write_text('{"half": ')

    daemon = await start_daemon(home, "--socket", socket)
    try:
        assert not [path for path in left if path.exists()]
        wire = await daemon.connect()
        (short_tmp / "go").touch()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"], "wait": True})
        assert resumed["status"] == "completed"
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)
    check_files_parse(home)


# -- damaged run files, starts that fail ----------------------------------------------------

async def test_a_run_with_a_damaged_manifest_is_marked_damaged_and_the_others_resume(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    runs = await runs_killed_inside_a_tool(home, short_tmp, count=2)
    damaged, sound = (r["run_id"] for r in runs)
    (home / "runs" / damaged / "manifest.json").write_text('{"run_id": "cut sh')

    daemon = await start_daemon(home, "--socket", socket)
    try:
        wire = await daemon.connect()
        listed = {r["run_id"]: r for r in (await wire.result("run.list", {}))["runs"]}
        assert (listed[damaged]["status"], listed[damaged]["resumable"]) == (
            "interrupted", False)
        assert listed[damaged]["failure_reason"].startswith(
            "damaged: manifest.json is not valid JSON")
        assert (listed[sound]["status"], listed[sound]["resumable"]) == ("interrupted", True)
        detail = await wire.result("run.get", {"run_id": damaged})
        assert detail["failure_reason"] == listed[damaged]["failure_reason"]
        refused = await wire.request("run.resume", {"run_id": damaged})
        assert refused["error"]["code"] == CONFLICT
        assert "damaged: manifest.json" in refused["error"]["message"]
        (short_tmp / "go").touch()
        resumed = await wire.result("run.resume", {"run_id": sound, "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


async def test_a_damaged_checkpoint_is_refused_at_resume_and_the_run_marked_damaged(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    [started] = await runs_killed_inside_a_tool(home, short_tmp)
    (Path(started["run_dir"]) / "checkpoint.json").write_bytes(b"\x00\x00garbage")

    daemon = await start_daemon(home, "--socket", socket)
    try:
        wire = await daemon.connect()
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        assert (detail["status"], detail["resumable"]) == ("interrupted", True)
        refused = await wire.request("run.resume", {"run_id": started["run_id"]})
        assert refused["error"]["code"] == CONFLICT, refused
        assert "damaged: checkpoint.json is not valid JSON" in refused["error"]["message"]
        detail = await wire.result("run.get", {"run_id": started["run_id"]})
        assert detail["resumable"] is False
        assert detail["failure_reason"].startswith("damaged: checkpoint.json")
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


async def test_a_start_that_fails_after_opening_the_store_exits_2_with_a_message(
        short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir()
    (home / "ostinato.db").write_bytes(b"this is not a database, but it is long enough " * 8)
    code, stderr = await spawn(home, "--socket", str(short_tmp / "d.sock"))
    assert code == 2, f"the daemon did not end by itself (exit {code}):\n{stderr}"
    assert "cannot start: DatabaseError: file is not a database" in stderr
    assert not (short_tmp / "d.sock").exists()


# -- a full disk ----------------------------------------------------------------------------

async def test_a_full_disk_at_start_ends_the_daemon_with_a_message(
        small_disk: Path, short_tmp: Path) -> None:
    home, socket = small_disk / "home", str(short_tmp / "d.sock")
    [started] = await runs_killed_inside_a_tool(home, short_tmp)
    # The WAL checkpointed away: the next start has to find new space to write anything.
    with contextlib.closing(sqlite3.connect(home / "ostinato.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = fill(small_disk)

    code, stderr = await spawn(home, "--socket", socket)
    assert code == 2, f"the daemon did not end by itself (exit {code}):\n{stderr}"
    assert "cannot start: the disk holding" in stderr and "is full" in stderr, stderr

    filler.unlink()
    daemon = await start_daemon(home, "--socket", socket)
    try:
        wire = await daemon.connect()
        (short_tmp / "go").touch()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"], "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


async def test_a_full_disk_stops_a_run_with_a_reason_and_it_resumes_once_space_returns(
        small_disk: Path, short_tmp: Path) -> None:
    home, socket = small_disk / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = blocking_pipeline(go, fifo)
    daemon = await start_daemon(home, "--socket", socket, "--extension", TEST_EXTENSION)
    try:
        wire = await daemon.connect()
        go.touch()
        reference = await run_to_end(wire, pipeline)
        for _ in range(6):  # the WAL grows with them
            await run_to_end(wire, pipeline)
        wal = home / "ostinato.db-wal"
        grown = wal.stat().st_size
        go.unlink()
        request = await send_request(wire, "run.start", {"pipeline": pipeline,
                                                         "settings": FAST, "wait": True})
        pid = int(await read_fifo(fifo))  # the run is inside its tool
        filler = fill(small_disk)
        kill_orphan(pid)  # the tool fails: what the run writes next does not fit

        stopped = (await response_to(wire, request))["result"]
        assert (stopped["status"], stopped["resumable"]) == ("interrupted", True), stopped
        assert stopped["failure_reason"].startswith("disk full: ")
        run_id = stopped["run_id"]
        detail = await wire.result("run.get", {"run_id": run_id})
        assert (detail["status"], detail["failure_reason"]) == (
            "interrupted", stopped["failure_reason"])
        assert (await wire.request("run.cancel", {"run_id": run_id}))["error"]["code"] == (
            NOT_FOUND)
        # A request that must write gets the documented code, not an internal error.
        before = set(os.listdir(home / "runs"))
        refused = (await wire.request("run.start", {"pipeline": pipeline,
                                                    "settings": FAST}))["error"]
        assert refused["code"] == STORAGE_FULL, refused
        assert refused["message"].startswith("storage full")
        assert set(os.listdir(home / "runs")) == before  # no directory without a run
        failed = (await wire.request("test.fail"))["error"]
        assert failed["code"] == -32603
        assert not temporary_files(home)

        filler.unlink()
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
        detail = await wire.result("run.get", {"run_id": run_id})
        assert detail["completed_nodes"] == reference["completed_nodes"]
        assert detail["context"] == reference["context"]
        assert visits(detail) == visits(reference)
        assert wal.stat().st_size < grown, "the WAL is truncated once writes succeed again"
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)
    # The internal error's id is on stderr too: the log file shares the full disk.
    assert failed["data"]["error_id"] in "".join(daemon.log)
    check_files_parse(home)
    assert not temporary_files(home)
    for run_dir in (home / "runs").iterdir():
        assert (run_dir / "manifest.json").exists(), run_dir
