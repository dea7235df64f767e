"""MCP resources and prompts (issue 16) through the official MCP Python SDK's client: the
home's runs, test runs and snapshots listed and read by `ostinato://` URI (in both of MCP's
eras), a run's files (never a path outside its directory), subscriptions that announce a
run's and a test run's events (the handshake era's `resources/subscribe`), and the prompts
with their ids filled in."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from ostinato.daemon.server.mcp.listing import PAGE
from ostinato.protocol.mcp import MCP_VERSIONS, MODERN_VERSIONS, RESOURCE_NOT_FOUND

from .support import REPO, WAIT, DaemonProcess, start_daemon

INVALID_PARAMS = -32602
HELLO = str(REPO / "examples/pipelines/hello.dot")
GATES = str(REPO / "examples/pipelines/gates.dot")
# The SDK client's modes: "auto" speaks 2026-07-28 (stateless), "legacy" 2025-11-25.
ERAS = pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])


@asynccontextmanager
async def mcp_session(home: Path, updates: asyncio.Queue[str] | None = None,
                      mode: str = "auto") -> AsyncIterator[tuple[Client, DaemonProcess]]:
    """The SDK's client over stdio, bridged to the daemon that owns `home`; the URIs of
    `notifications/resources/updated` go to `updates`."""

    async def handler(message: Any) -> None:
        if updates is not None and isinstance(message, types.ResourceUpdatedNotification):
            updates.put_nowait(str(message.params.uri))

    owner = await start_daemon(home)
    server = StdioServerParameters(command=sys.executable, args=[
        "-m", "ostinato.daemon", "--stdio", "--home", str(home)])
    try:
        async with Client(server, read_timeout_seconds=WAIT, message_handler=handler,
                          mode=mode) as client:  # type: ignore[arg-type]
            assert client.protocol_version == (MODERN_VERSIONS[0] if mode == "auto"
                                               else MCP_VERSIONS[0])
            yield client, owner
    finally:
        assert await owner.stop() == 0, "".join(owner.log)


async def tool(client: Client, tool_name: str, **arguments: Any) -> Any:
    """A tool call's result (the structured content's `result`); it must succeed."""
    result = await client.call_tool(tool_name, arguments)
    assert not result.is_error, result.content
    return result.structured_content["result"]  # type: ignore[index]


async def read(client: Client, uri: str) -> tuple[str | None, str | bytes]:
    """A resource's mimeType and content (text, or the bytes of a blob)."""
    contents = (await client.read_resource(uri, cache_mode="bypass")).contents
    assert len(contents) == 1 and str(contents[0].uri) == uri
    content = contents[0]
    if isinstance(content, types.BlobResourceContents):
        return content.mime_type, base64.b64decode(content.blob)
    return content.mime_type, content.text


async def read_json(client: Client, uri: str) -> Any:
    mime, text = await read(client, uri)
    assert mime == "application/json"
    return json.loads(text)


async def refused(client: Client, uri: str) -> types.ErrorData:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri, cache_mode="bypass")
    return caught.value.error


