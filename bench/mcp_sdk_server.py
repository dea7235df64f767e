"""The official MCP Python SDK's stdio servers that bench/mcp_sdk.py measures.

    python bench/mcp_sdk_server.py high|low|proxy HOME

Each serves one read-only tool, `status`, whose result has the fields of `daemon.status`:

* high:  `MCPServer`, the SDK's recommended server API, the tool a decorated function returning
         a TypedDict (outputSchema, structuredContent and a text block made by the SDK);
* low:   the SDK's lowlevel `Server` with a hand-written tools/list and tools/call;
* proxy: the lowlevel server whose tool forwards `daemon.status` to the daemon that owns HOME
         over its unix socket (NDJSON): an MCP server as a separate process in front of the
         daemon.

Not a runtime part of Ostinato: the SDK is a test dependency only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, TypedDict

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

STARTED = time.monotonic()
STARTED_AT = datetime.now(UTC).isoformat().replace("+00:00", "Z")
READ_ONLY = types.ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
DESCRIPTION = "Daemon identity and health."


class Status(TypedDict):
    """The fields of `daemon.status`."""

    version: str
    protocol_version: str
    pid: int
    home: str
    started_at: str
    uptime_seconds: float
    connections: int
    active_runs: int
    transports: list[str]


def status(home: str) -> Status:
    """A `daemon.status`-sized answer made locally."""
    return {"version": "0.1.0", "protocol_version": "0.1", "pid": os.getpid(), "home": home,
            "started_at": STARTED_AT, "uptime_seconds": round(time.monotonic() - STARTED, 3),
            "connections": 1, "active_runs": 0, "transports": ["stdio"]}


def run_high(home: str) -> None:
    """Serve the tool with `MCPServer`, the SDK's recommended API."""
    app = MCPServer("bench")

    @app.tool(name="status", description=DESCRIPTION, annotations=READ_ONLY)
    def status_tool() -> Status:
        return status(home)

    app.run("stdio")


class DaemonLink:
    """One NDJSON connection to the home's daemon, replies matched to requests by id."""

    def __init__(self, home: str) -> None:
        self.path = os.path.join(home, "daemon.sock")
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 1

    async def open(self) -> None:
        """Connect and open a session."""
        reader, self.writer = await asyncio.open_unix_connection(self.path, limit=1 << 24)
        self.reader_task = asyncio.get_running_loop().create_task(self._read(reader))
        await self.call("initialize", {"clientInfo": {"name": "mcp-proxy"}})

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            future = self.pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """One request; its result, or RuntimeError with the error."""
        assert self.writer is not None
        request_id = self.next_id
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.writer.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                                      "params": params}).encode() + b"\n")
        message = await future
        if "error" in message:
            raise RuntimeError(message["error"])
        return message["result"]


def run_low(home: str, proxy: bool) -> None:
    """Serve the tool with the lowlevel `Server`, answering locally or through the daemon."""
    tool = types.Tool(name="status", description=DESCRIPTION,
                      inputSchema={"type": "object", "properties": {},
                                   "additionalProperties": False},
                      outputSchema={"type": "object"}, annotations=READ_ONLY)
    link = DaemonLink(home)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: Any) -> types.CallToolResult:
        if proxy:
            if link.writer is None:
                await link.open()
            data = await link.call("daemon.status", {})
        else:
            data = status(home)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(data))],
            structuredContent=data)

    server = Server("bench", on_list_tools=list_tools, on_call_tool=call_tool)

    async def serve() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(serve)


def main(argv: list[str]) -> int:
    """Serve the mode named on the command line until stdin closes."""
    if len(argv) != 2 or argv[0] not in ("high", "low", "proxy"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, home = argv
    if mode == "high":
        run_high(home)
    else:
        run_low(home, proxy=mode == "proxy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
