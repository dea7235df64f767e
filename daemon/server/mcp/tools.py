"""MCP tools: `tools/list` and `tools/call` onto the daemon's own method handlers.

A tool call is validated by the params model of the method it calls and served by that
method's handler, inline when the handler is sync (the hot read-only path costs a dict
lookup and a wrapper) and as the request's task when it is async. Whatever a handler raises
for its client becomes an `isError` result whose text says what to change; only a malformed
`tools/call` itself is a JSON-RPC error."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.mcp_tools import (
    HIDDEN_PARAMS,
    TOOL_DEFAULTS,
    TOOLS,
    ToolSpec,
    tool_definitions,
)

from ...disk import DamagedFile, disk_full
from ...host import Progress, Session
from ...services.base import HandlerTable, RequestContext
from ..connection import Connection, storage_full
from ..dispatch import Deferred, RawJson, Route
from .era import COMPLETE, LISTED, VERSION_KEY, is_modern
from .summaries import summary

table = HandlerTable()


class McpProgress(Progress):
    """Progress of a tool call as MCP's `notifications/progress`: a count that only grows,
    the percentage when there is one, and the step's message."""

    __slots__ = ("_count",)

    def __init__(self, connection: Session, token: int | str) -> None:
        super().__init__(connection, token)
        self._count = 0.0

    def _send(self, value: dict[str, Any]) -> None:
        if value["kind"] == "end":  # the reply follows at once and says it all
            return
        percentage = value.get("percentage")
        self._count = max(self._count + 1, float(percentage or 0))
        params: dict[str, Any] = {"progressToken": self.token, "progress": self._count}
        if percentage is not None:
            params["total"] = 100
        message = value.get("message") or value.get("title")
        if message:
            params["message"] = message
        self._connection.notify("notifications/progress", params)


class _Target:
    """A tool with the routes of its actions, resolved once per daemon."""

    __slots__ = ("cancels", "has_actions", "routes", "spec", "waits")

    def __init__(self, spec: ToolSpec, routes: dict[str, Route]) -> None:
        self.spec = spec
        self.routes = routes
        self.has_actions = spec.has_actions
        # The defaults of a call that waits (the tools' own), by action.
        self.waits = {action: {name: value for name, value in TOOL_DEFAULTS.items()
                               if name in route.spec.params.model_fields}
                      for action, route in routes.items()
                      if "wait" in route.spec.params.model_fields}
        self.cancels = {action for action, route in routes.items()
                        if "cancel_with_request" in route.spec.params.model_fields}


def _targets(connection: Connection) -> dict[str, _Target]:
    cache = connection.daemon.cache
    targets = cache.get("mcp.tools")
    if targets is None:
        route = connection.daemon.dispatcher.route
        targets = cache["mcp.tools"] = {
            spec.name: _Target(spec, {action: route(method)  # type: ignore[misc]
                                      for action, method in spec.actions.items()})
            for spec in TOOLS}
    return targets


