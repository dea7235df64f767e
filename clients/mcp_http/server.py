"""The HTTP/1.1 listener: h11 parses, each TCP connection is one task serving its requests in
turn (keep-alive), and each request is an Exchange the front answers with one body or an
event stream. Nothing a client sends or does ends the listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

import h11
import orjson

log = logging.getLogger("ostinato.mcp_http")

CHUNK = 1 << 16
HEAD_LIMIT = 64 * 1024  # request line and headers
READ_TIMEOUT_S = 60.0  # for a request's head and body once it started
KEEP_ALIVE_S = 120.0  # for the next request on an idle connection

T = TypeVar("T")


def error_body(request_id: Any, code: int, message: str) -> bytes:
    """A JSON-RPC error response (the body of a refusal too, as the transport allows)."""
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id,
                         "error": {"code": code, "message": message}})


def _reason(status: int) -> bytes:
    """The reason phrase of `status` (h11 sends none by default)."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class ClientGone(Exception):
    """The client closed its connection during the exchange."""


class BodyTooLarge(Exception):
    """The request's body is over the limit."""


class Exchange:
    """One HTTP request and its response: a whole body (`respond`) or an event stream
    (`open_stream`, `send`, `end`)."""

    def __init__(self, connection: HttpConnection, request: h11.Request, body: bytes) -> None:
        self.method = request.method.decode("ascii", "replace")
        self.path = request.target.decode("ascii", "replace").split("?", 1)[0]
        self.headers = {name.decode("latin-1"): value.decode("latin-1")
                        for name, value in request.headers}  # h11 lower-cases names
        self.body = body
        self.streaming = False
        self.extra_headers: list[tuple[str, str]] = []  # on whatever answers the exchange
        self._connection = connection

    def header(self, name: str) -> str | None:
        """The value of header `name` (lower case), None when absent."""
        return self.headers.get(name)

    async def respond(self, status: int, body: bytes = b"", content_type: str | None = None,
                      headers: Iterable[tuple[str, str]] = ()) -> None:
        """Answer with one body."""
        fields = [*self.extra_headers, *headers, ("content-length", str(len(body)))]
        if content_type is not None:
            fields.append(("content-type", content_type))
        await self._connection.send(h11.Response(status_code=status, headers=fields,
                                                 reason=_reason(status)))
        if body:
            await self._connection.send(h11.Data(data=body))
        await self._connection.send(h11.EndOfMessage())

    async def open_stream(self, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Start a `text/event-stream` answer (chunked, so the connection may live on)."""
        self.streaming = True
        # x-accel-buffering: proxies must pass the events on as they come.
        await self._connection.send(h11.Response(status_code=200, reason=b"OK", headers=[
            *self.extra_headers, *headers, ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"), ("x-accel-buffering", "no")]))

    async def send(self, data: bytes) -> None:
        """One event of the stream: a JSON-RPC message, or a comment when `data` is empty."""
        await self._connection.send(h11.Data(
            data=b"event: message\ndata: " + data + b"\n\n" if data else b": keepalive\n\n"))

    async def end(self) -> None:
        """End the stream."""
        await self._connection.send(h11.EndOfMessage())

    async def wait(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """`awaitable`'s result, unless the client goes away first (ClientGone) or `timeout`
        passes (TimeoutError); it is cancelled either way."""
        task = asyncio.ensure_future(awaitable)
        watch = self._connection.watch()
        try:
            await asyncio.wait({task, watch}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        if watch.done():
            raise ClientGone
        raise TimeoutError


Handler = Callable[[Exchange], Awaitable[None]]


class HttpConnection:
    """One client's TCP connection: its requests in turn, each handed to `handler`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 handler: Handler, max_body: int) -> None:
        self._reader, self._writer = reader, writer
        self._handler, self._max_body = handler, max_body
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        self._watch: asyncio.Task[None] | None = None
        self._early = bytearray()  # what the client sent while an exchange was under way
        self.answering = False  # an exchange is under way

    async def serve(self) -> None:
        """Serve requests until either side closes; errors end this connection only."""
        try:
            while await self._serve_one():
                self._h11.start_next_cycle()
        except (ConnectionError, ClientGone, TimeoutError):
            pass
        except Exception:  # a bug of ours must not end the listener
            log.exception("HTTP connection failed")
        finally:
            self._stop_watching()
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def _serve_one(self) -> bool:
        """Read one request and answer it; whether the connection goes on."""
        try:
            got = await self._read_request()
        except BodyTooLarge:
            await self._refuse(413, f"Payload Too Large: bodies are limited to "
                                    f"{self._max_body} bytes")
            return False
        except h11.RemoteProtocolError as exc:
            if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._refuse(exc.error_status_hint, f"Bad Request: {exc}")
            return False
        if got is None:
            return False
        self.answering = True
        try:
            await self._handler(Exchange(self, *got))
        except ClientGone:
            return False
        except Exception:  # a bug of ours ends this exchange, not the listener
            log.exception("the answer to an HTTP request failed")
            if self._h11.our_state is h11.SEND_RESPONSE:
                await self._refuse(500, "Internal error of the HTTP front", -32603)
            return False
        finally:
            self.answering = False
        self._stop_watching()
        return (self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE)

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request and its body; None when the client closed (or idled out)."""
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                await self._receive(request is None and not self._h11.trailing_data[0])
            elif isinstance(event, h11.Request):
                request = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > self._max_body:
                    raise BodyTooLarge
                if self._h11.client_is_waiting_for_100_continue:  # curl, for bodies > 1 KiB
                    await self.send(h11.InformationalResponse(status_code=100, headers=[]))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body:
                    raise BodyTooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:  # ConnectionClosed, or PAUSED after a close
                return None

    async def _receive(self, idle: bool) -> None:
        """Feed h11 what the client sent (b"" at its end)."""
        if self._early:
            data, self._early = bytes(self._early), bytearray()
        else:
            try:
                data = await asyncio.wait_for(self._reader.read(CHUNK),
                                              KEEP_ALIVE_S if idle else READ_TIMEOUT_S)
            except TimeoutError:
                if idle:
                    data = b""
                else:
                    raise
        self._h11.receive_data(data)

    async def _refuse(self, status: int, message: str, code: int = -32600) -> None:
        """Answer an unreadable request and close."""
        body = error_body(None, code, message)
        await self.send(h11.Response(status_code=status, reason=_reason(status), headers=[
            ("content-type", "application/json"), ("content-length", str(len(body))),
            ("connection", "close")]))
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def send(self, event: Any) -> None:
        """Write one h11 event; raises ClientGone when the client has gone."""
        data = self._h11.send(event)
        if data:
            if self._writer.is_closing():
                raise ClientGone
            self._writer.write(data)
            try:
                await self._writer.drain()
            except ConnectionError as exc:
                raise ClientGone from exc

    def watch(self) -> asyncio.Task[None]:
        """A task that ends when the client closes the connection during an exchange (what
        it sends meanwhile is kept for the next request)."""
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_client())
        return self._watch

    async def _watch_client(self) -> None:
        while data := await self._reader.read(CHUNK):
            self._early += data
            if len(self._early) > self._max_body + HEAD_LIMIT:
                break  # a client that floods us during an exchange is dropped
        self._early.clear()

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None


class Listener:
    """The listening socket and the connections it accepted."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self._handler, self._max_body = handler, max_body
        self._connections: dict[asyncio.Task[Any], HttpConnection] = {}
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port; the address bound (port 0 picks one)."""
        self.server = await asyncio.start_server(self._connected, host, port, limit=CHUNK)
        return self.server.sockets[0].getsockname()[:2]

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = self._connections[task] = HttpConnection(reader, writer, self._handler,
                                                              self._max_body)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            pass  # cut by close(): asyncio would log a cancelled connection task as an error
        finally:
            del self._connections[task]

    async def close(self, patience: float) -> None:
        """Stop accepting; give the connections `patience` seconds to finish what they
        answer (ended sessions end their streams), then cut the rest."""
        if self.server is not None:
            self.server.close()
        for task, connection in list(self._connections.items()):
            if not connection.answering:  # idle between requests: nothing to finish
                task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=patience)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
