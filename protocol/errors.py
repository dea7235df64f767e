"""JSON-RPC error codes (the standard ones, LSP's, and Ostinato's own) and the error exception."""

from __future__ import annotations

from enum import IntEnum

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: the command line
if TYPE_CHECKING:      # imports this module and starts faster without typing
    from typing import Any


class ErrorCode(IntEnum):
    """Every error code the daemon answers with; docs/protocol.md describes each."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # LSP's reserved range.
    SERVER_NOT_INITIALIZED = -32002
    REQUEST_CANCELLED = -32800
    # Ostinato's own, -32001..-32099.
    NOT_FOUND = -32001
    UNAUTHORIZED = -32003
    CONFLICT = -32004
    INVALID_PIPELINE = -32005
    STORAGE_FULL = -32006  # the disk holding the daemon's home is full
    OVERLOADED = -32007  # the daemon-wide budget of buffered input is spent
    RATE_LIMITED = -32008  # too many failed initialize attempts from one address


class RpcError(Exception):
    """An error that becomes a JSON-RPC error object on the wire."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        """The JSON-RPC `error` member for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_dict(cls, error: dict[str, Any]) -> RpcError:
        """Rebuild an error received from the wire."""
        return cls(error.get("code", ErrorCode.INTERNAL_ERROR), error.get("message", ""),
                   error.get("data"))

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r})"
