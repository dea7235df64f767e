"""A small MCP server written with the official SDK's own server, for the MCP pool's tests.

Run as `python -m tests.fakes.mcp_tools_server` (stdio), or with `--http PORT` to serve
Streamable HTTP on 127.0.0.1 (it prints `ready` on stderr once it listens).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time

import mcp_types
from mcp.server.mcpserver import MCPServer

server = MCPServer("ostinato-test-tools")
# A PNG header is enough: the pool records images by size and hash, never their bytes.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))


@server.tool(description="Returns its text.")
def echo(text: str) -> str:
    """The text, unchanged."""
    return text


@server.tool(description="The server's environment, as a JSON object.")
def env() -> str:
    """What a secret check looks at: every variable the server process was given."""
    return json.dumps(dict(os.environ), sort_keys=True)


@server.tool(description="The server's pid and working directory.")
def whoami() -> str:
    """For tests that check the process is gone after the pool closes."""
    return json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0), "cwd": os.getcwd()})


@server.tool(description="Sleeps, then answers.")
def slow(seconds: float, started: str = "") -> str:
    """Time for a test to cancel the call; `started` names a FIFO (in the workspace) the
    server writes to once the call runs, so a test awaits that rather than sleeping."""
    if started:
        with open(started, "w") as fifo:
            fifo.write(str(os.getpid()))
    time.sleep(seconds)
    return "woke"


@server.tool(description="Writes to stderr, then exits at once.")
def crash() -> str:
    """A server dying in the middle of a call."""
    sys.stderr.write("fatal: the fixture crashed on purpose\n")
    sys.stderr.flush()
    os._exit(1)


@server.tool(description="Always an error result.")
def fail(reason: str = "denied") -> mcp_types.CallToolResult:
    """An is_error result, as a server reports access denied."""
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=reason)],
                                    is_error=True)


@server.tool(description="Returns n bytes of text.")
def big(n: int) -> str:
    """Output to truncate."""
    return "x" * n


@server.tool(description="Returns a caption and a small PNG.")
def picture() -> mcp_types.CallToolResult:
    """Binary content, recorded as size and hash."""
    return mcp_types.CallToolResult(content=[
        mcp_types.TextContent(type="text", text="a caption"),
        mcp_types.ImageContent(type="image", data=base64.b64encode(PNG).decode(),
                               mime_type="image/png")])


@server.tool(description="Writes a line to stderr and answers.")
def noisy(text: str) -> str:
    """Server stderr that must never reach the daemon's own stderr."""
    sys.stderr.write(f"noise: {text}\n")
    sys.stderr.flush()
    return "ok"


def main() -> None:
    """stdio by default; `--http PORT` serves Streamable HTTP on 127.0.0.1."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    args = parser.parse_args()
    if args.http is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
