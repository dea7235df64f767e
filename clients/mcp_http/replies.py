"""How the endpoint answers: refusals (an HTTP status with a JSON-RPC error), and a
request's answer relayed from the daemon as one JSON body or as an event stream."""

from __future__ import annotations

from collections.abc import Callable

from .server import Exchange, error_body
from .session import Pending

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
JSON = "application/json"
SSE = "text/event-stream"
KEEPALIVE_S = 15.0  # a comment on a quiet stream keeps proxies and clients from timing out

PARSE_ERROR, INVALID_REQUEST, INTERNAL_ERROR = -32700, -32600, -32603


def ok(response: bytes) -> int:
    """The HTTP status of a response in a handshake session: always 200."""
    return 200


async def relay(ex: Exchange, pending: Pending,
                status: Callable[[bytes], int] = ok) -> None:
    """Answer a request: its response as one JSON body (with the HTTP `status` it calls
    for) when it is the first thing the daemon sends for it, else an event stream carrying
    its progress, then its response."""
    while True:
        try:
            item = await ex.wait(pending.queue.get(), KEEPALIVE_S)
        except TimeoutError:  # a long request: stream, so the wait shows signs of life
            item = (b"", False)
        if not ex.streaming:
            if item is not None and item[1]:
                return await ex.respond(status(item[0]), item[0], JSON)
            await ex.open_stream()
        if item is None:  # cancelled: the stream ends without a response
            return await ex.end()
        line, final = item
        await ex.send(line)
        if final:
            return await ex.end()


def accepts(accept: str, media_type: str) -> bool:
    """Whether an Accept header admits `media_type` (exactly, or by a wildcard)."""
    kind = media_type.split("/")[0]
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {media_type, f"{kind}/*", "*/*"})


async def refuse(ex: Exchange, status: int, message: str,
                 headers: list[tuple[str, str]] | None = None,
                 code: int = INVALID_REQUEST) -> None:
    """Refuse an exchange: an HTTP status, with a JSON-RPC error (no id) as its body."""
    await ex.respond(status, error_body(None, code, message), JSON, headers or [])
