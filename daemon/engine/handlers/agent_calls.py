"""One tool call of an agent node: served from a recording, or checked, hooked, run and
recorded; either way the tool message the model gets next (decision 0006 §2, §5).

Whatever goes wrong with a call the model made (a tool it was not offered, arguments that
break the schema, a path outside the workspace, a pre-hook's veto, a non-zero exit, a
timeout) is a tool error the model reads and can act on, not a node failure. Only what the
model cannot fix fails the node: an MCP server that crashed, or `tool_errors=fail`.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..providers.base import Message, ToolCall, ToolSpec
from ..recording import INTERRUPTED
from ..tools.agent_spec import SERVER_SEPARATOR, AgentSpec
from ..tools.capture import run_captured
from ..tools.mcp import McpPool, McpServerError, McpToolResult
from ..tools.spec import CommandTool, render_argv, resolve_secrets
from .base import NodeRun

HOOK_TIMEOUT_S = 30.0
HOOK_OUTPUT = 16 * 1024
# A schema property marked so holds a path: it must stay inside the workspace.
PATH_MARK = "x-ostinato-path"


class ToolCallFailed(Exception):
    """A tool call the node cannot go on after (an MCP server that crashed)."""


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
    # Where the server runs is not part of what it answers: a replay elsewhere matches.
    request["metadata"] = {"command": list(declared.command)} if declared.command else \
        {"url": declared.url}
    executor = run.executor
    recorded = executor.recorded(run.node.id, run.attempt, "tool_list", request)
    if recorded is not None:
        _record_as(run, "tool_list", request, recorded.get("response"), recorded.get("error"),
                   0.0)
        if recorded.get("response") is None:
            raise ToolCallFailed(str(recorded.get("error")))
        return list(recorded["response"]["tools"])
    started = time.monotonic()
    pool = _pool(run, spec)
    try:
        listing = await pool.list_tools(server)
    except McpServerError as exc:
        _record_as(run, "tool_list", request, None, str(exc),
                   (time.monotonic() - started) * 1000)
        await pool.forget(server)
        raise ToolCallFailed(str(exc)) from None
    _record_as(run, "tool_list", request, {"tools": listing}, None,
               (time.monotonic() - started) * 1000)
    return listing


def _pool(run: NodeRun, spec: AgentSpec) -> McpPool:
    executor = run.executor
    return executor.agent.mcp(spec.servers, run.node.id, executor.run_dir.redactor.text)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A finished call: the message for the model and what was recorded."""

    message: Message
    request: dict[str, Any]
    response: dict[str, Any]
    seq: int
    latency_ms: float

    @property
    def is_error(self) -> bool:
        """The model got a tool error."""
        return self.message.is_error


async def tool_call(run: NodeRun, spec: AgentSpec, offer: Offer, call: ToolCall, turn: int,
                    index: int) -> ToolResult:
    """Make one tool call (or serve it from the recording) and record it."""
    arguments, problem = call.parsed()
    request: dict[str, Any] = {"tool": call.name}
    route = offer.routes.get(call.name)
    if route is not None:
        request["server"] = route[0]
    request.update({"arguments": arguments if arguments is not None else call.arguments,
                    "turn": turn, "index": index, "metadata": {"call_id": call.id}})
    executor = run.executor
    recorded = executor.recorded(run.node.id, run.attempt, "tool", request)
    started = time.monotonic()
    if recorded is not None:
        if recorded.get("error") == INTERRUPTED:
            _record(run, request, None, INTERRUPTED, 0.0)
            raise TimeoutError  # it was cut short in the recording: the same outcome
        response = recorded.get("response")
        if response is None:
            _record(run, request, None, str(recorded.get("error")), 0.0)
            raise ToolCallFailed(str(recorded.get("error")))
        latency_ms = 0.0
    else:
        try:
            response = await _live(run, spec, route, arguments, problem, request)
        except (asyncio.CancelledError, TimeoutError):
            _record(run, request, None, INTERRUPTED, (time.monotonic() - started) * 1000)
            raise
        except ToolCallFailed as exc:
            _record(run, request, None, str(exc), (time.monotonic() - started) * 1000)
            raise
        latency_ms = (time.monotonic() - started) * 1000
    text, is_error = result_text(response)
    seq = _record(run, request, response, _first_line(text) if is_error else None, latency_ms)
    # The next request carries the result: a secret a tool printed never reaches the model.
    content = executor.run_dir.redactor.text(text)
    message = Message(role="tool", content=content, tool_call_id=call.id, is_error=is_error)
    return ToolResult(message, request, response, seq, latency_ms)


