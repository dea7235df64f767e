"""The conversation an agent host holds with Ostinato over MCP (issue 16), with the official
MCP Python SDK's client: the same steps over stdio and over Streamable HTTP. Each step checks
what the agent would read: the text summary, the structured result, the run's state after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from ostinato.protocol.mcp_tools import TOOLS

# `read` takes a moment, as real work does: the stages after it are reported as progress
# (a request hears of what happens once it is listening).
BRIEF = """digraph brief {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    read  [shape=parallelogram, tool_command="sleep 0.3"]
    write [prompt="Write the brief about $topic"]
    start -> read -> write -> exit
}
"""
SLOW = """digraph slow {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    pause [shape=parallelogram, tool_command="sleep 120"]
    start -> pause -> exit
}
"""
BROKEN = "digraph broken { start [shape=Mdiamond] start -> nowhere }\n"
SETTINGS = {"providers": {"scripted": {"responses": {
    "write": "The brief: tides follow the moon."}}}}
# A snapshot whose second invariant the run does not meet: its test run fails.
INVARIANTS = [{"type": "run_status", "value": "COMPLETED"},
              {"type": "contains", "value": "tides are wind", "path": "node.write"}]


def pipelines(directory: Path) -> dict[str, Path]:
    """The pipeline files of the conversation, written under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"brief": BRIEF, "slow": SLOW, "broken": BROKEN}
    for name, text in files.items():
        (directory / f"{name}.dot").write_text(text)
    return {name: directory / f"{name}.dot" for name in files}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool call that must succeed; its structured content."""
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    assert result.structured_content is not None
    return result.structured_content


async def hold_conversation(client: Client, workdir: Path) -> dict[str, Any]:
    """The whole conversation; what it learned, for the caller's own checks."""
    files = pipelines(workdir)
    assert client.server_info.name == "ostinato"
    assert client.server_capabilities.tools is not None
    await _list_tools(client)
    await _validate(client, files)
    run_id = await _run_with_progress(client, files["brief"])
    await _cancel_a_long_run(client, files["slow"])
    test_run = await _snapshot_and_fail_a_test(client, run_id)
    await _hostile_calls(client)
    return {"run_id": run_id, "test_run": test_run}


