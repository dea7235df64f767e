"""Lifecycle family: session state, cancellation, discovery and daemon status.

These are the server's own methods: they reach the Daemon through the Connection a request
came on, which is always the server's `Connection`."""

from __future__ import annotations

import hmac
import logging
import os
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

from ostinato.protocol import PROTOCOL_VERSION
from ostinato.protocol.base import AnyParams, NullResult, Params
from ostinato.protocol.catalog import server_notifications
from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.home import TOKEN_FILE
from ostinato.protocol.lifecycle import (
    CancelParams,
    DiscoverResult,
    InitializeParams,
    InitializeResult,
    ServerCapabilities,
    ServerInfo,
)
from ostinato.protocol.mcp import (
    MCP_CAPABILITIES,
    MCP_INSTRUCTIONS,
    MODERN_CAPABILITIES,
    SERVER_INFO_KEY,
    SUPPORTED_VERSIONS,
    CancelledParams,
    McpParams,
    PingResult,
    mcp_version,
)
from ostinato.protocol.openrpc import openrpc_document

from ..services.base import HandlerTable, RequestContext
from ..version import VERSION
from .mcp.era import LISTED

if TYPE_CHECKING:
    from .app import Daemon
    from .connection import Connection

log = logging.getLogger("ostinato.lifecycle")
table = HandlerTable()


def _connection(ctx: RequestContext) -> Connection:
    return cast("Connection", ctx.connection)


def _token_accepted(expected: str, params: InitializeParams) -> bool:
    options = params.initializationOptions
    given = options.token if options is not None else None
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _check_token(params: InitializeParams, ctx: RequestContext) -> None:
    """Refuse, and end the connection, if the token is wrong, or if its address failed too
    often lately (then the token is not even compared)."""
    connection = _connection(ctx)
    daemon = connection.daemon
    expected = daemon.token_for(connection.kind)
    if expected is None:
        return
    limiter, address = daemon.auth_limiter, connection.address
    if (wait := limiter.retry_after(address)) is not None:
        connection.end()
        raise RpcError(ErrorCode.RATE_LIMITED,
                       f"Too many failed initialize attempts from {address}: try again in "
                       f"{max(wait, 1):.0f} s")
    if _token_accepted(expected, params):
        return
    limiter.failed(address)
    connection.end()
    log.warning("connection %d: initialize with a wrong or missing token from %s",
                connection.id, connection.peer or address)
    if (wait := limiter.retry_after(address)) is not None:
        log.warning("%d failed initialize attempts from %s within %g s: it is refused for "
                    "%.0f s", limiter.max_failures, address, limiter.window, wait)
    where = (f" (over TCP: the token in {daemon.home / TOKEN_FILE})"
             if daemon.options.token is None else "")
    raise RpcError(ErrorCode.UNAUTHORIZED,
                   f"Unauthorized: this daemon needs initializationOptions.token{where}")


@table.method("initialize")
def initialize(params: InitializeParams, ctx: RequestContext) -> InitializeResult:
    """Check the token and open the session."""
    connection = _connection(ctx)
    if connection.initialized:
        raise RpcError(ErrorCode.INVALID_REQUEST, "Invalid Request: already initialized")
    _check_token(params, ctx)
    # An MCP client gets the MCP revision negotiated; any other client, Ostinato's.
    mcp = mcp_version(params.protocolVersion)
    connection.open_session(params.clientInfo.name if params.clientInfo else None, mcp)
    registry = connection.daemon.dispatcher.registry
    capabilities = ServerCapabilities(
        methods=[spec.name for spec in registry if not spec.is_notification],
        notifications=[spec.name for spec in registry if spec.is_notification],
        framings=["content-length", "ndjson"],
        maxFrameBytes=connection.daemon.options.max_frame_bytes,
        **(MCP_CAPABILITIES if mcp else {}),
    )
    return InitializeResult(protocolVersion=mcp or PROTOCOL_VERSION,
                            serverInfo=ServerInfo(name="ostinato", version=VERSION),
                            capabilities=capabilities,
                            **({"instructions": MCP_INSTRUCTIONS} if mcp else {}))