def _first_line(text: str) -> str:
    """A tool error as the call's error: its first line, without the `error: ` prefix."""
    return text.removeprefix("error: ").split("\n", 1)[0][:500]


def _record(run: NodeRun, request: dict[str, Any], response: dict[str, Any] | None,
            error: str | None, latency_ms: float) -> int:
    return _record_as(run, "tool", request, response, error, latency_ms)


def _record_as(run: NodeRun, kind: str, request: dict[str, Any],
               response: dict[str, Any] | None, error: str | None, latency_ms: float) -> int:
    run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind=kind,
                             request=request, response=response, error=error,
                             latency_ms=latency_ms,
                             finish_reason="error" if error is not None else "exit")
    return run.executor.call_seq


async def _live(run: NodeRun, spec: AgentSpec, route: tuple[str, str] | None,
                arguments: dict[str, Any] | None, problem: str | None,
                request: dict[str, Any]) -> dict[str, Any]:
    """Check and run the call; a refusal is a response the model reads."""
    name = request["tool"]
    tool = spec.tools.get(name)
    if tool is None and route is None:
        return {"refused": f"there is no tool named {name!r}; the tools are: {_offered(spec)}"}
    if arguments is None:
        return {"refused": f"{problem}; send the arguments as one JSON object"}
    if route is not None:
        return await _mcp_call(run, spec, route, arguments, request)
    assert tool is not None
    runtime = run.executor.agent
    try:
        secrets = resolve_secrets(tool, runtime.environ, runtime.allowed_secrets)
        argv = render_argv(tool, arguments, runtime.workspace, secrets)
        check_paths(tool, arguments, runtime.workspace)
    except ValueError as exc:
        return {"refused": str(exc)}
    redactor = run.executor.run_dir.redactor
    if any(redactor.text(element) != element for element in argv):
        # Every user of the machine can read a process's argv (ps, /proc).
        return {"refused": f"tool {tool.name}: an argument holds a secret of the run; a "
                           "secret reaches a tool through its environment only (secrets=)"}
    request["metadata"]["argv"] = argv
    if spec.pre_hook:
        veto = await run_hook(run, spec.pre_hook, "pre", request, None)
        if veto is not None:
            return {"refused": veto}
    mark = runtime.spawned("tool", argv[0], run.node.id)
    try:
        captured = await run_captured(argv, workspace=runtime.workspace, cwd=tool.cwd,
                                      env={**tool.env, **secrets, **mark},
                                      timeout_s=tool.timeout_s, max_output=tool.max_output)
    except OSError as exc:  # no such program, not executable
        return {"refused": f"cannot start {argv[0]!r}: {exc.strerror or exc}"}
    except ValueError as exc:  # the tool's cwd left the workspace
        return {"refused": str(exc)}
    response = captured.to_dict()
    if captured.timed_out:
        response["timeout_s"] = tool.timeout_s
    if spec.post_hook:
        await run_hook(run, spec.post_hook, "post", request, response)
    return response


def _offered(spec: AgentSpec) -> str:
    return ", ".join(spec.tools) + (f" and the tools of MCP server(s) {', '.join(spec.servers)}"
                                    if spec.servers else "") or "none"


