"""`make demo`: start a daemon, drive it through a short scripted session, show what happened.

The daemon listens on a unix socket with its home in ./.ostinato/demo; two clients connect,
one with LSP framing and one with MCP's newline-delimited JSON, and each exchange is printed.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from ostinato.clients.python import AsyncClient, RpcError
from ostinato.protocol.codec import Framing

HOME = Path(".ostinato") / "demo"


def show(arrow: str, who: str, payload: Any) -> None:
    """Print one message of the session, shortened to a line or two."""
    text = orjson.dumps(payload).decode()
    print(f"  {who:>7} {arrow} {text[:150]}{' …' if len(text) > 150 else ''}")


async def exchange(client: AsyncClient, who: str, method: str,
                   params: dict[str, Any] | None = None) -> Any:
    """Send one request, print it and its answer."""
    show("→", who, {"method": method, **({"params": params} if params else {})})
    try:
        result = await client.request(method, params)
    except RpcError as error:
        show("←", who, {"error": error.to_dict()})
        return None
    show("←", who, {"result": result})
    return result


async def start_daemon(socket: Path) -> tuple[asyncio.subprocess.Process, list[str],
                                              asyncio.Future[bytes]]:
    """`ostinato serve --socket`; returns once it says where it listens, with a task that
    reads the rest of its stderr (the same lines are in daemon.log)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ostinato.daemon", "--socket", str(socket), "--home", str(HOME),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    endpoints: list[str] = []
    while line := (await asyncio.wait_for(process.stderr.readline(), 30)).decode():
        if found := re.search(r"listening on (\S+)", line):
            endpoints.append(found.group(1))
        if "daemon ready" in line:
            break
    if not endpoints:
        raise SystemExit("the daemon did not start; see " + str(HOME / "daemon.log"))
    return process, endpoints, asyncio.ensure_future(process.stderr.read())


async def main() -> int:
    """Run the scripted session."""
    with tempfile.TemporaryDirectory(prefix="ostinato-demo-") as tmp:
        socket = Path(tmp) / "daemon.sock"
        print(f"Starting the daemon: ostinato serve --socket {socket} --home {HOME}")
        process, endpoints, stderr = await start_daemon(socket)
        print(f"  pid {process.pid}, listening on {', '.join(endpoints)}\n")

        print("An editor connects with LSP framing (Content-Length headers):")
        editor = await AsyncClient.connect_unix(socket, Framing.CONTENT_LENGTH)
        await exchange(editor, "editor", "daemon.status")  # before initialize: refused
        init = await editor.initialize("demo-editor")
        show("←", "editor", {"serverInfo": init.serverInfo.model_dump(),
                             "methods": init.capabilities.methods})

        print("\nAn agent connects with MCP framing (one JSON object per line):")
        agent = await AsyncClient.connect_unix(socket, Framing.NDJSON)
        await agent.initialize("demo-agent")
        status = await exchange(agent, "agent", "daemon.status")
        discovered = await agent.request("rpc.discover")
        print(f"  {'agent':>7} ← rpc.discover: OpenRPC {discovered['openrpc']}, "
              f"{len(discovered['methods'])} methods described")

        print("\nMistakes get structured errors, and nothing else is disturbed:")
        await exchange(agent, "agent", "pipeline.run", {"path": "x.dot"})
        await exchange(agent, "agent", "daemon.status", {"verbose": True})
        await exchange(editor, "editor", "daemon.status")

        print("\nBoth clients say goodbye (shutdown, exit); SIGTERM stops the daemon:")
        await editor.close()
        await agent.close()
        process.terminate()
        code = await process.wait()
        await stderr
        print(f"  daemon exited with code {code}; socket removed: {not socket.exists()}")
        print(f"\nThe daemon's log: {HOME / 'daemon.log'}")
        ok = code == 0 and status is not None and status["connections"] == 2
        print("demo: OK" if ok else "demo: FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
