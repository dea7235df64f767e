"""MCP tools (issue 16) with the official MCP Python SDK's client over stdio: `ostinato mcp`
serves an agent host through the home's daemon, every capability is a tool whose schemas are
the methods' own, results carry a summary and structured content the SDK checks against the
outputSchema, progress and cancellation work, and wrong calls get errors a model can act on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from ostinato.protocol.catalog import client_methods
from ostinato.protocol.mcp import MCP_VERSIONS, MODERN_VERSIONS
from ostinato.protocol.mcp_tools import (
    DOC_BEGIN,
    DOC_END,
    TOOLS,
    tool_definitions,
    tool_methods,
    tools_markdown,
)

from .mcp_conversation import hold_conversation
from .support import REPO, WAIT, Wire, spawn_stdio


def mcp_server(home: Path, env: dict[str, str] | None = None) -> StdioServerParameters:
    """What an MCP host's configuration says: `ostinato mcp --home HOME` (and the
    environment it gives the server: the SDK passes on only a few variables of its own)."""
    return StdioServerParameters(command=sys.executable, env=env,
                                 args=["-m", "ostinato.clients.cli", "mcp", "--home", str(home)])


def ostinato(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line, as a user next to the agent runs it."""
    return subprocess.run([sys.executable, "-m", "ostinato.clients.cli", *args],
                          capture_output=True, text=True, timeout=WAIT)


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])
async def test_an_agent_holds_the_whole_conversation_over_stdio(short_tmp: Path,
                                                                mode: str) -> None:
    home = short_tmp / "home"
    async with Client(mcp_server(home), read_timeout_seconds=WAIT,
                      mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == (MODERN_VERSIONS[0] if mode == "auto"
                                           else MCP_VERSIONS[0])
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


@pytest.mark.parametrize("executor", [
    "processes", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.xdist_group("ray")])])
async def test_an_agent_holds_the_whole_conversation_with_runs_on_workers(
        short_tmp: Path, executor: str) -> None:
    """The same conversation, the home's daemon executing its runs on workers (the host's
    configuration gives `ostinato mcp` $OSTINATO_EXECUTOR, and the daemon it starts takes
    it): the SDK sees no difference."""
    home = short_tmp / "home"
    async with Client(mcp_server(home, {"OSTINATO_EXECUTOR": executor}),
                      read_timeout_seconds=WAIT) as client:
        await hold_conversation(client, short_tmp / "pipelines")
        status = (await client.call_tool("status", {})).structured_content
    backend = status["result"]["executor"]  # type: ignore[index]
    assert backend["backend"] == executor
    assert sum(worker["runs_done"] for worker in backend["workers"]) >= 2


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


def envelope(version: str = MODERN_VERSIONS[0], **meta: object) -> dict[str, object]:
    """The `_meta` of a 2026-07-28 request."""
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {}, **meta}


async def error(wire: Wire, method: str, params: dict[str, object]) -> dict[str, object]:
    """The error a request gets."""
    reply = await wire.request(method, params)
    assert "error" in reply, reply
    return reply["error"]


async def test_the_stateless_revision_on_the_wire(short_tmp: Path) -> None:
    """2026-07-28 without the SDK: discover, a tool call with `resultType`, the errors for an
    unserved revision and a missing envelope key; the handshake's token still guards it."""
    process, wire = await spawn_stdio(short_tmp / "home")
    discovered = await wire.result("server/discover", {"_meta": envelope()})
    assert discovered["supportedVersions"][:2] == [MODERN_VERSIONS[0], MCP_VERSIONS[0]]
    assert discovered["resultType"] == "complete" and discovered["capabilities"]["tools"] == {
        "listChanged": False}
    called = await wire.result("tools/call", {"name": "status", "arguments": {},
                                              "_meta": envelope()})
    assert called["resultType"] == "complete" and called["isError"] is False
    listed = await wire.result("tools/list", {"_meta": envelope()})
    assert listed["resultType"] == "complete" and listed["ttlMs"] >= 0
    old = await error(wire, "tools/list", {"_meta": envelope("2027-01-01")})
    assert old["code"] == -32022 and old["data"]["requested"] == "2027-01-01"
    assert MODERN_VERSIONS[0] in old["data"]["supported"]
    bare = await error(wire, "tools/list", {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSIONS[0]}})
    assert bare["code"] == -32602 and "clientCapabilities" in bare["message"]
    # Without the envelope, a session still needs initialize.
    assert (await error(wire, "tools/list", {}))["code"] == -32002
    process.stdin.close()  # type: ignore[union-attr]
    assert await asyncio.wait_for(process.wait(), WAIT) == 0