async def _mcp_call(run: NodeRun, spec: AgentSpec, route: tuple[str, str],
                    arguments: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """One tools/call on the server; a server that died fails the node (ToolCallFailed)."""
    if spec.pre_hook:
        veto = await run_hook(run, spec.pre_hook, "pre", request, None)
        if veto is not None:
            return {"refused": veto}
    server, tool = route
    pool = _pool(run, spec)
    try:
        result = await pool.call_tool(server, tool, arguments)
    except McpServerError as exc:
        await pool.forget(server)  # the node's next attempt starts it anew
        raise ToolCallFailed(str(exc)) from None
    response = result.to_dict()
    if spec.post_hook:
        await run_hook(run, spec.post_hook, "post", request, response)
    return response


def check_paths(tool: CommandTool, arguments: Mapping[str, Any], workspace: str) -> None:
    """ValueError if an argument marked as a path resolves outside the workspace (through
    `..`, an absolute path or a symlink)."""
    root = os.path.realpath(workspace)
    base = os.path.realpath(os.path.join(root, tool.cwd))
    for name, schema in tool.schema.get("properties", {}).items():
        if not (isinstance(schema, Mapping) and schema.get(PATH_MARK)) or name not in arguments:
            continue
        target = os.path.realpath(os.path.join(base, str(arguments[name])))
        if os.path.commonpath([root, target]) != root:
            raise ValueError(f"tool {tool.name}: argument {name} {arguments[name]!r} is "
                             "outside the workspace")


async def run_hook(run: NodeRun, command: str, which: str, request: dict[str, Any],
                   result: dict[str, Any] | None) -> str | None:
    """Run a tool hook (attractor §9.7) through /bin/sh with the call as JSON on stdin, and
    record it; for a pre-hook that exits non-zero, why the call is skipped."""
    executor, runtime = run.executor, run.executor.agent
    hook_request = {"hook": which, "command": command, "tool": request["tool"],
                    "turn": request["turn"], "index": request["index"]}
    recorded = executor.recorded(run.node.id, run.attempt, "hook", hook_request)
    if recorded is not None and recorded.get("response") is not None:
        response, latency_ms = recorded["response"], 0.0
    else:
        # The model's arguments reach a hook on stdin only, never in its command line.
        payload = {"tool": request["tool"], "arguments": request["arguments"],
                   "call_id": request["metadata"]["call_id"], "turn": request["turn"],
                   "index": request["index"], "node_id": run.node.id, "result": result}
        mark = runtime.spawned("hook", "/bin/sh", run.node.id)
        env = {**mark, "OSTINATO_TOOL_NAME": request["tool"],
               "OSTINATO_TOOL_CALL_ID": request["metadata"]["call_id"],
               "OSTINATO_NODE_ID": run.node.id, "OSTINATO_HOOK": which}
        started = time.monotonic()
        captured = await run_captured(["/bin/sh", "-c", command], workspace=runtime.workspace,
                                      env=env, timeout_s=HOOK_TIMEOUT_S, max_output=HOOK_OUTPUT,
                                      stdin=orjson.dumps(payload, default=str))
        response, latency_ms = captured.to_dict(), (time.monotonic() - started) * 1000
    code = response.get("exit_code")
    executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="hook",
                         request=hook_request, response=response,
                         error=None if code == 0 else f"exit code {code}",
                         latency_ms=latency_ms, finish_reason="exit" if code == 0 else "error")
    if which != "pre" or code == 0:
        return None
    said = (response.get("stderr") or response.get("stdout") or "").strip()[-500:]
    return f"the pre-hook vetoed this call (exit code {code})" + (f": {said}" if said else "")


def result_text(response: Mapping[str, Any]) -> tuple[str, bool]:
    """What the model reads of a recorded tool response, and whether it is an error."""
    if "refused" in response:
        return f"error: {response['refused']}", True
    if "content" in response:  # an MCP tool's result
        result = McpToolResult(content=list(response["content"]),
                               structured_content=response.get("structured_content"),
                               is_error=bool(response.get("is_error")),
                               truncated=response.get("truncated"))
        return result.text(), result.is_error
    code = response.get("exit_code")
    out, err = str(response.get("stdout", "")), str(response.get("stderr", ""))
    body = out + (f"\n[stderr]\n{err}" if err else "") + _truncation(response)
    if response.get("timed_out"):
        return f"error: timed out after {response.get('timeout_s', '?')} s\n{body}", True
    if code != 0:
        return f"error: exit code {code}\n{body}", True
    return body, False


def _truncation(response: Mapping[str, Any]) -> str:
    notes = [f"\n[{stream} truncated: {cut['total']:,} bytes, first {cut['kept']:,} shown]"
             for stream, cut in (response.get("truncated") or {}).items()]
    return "".join(notes)
