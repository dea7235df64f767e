"""examples/agent: the agent pipeline with its scripted twin, a real command tool and the MCP
reference filesystem server (npm, pinned). A recorded replay reproduces the run with zero
processes started: by the engine's count, by its events, and by the operating system's (the
server is started through a wrapper that appends its pid to a file outside the home)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .node_support import tool
from .runs_support import events, process_gone
from .support import REPO, Wire

AGENT = REPO / "examples" / "agent"
SERVER = AGENT / "node_modules" / ".bin" / "mcp-server-filesystem"


@pytest.fixture(scope="module")
def filesystem_server() -> Path:
    """The pinned server, installed from examples/agent's lockfile (skipped without npm,
    except in CI)."""
    npm = tool("npm")
    tool("node")
    if not SERVER.exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AGENT,
                       check=True, timeout=600)
    return SERVER


def settings(server: Path, sentinel: Path) -> dict[str, Any]:
    twin = json.loads((AGENT / "scripted.json").read_text())
    wrapper = f'echo $$ >> {sentinel}; exec {server} "$0"'
    twin["agent"]["mcp_servers"] = {"files": {
        "command": ["sh", "-c", wrapper, "{workspace}"],
        "tools": "list_directory,read_text_file,write_file"}}
    return twin


async def test_the_example_runs_then_replays_with_no_process_started(
        daemon: Any, filesystem_server: Path, tmp_path: Path) -> None:
    wire: Wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    sentinel = tmp_path / "server-pids"
    summary = await wire.result("run.start", {
        "pipeline": {"path": str(AGENT / "summarise.dot")},
        "settings": settings(filesystem_server, sentinel), "wait": True})
    detail = await wire.result("run.get", {"run_id": summary["run_id"]})
    assert (detail["status"], detail["outcome"]) == ("completed", "success"), \
        detail["failure_reason"]
    workspace = Path(detail["run_dir"]) / "workspace"
    # The workspace began as a copy of notes/; the MCP server wrote the summary into it.
    assert sorted(p.name for p in workspace.iterdir()) == [
        "monday.md", "summary.md", "tuesday.md", "wednesday.md"]
    assert (workspace / "summary.md").read_text().startswith("monday.md: 15 words")
    trace = [json.loads(line) for line in
             (Path(detail["run_dir"]) / "trace.jsonl").read_text().splitlines()]
    counts = [c["response"]["stdout"].split()[0] for c in trace
              if c["kind"] == "tool" and c["request"]["tool"] == "word_count"]
    assert sorted(counts) == ["15", "16", "19"]
    assert len(sentinel.read_text().split()) == 1  # the server started once
    started = len(events(wire, summary["run_id"], "ToolProcessStarted"))
    assert started == 4  # three wc, one server

    replay = await wire.result("run.start", {"replay": {"from_run": summary["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    assert replay["status"] == "completed", replay
    replayed = json.loads((Path(replay["run_dir"]) / "manifest.json").read_text())
    assert replayed["processes_started"] == 0
    assert events(wire, replay["run_id"], "ToolProcessStarted") == []
    assert len(sentinel.read_text().split()) == 1  # the OS saw no new server either
    assert not (Path(replay["run_dir"]) / "workspace" / "summary.md").exists()
    diff = await wire.result("run.diff", {"a": summary["run_id"], "b": replay["run_id"]})
    assert diff["identical"] is True, diff["first_divergence"]
    assert process_gone(int(sentinel.read_text().split()[0]))  # it ended with its run
