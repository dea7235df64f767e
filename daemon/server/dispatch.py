"""The method table: which handler serves which registered method, and the request context."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ostinato.protocol.registry import MethodSpec, Registry

if TYPE_CHECKING:
    from .app import Daemon
    from .connection import Connection

Handler = Callable[[Any, "RequestContext"], Any | Awaitable[Any]]


class Progress:
    """Work done progress of one request; does nothing when the client passed no token."""

    __slots__ = ("_connection", "_state", "token")

    def __init__(self, connection: Connection, token: int | str | None) -> None:
        self._connection = connection
        self.token = token
        self._state = "new"

    def begin(self, title: str, message: str | None = None, percentage: int | None = None,
              cancellable: bool = True) -> None:
        """Start reporting (LSP `begin`)."""
        if self._state == "new":
            self._state = "begun"
            self._send({"kind": "begin", "title": title, "message": message,
                        "percentage": percentage, "cancellable": cancellable})

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        """One step (LSP `report`); begins implicitly."""
        if self._state == "new":
            self.begin("working")
        if self._state == "begun":
            self._send({"kind": "report", "message": message, "percentage": percentage})

    def end(self, message: str | None = None) -> None:
        """Finish reporting (LSP `end`); sent at most once, and only after a begin."""
        if self._state == "begun":
            self._state = "ended"
            self._send({"kind": "end", "message": message})

    def _send(self, value: dict[str, Any]) -> None:
        if self.token is not None:
            value = {k: v for k, v in value.items() if v is not None}
            self._connection.notify("$/progress", {"token": self.token, "value": value})


class _NoProgress(Progress):
    """Shared by every request that passed no token: reporting is a no-op."""

    def begin(self, title: str, message: str | None = None, percentage: int | None = None,
              cancellable: bool = True) -> None:
        """Nothing to report to."""

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        """Nothing to report to."""

    def end(self, message: str | None = None) -> None:
        """Nothing to report to."""


NO_PROGRESS: Progress = _NoProgress(None, None)  # type: ignore[arg-type]


@dataclass(slots=True)
class RequestContext:
    """What a handler may use besides its params."""

    daemon: Daemon
    connection: Connection
    request_id: int | str | None
    progress: Progress


class Route:
    """A registered method with the handler that serves it."""

    __slots__ = ("_validate", "empty_params", "handler", "is_async", "result_model", "spec")

    def __init__(self, spec: MethodSpec, handler: Handler) -> None:
        self.spec = spec
        self.result_model = spec.result
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self._validate = spec.params.__pydantic_validator__.validate_python
        try:  # params models are frozen, so one instance can serve every empty call
            self.empty_params: Any = self._validate({})
        except ValidationError:
            self.empty_params = None

    def parse_params(self, raw: Any) -> Any:
        """The validated params model; ValidationError, or TypeError for positional params."""
        if not raw:
            if self.empty_params is not None:
                return self.empty_params
            raw = {}
        elif type(raw) is not dict:
            raise TypeError("params must be an object")
        return self._validate(raw)


class HandlerTable:
    """Handlers of one service module, declared with `@table.method("name")`."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def method(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator: the function serves method `name`."""
        def register(handler: Handler) -> Handler:
            if name in self.handlers:
                raise ValueError(f"two handlers for {name!r}")
            self.handlers[name] = handler
            return handler
        return register


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
