"""MCP 2026-07-28 over Streamable HTTP: no session, every request a POST that carries its
revision in `_meta` and mirrors it in headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name),
answered on a connection to the daemon of its own. Closing the response stream is the
cancellation: the daemon connection closes with it, which cancels the request."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import orjson

from ostinato.protocol.mcp import MODERN_VERSIONS, UNSUPPORTED_PROTOCOL_VERSION, VERSION_KEY

from .replies import INTERNAL_ERROR, JSON, VERSION_HEADER, refuse, relay
from .server import ClientGone, Exchange, error_body
from .session import Session

HEADER_MISMATCH = -32020  # MCP: the headers do not say what the body says
METHOD_NOT_FOUND = -32601
NAMED = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
SENTINEL = ("=?base64?", "?=")


def is_stateless(ex: Exchange, message: dict[str, Any]) -> bool:
    """Whether a message without a session comes in the stateless revision's shape."""
    return ex.header(VERSION_HEADER) in MODERN_VERSIONS or _meta_version(message) is not None


def _meta_version(message: dict[str, Any]) -> Any:
    params = message.get("params")
    meta = params.get("_meta") if type(params) is dict else None
    return meta.get(VERSION_KEY) if type(meta) is dict else None


def _decoded(value: str) -> str | None:
    """A header value, its Base64 sentinel form decoded; None when it cannot be."""
    if not (value.startswith(SENTINEL[0]) and value.endswith(SENTINEL[1])):
        return value
    try:
        return base64.b64decode(value[len(SENTINEL[0]):-len(SENTINEL[1])],
                                validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def mismatch(ex: Exchange, message: dict[str, Any]) -> str | None:
    """What the request's headers fail to say as its body does; None when they agree."""
    version, method = ex.header(VERSION_HEADER), ex.header("mcp-method")
    if version is None or version != _meta_version(message):
        return (f"MCP-Protocol-Version header {version!r} does not match the body's "
                f"_meta {VERSION_KEY!r} ({_meta_version(message)!r})")
    if method is None or method != message.get("method"):
        return (f"Mcp-Method header {method!r} does not match the body's method "
                f"{message.get('method')!r}")
    field = NAMED.get(message["method"])
    if field is not None:
        params = message.get("params")
        expected = params.get(field) if type(params) is dict else None
        given = ex.header("mcp-name")
        if given is None or _decoded(given) != expected:
            return f"Mcp-Name header {given!r} does not match the body's {field} {expected!r}"
    return None


def status(response: bytes) -> int:
    """The HTTP status of a stateless request's answer: 400 for a revision not served, 404
    for an unknown method (so that clients can tell the eras apart), else 200."""
    error = orjson.loads(response).get("error")
    code = error.get("code") if type(error) is dict else None
    return {UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404}.get(code, 200)


async def serve(ex: Exchange, message: dict[str, Any], home: Path) -> None:
    """Answer one stateless message on a daemon connection of its own."""
    if "id" not in message:  # the revision defines no notifications over HTTP
        return await ex.respond(202)
    if (why := mismatch(ex, message)) is not None:
        return await ex.respond(400, error_body(message["id"], HEADER_MISMATCH,
                                                f"Header mismatch: {why}"), JSON)
    try:
        connection = await Session.open(home)
    except Exception as exc:
        return await refuse(ex, 503, f"The daemon of {home} cannot be reached: {exc}",
                            code=INTERNAL_ERROR)
    try:
        pending = connection.expect(message)
        assert pending is not None  # the connection's first request
        await connection.send(message)
        await relay(ex, pending, status)
    except ConnectionError:
        raise ClientGone from None  # the daemon went away: nothing more can be said
    finally:
        # Answered, or the client closed the stream: that is the cancellation, and closing
        # the daemon connection cancels the request there (a `run` that waits stops).
        connection.close("the request is over", quiet=True)
