"""`make demo`, the agent part: examples/agent/summarise.dot with its scripted twin. Its agent
node calls a command tool (`wc`) and the MCP reference filesystem server (from npm, pinned
in examples/agent/package.json) in the run's workspace; then a recorded replay repeats it
with no process started, and invariants check which tools it called."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson

from ostinato.clients.python import AsyncClient

AGENT = Path(__file__).resolve().parent / "agent"
SERVER = AGENT / "node_modules" / ".bin" / "mcp-server-filesystem"
INVARIANTS = [
    {"type": "tool_called", "tool": "files__write_file", "arguments": {"path": "summary.md"}},
    {"type": "tool_called", "tool": "word_count", "min_count": 3},
    {"type": "max", "metric": "nodes.summarise.turns", "value": 4},
]


def filesystem_server() -> Path | None:
    """The pinned server, installed with `npm ci` if needed; None without npm."""
    if SERVER.exists():
        return SERVER
    npm = shutil.which("npm")
    if npm is None:
        return None
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AGENT,
                   check=True, timeout=600)
    return SERVER


def twin_settings(server: Path) -> dict[str, Any]:
    """scripted.json, with the `files` server started from its installed copy rather than
    fetched by npx while the run runs."""
    settings = orjson.loads((AGENT / "scripted.json").read_bytes())
    settings["agent"]["mcp_servers"] = {"files": {
        "command": [str(server), "{workspace}"],
        "tools": "list_directory,read_text_file,write_file"}}
    return settings


async def run_agent_example(agent: AsyncClient) -> bool:
    """Run the agent example live (tools and server for real, the model scripted), then
    replay it; True when both completed alike and the invariants pass."""
    server = filesystem_server()
    print("\nThe agent runs agent/summarise.dot: an agent node with a command tool and an "
          "MCP server,\nits model scripted (agent/scripted.json):")
    if server is None:
        print("  skipped: npm is not installed, and the node needs the MCP reference "
              "filesystem server")
        return True
    summary = await agent.request("run.start", {
        "pipeline": {"path": str(AGENT / "summarise.dot")}, "settings": twin_settings(server),
        "wait": True})
    run_dir = Path(summary["run_dir"])
    calls = [orjson.loads(line) for line in (run_dir / "trace.jsonl").read_bytes().splitlines()]
    for call in calls:
        request = call["request"] or {}
        if call["kind"] == "model":
            made = [c["name"] for c in (call["response"] or {}).get("tool_calls", [])]
            said = f"calls {', '.join(made)}" if made else "answers"
            print(f"  turn {request['metadata']['turn']}: the model {said}")
        elif call["kind"] == "tool_list":
            print(f"  the MCP server {request['server']!r} lists "
                  f"{len(call['response']['tools'])} tools")
    written = (run_dir / "workspace" / "summary.md").read_text()
    print(f"  {summary['status']}; the MCP server wrote summary.md:")
    print("    " + written.strip().replace("\n", "\n    "))
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    print(f"  processes started: {manifest['processes_started']} (tools, and the server); "
          f"the transcript: {run_dir / 'summarise' / 'transcript.md'}")
    replay = await agent.request("run.start", {"replay": {"from_run": summary["run_id"],
                                                          "mode": "recorded"}, "wait": True})
    replayed = orjson.loads((Path(replay["run_dir"]) / "manifest.json").read_bytes())
    diff = await agent.request("run.diff", {"a": summary["run_id"], "b": replay["run_id"]})
    print(f"  a recorded replay: {replay['status']}, processes started: "
          f"{replayed['processes_started']}, identical to the run: {diff['identical']}")
    checked = await agent.request("run.reeval", {"run_id": summary["run_id"],
                                                 "invariants": INVARIANTS})
    for result in checked["results"]:
        print(f"  invariant {result['type']}: {result['status']}: {result['message']}")
    return (summary["status"] == "completed" and replay["status"] == "completed"
            and replayed["processes_started"] == 0 and diff["identical"]
            and checked["verdict"] == "passed")
