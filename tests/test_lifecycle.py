"""Lifecycle over real transports: initialize, gating, shutdown, exit and exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ostinato.protocol.home import socket_path

from .support import TEST_EXTENSION, WAIT, DaemonProcess, Wire, spawn_stdio

FRAMINGS = ["content-length", "ndjson"]


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_stdio_session_in_both_framings(tmp_path: Path, framing: str) -> None:
    process, wire = await spawn_stdio(tmp_path / "home")
    wire.framing = framing
    before = await wire.request("daemon.status")
    assert before["error"]["code"] == -32002
    result = await wire.initialize(clientInfo={"name": "test"})
    assert result["serverInfo"]["name"] == "ostinato"
    assert result["protocolVersion"]
    assert "daemon.status" in result["capabilities"]["methods"]
    status = await wire.result("daemon.status")
    assert status["pid"] == process.pid
    assert status["home"] == str((tmp_path / "home").absolute())
    # It serves its home's well-known socket too (a runtime path: tmp_path is long).
    assert status["transports"] == ["stdio", f"unix:{socket_path(tmp_path / 'home')}"]
    assert status["connections"] == 1 and status["active_runs"] == 0
    assert await wire.result("shutdown") is None  # LSP: null
    refused = await wire.request("daemon.status")
    assert refused["error"]["code"] == -32600
    await wire.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(process.wait(), WAIT) == 0


async def test_exit_without_shutdown_exits_1(tmp_path: Path) -> None:
    process, wire = await spawn_stdio(tmp_path / "home")
    await wire.initialize()
    await wire.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(process.wait(), WAIT) == 1


async def test_stdin_closed_without_shutdown_exits_1_after_answering(tmp_path: Path) -> None:
    process, wire = await spawn_stdio(tmp_path / "home")
    await wire.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    wire.writer.close()  # the answer must still come: a scripted session piped into stdin
    assert (await wire.recv())["id"] == 1
    assert await asyncio.wait_for(process.wait(), WAIT) == 1


async def test_initialize_twice_is_refused(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    again = await wire.request("initialize", {})
    assert again["error"]["code"] == -32600
    assert await wire.result("daemon.status")  # the session is still usable


async def test_notifications_before_initialize_are_dropped(daemon: DaemonProcess) -> None:
    wire = await daemon.connect(initialize=False)
    await wire.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    await wire.initialize()
    status = await wire.result("daemon.status")
    assert status["connections"] == 1


async def test_exit_on_a_socket_closes_only_that_connection(daemon: DaemonProcess) -> None:
    leaving = await daemon.connect()
    staying = await daemon.connect()
    assert await leaving.result("shutdown") is None
    await leaving.send({"jsonrpc": "2.0", "method": "exit"})
    assert await leaving.reader.read() == b""  # closed by the daemon
    status = await staying.result("daemon.status")
    assert status["connections"] == 1
    assert daemon.process.returncode is None


async def test_daemon_log_is_written_and_stdout_carries_only_frames(tmp_path: Path) -> None:
    process, wire = await spawn_stdio(tmp_path / "home", "--log-level", "DEBUG")
    await wire.initialize()
    await wire.result("shutdown")
    await wire.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(process.wait(), WAIT) == 0
    assert await wire.reader.read() == b""  # nothing but the parsed frames ever reached stdout
    log = (tmp_path / "home" / "daemon.log").read_text()
    assert "connection 1 opened (stdio)" in log and "daemon stopped" in log
    assert "connection 1 opened" in (tmp_path / "stderr.log").read_text()


async def test_sigterm_stops_a_socket_daemon_and_removes_its_socket(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    assert await daemon.stop() == 0
    assert await wire.reader.read() == b""
    assert not Path(daemon.socket).exists()


async def test_shared_wire_reads_notifications_ahead_of_responses(
        daemon: DaemonProcess) -> None:
    """Guards the helper the other tests rely on."""
    wire: Wire = await daemon.connect()
    await wire.result("test.subscribe", {"topic": "t"})
    published = await wire.result("test.publish", {"topic": "t", "payload": {"n": 1}})
    assert published == {"count": 1}
    await wire.result("daemon.status")
    assert wire.notifications[0]["method"] == "test/event"


async def test_initialize_must_be_a_request(daemon: DaemonProcess) -> None:
    wire = await daemon.connect(initialize=False)
    await wire.send({"jsonrpc": "2.0", "method": "initialize", "params": {}})
    assert (await wire.request("daemon.status"))["error"]["code"] == -32002


async def test_exit_with_unexpected_params_still_closes(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "method": "exit", "params": {"reason": "bye"}})
    assert await wire.reader.read() == b""


async def test_a_second_request_with_an_id_in_flight_is_refused(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    slow = {"jsonrpc": "2.0", "id": "dup", "method": "test.slow",
            "params": {"gate": "dup", "workDoneToken": 1}}
    await wire.send(slow)
    assert (await wire.recv())["method"] == "$/progress"  # the first one is running
    await wire.send(slow)
    refused = await wire.response()
    assert refused["id"] == "dup" and refused["error"]["code"] == -32600
    assert '"dup"' in refused["error"]["message"]


async def test_end_of_stdin_still_answers_requests_in_flight(tmp_path: Path) -> None:
    process, wire = await spawn_stdio(tmp_path / "home", "--extension", TEST_EXTENSION)
    await wire.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    await wire.send({"jsonrpc": "2.0", "id": 2, "method": "test.slow", "params": {"steps": 3}})
    await wire.send([{"jsonrpc": "2.0", "id": 3, "method": "test.slow",
                      "params": {"steps": 2}}])
    wire.writer.close()
    replies = [await wire.recv() for _ in range(3)]
    assert replies[0]["id"] == 1
    assert replies[1] == {"jsonrpc": "2.0", "id": 2, "result": {"steps_done": 3}}
    assert replies[2] == [{"jsonrpc": "2.0", "id": 3, "result": {"steps_done": 2}}]
    assert await asyncio.wait_for(process.wait(), WAIT) == 1


async def test_socket_end_of_input_cancels_the_clients_work(daemon: DaemonProcess) -> None:
    bystander = await daemon.connect()
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "id": 1, "method": "test.slow",
                     "params": {"gate": "never-eof", "workDoneToken": "t"}})
    assert (await wire.recv())["method"] == "$/progress"
    wire.writer.write_eof()
    assert await wire.reader.read() == b""  # closed, not kept alive by the gated request
    assert (await bystander.result("daemon.status"))["connections"] == 1


async def test_messages_after_exit_in_the_same_write_are_not_served(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    exit_ = wire.frame(json.dumps({"jsonrpc": "2.0", "method": "exit"}).encode())
    status = wire.frame(json.dumps({"jsonrpc": "2.0", "id": 9,
                                    "method": "daemon.status"}).encode())
    await wire.send_raw(exit_ + status)
    assert await wire.reader.read() == b""
