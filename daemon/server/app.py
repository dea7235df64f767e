"""The daemon process: options, open connections, transports, events and stopping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ostinato.protocol.codec import DEFAULT_MAX_FRAME_BYTES
from ostinato.protocol.home import HANDOFF_NAME

from .. import services
from ..access import DEFAULT_AUTH_FAILURES, DEFAULT_AUTH_WINDOW, FailureLimiter
from ..disk import disk_full, no_space_left
from ..engine.load import DEFAULT_MAX_PIPELINE_BYTES
from ..home import HomeLock, prepare_socket_dir
from ..host import Host, Settings
from ..store.db import DEFAULT_WAL_MAX_BYTES, DamagedStore
from ..version import VERSION
from . import transports
from .connection import Connection
from .dispatch import Dispatcher
from .handoff import HandoffListener, open_handoff
from .transports import StartupError

log = logging.getLogger("ostinato.daemon")

DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
DEFAULT_FRAME_TIMEOUT = 60.0


@dataclass
class DaemonOptions:
    """How the daemon was started."""

    home: Path
    stdio: bool = False
    socket: Path | None = None
    tcp: tuple[str, int] | None = None
    token: str | None = None  # given: every transport needs it
    tcp_token: str | None = None  # generated when TCP has no token: TCP alone needs it
    auth_failures: int = DEFAULT_AUTH_FAILURES  # failed initialize per address and window
    auth_window: float = DEFAULT_AUTH_WINDOW  # seconds
    # api_key_env names a client may use besides the providers' documented ones.
    allowed_key_env: frozenset[str] = frozenset()
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_pipeline_bytes: int = DEFAULT_MAX_PIPELINE_BYTES
    wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES  # the store's WAL is truncated past this
    executor: str = "inline"  # where runs execute: inline | processes | ray (decision 0007)
    workers: int = 0  # the pool of processes or ray (0: one per core)
    ray_address: str | None = None  # ray: the cluster to join (None: start a local one)
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES  # unfinished frames, all clients
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT  # seconds a socket frame may stall
    extensions: list[str] = field(default_factory=list)
    strict_results: bool = False  # validate dict results against their models (tests do)
    ready_fd: int | None = None  # told "ready" once listening (a background start)


class Daemon:
    """Holds everything that lives as long as the process: connections, listeners, state."""

    def __init__(self, options: DaemonOptions, dispatcher: Dispatcher,
                 handler_hooks: list[services.HandlerHook] | None = None,
                 lock: HomeLock | None = None) -> None:
        self.options = options
        self.lock = lock  # the home's: held for our lifetime, so no other daemon serves it
        self.dispatcher = dispatcher
        # Extensions' register_handlers(registry), called once the runner exists.
        self.handler_hooks = list(handler_hooks or [])
        self.home = options.home
        self.host = Host(options.home, self.publish,
                         Settings(max_pipeline_bytes=options.max_pipeline_bytes,
                                  allowed_key_env=options.allowed_key_env,
                                  wal_max_bytes=options.wal_max_bytes,
                                  executor=options.executor, workers=options.workers,
                                  ray_address=options.ray_address))
        self.started_at = datetime.now(UTC)
        self.started_monotonic = time.monotonic()
        self.connections: set[Connection] = set()
        self.buffered_input = 0  # bytes of unfinished frames over all connections
        self.endpoints: list[str] = []
        self.cache: dict[str, Any] = {}  # values lifecycle methods derive once per process
        self.auth_limiter = FailureLimiter(options.auth_failures, options.auth_window)
        self.services: services.Services | None = None
        self._servers: list[asyncio.Server | HandoffListener] = []
        self._stopped: asyncio.Future[int] | None = None
        self._own_sockets: list[Path] = []

    def token_for(self, kind: str) -> str | None:
        """The token `initialize` must carry on a connection of transport `kind`, if any."""
        return self.options.token or (self.options.tcp_token if kind == "tcp" else None)

    def publish(self, topics: str | tuple[str, ...], method: str, params: Any) -> int:
        """Send a notification once to every connection subscribed to any of `topics`, and
        tell MCP connections' resource subscriptions (mcp/updates.py); returns how many got
        the notification."""
        wanted = {topics} if isinstance(topics, str) else set(topics)
        sent = 0
        for connection in list(self.connections):
            # An MCP session hears of topics through its resource subscriptions only:
            # `run/event` is not an MCP message (tests.run subscribes its caller, say).
            if connection.mcp_version is None and not wanted.isdisjoint(
                    connection.subscriptions):
                connection.notify(method, params)
                sent += 1
            if connection.watch is not None:
                connection.watch.touched(wanted)
        return sent

    def connection_closed(self, connection: Connection) -> None:
        """Over stdio the process lives exactly as long as its one connection."""
        if connection.kind == "stdio":
            code = connection.exit_code
            connection.finished.add_done_callback(lambda _: self.stop(code))

    def stop(self, exit_code: int = 0) -> None:
        """Ask the daemon to stop with `exit_code`; the first request wins."""
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(exit_code)

    async def serve(self) -> int:
        """Open the transports, serve until stopped, close everything; returns the exit code."""
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, 0)
        try:
            try:
                self.services = await services.start(self.host, self.handler_hooks)
            except Exception as exc:
                raise StartupError(start_failure(self.home, exc)) from exc
            if self.options.stdio:
                await transports.open_stdio(self)
            if self.options.socket is not None:
                await self._listen_unix(self.options.socket)
            if self.options.tcp is not None:
                self._servers.append(await transports.open_tcp(self, *self.options.tcp))
            if self.lock is not None:
                await self._listen_home()
            for endpoint in self.endpoints:
                log.info("listening on %s", endpoint)
            log.info("ostinato daemon ready (pid %d, home %s)", os.getpid(), self.home)
            if self.options.ready_fd is not None:
                _tell_ready(self.options.ready_fd)
            exit_code = await self._stopped
        finally:
            await self._close()
        log.info("ostinato daemon stopped (exit code %d)", exit_code)
        return exit_code

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        if self.services is not None:
            await self.services.stop()
        connections = list(self.connections)
        for connection in connections:
            connection.close()
        if connections:  # let the last replies leave before the loop ends
            await asyncio.wait([c.finished for c in connections], timeout=5)
        for server in self._servers:
            await server.wait_closed()
        for path in self._own_sockets:  # never another daemon's: only those we bound
            transports.remove_socket(path)

    async def _listen_unix(self, path: Path) -> None:
        self._servers.append(await transports.open_unix(self, path))
        self._own_sockets.append(path)

    async def _listen_home(self) -> None:
        """Listen on the home's well-known socket (unless --socket is that path already) and
        on its handoff socket (daemon/server/handoff.py), and record both in the home, where
        clients look for them."""
        assert self.lock is not None
        try:
            path = prepare_socket_dir(self.home)
            handoff = prepare_socket_dir(self.home, HANDOFF_NAME)
        except OSError as exc:
            raise StartupError(f"cannot listen on the home's socket: {exc}") from exc
        given = self.options.socket
        if given is None or given.absolute() != path:
            await self._listen_unix(path)
        self._servers.append(open_handoff(self, handoff))
        self._own_sockets.append(handoff)
        try:
            self.lock.publish(path, handoff, self.endpoints, VERSION)
        except OSError as exc:
            raise StartupError(f"cannot write the home's daemon record: {exc}") from exc


def _tell_ready(fd: int) -> None:
    """Tell whoever started us in the background that we listen, then leave the stdio it
    gave us: the log file has everything from here on."""
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)


def start_failure(home: Path, exc: Exception) -> str:
    """What stopped the daemon's start, said plainly (with a traceback in the log when it
    is neither a full disk nor a damaged store)."""
    if disk_full(exc) or no_space_left(home):
        return (f"cannot start: the disk holding {home} is full ({exc}); free some space "
                "and start the daemon again")
    if isinstance(exc, DamagedStore):
        return f"cannot start: {exc}"
    log.error("the daemon could not start", exc_info=exc)
    return f"cannot start: {type(exc).__name__}: {exc}"
