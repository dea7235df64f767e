"""JSON-RPC 2.0 envelopes: classifying incoming objects and building outgoing ones.

Envelopes are checked by hand rather than with pydantic: this runs once per message on the
hot path, and the rules are few. Params are validated by each method's model afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import ErrorCode, RpcError

RequestId = int | str | None

_NO_ID = object()


@dataclass(slots=True)
class Request:
    """A call that expects a response (has an `id`)."""

    id: RequestId
    method: str
    params: Any


@dataclass(slots=True)
class Notification:
    """A call without an `id`; never answered."""

    method: str
    params: Any


@dataclass(slots=True)
class Response:
    """A peer's answer to a request we sent."""

    id: RequestId
    result: Any = None
    error: dict[str, Any] | None = None


class InvalidMessage(RpcError):
    """An object that is not a valid JSON-RPC 2.0 message; `id` is kept when it was readable.

    `notification` is the method of a well-formed notification whose only fault is its
    params: a notification is never answered, so the receiver drops it rather than reply."""

    def __init__(self, message: str, id: RequestId = None,
                 notification: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_REQUEST, f"Invalid Request: {message}")
        self.id = id
        self.notification = notification


def _valid_id(value: Any) -> bool:
    return value is None or type(value) is str or type(value) is int


def parse_message(obj: Any) -> Request | Notification | Response:
    """Classify one decoded JSON value, or raise `InvalidMessage`."""
    if type(obj) is not dict:
        raise InvalidMessage("a message must be a JSON object")
    raw_id = obj.get("id", _NO_ID)
    msg_id = raw_id if raw_id is not _NO_ID and _valid_id(raw_id) else None
    if obj.get("jsonrpc") != "2.0":
        raise InvalidMessage('"jsonrpc" must be "2.0"', msg_id)
    if raw_id is not _NO_ID and not _valid_id(raw_id):
        raise InvalidMessage('"id" must be a string, an integer or null')
    method = obj.get("method", _NO_ID)
    if method is _NO_ID:
        if raw_id is not _NO_ID and ("result" in obj or "error" in obj):
            return Response(msg_id, obj.get("result"), obj.get("error"))
        raise InvalidMessage('"method" is missing', msg_id)
    if type(method) is not str:
        raise InvalidMessage('"method" must be a string', msg_id)
    params = obj.get("params")
    if params is not None and type(params) is not dict and type(params) is not list:
        raise InvalidMessage('"params" must be an object or an array', msg_id,
                             method if raw_id is _NO_ID else None)
    if raw_id is _NO_ID:
        return Notification(method, params)
    return Request(raw_id, method, params)


def request_message(msg_id: RequestId, method: str, params: Any = None) -> dict[str, Any]:
    """A request object."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification_message(method: str, params: Any = None) -> dict[str, Any]:
    """A notification object."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def dumps_id(msg_id: RequestId) -> bytes:
    """The JSON form of a request id."""
    if type(msg_id) is int:
        return b"%d" % msg_id
    if msg_id is None:
        return b"null"
    return orjson.dumps(msg_id)