async def test_the_stateless_revision_takes_no_request_without_the_token(
        short_tmp: Path) -> None:
    process, wire = await spawn_stdio(short_tmp / "home", "--token", "s3cret")
    refused = await error(wire, "tools/list", {"_meta": envelope()})
    assert refused["code"] == -32003
    process.kill()
    await process.wait()


async def test_an_mcp_session_gets_only_mcp_notifications(short_tmp: Path) -> None:
    """A test run subscribes its caller to its events; an MCP session hears of them only
    through its resource subscriptions, never as `tests/event` or `run/event`."""
    process, wire = await spawn_stdio(short_tmp / "home")
    await wire.initialize(protocolVersion=MCP_VERSIONS[0], capabilities={},
                          clientInfo={"name": "raw"})

    async def tool(tool_name: str, **arguments: object) -> dict:
        result = await wire.result("tools/call", {"name": tool_name, "arguments": arguments})
        assert result["isError"] is False, result
        return result["structuredContent"]["result"]

    source = {"source": "digraph g { start [shape=Mdiamond] exit [shape=Msquare] "
                        "start -> exit }", "format": "dot"}
    run = await tool("run", action="start", pipeline=source, wait=True)
    snapshot = await tool("snapshot", action="create", run_id=run["run_id"], name="tiny")
    tested = await tool("tests", action="run", snapshot_ids=[snapshot["id"]], wait=True)
    assert tested["status"] == "passed"
    assert [n["method"] for n in wire.notifications
            if not n["method"].startswith("notifications/")] == []
    process.stdin.close()  # type: ignore[union-attr]
    assert await asyncio.wait_for(process.wait(), WAIT) == 0


async def test_closing_stdin_ends_an_mcp_session_and_cancels_its_waiting_run(
        short_tmp: Path) -> None:
    """MCP's stdio shutdown is closing the server's input: a `run` call that waits is
    abandoned, and its run cancelled, rather than finished (as a scripted JSON-RPC session's
    would be). By-position params are accepted as for any method."""
    home = short_tmp / "home"
    process = await asyncio.create_subprocess_exec(  # as a host spawns it
        sys.executable, "-m", "ostinato.clients.cli", "mcp", "--home", str(home),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24)
    wire = Wire(process.stdout, process.stdin)  # type: ignore[arg-type]
    await wire.initialize(protocolVersion=MCP_VERSIONS[0], capabilities={},
                          clientInfo={"name": "raw"})
    status = await wire.result("tools/call", [{"name": "status", "arguments": {}}])
    assert status["isError"] is False
    await wire.send({"jsonrpc": "2.0", "id": 98, "method": "tools/call", "params": None})
    assert (await wire.response())["error"]["code"] == -32602  # no tool named: not a crash
    source = 'digraph slow { start [shape=Mdiamond] exit [shape=Msquare] ' \
             'pause [shape=parallelogram, tool_command="sleep 120"] start -> pause -> exit }'
    await wire.send({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {
        "name": "run", "arguments": {"action": "start", "wait": True,
                                     "pipeline": {"source": source, "format": "dot"}},
        "_meta": {"progressToken": "slow"}}})
    begun = await wire.recv(WAIT)  # the first progress: the run is under way
    assert begun["method"] == "notifications/progress", begun
    run_id = begun["params"]["message"].split()[1]
    process.stdin.close()  # type: ignore[union-attr]
    assert await asyncio.wait_for(process.wait(), WAIT) == 0
    # The home's daemon lives on; the run was cancelled, not left running.
    watched = ostinato("runs", "watch", run_id, "--home", str(home), "--json")
    assert json.loads(watched.stdout)["status"] == "cancelled", watched