async def _list_tools(client: Client) -> None:
    listed = (await client.list_tools()).tools
    assert [tool.name for tool in listed] == [spec.name for spec in TOOLS]
    by_name = {tool.name: tool for tool in listed}
    for tool in listed:
        assert tool.input_schema["type"] == "object" and tool.output_schema is not None
        assert tool.description and tool.annotations is not None
    assert by_name["inspect"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert by_name["delete"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert by_name["run"].annotations.read_only_hint is False  # type: ignore[union-attr]


async def _validate(client: Client, files: dict[str, Path]) -> None:
    valid = await call(client, "pipeline", action="validate",
                       pipeline={"path": str(files["brief"])})
    assert list(valid) == ["summary", "action", "result"] and valid["action"] == "validate"
    assert valid["result"]["valid"] is True and valid["summary"].startswith("The pipeline is")
    broken = await client.call_tool("pipeline", {"action": "validate",
                                                 "pipeline": {"path": str(files["broken"])}})
    assert not broken.is_error  # a broken pipeline is an answer, not a failed call
    assert broken.structured_content["result"]["valid"] is False  # type: ignore[index]
    assert "not valid" in broken.content[0].text  # type: ignore[union-attr]


async def _run_with_progress(client: Client, pipeline: Path) -> str:
    """Run the brief, waiting, with progress; its run id."""
    messages: list[str | None] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    result = await client.call_tool(
        "run", {"action": "start", "pipeline": {"path": str(pipeline)}, "wait": True,
                "inputs": {"topic": "tides"}, "settings": SETTINGS},
        progress_callback=progress)
    run = result.structured_content["result"]  # type: ignore[index]
    assert (run["status"], run["outcome"]) == ("completed", "success")
    text = result.content[0].text  # type: ignore[union-attr]
    assert run["run_id"] in text and run["run_dir"] in text and "Next:" in text
    # Hosts give the model either the text or the structured content: both say it all.
    assert result.structured_content["summary"] == text  # type: ignore[index]
    assert json.loads(result.content[1].text)["result"] == run  # type: ignore[union-attr]
    assert Path(run["run_dir"], "manifest.json").is_file()
    assert messages and messages[0] == f"run {run['run_id']}"
    assert "StageCompleted: write" in messages, messages
    return run["run_id"]


async def _cancel_a_long_run(client: Client, pipeline: Path) -> None:
    """Cancelling a `run` call that waits (the SDK sends notifications/cancelled) cancels
    the run."""
    started = anyio.Event()
    run_ids: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("run ") and not run_ids:
            run_ids.append(message.split()[1])
            started.set()

    async def start() -> None:
        await client.call_tool("run", {"action": "start", "pipeline": {"path": str(pipeline)},
                                       "wait": True}, progress_callback=progress)

    async with anyio.create_task_group() as group:
        group.start_soon(start)
        await started.wait()
        group.cancel_scope.cancel()
    ended = await call(client, "inspect", action="run", run_id=run_ids[0], wait=True)
    assert ended["result"]["status"] == "cancelled"


async def _snapshot_and_fail_a_test(client: Client, run_id: str) -> dict[str, Any]:
    snapshot = (await call(client, "snapshot", action="create", run_id=run_id,
                           name="tides-brief", invariants=INVARIANTS))["result"]
    listed = await call(client, "snapshot", action="list")
    assert snapshot["id"] in [s["id"] for s in listed["result"]["snapshots"]]
    result = await client.call_tool("tests", {"action": "run", "snapshot_ids": [snapshot["id"]],
                                              "wait": True})
    test_run = result.structured_content["result"]  # type: ignore[index]
    assert test_run["status"] == "failed"
    text = result.content[0].text  # type: ignore[union-attr]
    assert "First failure: tides-brief" in text and test_run["test_run_id"] in text, text
    report = await call(client, "tests", action="report", test_run_id=test_run["test_run_id"],
                        format="markdown")
    assert "tides are wind" in report["result"]["content"]
    replay_id = test_run["snapshots"][0]["run_ids"][0]
    diff = await call(client, "inspect", action="diff", a=run_id, b=replay_id)
    assert (diff["result"]["a"], diff["result"]["b"]) == (run_id, replay_id)
    return test_run


async def _hostile_calls(client: Client) -> None:
    """Wrong calls get an error a model can act on, and the server lives on."""
    try:
        await client.call_tool("no_such_tool", {})
    except MCPError as exc:
        assert exc.code == -32602 and "status" in exc.message
    else:
        raise AssertionError("an unknown tool must be a JSON-RPC error")
    wrong = await client.call_tool("run", {"action": "start", "wait": "yes", "trials": 0})
    assert wrong.is_error
    text = wrong.content[0].text  # type: ignore[union-attr]
    assert "`wait`" in text and "`trials`" in text
    unhashable = await client.call_tool("run", {"action": ["start"]})
    assert unhashable.is_error and "`action` must be one of" in unhashable.content[0].text  # type: ignore[union-attr]
    hidden = await client.call_tool("run", {"action": "resume", "run_id": "x", "wait": True,
                                            "cancel_with_request": False})
    assert hidden.is_error and "cancel_with_request" in hidden.content[0].text  # type: ignore[union-attr]
    missing = await client.call_tool("inspect", {"action": "run", "run_id": "no-such-run"})
    assert missing.is_error and "no-such-run" in missing.content[0].text  # type: ignore[union-attr]
    deep: Any = "x"
    for _ in range(200):
        deep = {"nested": deep}
    hostile = await client.call_tool("run", {"action": "start", "inputs": deep})
    assert hostile.is_error
    status = await call(client, "status")
    assert status["result"]["pid"] > 0
