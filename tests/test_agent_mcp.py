"""Agent nodes with MCP servers, through a real daemon: a server started when the run needs
it, its tool list recorded, its tools called, its environment only what was declared; a
recorded replay contacts no server; a server that crashes fails its node clearly and the
daemon lives on."""

from __future__ import annotations

import json
import sys
from typing import Any

from .runs_support import dot, events, run_file, run_to_end, trace
from .support import REPO, Wire

FIXTURE = str(REPO / "tests" / "fakes" / "mcp_tools_server.py")


def pipeline(turns: list[dict[str, Any]], attach: str = 'mcp="t",',
             graph: str = "") -> dict[str, str]:
    command = json.dumps([sys.executable, FIXTURE])
    return dot(f"""\
        digraph mcp_agent {{
            graph [mcp.t.command={json.dumps(command)}, mcp.t.tools="echo,env,crash",
                   mcp.t.env="{{\\"GREETING\\": \\"hello\\"}}" {graph}]
            start [shape=Mdiamond]; exit [shape=Msquare]
            work [prompt="Use the server", {attach} max_retries=0,
                  scripted.turns={json.dumps(json.dumps(turns))},
                  scripted.response="used"]
            start -> work -> exit
        }}""")


def calls(detail: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in trace(detail) if c["kind"] == kind]


async def test_an_mcp_servers_tools_are_offered_called_recorded_and_replayed_without_it(
        daemon: Any) -> None:
    wire: Wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    turns = [{"tools": [{"name": "t__echo", "arguments": {"text": "hi"}},
                        {"name": "t__env"}]}]
    detail = await run_to_end(wire, pipeline(turns))
    assert (detail["status"], detail["outcome"]) == ("completed", "success"), \
        detail["failure_reason"]
    [listing] = calls(detail, "tool_list")
    assert listing["request"]["server"] == "t"
    assert listing["request"]["tools_allow"] == ["echo", "env", "crash"]
    assert [t["name"] for t in listing["response"]["tools"]] == ["echo", "env", "crash"]
    first_turn = calls(detail, "model")[0]["request"]
    assert [t["name"] for t in first_turn["tools"]] == ["t__echo", "t__env", "t__crash"]
    echo, env = sorted(calls(detail, "tool"), key=lambda c: c["request"]["index"])
    assert (echo["request"]["server"], echo["request"]["arguments"]) == ("t", {"text": "hi"})
    assert echo["response"]["content"] == [{"type": "text", "text": "hi"}]
    # The server got exactly its declared environment and the run's mark, nothing of the
    # daemon's (no keys, no tokens).
    environment = json.loads(env["response"]["content"][0]["text"])
    assert set(environment) == {"PATH", "LANG", "HOME", "GREETING", "OSTINATO_RUN_ID"}
    assert environment["HOME"] == str(run_file(detail, "workspace").resolve())
    started = events(wire, detail["run_id"], "ToolProcessStarted")
    assert [(e["data"]["kind"], e["data"]["program"]) for e in started] == [
        ("mcp", sys.executable)]

    replay = await wire.result("run.start", {"replay": {"from_run": detail["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    assert replayed["status"] == "completed", replayed["failure_reason"]
    assert json.loads(run_file(replayed, "manifest.json").read_text())[
        "processes_started"] == 0
    assert events(wire, replay["run_id"], "ToolProcessStarted") == []
    diff = await wire.result("run.diff", {"a": detail["run_id"], "b": replay["run_id"]})
    assert diff["identical"] is True, diff["first_divergence"]


async def test_an_mcp_server_that_crashes_fails_its_node_and_the_daemon_lives_on(
        daemon: Any) -> None:
    wire: Wire = await daemon.connect()
    turns = [{"tools": [{"name": "t__crash"}]}]
    detail = await run_to_end(wire, pipeline(turns))
    assert detail["status"] == "failed"
    assert detail["failure_reason"] == ("MCP server 't' exited during tools/call 'crash': "
                                        "fatal: the fixture crashed on purpose")
    [crash] = calls(detail, "tool")
    assert crash["response"] is None and crash["error"] == detail["failure_reason"]
    assert (await wire.result("daemon.status"))["active_runs"] == 0
    # The daemon goes on: the next run starts the server afresh.
    again = await run_to_end(wire, pipeline([{"tools": [{"name": "t__echo",
                                                         "arguments": {"text": "x"}}]}]))
    assert again["status"] == "completed", again["failure_reason"]


async def test_the_graphs_mcp_attaches_its_servers_to_every_codergen_node(
        daemon: Any) -> None:
    wire: Wire = await daemon.connect()
    turns = [{"tools": [{"name": "t__echo", "arguments": {"text": "from the graph"}}]}]
    detail = await run_to_end(wire, pipeline(turns, attach="", graph=', mcp="t"'))
    assert detail["status"] == "completed", detail["failure_reason"]
    [echo] = calls(detail, "tool")
    assert echo["response"]["content"] == [{"type": "text", "text": "from the graph"}]


async def test_a_replay_of_a_crash_beside_a_cut_call_fails_as_the_run_did(daemon: Any) -> None:
    # Live, the crash cancels its sibling (recorded cut short); served, the sibling must not
    # end the turn first with a timeout: the replay fails with the crash's reason.
    wire: Wire = await daemon.connect()
    turns = [{"tools": [{"name": "slow"}, {"name": "t__crash"}]}]
    detail = await run_to_end(wire, pipeline(
        turns, attach='mcp="t", tools="slow",',
        graph=', tool.slow.argv="[\\"sleep\\", \\"30\\"]"'))
    assert detail["failure_reason"].startswith("MCP server 't' exited during tools/call")
    replay = await wire.result("run.start", {"replay": {"from_run": detail["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    assert replayed["failure_reason"] == detail["failure_reason"]


async def test_one_server_name_declared_twice_differently_fails_clearly(daemon: Any) -> None:
    wire: Wire = await daemon.connect()
    command = json.dumps([sys.executable, FIXTURE])
    turns = json.dumps(json.dumps([{"tools": [{"name": "t__echo",
                                               "arguments": {"text": "a"}}]}]))
    detail = await run_to_end(wire, dot(f"""\
        digraph twice {{
            start [shape=Mdiamond]; exit [shape=Msquare]
            a [prompt="x", mcp="t", mcp.t.command={json.dumps(command)}, mcp.t.tools="echo",
               scripted.turns={turns}, scripted.response="ok"]
            b [prompt="y", mcp="t", mcp.t.command={json.dumps(command)}, mcp.t.tools="env",
               scripted.response="ok", max_retries=0]
            start -> a -> b -> exit
        }}"""))
    assert detail["status"] == "failed"
    assert detail["failure_reason"] == ("MCP server 't' is declared twice with different "
                                        "settings in this run; give one of them another name")
