"""MCP servers as tool sources: the pool against a real server written with the official SDK
(tests/fakes/mcp_tools_server.py), over stdio and Streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ostinato.daemon.engine.tools.mcp import (
    McpPool,
    McpServerError,
    McpServerSpec,
    servers_from_attrs,
)

from .. import node_support
from ..support import REPO

FIXTURE = str(REPO / "tests" / "fakes" / "mcp_tools_server.py")
SECRET = "canary-7f3e9a-mcp-secret"

pytestmark = pytest.mark.timeout(60)


def stdio_spec(name: str = "t", **fields: object) -> McpServerSpec:
    """The fixture server over stdio, with extra declared fields."""
    return McpServerSpec.from_mapping(name, {"command": [sys.executable, FIXTURE], **fields})


def make_pool(tmp_path: Path, *specs: McpServerSpec, environ: dict[str, str] | None = None,
              allowed: tuple[str, ...] = (), **options: object) -> McpPool:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return McpPool({s.name: s for s in specs}, workspace=str(workspace), environ=environ or {},
                   allowed_secrets=allowed, **options)  # type: ignore[arg-type]


async def server_pid(pool: McpPool, server: str = "t") -> int:
    result = await pool.call_tool(server, "whoami", {})
    return int(json.loads(result.text())["pid"])


async def started_slow_call(pool: McpPool, server: str = "t") -> asyncio.Task[object]:
    """A `slow` call that is running in the server when this returns (the server writes to
    a FIFO once it is in the tool: awaited, not slept for)."""
    fifo = Path(pool.workspace) / f"started-{os.urandom(4).hex()}"
    os.mkfifo(fifo)
    call = asyncio.create_task(pool.call_tool(server, "slow",
                                              {"seconds": 30, "started": str(fifo)}))
    await asyncio.to_thread(fifo.read_text)
    return call


def assert_gone(pid: int) -> None:
    """The process does not exist any more (not even as a zombie)."""
    assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the pool"


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[McpPool]:
    spawned: list[str] = []
    pool = make_pool(tmp_path, stdio_spec(), on_spawn=spawned.append)
    pool.spawned = spawned  # type: ignore[attr-defined]
    try:
        yield pool
    finally:
        await pool.aclose()


# --- declaration ----------------------------------------------------------------------------

def test_spec_from_attribute_strings() -> None:
    servers = servers_from_attrs({
        "mcp.files.command": '["npx", "server-filesystem", "{workspace}"]',
        "mcp.files.tools": "read_text_file, list_directory", "mcp.files.timeout": "5s",
        "mcp.web.url": "http://127.0.0.1:9/mcp",
        "mcp.web.headers": '{"Authorization": "Bearer ${secret:WEB_TOKEN}"}',
        "tool.wc.argv": '["wc"]', "label": "x"})
    files, web = servers["files"], servers["web"]
    assert files.command == ("npx", "server-filesystem", "{workspace}") and files.url is None
    assert files.tools == ("read_text_file", "list_directory") and files.timeout_s == 5.0
    assert web.url == "http://127.0.0.1:9/mcp" and web.header_secrets == ("WEB_TOKEN",)
    assert web.tools is None and web.startup_timeout_s == 30.0


def test_spec_from_settings_values() -> None:
    spec = McpServerSpec.from_mapping("files", {"command": ["srv", "--root", "."],
                                                "env": {"MODE": "ro"}, "secrets": ["TOKEN"],
                                                "tools": ["a"]})
    assert spec.command == ("srv", "--root", ".") and spec.env == {"MODE": "ro"}
    assert spec.secrets == ("TOKEN",) and spec.tools == ("a",)


@pytest.mark.parametrize(("entry", "message"), [
    ({}, "exactly one of command"),
    ({"command": '["a"]', "url": "http://x/mcp"}, "exactly one of command"),
    ({"command": '["a",'}, "command is not valid JSON"),
    ({"command": "[]"}, "a program first"),
    ({"url": "ftp://x"}, "http:// or https://"),
    ({"command": '["a"]', "colour": "red"}, "unknown field(s) colour"),
    ({"command": '["a"]', "timeout": "5"}, "positive duration"),
    ({"command": '["a"]', "env": '{"1X": "y"}'}, "env must be"),
    ({"command": '["a"]', "headers": '{"A": "b"}'}, "headers are for HTTP"),
    ({"url": "http://x/mcp", "secrets": "TOKEN"}, "${secret:NAME}"),
    ({"command": '["a"]', "tools": ""}, "at least one tool"),
])
def test_spec_refusals(entry: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        McpServerSpec.from_mapping("files", entry)
    assert str(caught.value).startswith("MCP server files: ")


def test_spec_name_refusals() -> None:
    for name in ("a__b", "", "a b", "x" * 65):
        with pytest.raises(ValueError, match="a name is"):
            McpServerSpec.from_mapping(name, {"command": ["a"]})
    with pytest.raises(ValueError, match=r"expected mcp.<name>.<field>"):
        servers_from_attrs({"mcp.files": "x"})


# --- stdio ----------------------------------------------------------------------------------

async def test_lazy_start_list_and_call(pool: McpPool) -> None:
    assert pool.started == 0 and pool.spawned == []  # type: ignore[attr-defined]
    tools = await pool.list_tools("t")
    echo = next(t for t in tools if t["name"] == "echo")
    assert echo == {"name": "echo", "description": "Returns its text.",
                    "inputSchema": echo["inputSchema"]}
    assert echo["inputSchema"]["properties"]["text"]["type"] == "string"
    assert await pool.list_tools("t") is tools  # listed once per pool
    result = await pool.call_tool("t", "echo", {"text": "héllo"})
    assert result.to_dict() == {"content": [{"type": "text", "text": "héllo"}],
                                "structured_content": {"result": "héllo"}, "is_error": False}
    assert result.text() == "héllo"
    assert pool.started == 1 and pool.spawned == [sys.executable]  # type: ignore[attr-defined]


async def test_server_runs_in_the_workspace_with_only_its_declared_environment(
        tmp_path: Path) -> None:
    spec = stdio_spec(env={"MODE": "ro"}, secrets="GOOD")
    environ = {"GOOD": SECRET, "OTHER": "not-for-the-server"}
    # What on_spawn returns joins the environment: the run's mark, as the runtime gives it.
    pool = make_pool(tmp_path, spec, environ=environ, allowed=("GOOD",),
                     on_spawn=lambda argv0: {"OSTINATO_RUN_ID": "run-1"})
    try:
        env = json.loads((await pool.call_tool("t", "env", {})).text())
        cwd = json.loads((await pool.call_tool("t", "whoami", {})).text())["cwd"]
    finally:
        await pool.aclose()
    workspace = os.path.realpath(tmp_path / "ws")
    assert cwd == workspace
    assert env == {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": workspace,
                   "MODE": "ro", "GOOD": SECRET, "OSTINATO_RUN_ID": "run-1"}


@pytest.mark.parametrize(("allowed", "environ", "message"), [
    ((), {"GOOD": SECRET}, "secret GOOD is not allowed: start the daemon with "
                           "--allow-key-env GOOD"),
    (("GOOD",), {}, "secret GOOD is not set"),
])
async def test_secret_must_be_allowed_and_set(tmp_path: Path, allowed: tuple[str, ...],
                                              environ: dict[str, str], message: str) -> None:
    spawned: list[str] = []
    pool = make_pool(tmp_path, stdio_spec(secrets="GOOD"), environ=environ, allowed=allowed,
                     on_spawn=spawned.append)
    try:
        with pytest.raises(McpServerError, match=re.escape(message)):
            await pool.list_tools("t")
        with pytest.raises(McpServerError, match=re.escape(message)):  # still refused
            await pool.call_tool("t", "echo", {"text": "x"})
    finally:
        await pool.aclose()
    assert spawned == [] and pool.started == 0


async def test_allow_list(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, stdio_spec(tools="echo,fail"))
    try:
        assert [t["name"] for t in await pool.list_tools("t")] == ["echo", "fail"]
        refused = await pool.call_tool("t", "env", {})
        assert refused.is_error and "not allowed" in refused.text()
    finally:
        await pool.aclose()


async def test_allow_list_naming_a_missing_tool(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, stdio_spec(tools="echo,nope"))
    try:
        with pytest.raises(McpServerError, match=r"has no tool\(s\) nope"):
            await pool.list_tools("t")
    finally:
        await pool.aclose()


async def test_error_results_are_results(pool: McpPool) -> None:
    failed = await pool.call_tool("t", "fail", {"reason": "access denied"})
    assert failed.to_dict() == {"content": [{"type": "text", "text": "access denied"}],
                                "is_error": True}
    unknown = await pool.call_tool("t", "nope", {})
    assert unknown.is_error and "Unknown tool" in unknown.text()
    bad = await pool.call_tool("t", "echo", {"wrong": 1})
    assert bad.is_error
    # The server is still there after all of them.
    assert (await pool.call_tool("t", "echo", {"text": "still"})).text() == "still"


async def test_timeout_is_a_tool_error_and_the_server_lives_on(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, stdio_spec(timeout="1s"))
    try:
        result = await pool.call_tool("t", "slow", {"seconds": 30})
        assert result.is_error and "timed out after 1s" in result.text()
        assert (await pool.call_tool("t", "echo", {"text": "ok"})).text() == "ok"
    finally:
        await pool.aclose()


async def test_binary_content_is_recorded_as_size_and_hash(pool: McpPool) -> None:
    result = await pool.call_tool("t", "picture", {})
    text, image = result.content
    assert text == {"type": "text", "text": "a caption"}
    assert image["type"] == "image" and image["mime_type"] == "image/png"
    assert image["bytes"] == 40 and len(image["sha256"]) == 64 and "data" not in image
    assert result.text().splitlines() == [
        "a caption", f"[image image/png, 40 bytes, sha256 {image['sha256'][:12]}]"]


async def test_output_is_capped_with_the_truncation_recorded(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, stdio_spec(), max_output=1000)
    try:
        result = await pool.call_tool("t", "big", {"n": 5000})
        small = await pool.call_tool("t", "big", {"n": 10})
    finally:
        await pool.aclose()
    assert result.content == [{"type": "text", "text": "x" * 1000}]
    # The structured copy of the text is left out rather than recorded uncapped.
    assert result.structured_content is None
    assert result.truncated == {"kept": 1000, "total": 5000, "structured_content": 5013}
    assert result.to_dict()["truncated"] == result.truncated
    assert result.text().endswith("[output truncated: kept 1000 of 5000 bytes]")
    assert small.truncated is None and "truncated" not in small.to_dict()


async def test_crash_is_an_error_naming_server_and_tool_and_the_pool_still_closes(
        pool: McpPool) -> None:
    pid = await server_pid(pool)
    with pytest.raises(McpServerError) as caught:
        await pool.call_tool("t", "crash", {})
    assert str(caught.value) == ("MCP server 't' exited during tools/call 'crash': "
                                 "fatal: the fixture crashed on purpose")
    # Dead for the rest of the pool: later calls fail at once, nothing restarts.
    with pytest.raises(McpServerError, match="exited during tools/call 'crash'"):
        await pool.call_tool("t", "echo", {"text": "x"})
    with pytest.raises(McpServerError, match="exited"):
        await pool.list_tools("t")
    await pool.aclose()
    assert pool.started == 1
    assert_gone(pid)


async def test_stderr_tail_is_redacted(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, stdio_spec(secrets="GOOD"), environ={"GOOD": SECRET},
                     allowed=("GOOD",), redact=lambda s: s.replace("crashed", "[x]"))
    try:
        await pool.call_tool("t", "noisy", {"text": f"leak {SECRET}"})
        with pytest.raises(McpServerError) as caught:
            await pool.call_tool("t", "crash", {})
    finally:
        await pool.aclose()
    message = str(caught.value)
    assert "noise: leak ***" in message and SECRET not in message
    assert "fatal: the fixture [x] on purpose" in message


async def test_server_stderr_never_reaches_the_daemons_stderr(
        pool: McpPool, capfd: pytest.CaptureFixture[str]) -> None:
    assert (await pool.call_tool("t", "noisy", {"text": "from-the-server"})).text() == "ok"
    await pool.call_tool("t", "nope", {})  # the SDK server logs this on its stderr
    await pool.aclose()
    out, err = capfd.readouterr()
    assert "from-the-server" not in out + err and "nope" not in out + err


async def test_command_not_found(tmp_path: Path) -> None:
    spawned: list[str] = []
    pool = make_pool(tmp_path, McpServerSpec.from_mapping(
        "t", {"command": ["no-such-mcp-server-xyz", "--flag"]}), on_spawn=spawned.append)
    try:
        with pytest.raises(McpServerError, match="cannot start MCP server 't': command "
                                                 "'no-such-mcp-server-xyz' not found on PATH"):
            await pool.list_tools("t")
    finally:
        await pool.aclose()
    assert spawned == []


async def test_server_that_exits_at_start(tmp_path: Path) -> None:
    spec = McpServerSpec.from_mapping("t", {"command": [
        sys.executable, "-c", "import sys; sys.stderr.write('bad config: no root\\n'); "
                              "sys.exit(3)"]})
    pool = make_pool(tmp_path, spec)
    try:
        with pytest.raises(McpServerError) as caught:
            await pool.list_tools("t")
    finally:
        await pool.aclose()
    assert str(caught.value) == ("cannot start MCP server 't': it exited before the "
                                 "handshake ended: bad config: no root")


async def test_server_that_never_answers_hits_the_startup_timeout(tmp_path: Path) -> None:
    spec = McpServerSpec.from_mapping("t", {
        "command": [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); "
                                          "time.sleep(60)"],
        "startup_timeout": "1s"})
    pool = make_pool(tmp_path, spec)
    try:
        with pytest.raises(McpServerError, match=r"cannot start MCP server 't': not ready "
                                                 r"within 1s"):
            await pool.list_tools("t")
    finally:
        await pool.aclose()


async def test_relative_command_and_workspace_placeholder(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "bin").mkdir(parents=True)
    server = workspace / "bin" / "server"
    server.write_text(f"#!/bin/sh\nexec {sys.executable} {FIXTURE}\n")
    server.chmod(0o755)
    (workspace / "srv.py").write_text(Path(FIXTURE).read_text())
    pool = make_pool(tmp_path, McpServerSpec.from_mapping("t", {"command": ["bin/server"]}),
                     McpServerSpec.from_mapping("w", {"command": [sys.executable,
                                                                  "{workspace}/srv.py"]}))
    try:
        assert (await pool.call_tool("t", "echo", {"text": "mine"})).text() == "mine"
        assert (await pool.call_tool("w", "echo", {"text": "in ws"})).text() == "in ws"
    finally:
        await pool.aclose()


async def test_unknown_server(pool: McpPool) -> None:
    with pytest.raises(McpServerError, match=r"no MCP server named 'x' \(declared: t\)"):
        await pool.list_tools("x")


async def test_a_call_from_another_task_than_the_one_that_started_it(pool: McpPool) -> None:
    await asyncio.create_task(pool.list_tools("t"))  # started, then that task ended
    results = await asyncio.gather(*(asyncio.create_task(
        pool.call_tool("t", "echo", {"text": str(i)})) for i in range(5)))
    assert [r.text() for r in results] == ["0", "1", "2", "3", "4"]
    pid = await server_pid(pool)
    await asyncio.create_task(pool.aclose())  # and closed from yet another
    assert_gone(pid)


async def test_cancel_during_a_call(pool: McpPool) -> None:
    pid = await server_pid(pool)
    call = await started_slow_call(pool)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await pool.call_tool("t", "echo", {"text": "after"})).text() == "after"
    await pool.aclose()
    assert_gone(pid)


async def test_cancel_during_tools_list_while_the_server_starts(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    fifo = workspace / "spawned"
    os.mkfifo(fifo)
    # The server says it runs (its pid, through the FIFO), then becomes the fixture: the
    # cancel lands while the process lives and the handshake has not ended.
    launcher = (f"import os, sys; open({str(fifo)!r}, 'w').write(str(os.getpid())); "
                f"os.execv(sys.executable, [sys.executable, {FIXTURE!r}])")
    pool = make_pool(tmp_path, McpServerSpec.from_mapping(
        "t", {"command": [sys.executable, "-c", launcher]}))
    listing = asyncio.create_task(pool.list_tools("t"))
    pid = int(await asyncio.to_thread(fifo.read_text))
    listing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listing
    with pytest.raises(McpServerError, match="start was cancelled"):
        await pool.list_tools("t")
    await pool.aclose()
    assert pool.started == 1
    assert_gone(pid)


async def test_aclose_is_bounded_idempotent_and_leaves_no_process(pool: McpPool) -> None:
    pid = await server_pid(pool)
    await pool.aclose()
    assert_gone(pid)
    await pool.aclose()
    with pytest.raises(McpServerError, match="closed"):
        await pool.list_tools("t")


async def test_aclose_stops_a_server_in_a_call(pool: McpPool) -> None:
    pid = await server_pid(pool)
    call = await started_slow_call(pool)
    await asyncio.wait_for(pool.aclose(), 10)
    assert_gone(pid)
    with pytest.raises((McpServerError, asyncio.CancelledError)):
        await call


async def test_two_servers_start_separately(tmp_path: Path) -> None:
    spawned: list[str] = []
    pool = make_pool(tmp_path, stdio_spec("a"), stdio_spec("b"), on_spawn=spawned.append)
    try:
        await pool.call_tool("a", "echo", {"text": "x"})
        assert pool.started == 1
        pids = {await server_pid(pool, "a"), await server_pid(pool, "b")}
        assert pool.started == 2 and len(pids) == 2 and len(spawned) == 2
    finally:
        await pool.aclose()
    for pid in pids:
        assert_gone(pid)


# --- Streamable HTTP ------------------------------------------------------------------------

@dataclass
class HttpServer:
    url: str
    process: asyncio.subprocess.Process


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    """The fixture served over Streamable HTTP on 127.0.0.1 (uvicorn picks a free port)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, FIXTURE, "--http", "0", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    assert process.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
            assert line, "the HTTP fixture exited before listening"
            match = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            port = match and int(match.group(1))
        drain = asyncio.create_task(process.stderr.read())
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if drain is not None:
            await drain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_streamable_http(tmp_path: Path, http_server: HttpServer) -> None:
    spawned: list[str] = []
    spec = McpServerSpec.from_mapping("web", {
        "url": http_server.url, "headers": {"X-Token": "${secret:WEB_TOKEN}"}, "tools": ["echo"]})
    pool = make_pool(tmp_path, spec, environ={"WEB_TOKEN": SECRET}, allowed=("WEB_TOKEN",),
                     on_spawn=spawned.append)
    try:
        assert [t["name"] for t in await pool.list_tools("web")] == ["echo"]
        assert (await pool.call_tool("web", "echo", {"text": "over http"})).text() == \
            "over http"
        assert pool.started == 1 and spawned == []
    finally:
        await pool.aclose()


