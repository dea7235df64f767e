"""What every service handler gets: its request context (with the session and progress of
daemon/host.py), and the handler table.

Handlers are plain `def` functions (answered inline; they must not block, nor keep their
context past the call: a connection reuses it) or `async def` coroutines (run as
cancellable tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import ErrorCode, RpcError

from ..host import Progress, Session

if TYPE_CHECKING:
    from . import Services

Handler = Callable[[Any, "RequestContext"], Any]


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
