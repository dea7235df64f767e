"""MCP clients connect (issue 16, its lifecycle): the official MCP Python SDK's client
negotiates a revision with `ostinato serve --stdio`, on a home of its own and on a served
home: in its default mode the stateless 2026-07-28 (it probes `server/discover`), told
`legacy` the 2025-11-25 handshake (`initialize`), where it pings."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from ostinato.protocol import PROTOCOL_VERSION
from ostinato.protocol.mcp import MCP_VERSIONS, MODERN_VERSIONS

from .support import WAIT, spawn_stdio, start_daemon


def stdio_server(home: Path) -> StdioServerParameters:
    """What an MCP host's configuration says: the command that serves it over stdio."""
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "ostinato.daemon", "--stdio", "--home", str(home)])


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("home_served", [False, True], ids=["own", "bridged"])
async def test_the_official_sdk_client_connects(short_tmp: Path, home_served: bool,
                                                mode: str) -> None:
    home = short_tmp / "home"
    owner = await start_daemon(home) if home_served else None
    try:
        async with Client(stdio_server(home), read_timeout_seconds=WAIT,
                          mode=mode) as client:  # type: ignore[arg-type]
            assert client.server_info.name == "ostinato"
            if mode == "auto":  # the newest revision, as discovered
                assert client.protocol_version == MODERN_VERSIONS[0]
                assert client.server_capabilities.tools is not None
            else:  # the handshake, where MCP has ping
                assert client.protocol_version == MCP_VERSIONS[0]
                await client.send_ping()
        if owner is not None:  # the shared daemon lives on, and heard the MCP session
            wire = await owner.connect()
            assert (await wire.result("daemon.status"))["pid"] == owner.process.pid
    finally:
        if owner is not None:
            assert await owner.stop() == 0, "".join(owner.log)
    log = (home / "daemon.log").read_text()
    if mode == "legacy":
        assert f"(MCP {MCP_VERSIONS[0]})" in log
    if owner is None:  # an MCP session ends by closing stdin: that is a clean end
        assert "ostinato daemon stopped (exit code 0)" in log


@pytest.mark.parametrize(("requested", "answered"), [
    ("2025-11-25", "2025-11-25"), ("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"),
    ("2024-11-05", MCP_VERSIONS[0]), ("2030-01-01", MCP_VERSIONS[0]),
    ("0.1", PROTOCOL_VERSION), (None, PROTOCOL_VERSION)])
async def test_initialize_negotiates_the_revision(short_tmp: Path, requested: str | None,
                                                  answered: str) -> None:
    process, wire = await spawn_stdio(short_tmp / "home")
    # MCP allows a ping before initialize.
    assert await wire.result("ping") == {}
    params = {"capabilities": {}, "clientInfo": {"name": "raw"}}
    if requested is not None:
        params["protocolVersion"] = requested
    result = await wire.initialize(**params)
    assert result["protocolVersion"] == answered
    await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert await wire.result("ping") == {}
    assert wire.notifications == []  # a notification is never answered
    process.stdin.close()  # type: ignore[union-attr]
    mcp = answered != PROTOCOL_VERSION
    assert await asyncio.wait_for(process.wait(), WAIT) == (0 if mcp else 1)