async def test_http_with_nothing_listening(tmp_path: Path) -> None:
    spec = McpServerSpec.from_mapping("web", {
        "url": f"http://127.0.0.1:{free_port()}/mcp",
        "headers": {"Authorization": "Bearer ${secret:WEB_TOKEN}"}, "startup_timeout": "10s"})
    pool = make_pool(tmp_path, spec, environ={"WEB_TOKEN": SECRET}, allowed=("WEB_TOKEN",))
    try:
        with pytest.raises(McpServerError) as caught:
            await pool.list_tools("web")
    finally:
        await pool.aclose()
    # The refusal, at once, not a timeout; and the header's secret in no message.
    assert str(caught.value) == ("cannot start MCP server 'web': ConnectError: All connection "
                                 "attempts failed")


async def test_http_header_secret_must_be_allowed(tmp_path: Path) -> None:
    spec = McpServerSpec.from_mapping("web", {
        "url": "http://127.0.0.1:9/mcp", "headers": {"X-Token": "${secret:WEB_TOKEN}"}})
    pool = make_pool(tmp_path, spec, environ={"WEB_TOKEN": SECRET})
    try:
        with pytest.raises(McpServerError, match="secret WEB_TOKEN is not allowed"):
            await pool.list_tools("web")
    finally:
        await pool.aclose()
    assert pool.started == 0


