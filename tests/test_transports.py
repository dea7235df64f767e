"""Unix socket and TCP transports: permissions, framings, tokens, many clients at once."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from ostinato.protocol.home import socket_path
from ostinato.protocol.lifecycle import DaemonStatusResult

from .support import WAIT, DaemonProcess, Wire, daemon_argv, start_daemon


async def test_unix_socket_is_private(daemon: DaemonProcess) -> None:
    mode = os.stat(daemon.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("framing", ["content-length", "ndjson"])
async def test_tcp_and_unix_speak_both_framings(daemon: DaemonProcess, framing: str) -> None:
    for wire in (await daemon.connect_tcp(framing), await Wire.unix(daemon.socket, framing)):
        result = await wire.initialize()
        assert result["serverInfo"]["name"] == "ostinato"
        status = await wire.result("daemon.status")
        assert status["transports"] == [f"unix:{daemon.socket}",
                                        f"tcp://127.0.0.1:{daemon.tcp[1]}",
                                        f"unix:{daemon.home / 'daemon.sock'}"]
        await wire.close()


async def test_framing_is_per_connection(daemon: DaemonProcess) -> None:
    lsp = await daemon.connect("content-length")
    mcp = await daemon.connect("ndjson")
    await lsp.send({"jsonrpc": "2.0", "id": 1, "method": "daemon.status"})
    await mcp.send({"jsonrpc": "2.0", "id": 1, "method": "daemon.status"})
    first = await lsp.reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"Content-Length: ")
    line = await asyncio.wait_for(mcp.reader.readline(), WAIT)
    assert line.startswith(b'{"jsonrpc":"2.0","id":1,"result":')


async def test_non_loopback_tcp_refuses_to_start_without_token(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--home", str(tmp_path), "--tcp", "0.0.0.0:0"),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "OSTINATO_TOKEN"})
    _, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 2
    assert b"without --token" in err


async def test_token_is_checked_in_initialize(short_tmp: Path) -> None:
    daemon = await start_daemon(short_tmp / "home", "--tcp", "0.0.0.0:0", "--token", "s3cret")
    try:
        host, port = daemon.tcp
        assert host == "0.0.0.0"
        intruder = await Wire.tcp("127.0.0.1", port)
        assert (await intruder.request("daemon.status"))["error"]["code"] == -32002
        refused = await intruder.request("initialize", {"initializationOptions": {"token": "no"}})
        assert refused["error"]["code"] == -32003
        assert await intruder.reader.read() == b""  # and the connection is closed
        anonymous = await Wire.tcp("127.0.0.1", port)
        assert (await anonymous.request("initialize", {}))["error"]["code"] == -32003
        friend = await Wire.tcp("127.0.0.1", port)
        await friend.initialize(initializationOptions={"token": "s3cret"})
        assert (await friend.result("daemon.status"))["pid"] == daemon.process.pid
    finally:
        assert await daemon.stop() == 0
    log = "".join(daemon.log) + (daemon.home / "daemon.log").read_text()
    assert "s3cret" not in log


async def test_a_live_socket_is_not_stolen_and_a_stale_one_is_replaced(
        daemon: DaemonProcess, short_tmp: Path) -> None:
    second = await asyncio.create_subprocess_exec(
        *daemon_argv("--home", str(short_tmp / "h2"), "--socket", daemon.socket),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(second.communicate(), WAIT)
    assert second.returncode == 2 and b"another daemon is listening" in err
    wire = await daemon.connect()  # the first daemon still owns its socket
    assert await wire.result("daemon.status")

    stale = short_tmp / "stale.sock"
    killed = await start_daemon(short_tmp / "h3", "--socket", str(stale))
    killed.process.kill()
    await killed.process.wait()
    assert stale.exists()
    revived = await start_daemon(short_tmp / "h3", "--socket", str(stale))
    assert await revived.stop() == 0


async def test_twenty_clients_each_get_only_their_own_responses(daemon: DaemonProcess) -> None:
    clients = [await daemon.connect("ndjson" if n % 2 else "content-length")
               for n in range(20)]

    async def hammer(index: int, wire: Wire) -> list[str]:
        for n in range(200):  # pipelined, with ids that collide across clients
            method = "test.slow" if n % 10 == 0 else "daemon.status"
            await wire.send({"jsonrpc": "2.0", "id": n, "method": method,
                             "params": {"workDoneToken": f"{index}-{n}"}})
        seen: list[str] = []
        while len(seen) < 200:
            message = await wire.recv()
            if message.get("method") == "$/progress":
                assert message["params"]["token"].startswith(f"{index}-")
                continue
            assert "result" in message, message
            seen.append(message["id"])
        return seen

    results = await asyncio.gather(*(hammer(i, w) for i, w in enumerate(clients)))
    for seen in results:
        assert sorted(seen) == list(range(200))


async def test_module_entry_point_matches_the_cli(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ostinato.clients.cli", "serve", "--help",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0 and b"--socket PATH" in out


async def test_stdin_from_dev_null_ends_the_session(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--stdio", "--home", str(tmp_path)),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(process.wait(), WAIT) == 1  # no shutdown came: 1, no hang


async def test_stdin_and_stdout_on_one_socket(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--stdio", "--home", str(tmp_path)),
        stdin=theirs, stdout=theirs, stderr=asyncio.subprocess.DEVNULL)
    theirs.close()
    reader, writer = await asyncio.open_connection(sock=ours)
    wire = Wire(reader, writer, "ndjson")
    await wire.initialize()
    assert (await wire.result("daemon.status"))["transports"] == [
        "stdio", f"unix:{socket_path(tmp_path)}"]
    await wire.result("shutdown")
    await wire.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(process.wait(), WAIT) == 0
    await wire.close()


async def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--home", str(tmp_path), "--tcp", "127.0.0.1:99999"),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 2 and b"0 to 65535" in err


async def test_nothing_after_a_refused_token_is_served(short_tmp: Path) -> None:
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--token", "s3cret")
    try:
        wire = await Wire.unix(daemon.socket)
        batch = b"".join(wire.frame(json.dumps(m).encode()) for m in [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"initializationOptions": {"token": "wrong"}}},
            {"jsonrpc": "2.0", "id": 2, "method": "initialize",
             "params": {"initializationOptions": {"token": "s3cret"}}},
            {"jsonrpc": "2.0", "id": 3, "method": "daemon.status"}])
        await wire.send_raw(batch)
        assert (await wire.recv())["error"]["code"] == -32003
        assert await wire.reader.read() == b""  # ids 2 and 3 were never answered
    finally:
        assert await daemon.stop() == 0


async def test_a_first_line_that_is_not_json_is_a_parse_error_in_ndjson(
        daemon: DaemonProcess) -> None:
    wire = await Wire.unix(daemon.socket, "ndjson")
    await wire.send_raw(b"hello\n")
    assert (await wire.recv())["error"]["code"] == -32700
    assert (await wire.initialize())["serverInfo"]["name"] == "ostinato"


async def test_results_are_valid_without_strict_mode(short_tmp: Path) -> None:
    os.environ["OSTINATO_STRICT_RESULTS"] = "0"
    try:
        daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"))
    finally:
        os.environ["OSTINATO_STRICT_RESULTS"] = "1"
    try:
        wire = await daemon.connect()
        status = await wire.result("daemon.status")
        DaemonStatusResult.model_validate(status)  # the fast dict path keeps the contract
    finally:
        assert await daemon.stop() == 0
