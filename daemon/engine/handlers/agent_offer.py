"""What an agent node offers its model: its command tools, and the tools its MCP servers
list (each listing a recorded call, `tool_list`, so that a replay offers the same tools
without contacting the server)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..providers.base import ToolSpec
from ..tools.agent_spec import SERVER_SEPARATOR, AgentSpec
from ..tools.mcp import McpPool, McpServerError
from ..tools.runtime import SPAWNING_NODE
from .base import NodeRun


class ToolCallFailed(Exception):
    """What the node cannot go on after: an MCP server that cannot start or crashed."""


@dataclass(frozen=True, slots=True)
class Offer:
    """The tools offered to the model, and for each MCP tool the server and name it is."""

    tools: list[ToolSpec]
    routes: dict[str, tuple[str, str]]


async def offered_tools(run: NodeRun, spec: AgentSpec) -> Offer:
    """The node's command tools, then each attached MCP server's tools (as
    `<server>__<tool>`), whose listings are recorded calls (`tool_list`)."""
    tools = [ToolSpec(name=name, description=tool.description, schema=tool.schema)
             for name, tool in spec.tools.items()]
    routes: dict[str, tuple[str, str]] = {}
    for server in spec.servers:
        for listed in await _tool_list(run, spec, server):
            name = _wire_name(server, str(listed["name"]))
            if name in spec.tools or name in routes:
                raise ToolCallFailed(f"two tools would be offered as {name!r}; rename the "
                                     "command tool, or narrow the server's tools allow-list")
            try:
                tools.append(ToolSpec(name=name, description=str(listed.get("description")
                                                                 or ""),
                                      schema=listed.get("inputSchema") or {"type": "object"}))
            except ValueError as exc:
                raise ToolCallFailed(f"MCP server {server!r} tool {listed['name']!r}: "
                                     f"{exc}") from None
            routes[name] = (server, str(listed["name"]))
    return Offer(tools, routes)


def _wire_name(server: str, tool: str) -> str:
    """An MCP tool's name for the model: OpenAI allows letters, digits, _ and -, 64 of them."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{server}{SERVER_SEPARATOR}{tool}")[:64]


async def _tool_list(run: NodeRun, spec: AgentSpec, server: str) -> list[dict[str, Any]]:
    """An MCP server's tools, served from a recording or listed (and recorded)."""
    declared = spec.servers[server]
    request: dict[str, Any] = {"server": server}
    if declared.tools is not None:
        request["tools_allow"] = list(declared.tools)
    # Where the server runs is not part of what it answers: a replay elsewhere matches. A
    # URL is kept without its query and credentials, where tokens hide.
    request["metadata"] = {"command": list(declared.command)} if declared.command else \
        {"url": _without_secrets(str(declared.url))}
    executor = run.executor
    recorded = executor.recorded(run.node.id, run.attempt, "tool_list", request)
    if recorded is not None:
        _record_listing(run, request, recorded.get("response"), recorded.get("error"), 0.0)
        if recorded.get("response") is None:
            raise ToolCallFailed(str(recorded.get("error")))
        return list(recorded["response"]["tools"])
    started = time.monotonic()
    pool = mcp_pool(run, spec)
    try:
        listing = await pool.list_tools(server)
    except McpServerError as exc:
        _record_listing(run, request, None, str(exc), (time.monotonic() - started) * 1000)
        await pool.forget(server)
        raise ToolCallFailed(str(exc)) from None
    _record_listing(run, request, {"tools": listing}, None, (time.monotonic() - started) * 1000)
    return listing


def _record_listing(run: NodeRun, request: dict[str, Any], response: dict[str, Any] | None,
                    error: str | None, latency_ms: float) -> None:
    run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="tool_list",
                             request=request, response=response, error=error,
                             latency_ms=latency_ms,
                             finish_reason="error" if error is not None else "exit")


def _without_secrets(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def mcp_pool(run: NodeRun, spec: AgentSpec) -> McpPool:
    """The run's MCP servers, this node's declared among them; a server it starts is
    counted as this node's."""
    SPAWNING_NODE.set(run.node.id)  # this task's: parallel branches keep their own
    executor = run.executor
    try:
        return executor.agent.mcp(spec.servers, executor.run_dir.redactor.text)
    except ValueError as exc:  # a server declared twice, differently
        raise ToolCallFailed(str(exc)) from None


