"""An independent client we did not write — pygls 2.x's JsonRPCClient — over stdio."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from pygls.client import JsonRPCClient
from pygls.exceptions import JsonRpcMethodNotFound

from ostinato.protocol.home import socket_path

from .support import WAIT, start_daemon


@pytest.mark.parametrize("home_served", [False, True], ids=["own", "bridged"])
async def test_pygls_client_initializes_calls_status_and_gets_method_not_found(
        short_tmp: Path, home_served: bool) -> None:
    """`serve --stdio` on a free home is the daemon; on a served home it hands its stdio to
    that home's daemon, and pygls cannot tell the difference."""
    home = short_tmp / "home"
    owner = await start_daemon(home) if home_served else None
    client = JsonRPCClient()
    await client.start_io(sys.executable, "-m", "ostinato.daemon", "--stdio",
                          "--home", str(home))
    protocol = client.protocol
    try:
        result = await asyncio.wait_for(protocol.send_request_async(
            "initialize", {"processId": None, "capabilities": {},
                           "clientInfo": {"name": "pygls"}}), WAIT)
        assert result.serverInfo.name == "ostinato"
        assert "daemon.status" in result.capabilities.methods
        protocol.notify("initialized", {})

        status = await asyncio.wait_for(protocol.send_request_async("daemon.status", {}), WAIT)
        if owner is None:
            assert status.pid == client._server.pid
            assert status.transports == ["stdio", f"unix:{socket_path(home)}"]
        else:
            assert status.pid == owner.process.pid != client._server.pid

        with pytest.raises(JsonRpcMethodNotFound):
            await asyncio.wait_for(protocol.send_request_async("no.such.method", {}), WAIT)

        await asyncio.wait_for(protocol.send_request_async("shutdown", None), WAIT)
        protocol.notify("exit", None)
        assert await asyncio.wait_for(client._server.wait(), WAIT) == 0
    finally:
        await client.stop()
        if owner is not None:
            assert await owner.stop() == 0, "".join(owner.log)