@ERAS
async def test_resources_are_listed_and_read(short_tmp: Path, mode: str) -> None:
    async with mcp_session(short_tmp / "home", mode=mode) as (client, _):
        run = await tool(client, "run", action="start", pipeline={"path": HELLO}, wait=True)
        run_id = run["run_id"]
        snapshot = await tool(client, "snapshot", action="create", name="hello", run_id=run_id,
                              invariants=[{"type": "run_status", "value": "completed"}])
        test_run = await tool(client, "tests", action="run", snapshot_ids=["hello"], wait=True)
        test_run_id = test_run["test_run_id"]

        listed = (await client.list_resources()).resources
        uris = [str(resource.uri) for resource in listed]
        replay_run, = test_run["snapshots"][0]["run_ids"]
        # Runs newest first (the test run's replay, then ours), then test runs, snapshots.
        assert uris == [f"ostinato://runs/{replay_run}", f"ostinato://runs/{run_id}",
                        f"ostinato://tests/{test_run_id}",
                        f"ostinato://snapshots/{snapshot['id']}"]
        assert all(r.title and r.description and r.mime_type == "application/json"
                   for r in listed)
        assert listed[3].name == "hello@1"
        templates = (await client.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} >= {
            "ostinato://runs/{run_id}", "ostinato://runs/{run_id}/files/{+path}",
            "ostinato://traces/{trace_id}", "ostinato://tests/{test_run_id}",
            "ostinato://tests/{test_run_id}/report.{format}",
            "ostinato://snapshots/{snapshot}"}

        # A resource is what the tools answer.
        detail = await read_json(client, f"ostinato://runs/{run_id}")
        assert detail == await tool(client, "inspect", action="run", run_id=run_id)
        assert detail["status"] == "completed"
        manifest = await read_json(client, f"ostinato://runs/{run_id}/files/manifest.json")
        assert manifest["run_id"] == run_id
        mime, response = await read(client, f"ostinato://runs/{run_id}/files/review/response.md")
        assert mime == "text/markdown" and response == (
            Path(detail["run_dir"]) / "review/response.md").read_text()
        (Path(detail["run_dir"]) / "blob.bin").write_bytes(bytes(range(256)))
        assert await read(client, f"ostinato://runs/{run_id}/files/blob.bin") == (
            "application/octet-stream", bytes(range(256)))
        trace = await read_json(client, f"ostinato://traces/{run['trace_id']}")
        assert trace["trace_id"] == run["trace_id"] and trace["calls"]

        assert (await read_json(client, f"ostinato://tests/{test_run_id}"))["status"] == "passed"
        for suffix, wanted in (("md", "text/markdown"), ("html", "text/html"),
                               ("xml", "application/xml")):
            mime, report = await read(client, f"ostinato://tests/{test_run_id}/report.{suffix}")
            assert mime is not None and mime.startswith(wanted), mime
            assert "hello" in report
        for ref in (snapshot["id"], "hello", "hello@1"):
            got = await read_json(client, f"ostinato://snapshots/{ref}")
            assert (got["id"], got["reference"]["run_id"]) == (snapshot["id"], run_id)


async def test_a_run_file_stays_inside_its_run_directory(short_tmp: Path) -> None:
    outside = short_tmp / "secret.txt"
    outside.write_text("not for the model")
    async with mcp_session(short_tmp / "home") as (client, owner):
        run = await tool(client, "run", action="start", pipeline={"path": HELLO}, wait=True)
        files = f"ostinato://runs/{run['run_id']}/files/"
        run_dir = Path(run["run_dir"])
        os.symlink(outside, run_dir / "escape")
        os.symlink("..", run_dir / "up")
        os.symlink("loop", run_dir / "loop")
        for path in ("escape", "up/../secret.txt", "up/runs", "loop", "%2Fetc%2Fpasswd",
                     "/etc/passwd", "review/..%2F..%2F..%2Fsecret.txt"):
            error = await refused(client, files + path)
            assert error.code == INVALID_PARAMS, (path, error)
            assert "stays inside" in error.message and "not for the model" not in error.message
            assert error.data == {"uri": files + path}
        # The raw wire, for what the SDK's URL parsing would normalise before sending.
        wire = await owner.connect()
        for path in ("../../secret.txt", "review/../../x", "./manifest.json"):
            answer = await wire.request("resources/read", {"uri": files + path})
            assert answer["error"]["code"] == INVALID_PARAMS, answer
            # Nor can a path out be subscribed to, though a file subscribed to may not exist.
            answer = await wire.request("resources/subscribe", {"uri": files + path})
            assert answer["error"]["code"] == INVALID_PARAMS, answer
        # A session's subscriptions are bounded: each of a run's events announces them all.
        for index in range(256):
            await wire.result("resources/subscribe", {"uri": f"{files}later-{index}.md"})
        answer = await wire.request("resources/subscribe", {"uri": files + "one-more.md"})
        assert answer["error"]["code"] == INVALID_PARAMS and "256" in answer["error"]["message"]
        await wire.result("resources/subscribe", {"uri": f"{files}later-0.md"})  # already in
        too_long = await refused(client, files + "a" * 5000)
        assert too_long.code == INVALID_PARAMS and "too long" in too_long.message
        (run_dir / "big.bin").write_bytes(b"x" * (8 * 2**20 + 1))
        big = await refused(client, files + "big.bin")
        assert big.code == INVALID_PARAMS and "8 MiB" in big.message
        missing = await refused(client, files + "nothing.txt")
        assert missing.code == INVALID_PARAMS  # 2026-07-28 has no -32002
        assert "manifest.json" in missing.message and "review/" in missing.message
        # The daemon lives on.
        assert (await read_json(client, files + "manifest.json"))["run_id"] == run["run_id"]


