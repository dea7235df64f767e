"""A small fake of the OpenAI and Anthropic HTTP APIs on 127.0.0.1, for driving the official
SDKs in tests.

It speaks plain HTTP/1.1 with keep-alive on asyncio streams and answers
`POST /v1/chat/completions` with a `chat.completion` object and `POST /v1/messages` with an
Anthropic `message`, or with each vendor's error body (tests/fakes/llm_api.py: the shapes, and
the checks that turn requests the real APIs refuse into 400s). How to answer each request:
the queued `Reply`s, one per request in arrival order; then the `responder`, a function of the
request; then `default`. Tests read back every request seen.

    async with FakeLLMServer() as server:
        server.queue(Reply(status=429, headers={"retry-after": "1"}), Reply())
        ...  # point a client at server.url
        assert len(server.requests) == 2

`refused_url()` and `unanswered_url()` give addresses where connecting fails at once, or
hangs until the client's connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from http import HTTPStatus
from typing import Any

from .llm_api import ANTHROPIC_PATH, OPENAI_PATH, Reply, SeenRequest, answer, by_turn

__all__ = ["ANTHROPIC_PATH", "OPENAI_PATH", "FakeLLMServer", "Reply", "Responder",
           "SeenRequest", "by_turn", "refused_url", "unanswered_url"]

Responder = Callable[[SeenRequest], Reply | Awaitable[Reply]]


class FakeLLMServer:
    """The fake API server; use `async with` so that it is always closed."""

    def __init__(self, default: Reply | None = None, *,
                 responder: Responder | None = None) -> None:
        self.default = default or Reply()
        self.responder = responder
        self.requests: list[SeenRequest] = []
        self._queue: list[Reply] = []
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._arrived = asyncio.Condition()
        self.port = 0
        self.connections_accepted = 0  # TCP connections clients opened, ever

    @property
    def url(self) -> str:
        """http://127.0.0.1:port, with no path."""
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        self._queue.extend(replies)

    async def wait_for_requests(self, count: int) -> None:
        """Return once `count` requests have arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    async def start(self) -> FakeLLMServer:
        """Listen on an ephemeral loopback port."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
        # Aborting the transports ends each handler's pending read, so the handlers return
        # on their own instead of being cancelled.
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeLLMServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        self.connections_accepted += 1
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up, e.g. after its timeout
        finally:
            writer.close()
            try:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            finally:
                # Only now: close() must wait for this task until it is really done, or the
                # test's loop ends with it pending (and cancels it, with an error logged).
                del self._connections[task]

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            await _respond(writer, 411, {"error": {"message": "length required"}}, {})
            return False
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        async with self._arrived:
            seen = SeenRequest(method, path, headers, body, index=len(self.requests))
            self.requests.append(seen)
            self._arrived.notify_all()
        reply = await self._reply(seen)
        if reply.delay_s and await _client_left(reader, reply.delay_s):
            return False
        status, payload, extra = answer(seen, reply)
        await _respond(writer, status, payload, extra)
        return headers.get("connection", "").lower() != "close"

    async def _reply(self, seen: SeenRequest) -> Reply:
        """The queued reply, else the responder's, else the default."""
        if self._queue:
            return self._queue.pop(0)
        if self.responder is None:
            return self.default
        try:
            reply = self.responder(seen)
            return await reply if inspect.isawaitable(reply) else reply
        except Exception as exc:  # shown to the client, so that the test's failure names it
            return Reply(status=500, message=f"responder failed: {exc!r}")


async def _client_left(reader: asyncio.StreamReader, delay_s: float) -> bool:
    """Wait up to delay_s; True if the client closed the connection meanwhile."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=delay_s)
    except TimeoutError:
        return False
    return data == b""


async def _respond(writer: asyncio.StreamWriter, status: int, payload: Any,
                   headers: dict[str, str]) -> None:
    data = json.dumps(payload).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             "content-type: application/json", f"content-length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


def refused_url() -> str:
    """http://127.0.0.1:port where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def unanswered_url() -> Iterator[str]:
    """http://127.0.0.1:port where connecting hangs until the client gives up: a listener
    that never accepts, its backlog filled, so that the kernel drops further SYNs."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
        yield f"http://127.0.0.1:{address[1]}"