@table.method("initialized")
@table.method("notifications/initialized")
def initialized(params: AnyParams, ctx: RequestContext) -> None:
    """Nothing to do: requests are served as soon as initialize has answered (LSP says
    `initialized`, MCP `notifications/initialized`)."""


_PONG = PingResult()


@table.method("ping")
def ping(params: AnyParams, ctx: RequestContext) -> PingResult:
    """MCP's liveness check: an empty object, at any time."""
    return _PONG


@table.method("shutdown")
def shutdown(params: Params, ctx: RequestContext) -> NullResult:
    """From now on only `exit` is accepted on this connection."""
    _connection(ctx).request_shutdown()
    return NullResult()


@table.method("exit")
def exit_(params: AnyParams, ctx: RequestContext) -> None:
    """Close the connection (over stdio, the process exits with it)."""
    _connection(ctx).end()


@table.method("$/cancelRequest")
def cancel_request(params: CancelParams, ctx: RequestContext) -> None:
    """Cancel a request of this connection; it then answers -32800."""
    _connection(ctx).cancel(params.id)


@table.method("server/discover")
def discover_mcp(params: McpParams, ctx: RequestContext) -> dict[str, Any]:
    """MCP 2026-07-28's discovery: the revisions served, capabilities and instructions."""
    return {"resultType": "complete", "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": MODERN_CAPABILITIES, "instructions": MCP_INSTRUCTIONS,
            "ttlMs": LISTED["ttlMs"], "cacheScope": LISTED["cacheScope"],
            "_meta": {SERVER_INFO_KEY: {"name": "ostinato", "version": VERSION}}}


@table.method("notifications/cancelled")
def mcp_cancelled(params: CancelledParams, ctx: RequestContext) -> None:
    """MCP's cancellation: as `$/cancelRequest`, but the request is not answered."""
    _connection(ctx).cancel(params.requestId)


@table.method("rpc.discover")
def discover(params: Params, ctx: RequestContext) -> DiscoverResult:
    """The OpenRPC document of the methods this daemon serves."""
    daemon = _connection(ctx).daemon
    cache = daemon.cache
    if "rpc.discover" not in cache:
        document = openrpc_document(daemon.dispatcher.registry, server_notifications())
        cache["rpc.discover"] = DiscoverResult.model_validate(document)
    return cache["rpc.discover"]


@table.method("daemon.status")
def status(params: Params, ctx: RequestContext) -> dict[str, Any]:
    """Identity and health of the daemon (a `DaemonStatusResult`, built as a dict: this is
    the method clients poll, so what never changes is built once)."""
    # Not _connection(ctx): two calls fewer on the method clients poll.
    daemon: Daemon = ctx.connection.daemon  # type: ignore[attr-defined]
    identity = daemon.cache.get("daemon.status") or _identity(daemon)
    result = identity.copy()  # cheaper than a {**identity, ...} literal on this hot path
    result["uptime_seconds"] = round(monotonic() - daemon.started_monotonic, 3)
    result["connections"] = len(daemon.connections)
    runner = ctx.services.runner
    result["active_runs"] = len(runner.active)
    result["transports"] = daemon.endpoints
    pool = runner.workers
    if pool is not None:  # inline: the identity's own executor entry, which never changes
        result["executor"] = {
            "backend": daemon.options.executor, "size": pool.size, "workers": [
                {"pid": worker.pid, "runs": len(worker.runs), "runs_done": worker.runs_done}
                | ({} if worker.node is None else {"node": worker.node})
                for worker in pool.workers if worker.alive]}
    return result


def _identity(daemon: Daemon) -> dict[str, Any]:
    """What `daemon.status` says that never changes, kept in the daemon's cache."""
    identity = daemon.cache["daemon.status"] = {
        "version": VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "home": str(daemon.home),
        "started_at": daemon.started_at.isoformat().replace("+00:00", "Z"),
        "uptime_seconds": 0.0, "connections": 0, "active_runs": 0, "transports": [],
        "executor": {"backend": daemon.options.executor, "size": 0, "workers": []},
    }
    return identity
