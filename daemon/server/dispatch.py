"""The method table: which handler serves which registered method."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from pydantic import ValidationError

from ostinato.protocol.base import AnyParams
from ostinato.protocol.registry import MethodSpec, Registry

from ..services.base import Handler, HandlerTable

# Methods whose handler gets the params object as sent (see Route.passes_raw).
RAW_PARAMS = frozenset({"tools/call"})


class Deferred:
    """What a sync handler returns to finish its request asynchronously: the connection runs
    `awaitable` as the request's task (cancellable like an async handler's), and its value
    is the result. The MCP face uses it: whether a tool call is sync depends on its
    arguments."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Coroutine[Any, Any, Any]) -> None:
        self.awaitable = awaitable


class RawJson:
    """A result already serialized: the connection puts `json` into the reply as it is. The
    MCP face uses it to serialize a tool's result once for two places of its reply."""

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json


class Route:
    """A registered method with the handler that serves it."""

    __slots__ = ("_validate", "empty_params", "handler", "ignores_params", "is_async",
                 "passes_raw", "result_model", "spec")

    def __init__(self, spec: MethodSpec, handler: Handler) -> None:
        self.spec = spec
        self.result_model = spec.result
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        # The params model is built by the method's first call (protocol models defer their
        # build, so that the daemon starts sooner): `_validate` replaces itself then, and
        # the calls after it pay nothing for that.
        self._validate: Any = self._build
        self.empty_params: Any = None  # known after the first call
        # `exit` and `initialized` take any params at all: a goodbye is never refused.
        self.ignores_params = spec.params is AnyParams
        if self.ignores_params:
            self._build({})
        # The MCP face's methods check their params themselves: a tool's arguments are
        # validated once, by the model of the method the tool calls.
        self.passes_raw = spec.name in RAW_PARAMS

    def _build(self, raw: Any) -> Any:
        """Build the params validator and the shared empty params, then validate `raw`."""
        self._validate = self.spec.params.__pydantic_validator__.validate_python
        try:  # params models are frozen, so one instance can serve every empty call
            self.empty_params = self._validate({})
        except ValidationError:
            self.empty_params = None
        return self._validate(raw)

    def parse_params(self, raw: Any) -> Any:
        """The validated params model; ValidationError, or TypeError for positional params
        other than `[]`, `[null]` and `[{...}]`."""
        if self.ignores_params:
            return self.empty_params
        if type(raw) is list:
            raw = _by_name(raw)
        if self.passes_raw:
            return raw or {}  # `null` params, as none
        if not raw:
            if self.empty_params is not None:
                return self.empty_params
            raw = {}
        return self._validate(raw)


def _by_name(params: list[Any]) -> dict[str, Any]:
    """The object a by-position array stands for, or TypeError. Clients that always send
    positional params (vscode-jsonrpc puts `sendRequest(m, null)` as `[null]` on the wire)
    mean no params by `[]` and `[null]`, and the object itself by `[{...}]`."""
    if not params or (len(params) == 1 and params[0] is None):
        return {}
    if len(params) == 1 and type(params[0]) is dict:
        return params[0]
    raise TypeError("params must be an object")


class Dispatcher:
    """Routes method names to handlers; every route's spec comes from a registry."""

    def __init__(self) -> None:
        self.registry = Registry()
        self._routes: dict[str, Route] = {}

    def register(self, spec: MethodSpec, handler: Handler) -> None:
        """Serve `spec` with `handler` (sync handlers run inline and must not block)."""
        self.registry.add(spec)
        self._routes[spec.name] = Route(spec, handler)

    def mount(self, registry: Registry, tables: Iterable[HandlerTable]) -> None:
        """Serve every method of `registry` from the tables; a method without a handler fails."""
        handlers: dict[str, Handler] = {}
        for table in tables:
            for name, handler in table.handlers.items():
                if name in handlers:
                    raise ValueError(f"two handlers for {name!r}")
                handlers[name] = handler
        missing = [spec.name for spec in registry if spec.name not in handlers]
        unknown = sorted(set(handlers) - {spec.name for spec in registry})
        if missing or unknown:
            raise ValueError(f"handlers missing for {missing}, handlers without spec {unknown}")
        for spec in registry:
            self.register(spec, handlers[spec.name])

    def route(self, name: str) -> Route | None:
        """The route of `name`, or None when no such method is served."""
        return self._routes.get(name)

    @property
    def finder(self) -> Callable[[str], Route | None]:
        """`route` without its call frame, for the per-message path: the table's own get
        (routes are only ever added to the table, never replaced)."""
        return self._routes.get