UNKNOWN = ["ostinato://runs/nope", "ostinato://runs/nope/files/manifest.json",
           "ostinato://traces/nope", "ostinato://tests/nope", "ostinato://tests/nope/report.md",
           "ostinato://snapshots/nope", "ostinato://tests/x/report.pdf", "ostinato://what/x",
           "file:///etc/passwd", "ostinato://runs/", "ostinato://runs/x?y"]


@ERAS
@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_an_unknown_uri_is_resource_not_found(short_tmp: Path, mode: str) -> None:
    # 2026-07-28 dropped -32002: a resource not found is invalid params there.
    code = INVALID_PARAMS if mode == "auto" else RESOURCE_NOT_FOUND
    async with mcp_session(short_tmp / "home", mode=mode) as (client, owner):
        for uri in UNKNOWN:
            error = await refused(client, uri)
            assert error.code == code, uri
            assert error.data == {"uri": uri} and "Resource not found" in error.message
            if mode == "legacy":
                with pytest.raises(MCPError) as caught:
                    await client.subscribe_resource(uri)
                assert caught.value.error.code == code, uri
        assert "ostinato://runs/{run_id}" in (await refused(client, "ostinato://what/x")).message
        wire = await owner.connect()
        bad = await wire.request("resources/list", {"cursor": "not ours"})
        assert bad["error"]["code"] == INVALID_PARAMS


async def answer_gates(client: Client, run_id: str, updates: asyncio.Queue[str],
                       answers: list[str]) -> list[str]:
    """Answer the questions of a subscribed run in turn, reading the run again at each
    update, until it ends or asks a question past `answers`; the URIs announced after the
    last answer."""
    uri, pending, asked, after = f"ostinato://runs/{run_id}", list(answers), set(), []
    while True:
        detail = await read_json(client, uri)
        question = detail["question"]
        if detail["status"] in ("completed", "failed"):
            return after
        if question is not None and question["question_id"] not in asked:
            if not pending:
                return after
            asked.add(question["question_id"])
            await tool(client, "run", action="answer", run_id=run_id,
                       question_id=question["question_id"], answer=pending.pop(0))
        got = await asyncio.wait_for(updates.get(), WAIT)
        if not pending:
            after.append(got)


@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_a_subscribed_run_announces_its_events(short_tmp: Path) -> None:
    updates: asyncio.Queue[str] = asyncio.Queue()
    async with mcp_session(short_tmp / "home", updates, "legacy") as (client, _):
        run = await tool(client, "run", action="start", pipeline={"path": GATES})
        uri = f"ostinato://runs/{run['run_id']}"
        checkpoint = f"{uri}/files/checkpoint.json"
        await client.subscribe_resource(uri)
        await client.subscribe_resource(checkpoint)
        # The four gates, answered as each update shows the question.
        await answer_gates(client, run["run_id"], updates, ["no notes", "N", "H"])
        detail = await read_json(client, uri)
        assert detail["status"] == "waiting" and detail["question"] is not None
        # Unsubscribed, the run's URI is announced no more; its checkpoint still is.
        await client.unsubscribe_resource(uri)
        while not updates.empty():
            updates.get_nowait()
        after = await answer_gates(client, run["run_id"], updates, ["yes"])
        assert after and set(after) == {checkpoint}
        assert (await read_json(client, uri))["status"] == "completed"


