"""Blocking Python client: the async client driven on a private event loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ostinato.protocol.codec import Framing
from ostinato.protocol.lifecycle import DaemonStatusResult, InitializeResult

from .client import AsyncClient, NotificationHandler, ProgressHandler

T = TypeVar("T")


class Client:
    """Blocking twin of `AsyncClient`; build it with `spawn`, `connect_unix` or `connect_tcp`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 client: AsyncClient, timeout: float | None) -> None:
        self._loop = loop
        self._thread = thread
        self._client = client
        self.timeout = timeout

    @staticmethod
    def _open(factory: Coroutine[Any, Any, AsyncClient], timeout: float | None) -> Client:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="ostinato-client", daemon=True)
        thread.start()
        try:
            client = asyncio.run_coroutine_threadsafe(factory, loop).result(timeout)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        return Client(loop, thread, client, timeout)

    @classmethod
    def spawn(cls, home: str | Path | None = None, args: tuple[str, ...] = (),
              framing: Framing = Framing.CONTENT_LENGTH, stderr: Any = None,
              env: dict[str, str] | None = None, timeout: float | None = None) -> Client:
        """Start a daemon over stdio and connect to it."""
        return cls._open(AsyncClient.spawn(home, args, framing, stderr, env), timeout)

    @classmethod
    def connect_unix(cls, path: str | Path, framing: Framing = Framing.CONTENT_LENGTH,
                     timeout: float | None = None) -> Client:
        """Connect to a daemon's unix socket."""
        return cls._open(AsyncClient.connect_unix(path, framing), timeout)

    @classmethod
    def connect_tcp(cls, host: str, port: int, framing: Framing = Framing.CONTENT_LENGTH,
                    timeout: float | None = None, home: str | Path | None = None) -> Client:
        """Connect to a daemon's TCP port (the token of `home`, as AsyncClient.connect_tcp)."""
        return cls._open(AsyncClient.connect_tcp(host, port, framing, home), timeout)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self.timeout)
        except TimeoutError:
            future.cancel()  # sends $/cancelRequest for a request in flight
            raise

    def request(self, method: str, params: BaseModel | dict[str, Any] | None = None, *,
                on_progress: ProgressHandler | None = None) -> Any:
        """Raw result of a request; raises `RpcError` on an error reply."""
        return self._run(self._client.request(method, params, on_progress=on_progress))

    def call(self, method: str, params: BaseModel | dict[str, Any] | None = None, *,
             on_progress: ProgressHandler | None = None) -> Any:
        """Result of a request parsed into the method's result model."""
        return self._run(self._client.call(method, params, on_progress=on_progress))

    def notify(self, method: str, params: BaseModel | dict[str, Any] | None = None) -> None:
        """Send a notification."""
        self._run(self._client.notify(method, params))

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        """Call `handler(method, params)` (on the client thread) for each such notification."""
        self._client.on_notification(method, handler)

    def initialize(self, client_name: str = "ostinato-python",
                   token: str | None = None) -> InitializeResult:
        """Open the session."""
        return self._run(self._client.initialize(client_name, token))

    def daemon_status(self) -> DaemonStatusResult:
        """`daemon.status`."""
        return self._run(self._client.daemon_status())

    def close(self) -> int | None:
        """Shut down, close, stop the client thread; a spawned daemon's exit code is returned."""
        try:
            return self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
