"""JSON-RPC leniency where the spec allows it: positional params that mean none, notifications
that are never answered, and an `exit` that is never refused. Real daemons, real pipes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from .support import WAIT, DaemonProcess, spawn_stdio

NO_PARAMS = [[], [None]]


@pytest.mark.parametrize("params", NO_PARAMS)
async def test_empty_positional_params_mean_none(daemon: DaemonProcess, params: list) -> None:
    wire = await daemon.connect()
    assert (await wire.result("daemon.status", params))["connections"] == 1
    assert await wire.result("shutdown", params) is None


async def test_one_object_by_position_is_read_as_that_object(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.result("test.subscribe", [{"topic": "t"}])
    assert await wire.result("test.publish", [{"topic": "t", "payload": {}}]) == {"count": 1}
    refused = await wire.request("daemon.status", [{"verbose": 1}])  # validated as by name
    assert refused["error"]["code"] == -32602
    assert refused["error"]["data"][0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("params", [[1], [{}, {}], [None, None], ["x"]])
async def test_other_positional_params_are_refused(daemon: DaemonProcess,
                                                   params: list) -> None:
    wire = await daemon.connect()
    reply = await wire.request("daemon.status", params)
    assert reply["error"]["code"] == -32602 and reply["id"] == wire._next_id


@pytest.mark.parametrize("params", [[1], [{"id": "x"}, 2], "x", 5, {"nope": 1}])
@pytest.mark.parametrize("initialized", [False, True])
async def test_a_notification_with_bad_params_is_never_answered(
        daemon: DaemonProcess, params: Any, initialized: bool) -> None:
    wire = await daemon.connect(initialize=initialized)
    for method in ("$/cancelRequest", "daemon.status", "initialized", "no.such"):
        await wire.send({"jsonrpc": "2.0", "method": method, "params": params})
    if not initialized:
        await wire.initialize()
    reply = await wire.request("daemon.status")  # the very next message is its answer
    assert reply["id"] == wire._next_id and "result" in reply


@pytest.mark.parametrize("params", [[None], [], [1, 2], "x", 5, {"workDoneToken": 1.5}])
@pytest.mark.parametrize("initialized", [False, True])
async def test_exit_with_any_params_ends_a_socket_connection_unanswered(
        daemon: DaemonProcess, params: Any, initialized: bool) -> None:
    wire = await daemon.connect(initialize=initialized)
    await wire.send({"jsonrpc": "2.0", "method": "exit", "params": params})
    assert await asyncio.wait_for(wire.reader.read(), WAIT) == b""  # closed, nothing said


@pytest.mark.parametrize("params", [[None], [1, 2], "x", {"reason": "bye"}])
@pytest.mark.parametrize("when", ["before initialize", "after initialize", "after shutdown"])
async def test_exit_with_any_params_ends_a_stdio_process(tmp_path: Path, params: Any,
                                                         when: str) -> None:
    process, wire = await spawn_stdio(tmp_path / "home")
    if when != "before initialize":
        await wire.initialize()
    if when == "after shutdown":
        assert await wire.result("shutdown", [None]) is None
    await wire.send({"jsonrpc": "2.0", "method": "exit", "params": params})
    assert await asyncio.wait_for(process.wait(), WAIT) == (0 if when == "after shutdown"
                                                            else 1)
    assert await wire.reader.read() == b""  # the exit was not answered


async def test_vscode_style_null_params_session_exits_0(tmp_path: Path) -> None:
    """What vscode-jsonrpc puts on the wire for sendRequest(m, null), sendNotification(m, null)."""
    process, wire = await spawn_stdio(tmp_path / "home")
    await wire.initialize()
    await wire.send({"jsonrpc": "2.0", "method": "initialized", "params": [None]})
    assert await wire.result("shutdown", [None]) is None
    await wire.send({"jsonrpc": "2.0", "method": "exit", "params": [None]})
    assert await asyncio.wait_for(process.wait(), WAIT) == 0
