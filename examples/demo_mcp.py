"""The demo's MCP part: an agent host's session, as Claude Code holds it with `ostinato mcp`.

The command is spawned as a host spawns its MCP servers; it hands its stdin and stdout to
the home's daemon, so the agent sees the runs the demo's other clients made. One JSON
object per line, MCP's handshake (2025-11-25), then the tools.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson


class McpSession:
    """`ostinato mcp --home HOME` over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.next_id = 0

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request; its result (notifications on the way are skipped)."""
        self.next_id += 1
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(orjson.dumps(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}) + b"\n")
        while True:
            reply = orjson.loads(await asyncio.wait_for(self.process.stdout.readline(), 60))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool and print the summary a model would read first."""
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        shown = {k: v for k, v in arguments.items() if k != "pipeline"}
        print(f"  {'agent':>7} → tools/call {name} {orjson.dumps(shown).decode()}")
        lines = result["content"][0]["text"].splitlines()
        print(f"  {'agent':>7} ← " + "\n            ".join(line[:110] for line in lines[:4]))
        return result


async def run_mcp_agent(home: Path, pipeline: Path) -> bool:
    """An MCP session on the home's daemon: list the tools, read the runs, validate."""
    print("\nAn agent host connects over MCP (`ostinato mcp`, as Claude Code would):")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ostinato.clients.cli", "mcp", "--home", str(home),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        limit=1 << 24)  # tools/list is one line of ~250 KB: every tool's schemas
    try:
        return await _converse(McpSession(process), pipeline)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _converse(session: McpSession, pipeline: Path) -> bool:
    """The handshake, the tool list, two tool calls, the end of input."""
    process = session.process
    init = await session.request("initialize", {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "demo-host", "version": "1"}})
    assert process.stdin is not None
    process.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    tools = await session.request("tools/list", {})
    print(f"  {'agent':>7} ← MCP {init['protocolVersion']}, tools: "
          + ", ".join(tool["name"] for tool in tools["tools"]))
    runs = await session.tool("inspect", action="runs", limit=3)
    checked = await session.tool("pipeline", action="validate", pipeline={"path": str(pipeline)})
    process.stdin.close()  # an MCP session ends with its input
    code = await process.wait()
    print(f"  the session ended with code {code}; the daemon goes on")
    return (code == 0 and not runs["isError"]
            and checked["structuredContent"]["result"]["valid"] is True)
