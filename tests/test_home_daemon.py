"""One daemon per home (issue 15): the lock, the well-known socket and its record, the
background start every command does, `serve --stdio` bridging to the home's daemon, and a
daemon killed with kill -9 replaced by the next command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ostinato.protocol.home import read_record

from .runs_support import FAST, blocking, dot, make_fifo, process_gone, read_fifo, trace, visits
from .support import WAIT, Wire, daemon_argv, start_daemon
from .test_runs_resume import blocking_pipeline, kill_orphan

CLI = [sys.executable, "-m", "ostinato.clients.cli"]


def ostinato(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One CLI command, as a user would type it (no terminal)."""
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=WAIT, stdin=subprocess.DEVNULL)


def call(home: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    """`ostinato call` on the home's daemon; its JSON result."""
    done = ostinato("call", method, json.dumps(params or {}), "--home", str(home))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stop_home_daemon(home: Path) -> None:
    """What a user does to end the home's daemon (and what each test leaves behind)."""
    done = ostinato("daemon", "stop", "--home", str(home))
    assert done.returncode == 0, done.stderr


@pytest.fixture
def home(short_tmp: Path) -> Iterator[Path]:
    """A home whose daemon, if a test started one, is stopped at the end."""
    path = short_tmp / "home"
    yield path
    stop_home_daemon(path)


def test_a_command_starts_the_home_daemon_which_outlives_it(home: Path) -> None:
    status = call(home, "daemon.status")
    assert status["home"] == str(home)
    record = read_record(home)
    assert record is not None and record.pid == status["pid"] != os.getpid()
    socket = Path(record.socket)
    assert socket == home / "daemon.sock"
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    assert f"unix:{socket}" in status["transports"]
    # The next command finds the same daemon, and so does `daemon status`.
    assert call(home, "daemon.status")["pid"] == status["pid"]
    shown = ostinato("daemon", "status", "--json", "--home", str(home))
    assert shown.returncode == 0 and json.loads(shown.stdout)["pid"] == status["pid"]

    stopped = ostinato("daemon", "stop", "--home", str(home))
    assert stopped.returncode == 0 and str(status["pid"]) in stopped.stdout
    assert read_record(home) is None and not socket.exists()
    gone = ostinato("daemon", "status", "--home", str(home))
    assert gone.returncode == 3 and "no daemon serves" in gone.stderr


def test_daemon_start_passes_serve_options_after_a_double_dash(home: Path) -> None:
    started = ostinato("daemon", "start", "--json", "--home", str(home), "--",
                       "--tcp", "127.0.0.1:0")
    assert started.returncode == 0, started.stderr
    transports = json.loads(started.stdout)["transports"]
    assert any(t.startswith("tcp://127.0.0.1:") for t in transports), transports
    # A running daemon is left as it is, and says which options it did not apply.
    again = ostinato("daemon", "start", "--home", str(home), "--", "--tcp", "127.0.0.1:0")
    assert again.returncode == 0 and "options not applied: --tcp 127.0.0.1:0" in again.stderr


def test_two_commands_at_once_share_one_new_daemon(home: Path) -> None:
    commands = [subprocess.Popen([*CLI, "call", "daemon.status", "--home", str(home)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(3)]
    outputs = [command.communicate(timeout=WAIT) for command in commands]
    assert [command.returncode for command in commands] == [0, 0, 0], outputs
    assert len({json.loads(out)["pid"] for out, _ in outputs}) == 1


def test_a_home_whose_socket_path_is_too_long_uses_a_recorded_runtime_path(
        short_tmp: Path) -> None:
    home = short_tmp / ("a-rather-long-directory-name-" * 4) / "home"
    try:
        status = call(home, "daemon.status")
        record = read_record(home)
        assert record is not None
        socket = Path(record.socket)
        assert socket.parent != home and len(os.fsencode(socket)) < 104
        assert f"unix:{socket}" in status["transports"]
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700
    finally:
        stop_home_daemon(home)


async def test_a_second_serve_on_a_locked_home_fails_at_once_naming_the_first(
        short_tmp: Path) -> None:
    home = short_tmp / "home"
    first = await start_daemon(home, "--socket", str(short_tmp / "a.sock"))
    try:
        second = await asyncio.create_subprocess_exec(
            *daemon_argv("--home", str(home), "--socket", str(short_tmp / "b.sock")),
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, said = await asyncio.wait_for(second.communicate(), WAIT)
        assert second.returncode == 4
        text = said.decode()
        assert f"pid {first.process.pid}" in text and str(home / "daemon.sock") in text
        assert not (short_tmp / "b.sock").exists()
        # The first daemon goes on, listening where it did.
        wire = await first.connect()
        assert (await wire.result("daemon.status"))["pid"] == first.process.pid
    finally:
        assert await first.stop() == 0, "".join(first.log)


async def bridged_client(home: Path, *args: str) -> tuple[asyncio.subprocess.Process, Wire]:
    """What an editor does: spawn `serve --stdio` and talk to it over its pipes."""
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--stdio", "--home", str(home), *args), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    wire = Wire(process.stdout, process.stdin)  # type: ignore[arg-type]
    await wire.initialize()
    return process, wire


async def test_serve_stdio_on_a_served_home_bridges_to_its_daemon(short_tmp: Path) -> None:
    home = short_tmp / "home"
    owner = await start_daemon(home, "--socket", str(short_tmp / "a.sock"))
    try:
        editor, wire = await bridged_client(home)
        status = await wire.result("daemon.status")
        assert status["pid"] == owner.process.pid != editor.pid
        # The editor's run is the owner's: a socket client sees it, and its events.
        socket_client = await owner.connect()
        await socket_client.result("run.subscribe", {"run_id": "*"})
        started = await wire.result("run.start", {"pipeline": dot(QUICK),
                                                  "settings": FAST, "wait": True})
        listed = await socket_client.result("run.list", {})
        assert [run["run_id"] for run in listed["runs"]] == [started["run_id"]]
        assert any(note["params"]["run_id"] == started["run_id"]
                   for note in socket_client.notifications if note["method"] == "run/event")
        # shutdown then exit ends the bridge with 0, and the shared daemon lives on.
        assert await wire.result("shutdown") is None
        await wire.send(EXIT)
        assert await asyncio.wait_for(editor.wait(), WAIT) == 0
        assert (await socket_client.result("daemon.status"))["pid"] == owner.process.pid

        # exit without shutdown: 1, as a stdio daemon of its own would say. Options the
        # shared daemon was not started with are said not to apply.
        rude, rude_wire = await bridged_client(home, "--max-pipeline-bytes", "4096")
        await rude_wire.send(EXIT)
        assert await asyncio.wait_for(rude.wait(), WAIT) == 1
        assert rude.stderr is not None
        said = (await rude.stderr.read()).decode()
        assert "bridging to it, so these options do not apply: --max-pipeline-bytes" in said
    finally:
        assert await owner.stop() == 0, "".join(owner.log)


async def read_replies(wire: Wire, count: int) -> list[dict[str, Any]]:
    """The next `count` messages."""
    return [await wire.recv() for _ in range(count)]


async def test_a_bridged_client_that_pipelines_gets_every_reply(
        short_tmp: Path) -> None:
    home = short_tmp / "home"
    owner = await start_daemon(home, "--socket", str(short_tmp / "a.sock"))
    try:
        editor, wire = await bridged_client(home)
        # Far more requests, at once, than the daemon reads before it waits for the bridge
        # to take its replies; the client reads them as they come, as a client must.
        count = 20000
        reading = asyncio.create_task(read_replies(wire, count))
        await wire.send_raw(b"".join(wire.frame(json.dumps(
            {"jsonrpc": "2.0", "id": 1000 + i, "method": "daemon.status"}).encode())
            for i in range(count)))
        replies = await reading
        assert sorted(reply["id"] for reply in replies) == list(range(1000, 1000 + count))
        assert all(reply["result"]["pid"] == owner.process.pid for reply in replies)
        await wire.result("shutdown")
        await wire.send(EXIT)
        assert await asyncio.wait_for(editor.wait(), WAIT) == 0
    finally:
        assert await owner.stop() == 0, "".join(owner.log)


async def test_a_bridged_client_on_a_file_gets_every_reply(short_tmp: Path) -> None:
    """stdin a file (a script of requests): nothing the daemon's loop could watch, so the
    bridge hands the daemon pipes and copies the file into them."""
    home = short_tmp / "home"
    owner = await start_daemon(home, "--socket", str(short_tmp / "a.sock"))
    try:
        # More than the daemon reads before its replies are taken, and then the end of the
        # file: as for a stdio daemon of its own, everything asked is answered.
        count = 20000
        messages = [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}},
                    *({"jsonrpc": "2.0", "id": i, "method": "daemon.status"}
                      for i in range(1, count + 1))]
        script = short_tmp / "script.ndjson"
        script.write_text("".join(json.dumps(message) + "\n" for message in messages))
        with script.open("rb") as stdin:
            bridge = await asyncio.create_subprocess_exec(
                *daemon_argv("--stdio", "--home", str(home)), stdin=stdin,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, said = await asyncio.wait_for(bridge.communicate(), WAIT)
        assert bridge.returncode == 1, said.decode()  # no shutdown came: 1, as over stdio
        replies = [json.loads(line) for line in out.splitlines()]
        statuses = [reply for reply in replies if 1 <= reply["id"] <= count]
        assert [reply["id"] for reply in statuses] == list(range(1, count + 1))
        assert {reply["result"]["pid"] for reply in statuses} == {owner.process.pid}
    finally:
        assert await owner.stop() == 0, "".join(owner.log)


EXIT = {"jsonrpc": "2.0", "method": "exit"}
QUICK = """digraph quick {
    start [shape=Mdiamond]
    work [prompt="Do it"]
    done [shape=Msquare]
    start -> work -> done
}"""


async def test_a_daemon_killed_mid_run_is_replaced_by_the_next_command(
        home: Path, short_tmp: Path) -> None:
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = blocking_pipeline(go, fifo)
    started = call(home, "run.start", {"pipeline": pipeline, "settings": FAST})
    run_id = started["run_id"]
    tool = int(await read_fifo(fifo))  # prep's model call is made; the tool blocks
    # While its daemon lives, the run is running for everyone, never interrupted.
    assert call(home, "run.get", {"run_id": run_id})["status"] == "running"
    again = ostinato("serve", "--home", str(home))
    assert again.returncode == 4 and "already served by daemon pid" in again.stderr
    assert call(home, "run.get", {"run_id": run_id})["status"] == "running"

    record = read_record(home)
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    kill_orphan(tool)
    # The next command starts a new daemon, which alone decides the run was interrupted.
    found = call(home, "run.get", {"run_id": run_id})
    assert (found["status"], found["resumable"]) == ("interrupted", True)
    replaced = read_record(home)
    assert replaced is not None and replaced.pid != record.pid

    go.touch()
    resumed = call(home, "run.resume", {"run_id": run_id, "wait": True})
    assert (resumed["status"], resumed["outcome"]) == ("completed", "success")
    detail = call(home, "run.get", {"run_id": run_id})
    assert visits(detail) == ["start", "prep", "slow", "check", "after", "done"]
    calls = [entry["node_id"] for entry in trace(detail) if entry["kind"] != "run"]
    assert calls.count("prep") == 1  # not paid twice
    assert calls.count("after") == 1


async def cli(*args: str) -> asyncio.subprocess.Process:
    """A CLI command running in the background (no terminal), its output piped."""
    return await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


async def test_two_commands_an_editor_and_a_socket_client_share_one_home(
        home: Path, short_tmp: Path) -> None:
    fifo = make_fifo(short_tmp / "announce")
    pipeline = short_tmp / "slow.dot"
    pipeline.write_text(blocking(fifo)["source"])
    running = await cli("run", str(pipeline), "--home", str(home))  # starts the daemon
    tool = int(await read_fifo(fifo))  # the run waits in its tool node

    editor, stdio = await bridged_client(home)
    [listed] = (await stdio.result("run.list", {}))["runs"]
    run_id = listed["run_id"]
    assert listed["status"] == "running"
    record = read_record(home)
    assert record is not None
    socket_client = await Wire.unix(record.socket)
    await socket_client.initialize()
    await socket_client.result("run.subscribe", {"run_id": run_id})
    listing = ostinato("runs", "list", "--json", "--home", str(home))
    assert listing.returncode == 0, listing.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listing.stdout)["runs"]] == [
        (run_id, "running")]
    watching = await cli("runs", "watch", run_id, "--home", str(home))

    cancelled = ostinato("runs", "cancel", run_id, "--home", str(home))
    assert cancelled.returncode == 0, cancelled.stderr
    # Everyone sees the same end: the run's own command, the watcher, both clients.
    out, _ = await asyncio.wait_for(running.communicate(), WAIT)
    assert running.returncode == 1 and run_id in out.decode()
    watched, _ = await asyncio.wait_for(watching.communicate(), WAIT)
    assert watching.returncode == 1 and "cancelled" in watched.decode()
    assert (await stdio.result("run.get", {"run_id": run_id}))["status"] == "cancelled"
    ended = await socket_client.result("run.get", {"run_id": run_id})
    assert ended["status"] == "cancelled"
    assert any(note["params"]["type"] == "PipelineCancelled"
               for note in socket_client.notifications if note["method"] == "run/event")
    assert process_gone(tool)
    assert (await stdio.result("daemon.status"))["pid"] == record.pid  # one daemon throughout
    await stdio.result("shutdown")
    await stdio.send(EXIT)
    assert await asyncio.wait_for(editor.wait(), WAIT) == 0
