"""MCP tools (issue 16) with the official MCP Python SDK's client over stdio: `ostinato mcp`
serves an agent host through the home's daemon, every capability is a tool whose schemas are
the methods' own, results carry a summary and structured content the SDK checks against the
outputSchema, progress and cancellation work, and wrong calls get errors a model can act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from ostinato.protocol.catalog import client_methods
from ostinato.protocol.mcp_tools import (
    DOC_BEGIN,
    DOC_END,
    TOOLS,
    tool_definitions,
    tool_methods,
    tools_markdown,
)

from .mcp_conversation import hold_conversation
from .support import REPO, WAIT


def mcp_server(home: Path) -> StdioServerParameters:
    """What an MCP host's configuration says: `ostinato mcp --home HOME`."""
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "ostinato.clients.cli", "mcp", "--home", str(home)])


def ostinato(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line, as a user next to the agent runs it."""
    return subprocess.run([sys.executable, "-m", "ostinato.clients.cli", *args],
                          capture_output=True, text=True, timeout=WAIT)


async def test_an_agent_holds_the_whole_conversation_over_stdio(short_tmp: Path) -> None:
    home = short_tmp / "home"
    async with Client(mcp_server(home), read_timeout_seconds=WAIT) as client:
        learned = await hold_conversation(client, short_tmp / "pipelines")
    # The session was served by the home's daemon, which lives on: the command line sees
    # the agent's runs and test runs.
    runs = json.loads(ostinato("runs", "list", "--home", str(home), "--json").stdout)
    assert learned["run_id"] in [run["run_id"] for run in runs["runs"]]
    tests = json.loads(ostinato("tests", "list", "--home", str(home), "--json").stdout)
    assert [t["test_run_id"] for t in tests["test_runs"]] == [
        learned["test_run"]["test_run_id"]]
    log = (home / "daemon.log").read_text()
    assert "no summary for a result" not in log and "internal error" not in log


async def test_two_agents_share_the_home_daemon(short_tmp: Path) -> None:
    home = short_tmp / "home"
    async with Client(mcp_server(home), read_timeout_seconds=WAIT) as first, \
            Client(mcp_server(home), read_timeout_seconds=WAIT) as second:
        one = await first.call_tool("status", {})
        two = await second.call_tool("status", {})
        assert one.structured_content["result"]["pid"] == \
            two.structured_content["result"]["pid"]  # type: ignore[index]
        assert two.structured_content["result"]["connections"] >= 2  # type: ignore[index]


def test_every_capability_is_a_tool() -> None:
    """Every method an agent needs is reachable through a tool; only the session's own
    plumbing (lifecycle, subscriptions, MCP's methods) is not."""
    plumbing = {"initialize", "initialized", "shutdown", "exit", "$/cancelRequest",
                "rpc.discover", "run.subscribe", "run.unsubscribe", "tests.subscribe",
                "tests.unsubscribe"}
    methods = {spec.name for spec in client_methods()
               if not spec.is_notification and "/" not in spec.name and spec.name != "ping"}
    assert methods - plumbing == tool_methods()


def test_the_tool_schemas_are_the_methods_schemas() -> None:
    """A tool's inputSchema is its methods' params (so they cannot drift), with the checked
    in copy current."""
    definitions = {tool["name"]: tool for tool in tool_definitions()}
    specs = {spec.name: spec for spec in client_methods()}
    for tool in TOOLS:
        properties = definitions[tool.name]["inputSchema"]["properties"]
        for method in tool.actions.values():
            fields = set(specs[method].params.model_fields) - {"workDoneToken",
                                                                "cancel_with_request"}
            assert fields <= set(properties), (tool.name, method)
    checked_in = json.loads((REPO / "schemas" / "mcp-tools.json").read_text())
    assert checked_in == {"tools": json.loads(json.dumps(tool_definitions()))}


def test_the_docs_list_the_tools_as_generated() -> None:
    """docs/agents.md's tool list is the generated one (`make schemas` rewrites it)."""
    doc = (REPO / "docs" / "agents.md").read_text()
    listed = doc.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0]
    assert listed.strip() == tools_markdown().strip()