async def test_http_server_gone_mid_call(tmp_path: Path, http_server: HttpServer) -> None:
    pool = make_pool(tmp_path, McpServerSpec.from_mapping("web", {"url": http_server.url}))
    try:
        call = await started_slow_call(pool, "web")
        http_server.process.kill()
        with pytest.raises(McpServerError) as caught:
            await call
        assert str(caught.value) == ("MCP server 'web' failed during tools/call 'slow': the "
                                     "connection closed")
        with pytest.raises(McpServerError, match="failed during tools/call 'slow'"):
            await pool.call_tool("web", "echo", {"text": "x"})
    finally:
        await pool.aclose()


# --- under uvloop, as the daemon runs ---------------------------------------------------------

def test_under_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[str, str, int]:
        pool = make_pool(tmp_path, stdio_spec())
        crashed = ""
        try:
            echoed = (await pool.call_tool("t", "echo", {"text": "uv"})).text()
            pid = await server_pid(pool)
            try:
                await pool.call_tool("t", "crash", {})
            except McpServerError as exc:
                crashed = str(exc)
        finally:
            await pool.aclose()
        return echoed, crashed, pid

    echoed, crashed, pid = uvloop.run(scenario())
    assert echoed == "uv" and crashed.endswith("fatal: the fixture crashed on purpose")
    assert_gone(pid)


