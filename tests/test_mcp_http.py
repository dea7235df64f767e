"""`ostinato mcp --http` (issue 16): MCP's Streamable HTTP transport in front of the home's
daemon. The official MCP Python SDK's Streamable HTTP client holds a conversation; raw HTTP
requests check the transport's rules (Origin, token, sessions, revision header, limits), and
the front lives on after each of them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp.types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ostinato.clients.home import stop_daemon
from ostinato.protocol.mcp import MCP_VERSIONS, MODERN_VERSIONS

from .mcp_conversation import hold_conversation
from .mcp_http_support import (
    Front,
    Stream,
    call,
    modern,
    raw_exchange,
    settled_status,
    slow_run,
)
from .support import REPO, WAIT
from .test_mcp_resources import GATES, answer_gates, read_json, tool

HELLO = str(REPO / "examples" / "pipelines" / "hello.dot")


@pytest.fixture
def front(short_tmp: Path) -> Iterator[Front]:
    """A front on a free loopback port, for a home whose daemon it starts."""
    process = Front(short_tmp / "home")
    yield process
    assert process.stop() == 0, "\n".join(process.log)


def tool_text(result: Any) -> str:
    """The text of a tool's result."""
    return "\n".join(part.text for part in result.content if part.type == "text")


# The SDK's client in its default mode speaks the stateless revision; in legacy mode it
# opens a session with initialize.
ERAS = pytest.mark.parametrize(("mode", "revision"), [
    ("auto", MODERN_VERSIONS[0]), ("legacy", MCP_VERSIONS[0])], ids=["stateless", "session"])


@ERAS
async def test_the_official_sdk_client_holds_a_conversation_over_http(
        front: Front, short_tmp: Path, mode: str, revision: str) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with Client(front.url, read_timeout_seconds=WAIT, mode=mode) as client:
        assert client.protocol_version == revision
        assert client.server_info.name == "ostinato"
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"status", "pipeline", "run", "inspect"} <= tools
        status = await client.call_tool("status", {})
        assert not status.is_error and "is up" in tool_text(status)
        valid = await client.call_tool("pipeline", {"action": "validate",
                                                    "pipeline": {"path": HELLO}})
        assert not valid.is_error, tool_text(valid)
        run = await client.call_tool("run", {"action": "start", "pipeline": {"path": HELLO},
                                             "wait": True}, progress_callback=on_progress)
        assert not run.is_error, tool_text(run)
        run_id = re.search(r"Run (\S+) of pipeline hello: completed", tool_text(run)).group(1)
    assert progress and run_id in " ".join(message or "" for _, message in progress)
    # The run is the home daemon's: an agent on stdio sees it too.
    stdio = StdioServerParameters(command=sys.executable, args=[
        "-m", "ostinato.clients.cli", "mcp", "--home", str(short_tmp / "home")])
    async with Client(stdio, read_timeout_seconds=WAIT) as client:
        runs = await client.call_tool("inspect", {"action": "runs"})
        assert run_id in tool_text(runs)
    if mode == "legacy":
        front.wait_for("ended: the client ended it")  # the SDK's DELETE


@ERAS
async def test_an_agent_holds_the_whole_conversation_over_http(
        front: Front, short_tmp: Path, mode: str, revision: str) -> None:
    async with Client(front.url, read_timeout_seconds=WAIT, mode=mode) as client:
        assert client.protocol_version == revision
        learned = await hold_conversation(client, short_tmp / "pipelines")
    # The home's daemon served it: the command line sees the agent's runs.
    listed = subprocess.run([sys.executable, "-m", "ostinato.clients.cli", "runs", "list",
                             "--home", str(front.home), "--json"],
                            capture_output=True, text=True, timeout=WAIT)
    assert learned["run_id"] in [run["run_id"] for run in json.loads(listed.stdout)["runs"]]
    log = (front.home / "daemon.log").read_text()
    assert "no summary for a result" not in log and "internal error" not in log
    assert not any("Traceback" in line for line in front.log), "\n".join(front.log)


