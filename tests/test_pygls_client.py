"""An independent client we did not write — pygls 2.x's JsonRPCClient — over stdio."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from pygls.client import JsonRPCClient
from pygls.exceptions import JsonRpcMethodNotFound

from ostinato.protocol.home import socket_path

from .support import WAIT


async def test_pygls_client_initializes_calls_status_and_gets_method_not_found(
        tmp_path: Path) -> None:
    client = JsonRPCClient()
    await client.start_io(sys.executable, "-m", "ostinato.daemon", "--stdio",
                          "--home", str(tmp_path / "home"))
    protocol = client.protocol
    try:
        result = await asyncio.wait_for(protocol.send_request_async(
            "initialize", {"processId": None, "capabilities": {},
                           "clientInfo": {"name": "pygls"}}), WAIT)
        assert result.serverInfo.name == "ostinato"
        assert "daemon.status" in result.capabilities.methods
        protocol.notify("initialized", {})

        status = await asyncio.wait_for(protocol.send_request_async("daemon.status", {}), WAIT)
        assert status.pid == client._server.pid
        assert status.transports == ["stdio", f"unix:{socket_path(tmp_path / 'home')}"]

        with pytest.raises(JsonRpcMethodNotFound):
            await asyncio.wait_for(protocol.send_request_async("no.such.method", {}), WAIT)

        await asyncio.wait_for(protocol.send_request_async("shutdown", None), WAIT)
        protocol.notify("exit", None)
        assert await asyncio.wait_for(client._server.wait(), WAIT) == 0
    finally:
        await client.stop()