def test_the_sdk_loads_only_when_a_server_starts() -> None:
    """A daemon that runs no MCP server does not pay the SDK's import (~0.5 s)."""
    code = ("import sys, ostinato.daemon.engine.tools.mcp as m; "
            "print(sorted(n for n in ('mcp', 'mcp_types', 'httpx2') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- a real server no one here wrote (node present) -------------------------------------------

async def test_server_everything_over_stdio(node_modules: None, tmp_path: Path) -> None:
    """@modelcontextprotocol/server-everything, pinned in tests/node/package.json."""
    node = node_support.tool("node")
    spec = McpServerSpec.from_mapping("ev", {
        "command": [node, str(node_support.BIN / "mcp-server-everything"), "stdio"],
        "secrets": "GOOD", "tools": ["echo", "get-env", "get-tiny-image",
                                     "get-resource-reference"]})
    spawned: list[str] = []
    pool = make_pool(tmp_path, spec, environ={"GOOD": SECRET, "OTHER": "x"},
                     allowed=("GOOD",), on_spawn=spawned.append)
    try:
        tools = await pool.list_tools("ev")
        # In the server's order, not the allow-list's.
        assert [t["name"] for t in tools] == ["echo", "get-env", "get-resource-reference",
                                              "get-tiny-image"]
        assert tools[0]["inputSchema"]["properties"]["message"]["type"] == "string"
        echo = await pool.call_tool("ev", "echo", {"message": "hi"})
        assert echo.to_dict() == {"content": [{"type": "text", "text": "Echo: hi"}],
                                  "is_error": False}
        env = json.loads((await pool.call_tool("ev", "get-env", {})).text())
        image = (await pool.call_tool("ev", "get-tiny-image", {})).content[1]
        resource = (await pool.call_tool("ev", "get-resource-reference",
                                         {"resourceType": "Text", "resourceId": 1})).content[1]
        bad = await pool.call_tool("ev", "echo", {})
    finally:
        await pool.aclose()
    assert env == {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                   "HOME": os.path.realpath(tmp_path / "ws"), "GOOD": SECRET}
    assert image["type"] == "image" and image["mime_type"] == "image/png"
    assert image["bytes"] > 0 and "data" not in image
    assert resource["type"] == "resource" and resource["uri"] == "demo://resource/dynamic/text/1"
    assert bad.is_error
    assert spawned == [node] and pool.started == 1


def test_error_codes_are_the_sdks() -> None:
    import mcp_types

    from ostinato.daemon.engine.tools import mcp as pool_module
    assert (pool_module._CONNECTION_CLOSED, pool_module._REQUEST_TIMEOUT) == (
        mcp_types.CONNECTION_CLOSED, mcp_types.REQUEST_TIMEOUT)
