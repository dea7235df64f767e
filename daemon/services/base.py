"""What every service handler gets: its request context, progress, and the handler table.

Handlers are plain `def` functions (answered inline; they must not block) or `async def`
coroutines (run as cancellable tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ostinato.protocol.errors import ErrorCode, RpcError

if TYPE_CHECKING:
    from . import Services

Handler = Callable[[Any, "RequestContext"], Any]


class Session(Protocol):
    """The connection a request came on, as service handlers may use it (the session's
    lifecycle is the server's)."""

    id: int
    subscriptions: set[str]  # topics whose notifications this client gets

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification to this client."""
        ...


class Progress:
    """Work done progress of one request; does nothing when the client passed no token."""

    __slots__ = ("_connection", "_state", "token")

    def __init__(self, connection: Session, token: int | str | None) -> None:
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

    services: Services
    connection: Session
    request_id: int | str | None
    progress: Progress


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


@contextmanager
def cursor_errors() -> Iterator[None]:
    """A store's ValueError on a page cursor that is not one of ours, as invalid params."""
    try:
        yield
    except ValueError:
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params: bad cursor") from None
