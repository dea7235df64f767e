"""Async Python client of the daemon, over a spawned stdio daemon, a unix socket or TCP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from ostinato.protocol.catalog import client_methods
from ostinato.protocol.codec import FrameDecoder, FrameError, Framing, encode_frame
from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.home import read_token, resolve_home
from ostinato.protocol.lifecycle import DaemonStatusResult, InitializeResult
from ostinato.protocol.messages import (
    Notification,
    Request,
    Response,
    notification_message,
    parse_message,
    request_message,
)

M = TypeVar("M", bound=BaseModel)
NotificationHandler = Callable[[str, Any], None]
ProgressHandler = Callable[[dict[str, Any]], None]

_REGISTRY = client_methods()
log = logging.getLogger("ostinato.client")


class DaemonConnectionError(ConnectionError):
    """The daemon could not be reached, or the connection ended before the answer."""


def home_token(home: str | Path | None = None) -> str | None:
    """The token a daemon generated for TCP, from `home`/token (home: default
    $OSTINATO_HOME or ./.ostinato); None when there is no such file we can read."""
    return read_token(resolve_home(home))


def _dump_params(params: BaseModel | dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(params, BaseModel):
        return params.model_dump(mode="json", exclude_none=True)
    return params


class AsyncClient:
    """One connection to the daemon; typed calls via `call`, raw ones via `request`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 framing: Framing = Framing.CONTENT_LENGTH,
                 process: asyncio.subprocess.Process | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self.framing = framing
        self.process = process
        self.initialize_result: InitializeResult | None = None
        # The token of the daemon's home (see connect_tcp), sent when initialize gets none.
        self.home_token: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[Any]] = {}
        self._progress: dict[int | str, ProgressHandler] = {}
        self._handlers: dict[str, list[NotificationHandler]] = {}
        self._closed = False
        self._read_task = asyncio.ensure_future(self._read_loop())

    # -- connecting -----------------------------------------------------------------------

    @classmethod
    async def spawn(cls, home: str | Path | None = None, args: Sequence[str] = (),
                    framing: Framing = Framing.CONTENT_LENGTH, stderr: Any = None,
                    env: dict[str, str] | None = None) -> AsyncClient:
        """Start a daemon over stdio (`python -m ostinato.daemon --stdio`) and connect to it."""
        argv = [sys.executable, "-m", "ostinato.daemon", "--stdio", *args]
        if home is not None:
            argv += ["--home", str(home)]
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=stderr, env=env, limit=1 << 20)
        assert process.stdout is not None and process.stdin is not None
        writer = process.stdin
        return cls(process.stdout, writer, framing, process)  # type: ignore[arg-type]

    @classmethod
    async def connect_unix(cls, path: str | Path,
                           framing: Framing = Framing.CONTENT_LENGTH,
                           sock: socket.socket | None = None) -> AsyncClient:
        """Connect to a daemon's unix socket (or use `sock`, already connected to it)."""
        try:
            if sock is not None:
                reader, writer = await asyncio.open_unix_connection(sock=sock)
            else:
                reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        except OSError as exc:
            raise DaemonConnectionError(f"cannot connect to {path}: {exc}") from exc
        return cls(reader, writer, framing)

    @classmethod
    async def connect_tcp(cls, host: str, port: int,
                          framing: Framing = Framing.CONTENT_LENGTH,
                          home: str | Path | None = None) -> AsyncClient:
        """Connect to a daemon's TCP port. `initialize` without a token then sends the one
        the daemon wrote to `home`/token (home: default $OSTINATO_HOME or ./.ostinato), if
        that file exists."""
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise DaemonConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        client = cls(reader, writer, framing)
        client.home_token = home_token(home)
        return client

    # -- calls ----------------------------------------------------------------------------

    async def request(self, method: str, params: BaseModel | dict[str, Any] | None = None, *,
                      on_progress: ProgressHandler | None = None) -> Any:
        """Send a request and return its raw result; raises `RpcError` on an error reply.

        With `on_progress`, a `workDoneToken` is added to params and every `$/progress`
        value for it is passed to the callback. Cancelling the awaiting task sends
        `$/cancelRequest`.
        """
        msg_id = next(self._ids)
        body = _dump_params(params)
        if on_progress is not None:
            token = f"progress-{msg_id}"
            body = {**(body or {}), "workDoneToken": token}
            self._progress[token] = on_progress
        future = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            self._write(request_message(msg_id, method, body))
            return await future
        except asyncio.CancelledError:
            if not self._closed:
                self._write(notification_message("$/cancelRequest", {"id": msg_id}))
            raise
        finally:
            self._pending.pop(msg_id, None)
            if on_progress is not None:
                self._progress.pop(f"progress-{msg_id}", None)

    async def call(self, method: str, params: BaseModel | dict[str, Any] | None = None, *,
                   on_progress: ProgressHandler | None = None) -> Any:
        """Like `request`, but the result is parsed into the method's result model."""
        result = await self.request(method, params, on_progress=on_progress)
        spec = _REGISTRY.get(method)
        if spec is None or spec.result is None:
            return result
        return spec.result.model_validate(result)

    async def notify(self, method: str, params: BaseModel | dict[str, Any] | None = None) -> None:
        """Send a notification."""
        self._write(notification_message(method, _dump_params(params)))
        await self._writer.drain()

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        """Call `handler(method, params)` for every notification named `method` ("*": all)."""
        self._handlers.setdefault(method, []).append(handler)

    async def initialize(self, client_name: str = "ostinato-python",
                         token: str | None = None) -> InitializeResult:
        """Open the session (and send `initialized`)."""
        params: dict[str, Any] = {"processId": os.getpid(),
                                  "clientInfo": {"name": client_name}}
        if token is None:
            token = self.home_token
        if token is not None:
            params["initializationOptions"] = {"token": token}
        self.initialize_result = await self.call("initialize", params)
        await self.notify("initialized", {})
        return self.initialize_result

    async def daemon_status(self) -> DaemonStatusResult:
        """`daemon.status`."""
        return await self.call("daemon.status")

    # -- closing --------------------------------------------------------------------------

    async def close(self, shutdown: bool = True, timeout: float = 10.0) -> int | None:
        """Shut down politely when possible and close; returns a spawned daemon's exit code
        (it is killed if it has not exited within `timeout` seconds)."""
        if not self._closed and shutdown and self.initialize_result is not None:
            with contextlib.suppress(RpcError, DaemonConnectionError, ConnectionError,
                                     TimeoutError):
                await asyncio.wait_for(self.request("shutdown"), timeout)
                await self.notify("exit")
        self._closed = True
        with contextlib.suppress(Exception):
            self._writer.close()
        if self.process is not None:
            try:
                code = await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                code = await self.process.wait()
            await self._read_task
            return code
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task
        return None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- wire -----------------------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        if self._closed or self._writer.is_closing():
            raise DaemonConnectionError("the connection to the daemon is closed")
        self._writer.write(encode_frame(self.framing, orjson.dumps(message)))

    async def _read_loop(self) -> None:
        decoder = FrameDecoder(framing=self.framing)
        try:
            while data := await self._reader.read(1 << 16):
                for frame in decoder.feed(data):
                    if isinstance(frame, FrameError):
                        log.warning("unreadable frame from the daemon: %s", frame.message)
                        continue
                    try:
                        payload = orjson.loads(frame)
                    except orjson.JSONDecodeError as exc:
                        log.warning("the daemon sent invalid JSON: %s", exc)
                        continue
                    self._receive(payload)
        except (ConnectionError, OSError):
            pass
        finally:
            self._closed = True
            error = DaemonConnectionError("the daemon closed the connection")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)

    def _receive(self, payload: Any) -> None:
        for item in payload if isinstance(payload, list) else [payload]:
            try:
                message = parse_message(item)
            except RpcError:
                continue
            if isinstance(message, Response):
                future = self._pending.get(message.id)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    if message.error is not None:
                        future.set_exception(RpcError.from_dict(message.error))
                    else:
                        future.set_result(message.result)
            elif isinstance(message, Notification):
                self._dispatch_notification(message.method, message.params)
            elif isinstance(message, Request):  # the daemon sends no requests yet
                self._write({"jsonrpc": "2.0", "id": message.id, "error": {
                    "code": ErrorCode.METHOD_NOT_FOUND, "message": "client serves no methods"}})

    def _dispatch_notification(self, method: str, params: Any) -> None:
        # A failing callback is the caller's bug: log it, and keep the connection alive.
        if method == "$/progress" and isinstance(params, dict):
            progress = self._progress.get(params.get("token"))  # type: ignore[arg-type]
            if progress is not None:
                try:
                    progress(params.get("value", {}))
                except Exception:
                    log.exception("progress callback failed")
        for handler in [*self._handlers.get(method, []), *self._handlers.get("*", [])]:
            try:
                handler(method, params)
            except Exception:
                log.exception("notification callback for %s failed", method)
