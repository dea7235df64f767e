"""Unix socket and TCP transports: permissions, framings, tokens, many clients at once."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from .support import WAIT, DaemonProcess, Wire, daemon_argv, start_daemon


async def test_unix_socket_is_private(daemon: DaemonProcess) -> None:
    mode = os.stat(daemon.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("framing", ["content-length", "ndjson"])
async def test_tcp_and_unix_speak_both_framings(daemon: DaemonProcess, framing: str) -> None:
    for wire in (await Wire.tcp(*daemon.tcp, framing), await Wire.unix(daemon.socket, framing)):
        result = await wire.initialize()
        assert result["serverInfo"]["name"] == "ostinato"
        status = await wire.result("daemon.status")
        assert status["transports"] == [f"unix:{daemon.socket}",
                                        f"tcp://127.0.0.1:{daemon.tcp[1]}"]
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
