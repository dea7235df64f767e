"""The fast test layer: the daemon's real services, dispatcher and connections in the test's
own process and event loop, reached through an in-memory pipe instead of a socket.

A test gets the same `Wire` as against a daemon subprocess, so a test module switches by its
marker alone (`pytestmark = pytest.mark.in_process`, see conftest.py). Every request goes
through the server's own `Connection`: frames, lifecycle, `Dispatcher` routes, params and
result models, error codes, progress, cancellation and subscriptions are the daemon's. What
is left out is the process: no subprocess, no socket, no log file, no signals, no umask.
Tests of those keep `DaemonProcess` (tests/support.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from ostinato.daemon import services
from ostinato.daemon.main import build_dispatcher
from ostinato.daemon.server.app import Daemon, DaemonOptions
from ostinato.daemon.server.connection import Connection

from .support import Wire


class _ServerEnd(asyncio.WriteTransport):
    """The connection's transport: what it writes arrives in the client's reader."""

    def __init__(self, client: asyncio.StreamReader) -> None:
        super().__init__()
        self._client = client
        self._closing = False
        self.connection: Connection | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Deliver the daemon's bytes to the client."""
        if not self._closing:
            self._client.feed_data(bytes(data))

    def is_closing(self) -> bool:
        """Whether close() was called."""
        return self._closing

    def close(self) -> None:
        """The daemon hung up: the client reads the end, the connection is lost."""
        if self._closing:
            return
        self._closing = True
        self._client.feed_eof()
        if self.connection is not None:
            asyncio.get_running_loop().call_soon(self.connection.connection_lost, None)


class _ClientEnd:
    """The client's writer, the part of asyncio.StreamWriter a `Wire` uses: its bytes reach
    the connection on a later loop iteration, as from a socket."""

    def __init__(self, connection: Connection, server_end: _ServerEnd) -> None:
        self._connection = connection
        self._server_end = server_end
        self._closed = False

    def write(self, data: bytes) -> None:
        """Send bytes to the daemon."""
        if not self._closed and not self._server_end.is_closing():
            asyncio.get_running_loop().call_soon(self._connection.data_received, data)

    async def drain(self) -> None:
        """Nothing is buffered on this side."""

    def close(self) -> None:
        """The client hangs up: the daemon sees the end of its input."""
        if not self._closed:
            self._closed = True
            asyncio.get_running_loop().call_soon(self._connection.eof_received)

    async def wait_closed(self) -> None:
        """Closing takes effect on the next loop iteration."""
        await asyncio.sleep(0)


class InProcessDaemon:
    """A `Daemon` without transports: its services over `home` (a real sqlite file), its
    dispatcher with the given extensions, and clients connected through memory."""

    def __init__(self, home: Path, extensions: list[str], executor: str = "inline") -> None:
        self.home = home
        self._hooks: list[services.HandlerHook] = []
        options = DaemonOptions(home=home, extensions=extensions, strict_results=True,
                                executor=executor)
        self.daemon = Daemon(options, build_dispatcher(extensions, self._hooks), self._hooks)

    async def start(self) -> None:
        """Open the store and build the services, as `Daemon.serve` does."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.daemon.services = await services.start(self.daemon.host, self._hooks)

    async def connect(self, framing: str = "content-length", initialize: bool = True) -> Wire:
        """A new client (a unix socket connection, as the daemon sees it)."""
        reader = asyncio.StreamReader(limit=1 << 24)
        connection = Connection(self.daemon, "unix")
        server_end = _ServerEnd(reader)
        server_end.connection = connection
        connection.attach(server_end, server_end)
        wire = Wire(reader, _ClientEnd(connection, server_end), framing)  # type: ignore[arg-type]
        if initialize:
            await wire.initialize()
        return wire

    async def stop(self) -> None:
        """Stop as `Daemon` does: services first (runs end interrupted, the store closes),
        then every connection, waiting for their last replies."""
        if self.daemon.services is not None:
            await self.daemon.services.stop()
        connections = list(self.daemon.connections)
        for connection in connections:
            connection.close()
        if connections:
            await asyncio.wait([c.finished for c in connections], timeout=5)


@contextlib.asynccontextmanager
async def in_process_daemon(home: Path, *extensions: str,
                            executor: str = "inline") -> AsyncIterator[InProcessDaemon]:
    """An in-process daemon over `home`, stopped at the end."""
    daemon = InProcessDaemon(home, list(extensions), executor)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
