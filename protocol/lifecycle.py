"""Lifecycle family: initialize, initialized, shutdown, exit, cancellation, progress,
rpc.discover and daemon.status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import AnyParams, Model, NullResult, Params, ProgressToken, Result
from .bounds import Integer, JsonObject, check_json
from .registry import MethodSpec


class ClientInfo(Model):
    """Who is connecting (LSP and MCP both send it)."""

    name: str
    version: str | None = None


class InitializeOptions(Model):
    """Ostinato's own initialization options."""

    model_config = ConfigDict(extra="allow")

    token: str | None = Field(
        default=None, description="Access token: required over TCP (the daemon's --token, else "
                                  "the one it wrote to <home>/token), and on every transport "
                                  "when the daemon was started with --token.")


class InitializeParams(Params):
    """Opens the session; LSP and MCP clients send their usual fields, which are accepted."""

    model_config = ConfigDict(extra="allow")

    processId: Integer | None = None
    clientInfo: ClientInfo | None = None
    protocolVersion: str | None = Field(
        default=None, description="The protocol version the client speaks, if it says.")
    capabilities: JsonObject = Field(default_factory=dict)
    initializationOptions: InitializeOptions | None = None

    @model_validator(mode="after")
    def _bounded_extras(self) -> InitializeParams:
        check_json(self.model_extra or {})  # the fields of other protocols are JSON too
        return self


class ServerInfo(Model):
    """The daemon's name and version."""

    name: str
    version: str


class ServerCapabilities(Model):
    """What this daemon can do; clients should check here rather than assume. An MCP
    session's also has MCP's own keys (`tools`, `resources`, `prompts`)."""

    model_config = ConfigDict(extra="allow")

    methods: list[str] = Field(description="Every request method the daemon answers.")
    notifications: list[str] = Field(description="Notifications the daemon accepts.")
    framings: list[Literal["content-length", "ndjson"]]
    batches: bool = True
    cancellation: bool = True
    workDoneProgress: bool = True
    maxFrameBytes: int


class InitializeResult(Result):
    """The daemon's identity and capabilities (and, for an MCP session, `instructions`)."""

    model_config = ConfigDict(extra="allow")

    protocolVersion: str
    serverInfo: ServerInfo
    capabilities: ServerCapabilities


class CancelParams(Params):
    """`$/cancelRequest`: the id of the request to cancel."""

    id: Integer | str


class WorkDoneProgressValue(Model):
    """One step of work done progress, as in LSP."""

    kind: Literal["begin", "report", "end"]
    title: str | None = None
    message: str | None = None
    percentage: int | None = Field(default=None, ge=0, le=100)
    cancellable: bool | None = None


class ProgressParams(Model):
    """`$/progress`, daemon → client: progress of the request that passed `token`."""

    token: ProgressToken
    value: WorkDoneProgressValue


class DiscoverResult(Result):
    """The OpenRPC document describing every method (the same as schemas/openrpc.json)."""

    model_config = ConfigDict(extra="allow")

    openrpc: str
    info: dict[str, Any]
    methods: list[dict[str, Any]]


class WorkerStatus(Result):
    """One worker of the daemon's pool."""

    pid: int = Field(description="Its process id (on its Ray node, for `ray`).")
    node: str | None = Field(default=None, description="Its Ray node id (`ray` only).")
    runs: int = Field(description="Runs executing on it right now.")
    runs_done: int = Field(description="Runs it has executed to their end, however they "
                           "ended.")


class ExecutorStatus(Result):
    """Where the daemon's runs execute (docs/scale-out.md)."""

    backend: Literal["inline", "processes", "ray"]
    size: int = Field(description="Workers the pool keeps at most; 0 until the first run "
                      "on a worker when the daemon was not told (one per core).")
    workers: list[WorkerStatus] = Field(description="Workers started and alive.")


class DaemonStatusResult(Result):
    """Health and identity of the running daemon."""

    version: str
    protocol_version: str
    pid: int
    home: str = Field(description="Absolute path of the daemon's home directory.")
    started_at: str = Field(description="UTC ISO 8601.")
    uptime_seconds: float
    connections: int = Field(description="Clients connected right now, this one included.")
    active_runs: int = Field(description="Runs executing or waiting on a human right now.")
    transports: list[str] = Field(description="Where the daemon listens, e.g. unix:/path.")
    executor: ExecutorStatus


METHODS = [
    MethodSpec("initialize", InitializeParams, InitializeResult,
               "Open the session: check the token, return serverInfo, protocol version and "
               "capabilities. Every other request before it fails with -32002."),
    MethodSpec("initialized", AnyParams, None,
               "Client notification that it has processed the initialize result."),
    MethodSpec("shutdown", Params, NullResult,
               "Ask the daemon to stop serving this connection; only `exit` is accepted after."),
    MethodSpec("exit", AnyParams, None,
               "Close this connection. Over stdio the daemon process exits: code 0 after "
               "`shutdown`, 1 otherwise."),
    MethodSpec("$/cancelRequest", CancelParams, None,
               "Cancel a request in flight; it answers with -32800."),
    MethodSpec("rpc.discover", Params, DiscoverResult,
               "The OpenRPC document of every method (schemas/openrpc.json)."),
    MethodSpec("daemon.status", Params, DaemonStatusResult,
               "Version, uptime, pid, home, connections, active runs and where runs execute."),
]

SERVER_NOTIFICATIONS = [
    MethodSpec("$/progress", ProgressParams, None,
               "Daemon → client: work done progress (begin, report, end) of a request that "
               "passed `workDoneToken`."),
]