@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_a_subscribed_test_run_announces_its_end(short_tmp: Path) -> None:
    updates: asyncio.Queue[str] = asyncio.Queue()
    async with mcp_session(short_tmp / "home", updates, "legacy") as (client, _):
        await tool(client, "snapshot", action="create", name="gates",
                   pipeline={"path": GATES})
        # Live: the replay asks its questions, so the test run runs until they are answered.
        test_run = await tool(client, "tests", action="run", snapshot_ids=["gates"],
                              mode="live")
        uri = f"ostinato://tests/{test_run['test_run_id']}"
        report = f"{uri}/report.md"
        await client.subscribe_resource(uri)
        await client.subscribe_resource(report)
        waiting = await tool(client, "inspect", action="runs", status=["running", "waiting"])
        run_id, = [run["run_id"] for run in waiting["runs"]]
        await client.subscribe_resource(f"ostinato://runs/{run_id}")
        await answer_gates(client, run_id, updates, ["no notes", "N", "H", "yes"])
        seen: set[str] = set()
        while (await read_json(client, uri))["status"] == "running":
            seen.add(await asyncio.wait_for(updates.get(), WAIT))
        while not updates.empty():
            seen.add(updates.get_nowait())
        assert {uri, report} <= seen
        assert (await read_json(client, uri))["status"] == "passed"
        mime, text = await read(client, report)
        assert mime == "text/markdown" and "gates" in text


async def test_prompts_are_listed_and_filled_in(short_tmp: Path) -> None:
    async with mcp_session(short_tmp / "home") as (client, _):
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(prompts) == {"investigate-failed-test-run", "snapshot-run-with-invariants",
                                "compare-runs"}
        assert [(a.name, a.required) for a in prompts["compare-runs"].arguments] == [
            ("run_a", True), ("run_b", True)]
        got = await client.get_prompt("investigate-failed-test-run", {"test_run_id": "T1"})
        text = got.messages[0].content.text  # type: ignore[union-attr]
        assert got.messages[0].role == "user"
        assert "ostinato://tests/T1/report.md" in text and "`inspect`" in text
        got = await client.get_prompt("compare-runs", {"run_a": "R1", "run_b": "R2"})
        text = got.messages[0].content.text  # type: ignore[union-attr]
        assert "a R1 and b R2" in text and "ostinato://runs/R2" in text
        got = await client.get_prompt("snapshot-run-with-invariants",
                                      {"run_id": "R1", "name": "smoke"})
        assert "named smoke" in got.messages[0].content.text  # type: ignore[union-attr]
        for name, arguments, says in (
                ("nope", {}, "unknown prompt 'nope'"),
                ("compare-runs", {"run_a": "R1"}, "needs the argument run_b"),
                ("compare-runs", {"run_a": "R1", "run_b": "R2", "c": "x"}, "no argument c")):
            with pytest.raises(MCPError) as caught:
                await client.get_prompt(name, arguments)
            assert caught.value.error.code == INVALID_PARAMS
            assert says in caught.value.error.message


async def test_resources_are_paged_by_an_opaque_cursor(short_tmp: Path) -> None:
    async with mcp_session(short_tmp / "home") as (client, owner):
        wire = await owner.connect()
        run = await tool(client, "run", action="start", pipeline={"path": HELLO}, wait=True)
        made = [(await wire.result("snapshot.create", {"name": f"s{i}",
                                                       "pipeline": {"path": HELLO}}))["id"]
                for i in range(PAGE + 1)]
        first = await client.list_resources()
        assert len(first.resources) == PAGE and first.next_cursor is not None
        second = await client.list_resources(cursor=first.next_cursor)
        assert second.next_cursor is None
        uris = [str(r.uri) for r in [*first.resources, *second.resources]]
        assert uris == [f"ostinato://runs/{run['run_id']}",
                        *(f"ostinato://snapshots/{i}" for i in reversed(made))]