@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_resource_updates_come_on_the_session_stream(front: Front) -> None:
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def handler(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.put_nowait(str(message.params.uri))

    # The SDK opens the session's GET stream once initialized; updates come on it.
    async with Client(front.url, read_timeout_seconds=WAIT, mode="legacy",
                      message_handler=handler) as client:  # type: ignore[arg-type]
        run = await tool(client, "run", action="start", pipeline={"path": GATES})
        await client.subscribe_resource(f"ostinato://runs/{run['run_id']}")
        await answer_gates(client, run["run_id"], updates, ["no notes", "N", "H", "yes"])
        assert (await read_json(client, f"ostinato://runs/{run['run_id']}"))["status"] \
            == "completed"


async def test_a_token_guards_the_endpoint(short_tmp: Path) -> None:
    env = {**os.environ, "OSTINATO_MCP_TOKEN": "s3cret-token"}
    front = Front(short_tmp / "home", env=env)
    try:
        status, fields, _ = front.request("POST", {"jsonrpc": "2.0", "id": 1,
                                                   "method": "ping"})
        assert status == 401 and fields["www-authenticate"].startswith("Bearer")
        status, _, _ = front.request("POST", b"{}", Authorization="Bearer wrong-token")
        assert status == 401
        headers = {"Authorization": "Bearer s3cret-token"}
        async with httpx2.AsyncClient(headers=headers, timeout=WAIT) as http, Client(
                streamable_http_client(front.url, http_client=http),
                read_timeout_seconds=WAIT) as client:
            assert (await client.call_tool("status", {})).is_error is False
    finally:
        assert front.stop() == 0, "\n".join(front.log)


def test_an_allowed_origin_gets_cors_answers(short_tmp: Path) -> None:
    front = Front(short_tmp / "home", "--allow-origin", "https://app.example.com/")
    try:
        app = "https://app.example.com"
        status, fields, _ = front.request("OPTIONS", Origin=app,
                                          Access_Control_Request_Method="POST")
        assert status == 204 and fields["access-control-allow-origin"] == app
        assert "mcp-session-id" in fields["access-control-allow-headers"].lower()
        session = front.initialize(Origin=app)
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        status, fields, _ = front.request("POST", ping, Mcp_Session_Id=session, Origin=app)
        assert status == 200 and fields["access-control-allow-origin"] == app
        assert front.request("POST", ping, Origin="https://app.example.org")[0] == 403
    finally:
        assert front.stop() == 0, "\n".join(front.log)


def test_a_host_beyond_loopback_needs_a_token(short_tmp: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ostinato.clients.cli", "mcp", "--http", "0.0.0.0:0",
         "--home", str(short_tmp / "home")], capture_output=True, text=True, timeout=WAIT,
        env={k: v for k, v in os.environ.items() if k != "OSTINATO_MCP_TOKEN"})
    assert done.returncode == 2
    assert "give a token" in done.stderr
    assert not (short_tmp / "home").exists()  # refused before any daemon started


@pytest.mark.parametrize("version", MCP_VERSIONS)
def test_sessions_and_the_revision_header(front: Front, version: str) -> None:
    session = front.initialize(version)
    assert re.fullmatch(r"[\x21-\x7e]{32,}", session)
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert front.request("POST", initialized, Mcp_Session_Id=session)[0] == 202
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    # Without the header the negotiated revision holds; with it, it must be that one.
    for headers in ({}, {"MCP-Protocol-Version": version}):
        status, fields, body = front.request("POST", ping, Mcp_Session_Id=session, **headers)
        assert (status, fields["content-type"]) == (200, "application/json")
        assert json.loads(body) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    other = next(v for v in ("2024-11-05", *MCP_VERSIONS) if v != version)
    status, _, body = front.request("POST", ping, Mcp_Session_Id=session,
                                    MCP_Protocol_Version=other)
    assert status == 400 and "MCP-Protocol-Version" in json.loads(body)["error"]["message"]
    assert front.request("POST", ping)[0] == 400  # no session
    assert front.request("POST", ping, Mcp_Session_Id="no-such-session")[0] == 404
    assert front.request("DELETE", Mcp_Session_Id=session)[0] == 204
    assert front.request("POST", ping, Mcp_Session_Id=session)[0] == 404
    assert front.request("DELETE", Mcp_Session_Id=session)[0] == 404


