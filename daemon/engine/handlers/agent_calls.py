"""One tool call of an agent node: served from a recording, or checked, hooked, run and
recorded; either way the tool message the model gets next (decision 0006 §2, §5).

Whatever goes wrong with a call the model made (a tool it was not offered, arguments that
break the schema, a path outside the workspace, a pre-hook's veto, a non-zero exit, a
timeout) is a tool error the model reads and can act on, not a node failure. Only what the
model cannot fix fails the node: an MCP server that crashed, or `tool_errors=fail`.

Hooks (attractor §9.7) belong to the call they surround: what they did is part of the call's
recorded response (`hooks`), so a replay that serves the call serves them with it, and one
that makes the call live runs them live.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..providers.base import Message, ToolCall
from ..recording import INTERRUPTED
from ..tools.agent_spec import AgentSpec
from ..tools.capture import run_captured
from ..tools.mcp import McpServerError
from ..tools.mcp_result import McpToolResult
from ..tools.spec import CommandTool, render_argv, resolve_secrets
from .agent_offer import Offer, ToolCallFailed, mcp_pool
from .base import NodeRun

HOOK_TIMEOUT_S = 30.0
HOOK_OUTPUT = 16 * 1024
# A schema property marked so holds a path: it must stay inside the workspace.
PATH_MARK = "x-ostinato-path"


class CutShort(TimeoutError):
    """A call the recording says was cut short (by the node's timeout, a cancel, or a
    sibling's failure): served, it ends the turn the way it ended then."""


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


def call_request(offer: Offer, call: ToolCall, turn: int, index: int) -> dict[str, Any]:
    """The recorded request of a call: what it is (hashed), and its id (not hashed)."""
    arguments, _ = call.parsed()
    request: dict[str, Any] = {"tool": call.name}
    route = offer.routes.get(call.name)
    if route is not None:
        request["server"] = route[0]
    request.update({"arguments": arguments if arguments is not None else call.arguments,
                    "turn": turn, "index": index, "metadata": {"call_id": call.id}})
    return request


async def tool_call(run: NodeRun, spec: AgentSpec, offer: Offer, call: ToolCall, turn: int,
                    index: int, refusal: str | None = None) -> ToolResult:
    """Make one tool call (or serve it from the recording) and record it; `refusal`: the
    loop refuses it (past max_tool_calls) without running anything."""
    request = call_request(offer, call, turn, index)
    executor = run.executor
    recorded = executor.recorded(run.node.id, run.attempt, "tool", request)
    started = time.monotonic()
    if recorded is not None:
        if recorded.get("error") == INTERRUPTED:
            _record(run, request, None, INTERRUPTED, 0.0)
            raise CutShort
        response = recorded.get("response")
        if response is None:
            _record(run, request, None, str(recorded.get("error")), 0.0)
            raise ToolCallFailed(str(recorded.get("error")))
        latency_ms = 0.0
    elif refusal is not None:
        response, latency_ms = {"refused": refusal}, 0.0
    else:
        try:
            response = await _live(run, spec, offer, call, request)
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
    run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="tool",
                             request=request, response=response, error=error,
                             latency_ms=latency_ms,
                             finish_reason="error" if error is not None else "exit")
    return run.executor.call_seq


async def _live(run: NodeRun, spec: AgentSpec, offer: Offer, call: ToolCall,
                request: dict[str, Any]) -> dict[str, Any]:
    """Check and run the call; a refusal is a response the model reads."""
    arguments, problem = call.parsed()
    tool, route = spec.tools.get(call.name), offer.routes.get(call.name)
    if tool is None and route is None:
        offered = ", ".join(t.name for t in offer.tools) or "none"
        return {"refused": f"there is no tool named {call.name!r}; the tools are: {offered}"}
    if arguments is None:
        return {"refused": f"{problem}; send the arguments as one JSON object"}
    if route is not None:
        return await _hooked(run, spec, request, lambda: _mcp_call(run, spec, route, arguments))
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
    return await _hooked(run, spec, request,
                         lambda: _command_call(run, tool, argv, {**tool.env, **secrets}))


