"""One MCP session over HTTP: one connection to the daemon's unix socket (NDJSON), whose
MCP face keeps the session's state. Messages from the daemon are routed here: a response to
the exchange that asked, a progress notification to the exchange whose request carried its
token, anything else to the session's GET stream (dropped when none is open)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from ..home import connect_home

log = logging.getLogger("ostinato.mcp_http")

LINE_LIMIT = 256 * 1024 * 1024  # a reply (an inspected run) can be large; the daemon is trusted
BACKLOG = 256  # notifications kept for a stream not open or not read (the oldest go first)
CONNECTION_CLOSED = -32000  # MCP's code for a connection that closed under a request


def key(value: Any) -> bytes:
    """A dict key for a JSON-RPC id or progress token: 1 and "1" stay apart."""
    return orjson.dumps(value)


def progress_token(message: dict[str, Any]) -> Any:
    """The request's `params._meta.progressToken`, None without one."""
    params = message.get("params")
    meta = params.get("_meta") if type(params) is dict else None
    return meta.get("progressToken") if type(meta) is dict else None


def offer(queue: asyncio.Queue[Any], item: Any) -> None:
    """Queue a notification for a client's stream, dropping the oldest one waiting when
    BACKLOG already wait: a client that does not read costs the front no more than
    that (progress and resource updates are superseded by later ones anyway)."""
    if queue.qsize() >= BACKLOG:
        queue.get_nowait()
    queue.put_nowait(item)


class Pending:
    """A request in flight: what the daemon sends for it, in order, as (line, whether it is
    the response); None ends it without a response (it was cancelled)."""

    __slots__ = ("id", "queue", "token")

    def __init__(self, message: dict[str, Any]) -> None:
        self.id = message["id"]
        token = progress_token(message)
        self.token = None if token is None else key(token)
        self.queue: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()


class Session:
    """An MCP session: its id (minted once `initialize` succeeded), its daemon connection,
    its requests in flight and its GET stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # 256 random bits, URL-safe base64: visible ASCII, as the transport requires.
        self.id = secrets.token_urlsafe(32)
        self.version = ""  # the negotiated revision, once initialized
        self.closed = False
        self.listener: asyncio.Queue[bytes | None] | None = None  # the GET stream's queue
        self.backlog: deque[bytes] = deque(maxlen=BACKLOG)  # for it while none is open
        self.busy = 0  # HTTP exchanges under way (an idle session has none)
        self.last_seen = asyncio.get_running_loop().time()
        self._reader, self._writer = reader, writer
        self._pending: dict[bytes, Pending] = {}
        self._by_token: dict[bytes, Pending] = {}
        self._pump = asyncio.create_task(self._read_daemon())

    @classmethod
    async def open(cls, home: Path) -> Session:
        """A session on a new connection to the home's daemon (started if none runs)."""
        sock = await asyncio.to_thread(connect_home, home)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer)

    def touch(self) -> None:
        """The session was used now."""
        self.last_seen = asyncio.get_running_loop().time()

    async def send(self, message: dict[str, Any]) -> None:
        """Pass a client's message to the daemon."""
        if self.closed:
            raise ConnectionError("the session is closed")
        self._writer.write(orjson.dumps(message) + b"\n")
        await self._writer.drain()

    def expect(self, message: dict[str, Any]) -> Pending | None:
        """Await the daemon's messages for request `message`; None when a request with its
        id is already in flight in this session."""
        pending = Pending(message)
        if key(pending.id) in self._pending:
            return None
        self._pending[key(pending.id)] = pending
        if pending.token is not None:
            self._by_token[pending.token] = pending
        return pending

    def forget(self, pending: Pending) -> None:
        """Stop routing to `pending` (answered, cancelled, or its client left)."""
        if self._pending.get(key(pending.id)) is pending:
            del self._pending[key(pending.id)]
        if pending.token is not None and self._by_token.get(pending.token) is pending:
            del self._by_token[pending.token]

    async def abandon(self, pending: Pending) -> None:
        """The client of `pending` left before its response: cancel it in the daemon."""
        if self.closed or self._pending.get(key(pending.id)) is not pending:
            return  # answered meanwhile, or nothing left to cancel
        self.forget(pending)
        log.info("session %s…: request %s cancelled, its client left", self.id[:8],
                 orjson.dumps(pending.id).decode())
        with contextlib.suppress(ConnectionError):
            await self.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
                "requestId": pending.id, "reason": "the HTTP client closed its stream"}})

    def cancelled(self, request_id: Any) -> None:
        """The client cancelled request `request_id`: the daemon will not answer it, so its
        exchange ends without a response."""
        pending = self._pending.get(key(request_id))
        if pending is not None:
            self.forget(pending)
            pending.queue.put_nowait(None)

    async def _read_daemon(self) -> None:
        """Route the daemon's messages until it closes the connection."""
        reason = "the daemon closed the session"
        try:
            while line := await self._reader.readline():
                self._route(line.rstrip(b"\n"))
        except (ConnectionError, ValueError) as exc:  # ValueError: a line over the limit
            reason = f"the connection to the daemon failed ({exc})"
        self.close(reason)

    def _route(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("session %s: the daemon sent a line that is not JSON", self.id[:8])
            return
        if type(message) is not dict:
            return
        if "method" not in message:  # a response
            pending = self._pending.get(key(message.get("id")))
            if pending is not None:
                self.forget(pending)
                pending.queue.put_nowait((line, True))
            return
        if message["method"] == "notifications/progress" and "id" not in message:
            params = message.get("params")
            token = params.get("progressToken") if type(params) is dict else None
            pending = self._by_token.get(key(token))
            if pending is not None:
                offer(pending.queue, (line, False))
                return
        if self.listener is not None:
            offer(self.listener, line)
        else:  # kept for the GET stream, which the client may open (or reopen) soon
            self.backlog.append(line)

    def close(self, reason: str, quiet: bool = False) -> None:
        """End the session: its requests in flight get an error, its GET stream ends, and
        the daemon connection closes (the daemon drops the session's state)."""
        if self.closed:
            return
        self.closed = True
        if not quiet:
            log.info("session %s… ended: %s", self.id[:8], reason)
        for pending in list(self._pending.values()):
            pending.queue.put_nowait((orjson.dumps({
                "jsonrpc": "2.0", "id": pending.id,
                "error": {"code": CONNECTION_CLOSED, "message": f"Connection closed: {reason}"}}),
                True))
        self._pending.clear()
        self._by_token.clear()
        if self.listener is not None:
            self.listener.put_nowait(None)
        self._writer.close()
        if self._pump is not asyncio.current_task():
            self._pump.cancel()

    async def wait_closed(self) -> None:
        """Until the daemon connection is closed."""
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