def test_bad_requests_are_refused_and_the_front_lives_on(front: Front) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    session = front.initialize()
    assert front.request("POST", ping, Origin="https://evil.example")[0] == 403
    assert front.request("POST", ping, Origin="null")[0] == 403
    assert front.request("POST", ping, Mcp_Session_Id=session,
                         Origin="http://localhost:6274")[0] == 200  # a local page
    # DNS rebinding: a name that resolves to 127.0.0.1 is not this server's name.
    assert front.request("POST", ping, Mcp_Session_Id=session, Host="evil.example:80")[0] \
        == 421
    assert front.request("POST", ping, Mcp_Session_Id=session, Accept="application/json")[0] \
        == 406
    status, _, body = front.request("POST", b'{"jsonrpc": "2.0", "id": 1, "meth',
                                    Mcp_Session_Id=session)
    assert status == 400 and json.loads(body)["error"]["code"] == -32700
    status, _, body = front.request("POST", b"[]", Mcp_Session_Id=session)
    assert status == 400 and json.loads(body)["error"]["code"] == -32600
    # An id the daemon could not answer by (MCP's are strings and integers) is refused now,
    # not waited on for ever.
    for bad_id in (1.5, True, 2**70, None):
        status, _, body = front.request("POST", {**ping, "id": bad_id}, Mcp_Session_Id=session)
        assert status == 400 and json.loads(body)["error"]["code"] == -32600, bad_id
    # A body over 4 MiB is refused from its announced length, before it is read.
    assert raw_exchange(front, b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        b"application/json\r\nContent-Length: 5000000\r\n\r\n{")[:12] \
        == b"HTTP/1.1 413"
    assert front.request("PUT", b"{}", Mcp_Session_Id=session)[0] == 405
    assert front.request("GET", Mcp_Session_Id=session, Accept="application/json")[0] == 406
    assert raw_exchange(front, b"\x16\x03\x01 not http\r\n\r\n")[:12] == b"HTTP/1.1 400"
    # The session, and the front, are still there.
    status, _, body = front.request("POST", ping, Mcp_Session_Id=session)
    assert (status, json.loads(body)["result"]) == (200, {})
    front.initialize()


def test_progress_streams_and_cancellation_ends_the_stream(front: Front,
                                                           short_tmp: Path) -> None:
    session = front.initialize()
    stream = Stream(front, slow_run(short_tmp, 7, "tok"), Mcp_Session_Id=session)
    assert stream.response.getheader("content-type") == "text/event-stream"
    first = stream.next()
    assert first["method"] == "notifications/progress"
    assert first["params"]["progressToken"] == "tok"
    run_id = first["params"]["message"].split()[-1]
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
              "params": {"requestId": 7, "reason": "changed my mind"}}
    assert front.request("POST", cancel, Mcp_Session_Id=session)[0] == 202
    while (message := stream.next()) is not None:  # progress may still come; no response
        assert message.get("method") == "notifications/progress"
    assert settled_status(front.home, run_id) == "cancelled"


def test_the_session_stream_and_a_client_that_leaves(front: Front, short_tmp: Path) -> None:
    session = front.initialize()
    listener = Stream(front, None, Mcp_Session_Id=session)
    assert (listener.response.status, listener.response.getheader("content-type")) == (
        200, "text/event-stream")
    assert front.request("GET", Mcp_Session_Id=session)[0] == 409  # one per session
    # A client that leaves in the middle of a request cancels it (its answer could no
    # longer reach it), and its session lives on.
    stream = Stream(front, slow_run(short_tmp, 8, "gone"), Mcp_Session_Id=session)
    run_id = stream.next()["params"]["message"].split()[-1]
    stream.close()
    assert settled_status(front.home, run_id) == "cancelled"
    run = call(front, session, "inspect", {"action": "run", "run_id": run_id})
    assert run["structuredContent"]["result"]["status"] == "cancelled"
    assert front.request("DELETE", Mcp_Session_Id=session)[0] == 204
    assert listener.next() is None  # the session's stream ended with it


