"""MCP servers as tool sources (issue 17, decision 0006 §5, §8): a pool of servers that start
when first needed and never outlive the pool, through the official `mcp` SDK's `Client`.

anyio requires a `Client` to be exited in the task that entered it, while the agent loop calls
tools from whatever task a node or a parallel branch runs in. So each server has one owner task
that enters the client, signals it is ready and waits to be told to stop; any task may use the
session meanwhile, and `aclose` stops the owners.

A stdio server gets an explicit environment, as command tools do (`capture.basic_env`, the
spec's `env`, its named secrets), runs in the workspace, and its stderr goes to a pipe whose
redacted tail explains a failure; nothing of it reaches the daemon's own stderr.

The SDK is imported when a server first starts, not with this module: it costs about half a
second, which a daemon that runs no MCP server should not pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .capture import basic_env
from .mcp_result import McpToolResult, recorded_result
from .mcp_spec import (
    SECRET_REF,
    WORKSPACE,
    McpServerSpec,
    servers_from_attrs,
    servers_from_settings,
)

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client

__all__ = ["McpPool", "McpServerError", "McpServerSpec", "McpToolResult", "servers_from_attrs",
           "servers_from_settings"]

DEFAULT_MAX_OUTPUT = 64 * 1024
_STDERR_TAIL = 4 * 1024
# The SDK's own shutdown of a stdio server is bounded by 2 s (stdin closed) + 2 s (SIGTERM)
# + 2 s (SIGKILL reaped); the rest is margin.
_CLOSE_BOUND_S = 8.0
# After a server died, the rest of what it wrote to stderr is normally already in the pipe.
_STDERR_SETTLE_S = 0.5
_LIST_PAGES = 100
# MCP's own JSON-RPC error codes (mcp_types.CONNECTION_CLOSED, REQUEST_TIMEOUT), spelled out
# so that checking one does not import the SDK.
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001


class McpServerError(Exception):
    """An MCP server that cannot start, crashed, or closed the connection: the message names
    the server and the call, with a redacted tail of its stderr."""


class McpPool:
    """The MCP servers of one run or node attempt, started lazily and closed together.

    `on_spawn(argv0)` is called once per stdio server, just before its process starts; the
    variables it returns, if any, are added to that process's environment (the run's mark
    that lets a sweep find it after a kill -9, tools/processes.py)."""

    def __init__(self, specs: Mapping[str, McpServerSpec], *, workspace: str,
                 environ: Mapping[str, str], allowed_secrets: Collection[str],
                 redact: Callable[[str], str] = str,
                 on_spawn: Callable[[str], Mapping[str, str] | None] | None = None,
                 max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        self._specs = dict(specs)
        self._workspace = os.path.realpath(workspace)
        self._environ = environ
        self._allowed = frozenset(allowed_secrets)
        self._outer_redact = redact
        self.on_spawn = on_spawn
        self._max_output = max_output
        self._servers: dict[str, _Server] = {}
        self._tools: dict[str, list[dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Values resolved for servers (env secrets, header secrets): hidden in every message
        # even when the caller's `redact` does not know them.
        self._secret_values: set[str] = set()
        self._started = 0
        self._closed = False

    @property
    def workspace(self) -> str:
        """The real path of the workspace servers run in (and `{workspace}` stands for)."""
        return self._workspace

    @property
    def started(self) -> int:
        """Servers started so far (processes spawned or HTTP sessions opened)."""
        return self._started

    def redact(self, text: str) -> str:
        """`text` with every secret value this pool resolved, and the caller's, hidden."""
        text = self._outer_redact(text)
        for value in sorted(self._secret_values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    async def list_tools(self, server: str) -> list[dict[str, Any]]:
        """The server's tools after its allow-list, as `{name, description, inputSchema}`;
        listed once per pool."""
        if server in self._tools:
            return self._tools[server]
        live = await self._server(server)
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            for _ in range(_LIST_PAGES):
                page = await live.client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
        except Exception as exc:  # any failure here is the server's
            raise await live.failed(exc, "tools/list") from None
        allowed = live.spec.tools
        if allowed is not None:
            missing = sorted(set(allowed) - {t.name for t in tools})
            if missing:
                raise McpServerError(self.redact(
                    f"MCP server '{server}' has no tool(s) {', '.join(missing)} of its "
                    f"tools allow-list; it offers: {', '.join(sorted(t.name for t in tools))}"))
            tools = [t for t in tools if t.name in allowed]
        listing = [{"name": t.name, "description": t.description or "",
                    "inputSchema": t.input_schema} for t in tools]
        self._tools[server] = listing
        return listing

    async def call_tool(self, server: str, tool: str,
                        arguments: Mapping[str, Any]) -> McpToolResult:
        """One tools/call: an error result (is_error) for what the server or the allow-list
        refuses and for a timeout; McpServerError if the server cannot start or died."""
        spec = self._spec(server)
        if spec.tools is not None and tool not in spec.tools:
            return McpToolResult.error(f"tool '{tool}' is not allowed on MCP server '{server}'")
        live = await self._server(server)
        from mcp.shared.exceptions import MCPError
        try:
            result = await live.client.call_tool(tool, dict(arguments))
        except MCPError as exc:
            if exc.code == _REQUEST_TIMEOUT:
                # The server lives on (the SDK sends it a cancellation): the model hears it.
                return McpToolResult.error(
                    f"MCP server '{server}': tools/call '{tool}' timed out after "
                    f"{spec.timeout_s:g}s")
            if exc.code != _CONNECTION_CLOSED:
                # A JSON-RPC error answer (invalid params, ...) from a server still running.
                return McpToolResult.error(self.redact(f"MCP error {exc.code}: {exc}"))
            raise await live.failed(exc, f"tools/call '{tool}'") from None
        except Exception as exc:  # a broken stream, an ExceptionGroup: a crash
            raise await live.failed(exc, f"tools/call '{tool}'") from None
        return recorded_result(result, self._max_output)

    def declare(self, specs: Iterable[McpServerSpec]) -> None:
        """Add servers the pool may start; ValueError for a name it knows declared
        differently (one run, one server per name)."""
        for spec in specs:
            known = self._specs.setdefault(spec.name, spec)
            if known != spec:
                raise ValueError(f"MCP server '{spec.name}' is declared twice with different "
                                 "settings in this run; give one of them another name")

    async def forget(self, server: str) -> None:
        """Drop a server that died, and its listing: the next use starts it anew. A server
        that lives (one started anew meanwhile) is kept."""
        live = self._servers.get(server)
        if live is None or not live.dead:
            return
        del self._servers[server]
        self._tools.pop(server, None)
        await live.stop()

    async def aclose(self) -> None:
        """Stop every server and wait for each (bounded); idempotent."""
        self._closed = True
        servers = list(self._servers.values())
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)

    def _spec(self, server: str) -> McpServerSpec:
        spec = self._specs.get(server)
        if spec is None:
            raise McpServerError(f"no MCP server named '{server}' "
                                 f"(declared: {', '.join(sorted(self._specs)) or 'none'})")
        return spec

    async def _server(self, name: str) -> _Server:
        """The running server `name`, started on first use; McpServerError if it cannot be
        started or has died."""
        spec = self._spec(name)
        if self._closed:
            raise McpServerError(f"MCP server '{name}': the pool is closed")
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            live = self._servers.get(name)
            if live is None:
                live = self._servers[name] = _Server(spec, self)
                await live.start()
        live.check_alive()
        return live

    def _connect_target(self, spec: McpServerSpec, stderr: _StderrTail) -> tuple[Any, Any]:
        """What the Client connects to, and an HTTP client to close after it (or None); for
        stdio, the stderr pipe is opened and `on_spawn` told."""
        from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS, StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
        if spec.command is not None:
            argv = [a.replace(WORKSPACE, self._workspace) for a in spec.command]
            env = {**basic_env(self._workspace), **spec.env,
                   **self._resolve(spec, spec.secrets)}
            # A path with a slash is the workspace's (where the server runs), as a shell
            # in that directory would read it; a bare name is looked up on the PATH it gets.
            program = shutil.which(os.path.join(self._workspace, argv[0])
                                   if "/" in argv[0] else argv[0], path=env["PATH"])
            if program is None:
                raise McpServerError(f"cannot start MCP server '{spec.name}': command "
                                     f"{argv[0]!r} not found on PATH")
            # The SDK merges a few of the daemon's variables (USER, SHELL, ...) under the
            # given env; `env -u` drops those the spec does not set, so the server gets
            # exactly its declared environment. Values travel in the environment, never argv.
            if self.on_spawn is not None:
                env.update(self.on_spawn(argv[0]) or {})
            unset = [arg for var in DEFAULT_INHERITED_ENV_VARS if var not in env
                     for arg in ("-u", var)]
            params = StdioServerParameters(
                command=shutil.which("env") or "/usr/bin/env",
                args=[*unset, "--", program, *argv[1:]], env=env, cwd=self._workspace)
            stderr.open()
            return stdio_client(params, errlog=stderr.writer), None
        assert spec.url is not None
        secrets = self._resolve(spec, spec.header_secrets)
        headers = {key: SECRET_REF.sub(lambda m: secrets[m.group(1)], value)
                   for key, value in spec.headers.items()}
        http = create_mcp_http_client(headers=headers)
        return streamable_http_client(spec.url, http_client=http), http

    def _resolve(self, spec: McpServerSpec, names: Collection[str]) -> dict[str, str]:
        """The values of named secrets: only names the host allows, as for provider keys."""
        values: dict[str, str] = {}
        for name in names:
            if name not in self._allowed:
                raise McpServerError(f"MCP server {spec.name}: secret {name} is not allowed: "
                                     f"start the daemon with --allow-key-env {name} to allow it")
            if not self._environ.get(name):
                raise McpServerError(f"MCP server {spec.name}: secret {name} is not set")
            values[name] = self._environ[name]
        self._secret_values.update(v for v in values.values() if v)
        return values