@table.method("tools/list")
def list_tools(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Every tool, with schemas generated from the methods' models."""
    return {"tools": tool_definitions(), **(LISTED if is_modern(params) else {})}


@table.method("tools/call")
def call_tool(params: dict[str, Any], ctx: RequestContext) -> RawJson | dict[str, Any] | Deferred:
    """Call a tool: its method's handler, with the tool's arguments as the method's params."""
    name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
    modern = type(meta) is dict and VERSION_KEY in meta
    if arguments is None:
        arguments = {}
    if type(name) is not str or type(arguments) is not dict:
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params: tools/call takes `name` (a "
                       "string) and `arguments` (an object)")
    target = _targets(ctx.connection).get(name)  # type: ignore[arg-type]
    if target is None:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Unknown tool: {name}. The tools are "
                       + ", ".join(spec.name for spec in TOOLS) + ".")
    action = ""
    if target.has_actions:
        action = arguments.get("action")  # type: ignore[assignment]
        if type(action) is not str or action not in target.routes:
            return error_result(f"`action` must be one of {', '.join(target.routes)} for tool "
                                f"{name} (got {orjson.dumps(action).decode()}).", modern)
        arguments = {k: v for k, v in arguments.items() if k != "action"}
    route = target.routes[action]
    if not HIDDEN_PARAMS.isdisjoint(arguments):
        return error_result(f"Invalid arguments for tool {name}: "
                            f"{', '.join(sorted(HIDDEN_PARAMS.intersection(arguments)))} "
                            "is not one of its arguments (MCP has its own progress "
                            "token and cancellation).", modern)
    if arguments.get("wait") is True and action in target.waits:
        # Cancelling a call that waits cancels its work too (where the method can).
        arguments = target.waits[action] | arguments
        if action in target.cancels:
            arguments["cancel_with_request"] = True
    try:
        inner = route.parse_params(arguments)
    except ValidationError as exc:
        return error_result(_invalid_arguments(target.spec, action, exc), modern)
    if type(meta) is dict and (token := meta.get("progressToken")) is not None:
        ctx = RequestContext(ctx.services, ctx.connection, ctx.request_id,
                             McpProgress(ctx.connection, token))
    if route.is_async:
        return Deferred(_call_async(action, route, inner, ctx, modern))
    try:
        return _wrap(action, route, route.handler(inner, ctx), modern)
    except Exception as exc:
        return _failed(exc, modern)
    finally:
        ctx.progress.end()


async def _call_async(action: str, route: Route, params: Any, ctx: RequestContext,
                      modern: bool) -> RawJson | dict[str, Any]:
    try:
        result = await route.handler(params, ctx)
    except Exception as exc:
        return _failed(exc, modern)
    finally:
        ctx.progress.end()
    return _wrap(action, route, result, modern)


def _wrap(action: str, route: Route, result: Any, modern: bool) -> RawJson:
    """A method's result as a tool's: the summary as text, then the result as JSON text,
    and the summary with the result as structuredContent. Hosts differ in which of the two
    they give the model (some only structuredContent), so each holds the summary."""
    result = as_json(route, result)
    envelope = _ENVELOPES[action] % orjson.dumps(result)
    text = orjson.dumps(summary(route.spec.name, result))
    return RawJson(b'{"content":[{"type":"text","text":%s},{"type":"text","text":%s}],'
                   b'"structuredContent":{"summary":%s,%s,"isError":false%s}'
                   % (text, orjson.dumps(envelope.decode()), text, envelope[1:],
                      _COMPLETE if modern else b""))


def as_json(route: Route, result: Any) -> Any:
    """A handler's result as plain JSON values, through the method's result model."""
    if type(result) is dict:
        return result
    model = route.result_model
    if model is not None and type(result) is not model:
        result = model.model_validate(result)
    return model.__pydantic_serializer__.to_python(  # type: ignore[union-attr]
        result, mode="json")


_COMPLETE = b',"resultType":"complete"'  # 2026-07-28
# structuredContent without its summary: {"action", "result"}, by action ("": no action).
_ENVELOPES = {action: b'{"action":%s,"result":%%s}' % orjson.dumps(action) if action else
              b'{"result":%s}' for spec in TOOLS for action in spec.actions}


def error_result(text: str, modern: bool = False) -> dict[str, Any]:
    """A tool call that failed: the text tells the model what to change."""
    result = {"content": [{"type": "text", "text": text}], "isError": True}
    return result | COMPLETE if modern else result


def _failed(exc: Exception, modern: bool) -> dict[str, Any]:
    """What a handler's error tells the model; anything unexpected is re-raised (the
    connection logs it under an error id)."""
    if isinstance(exc, DamagedFile):
        return error_result(f"A file of the run is damaged: {exc}.", modern)
    if disk_full(exc):
        exc = storage_full(exc)
    if not isinstance(exc, RpcError):
        raise exc
    text = exc.message
    if exc.data:
        text += f" Details: {orjson.dumps(exc.data, default=str).decode()}"
    return error_result(text, modern)


def _invalid_arguments(spec: ToolSpec, action: str, exc: ValidationError) -> str:
    """Each wrong argument, where it is and what is wrong with it, without its value."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"`{where}`: {error['msg']}")
    what = f"tool {spec.name}" + (f" action {action}" if action else "")
    return f"Invalid arguments for {what}: " + "; ".join(problems) + "."