def test_idle_sessions_are_closed(short_tmp: Path) -> None:
    front = Front(short_tmp / "home", "--idle-timeout", "0.2")
    try:
        session = front.initialize()
        front.wait_for("ended: idle for 0.2 s")
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert front.request("POST", ping, Mcp_Session_Id=session)[0] == 404
    finally:
        assert front.stop() == 0, "\n".join(front.log)


def test_a_daemon_that_stops_ends_its_sessions_and_a_new_one_starts(front: Front) -> None:
    session = front.initialize()
    assert stop_daemon(front.home) is not None
    front.wait_for("ended: the daemon closed the session")
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert front.request("POST", ping, Mcp_Session_Id=session)[0] == 404
    session = front.initialize()  # the home gets a daemon again
    status, _, body = front.request("POST", ping, Mcp_Session_Id=session)
    assert (status, json.loads(body)["result"]) == (200, {})


def test_stateless_requests_mirror_their_body_in_headers(front: Front) -> None:
    version = MODERN_VERSIONS[0]
    status_call = modern("tools/call", name="status", arguments={})
    status, fields, body = front.request("POST", status_call, MCP_Protocol_Version=version,
                                         Mcp_Method="tools/call", Mcp_Name="status")
    assert (status, fields["content-type"]) == (200, "application/json")
    assert "mcp-session-id" not in fields  # no sessions in this revision
    assert json.loads(body)["result"]["isError"] is False
    encoded = "=?base64?" + base64.b64encode(b"status").decode() + "?="
    assert front.request("POST", status_call, MCP_Protocol_Version=version,
                         Mcp_Method="tools/call", Mcp_Name=encoded)[0] == 200
    for headers in ({"Mcp_Method": "tools/call", "Mcp_Name": "status"},  # no version
                    {"MCP_Protocol_Version": version, "Mcp_Name": "status"},  # no method
                    {"MCP_Protocol_Version": version, "Mcp_Method": "tools/call"},  # no name
                    {"MCP_Protocol_Version": version, "Mcp_Method": "tools/call",
                     "Mcp_Name": "delete"}):  # a name the body does not have
        status, _, body = front.request("POST", status_call, **headers)
        assert (status, json.loads(body)["error"]["code"]) == (400, -32020), headers
    # Clients tell the eras apart by these answers.
    unknown = modern("no/such/method")
    status, _, body = front.request("POST", unknown, MCP_Protocol_Version=version,
                                    Mcp_Method="no/such/method")
    assert (status, json.loads(body)["error"]["code"]) == (404, -32601)
    future = modern("tools/list", version="2099-01-01")
    status, _, body = front.request("POST", future, MCP_Protocol_Version="2099-01-01",
                                    Mcp_Method="tools/list")
    assert status == 400 and json.loads(body)["error"]["data"]["supported"][0] == version
    notification = modern("notifications/initialized", request_id=None)
    assert front.request("POST", notification, MCP_Protocol_Version=version)[0] == 202


def test_closing_a_stateless_stream_cancels_its_request(front: Front, short_tmp: Path) -> None:
    message = slow_run(short_tmp, 3, "tok")
    message["params"]["_meta"].update(modern("x")["params"]["_meta"])
    stream = Stream(front, message, MCP_Protocol_Version=MODERN_VERSIONS[0],
                    Mcp_Method="tools/call", Mcp_Name="run")
    assert stream.response.getheader("content-type") == "text/event-stream"
    run_id = stream.next()["params"]["message"].split()[-1]
    stream.close()
    assert settled_status(front.home, run_id) == "cancelled"


def test_stopping_the_front_ends_its_streams(short_tmp: Path) -> None:
    front = Front(short_tmp / "home")
    session = front.initialize()
    listener = Stream(front, None, Mcp_Session_Id=session)
    stream = Stream(front, slow_run(short_tmp, 5, "tok"), Mcp_Session_Id=session)
    run_id = stream.next()["params"]["message"].split()[-1]
    assert front.stop() == 0, "\n".join(front.log)
    assert stream.next()["error"]["code"] == -32000  # the request's answer: the session ended
    assert stream.next() is None and listener.next() is None
    assert not any("Traceback" in line for line in front.log), "\n".join(front.log)
    assert settled_status(front.home, run_id) == "cancelled"  # as when a stdio host quits