class _Server:
    """One server: its owner task, its session once ready, and why it died, if it did."""

    def __init__(self, spec: McpServerSpec, pool: McpPool) -> None:
        self.spec = spec
        self._pool = pool
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self._dead: str | None = None
        self._stderr = _StderrTail()

    @property
    def dead(self) -> bool:
        """The server could not start, or died."""
        return self._dead is not None

    @property
    def client(self) -> Client:
        """The connected client (only after `start`)."""
        assert self._client is not None
        return self._client

    async def start(self) -> None:
        """Start the owner task and wait until the session is ready (bounded by the spec's
        startup timeout); McpServerError with the reason and stderr tail otherwise."""
        try:
            target, http = self._pool._connect_target(self.spec, self._stderr)
        except McpServerError as exc:
            self._dead = str(exc)
            raise
        self._pool._started += 1
        self._owner = asyncio.create_task(self._own(target, http),
                                          name=f"mcp-server-{self.spec.name}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait([ready, self._owner], timeout=self.spec.startup_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The caller gave up while the server started: it must not half-start. The owner
            # is cancelled in its own task (anyio's rule holds); aclose awaits it.
            self._dead = f"MCP server '{self.spec.name}': its start was cancelled"
            self._owner.cancel()
            raise
        finally:
            ready.cancel()
        if self._ready.is_set():
            return
        if self._owner.done():
            exc = self._owner.exception() if not self._owner.cancelled() else None
            reason = _describe(exc) if exc is not None else "it stopped"
            if self.spec.command is not None and _closed(exc):
                reason = "it exited before the handshake ended"
        else:
            reason = f"not ready within {self.spec.startup_timeout_s:g}s"
            self._owner.cancel()
            await self.stop()
        self._dead = f"cannot start MCP server '{self.spec.name}': {reason}"
        raise McpServerError(await self._message(self._dead))

    async def _own(self, target: Any, http: Any) -> None:
        """Enter the client, hand its session out, wait for `stop`, exit it: all in this task,
        as anyio requires."""
        from mcp import Client
        try:
            async with contextlib.AsyncExitStack() as stack:
                if http is not None:
                    await stack.enter_async_context(http)
                client = Client(target, read_timeout_seconds=self.spec.timeout_s)
                try:
                    await stack.enter_async_context(client)
                finally:
                    # The process has its copy of the pipe now (or never started): ours must
                    # close, or the tail reader would never see EOF.
                    self._stderr.close_writer()
                self._client = client
                self._ready.set()
                await self._stop.wait()
        finally:
            self._stderr.close_writer()
            if self._dead is None and self._ready.is_set() and not self._stop.is_set():
                self._dead = f"MCP server '{self.spec.name}' stopped"

    def check_alive(self) -> None:
        """McpServerError at once for a server that died: nothing restarts within a pool."""
        if self._dead is not None:
            raise McpServerError(self._pool.redact(self._dead))

    async def failed(self, exc: BaseException, during: str) -> McpServerError:
        """Mark the server dead after `exc` during `during`; the error to raise."""
        stdio = self.spec.command is not None
        self._dead = f"MCP server '{self.spec.name}' {'exited' if stdio else 'failed'} " \
                     f"during {during}"
        if _code(exc) == _REQUEST_TIMEOUT:  # tools/list: a server that cannot list is no use
            self._dead = f"MCP server '{self.spec.name}' did not answer {during} within " \
                         f"{self.spec.timeout_s:g}s"
        elif not _closed(exc):
            self._dead += f": {_describe(exc)}"
        elif not stdio:  # a process says why on stderr; an HTTP server only went away
            self._dead += ": the connection closed"
        return McpServerError(await self._message(self._dead))

    async def _message(self, head: str) -> str:
        tail = await self._stderr.settled()
        return self._pool.redact(f"{head}: {tail}" if tail else head)

    async def stop(self) -> None:
        """Tell the owner to exit the client and wait for it (bounded); the process is gone
        when this returns, or the SDK has given up on it after SIGKILL."""
        self._stop.set()
        if self._owner is not None and not self._owner.done():
            done, _ = await asyncio.wait([self._owner], timeout=_CLOSE_BOUND_S)
            if not done:
                self._owner.cancel()
                await asyncio.wait([self._owner], timeout=1.0)
        if self._owner is not None and self._owner.done() and not self._owner.cancelled():
            self._owner.exception()  # retrieved: a crash was already reported to its caller
        await self._stderr.aclose()


class _StderrTail:
    """The read end of a stdio server's stderr pipe, keeping the last 4 KiB."""

    def __init__(self) -> None:
        self._tail = bytearray()
        self._writer: Any = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def writer(self) -> Any:
        """The file the server writes its stderr to (None before `open`)."""
        return self._writer

    def open(self) -> None:
        """Make the pipe and start reading it."""
        read_fd, write_fd = os.pipe()
        self._writer = os.fdopen(write_fd, "w")
        self._reader = asyncio.create_task(self._read(read_fd))

    async def _read(self, fd: int) -> None:
        pipe = os.fdopen(fd, "rb", buffering=0)
        reader = asyncio.StreamReader()
        try:
            transport, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe)
        except BaseException:
            pipe.close()
            raise
        try:
            while chunk := await reader.read(64 * 1024):
                self._tail += chunk
                del self._tail[:-_STDERR_TAIL]
        finally:
            transport.close()

    def close_writer(self) -> None:
        """Close our copy of the write end (the child keeps its own)."""
        if self._writer is not None:
            self._writer.close()

    async def settled(self) -> str:
        """The tail, after waiting briefly for the rest of a dead server's output."""
        if self._reader is not None and not self._reader.done():
            await asyncio.wait([self._reader], timeout=_STDERR_SETTLE_S)
        return self._tail.decode("utf-8", "replace").strip()

    async def aclose(self) -> None:
        """Stop reading."""
        self.close_writer()
        if self._reader is not None and not self._reader.done():
            await asyncio.wait([self._reader], timeout=_STDERR_SETTLE_S)
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _leaf(exc: BaseException) -> BaseException:
    """The first leaf of an ExceptionGroup (anyio task groups wrap what failed in them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _code(exc: BaseException | None) -> int | None:
    """The MCP error code of `exc` (or of its first leaf), None if it is not an MCPError."""
    from mcp.shared.exceptions import MCPError
    leaf = _leaf(exc) if exc is not None else None
    return leaf.code if isinstance(leaf, MCPError) else None


def _closed(exc: BaseException | None) -> bool:
    """Whether `exc` is the SDK's "connection closed": the other side went away."""
    return _code(exc) == _CONNECTION_CLOSED


def _describe(exc: BaseException) -> str:
    """An exception as one readable line: ExceptionGroups unwrapped to their first leaf."""
    exc = _leaf(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