async def _command_call(run: NodeRun, tool: CommandTool, argv: list[str],
                        env: dict[str, str]) -> dict[str, Any]:
    runtime = run.executor.agent
    mark = runtime.spawned("tool", argv[0], run.node.id)
    try:
        captured = await run_captured(argv, workspace=runtime.workspace, cwd=tool.cwd,
                                      env={**env, **mark}, timeout_s=tool.timeout_s,
                                      max_output=tool.max_output)
    except OSError as exc:  # no such program, not executable
        return {"refused": f"cannot start {argv[0]!r}: {exc.strerror or exc}"}
    except ValueError as exc:  # the tool's cwd left the workspace
        return {"refused": str(exc)}
    response = captured.to_dict()
    if captured.timed_out:
        response["timeout_s"] = tool.timeout_s
    return response


async def _mcp_call(run: NodeRun, spec: AgentSpec, route: tuple[str, str],
                    arguments: dict[str, Any]) -> dict[str, Any]:
    """One tools/call on the server; a server that died fails the node (ToolCallFailed)."""
    server, tool = route
    pool = mcp_pool(run, spec)
    try:
        result = await pool.call_tool(server, tool, arguments)
    except McpServerError as exc:
        await pool.forget(server)  # the node's next attempt starts it anew
        raise ToolCallFailed(str(exc)) from None
    return result.to_dict()


async def _hooked(run: NodeRun, spec: AgentSpec, request: dict[str, Any],
                  make: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The call made between its hooks, what they did in its response: a pre-hook that
    exits non-zero skips the call; a post-hook's exit code changes nothing."""
    hooks: dict[str, Any] = {}
    if spec.pre_hook:
        hooks["pre"] = pre = await run_hook(run, spec.pre_hook, "pre", request, None)
        if pre["exit_code"] != 0:
            said = (pre.get("stderr") or pre.get("stdout") or "").strip()[-500:]
            return {"refused": f"the pre-hook vetoed this call (exit code {pre['exit_code']})"
                               + (f": {said}" if said else ""), "hooks": hooks}
    response = await make()
    if spec.post_hook:
        hooks["post"] = await run_hook(run, spec.post_hook, "post", request, response)
    return {**response, "hooks": hooks} if hooks else response


def check_paths(tool: CommandTool, arguments: Mapping[str, Any], workspace: str) -> None:
    """ValueError if an argument marked as a path resolves outside the workspace (through
    `..`, an absolute path or a symlink), or could be read as an option (`-…`)."""
    root = os.path.realpath(workspace)
    base = os.path.realpath(os.path.join(root, tool.cwd))
    for name, schema in tool.schema.get("properties", {}).items():
        if not (isinstance(schema, Mapping) and schema.get(PATH_MARK)) or name not in arguments:
            continue
        value = str(arguments[name])
        if value.startswith("-"):
            raise ValueError(f"tool {tool.name}: argument {name} {value!r} starts with '-': "
                             "write ./" + value)
        target = os.path.realpath(os.path.join(base, value))
        if os.path.commonpath([root, target]) != root:
            raise ValueError(f"tool {tool.name}: argument {name} {value!r} is outside the "
                             "workspace")


async def run_hook(run: NodeRun, command: str, which: str, request: dict[str, Any],
                   result: dict[str, Any] | None) -> dict[str, Any]:
    """Run a tool hook through /bin/sh in the workspace, the call as JSON on its stdin
    (redacted: a hook gets no secret a tool printed); its exit code and output."""
    executor, runtime = run.executor, run.executor.agent
    # The model's arguments reach a hook on stdin only, never in its command line.
    payload = executor.run_dir.redactor.values({
        "tool": request["tool"], "arguments": request["arguments"],
        "call_id": request["metadata"]["call_id"], "turn": request["turn"],
        "index": request["index"], "node_id": run.node.id, "result": result})
    mark = runtime.spawned("hook", "/bin/sh", run.node.id)
    env = {**mark, "OSTINATO_TOOL_NAME": request["tool"],
           "OSTINATO_TOOL_CALL_ID": request["metadata"]["call_id"],
           "OSTINATO_NODE_ID": run.node.id, "OSTINATO_HOOK": which}
    captured = await run_captured(["/bin/sh", "-c", command], workspace=runtime.workspace,
                                  env=env, timeout_s=HOOK_TIMEOUT_S, max_output=HOOK_OUTPUT,
                                  stdin=orjson.dumps(payload, default=str))
    return captured.to_dict()


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
