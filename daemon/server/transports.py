"""Where connections come from: stdio, a unix socket (mode 0600) and TCP."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bridge import pollable_pair
from .connection import Connection

if TYPE_CHECKING:
    from .app import Daemon

log = logging.getLogger("ostinato.transports")


# uvloop's pipe transports hold the fd but not the file object: without this reference the
# file is garbage-collected and closes the fd under the transport.
_keep: list[Any] = []


class StartupError(Exception):
    """The daemon cannot listen where it was asked to."""


class _StdinProtocol(asyncio.Protocol):
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def data_received(self, data: bytes) -> None:
        self.connection.data_received(data)

    def eof_received(self) -> bool:
        self.connection.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:  # after a clean EOF the pipe closes; that is not a vanished client
            self.connection.close()


class _StdoutProtocol(asyncio.Protocol):
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost(exc)


class _FileWriter(asyncio.WriteTransport):
    """stdout that the loop cannot watch (a file, a tty, /dev/null): write directly."""

    def __init__(self, fd: int, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._fd = fd
        self._protocol = protocol
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:  # the reader went away
            self.close()
            log.info("stdout closed: %s", exc)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            os.close(self._fd)
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)


class _ThreadReader(asyncio.ReadTransport):
    """stdin the loop cannot watch (a file, a tty, /dev/null): read in a thread."""

    def __init__(self, fd: int, protocol: asyncio.Protocol,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._fd = fd
        self._protocol = protocol
        self._loop = loop
        self._closing = False
        self._resume = threading.Event()
        self._resume.set()
        threading.Thread(target=self._run, name="stdin-reader", daemon=True).start()

    def _run(self) -> None:
        while not self._closing:
            self._resume.wait()
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._loop.call_soon_threadsafe(self._protocol.eof_received)
                return
            self._loop.call_soon_threadsafe(self._protocol.data_received, chunk)

    def pause_reading(self) -> None:
        self._resume.clear()

    def resume_reading(self) -> None:
        self._resume.set()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._resume.set()


async def open_stdio(daemon: Daemon) -> None:
    """Serve one client on stdin/stdout; anything else printed to stdout goes to stderr."""
    daemon.endpoints.append("stdio")
    connection = Connection(daemon, "stdio")
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print must never corrupt the protocol stream
    _keep.extend(await attach_pipes(connection, os.dup(0), out_fd))


async def attach_pipes(connection: Connection, in_fd: int, out_fd: int) -> list[Any]:
    """Serve `connection` on `in_fd` and `out_fd`, which it then owns (closing it closes
    them). Returns the file objects that must live as long as the connection."""
    loop = asyncio.get_running_loop()
    kept: list[Any] = []
    pipes = pollable_pair(in_fd, out_fd)  # else a file, a tty, /dev/null or one shared socket
    writer: asyncio.WriteTransport
    if pipes:
        stdout = os.fdopen(out_fd, "wb", buffering=0)
        kept.append(stdout)
        writer, _ = await loop.connect_write_pipe(lambda: _StdoutProtocol(connection), stdout)
    else:
        writer = _FileWriter(out_fd, _StdoutProtocol(connection))
    connection.attach(writer)  # before reading: uvloop may deliver data inside connect_read_pipe
    reader: asyncio.BaseTransport
    if pipes:
        stdin = os.fdopen(in_fd, "rb", buffering=0)
        kept.append(stdin)
        reader, _ = await loop.connect_read_pipe(lambda: _StdinProtocol(connection), stdin)
    else:
        reader = _ThreadReader(in_fd, _StdinProtocol(connection), loop)
    connection.reader = reader
    return kept


def _clear_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise StartupError(f"cannot check {path}: {exc}") from exc
        log.info("removing stale socket %s", path)
        path.unlink(missing_ok=True)
    else:
        raise StartupError(f"another daemon is listening on {path}")
    finally:
        probe.close()


def bind_unix(path: Path) -> socket.socket:
    """A unix socket bound at `path` that only this user can open (a stale socket file there
    is replaced; a live one is an error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind {path}: {exc}") from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return sock


async def open_unix(daemon: Daemon, path: Path) -> asyncio.Server:
    """Listen on a unix socket that only this user can open."""
    path = path.absolute()
    sock = bind_unix(path)
    daemon.endpoints.append(f"unix:{path}")
    return await asyncio.get_running_loop().create_unix_server(
        lambda: Connection(daemon, "unix"), sock=sock)


async def open_tcp(daemon: Daemon, host: str, port: int) -> asyncio.Server:
    """Listen on TCP; the caller has checked that a non-loopback host has a token."""
    try:
        server = await asyncio.get_running_loop().create_server(
            lambda: Connection(daemon, "tcp"), host, port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from exc
    for sock in server.sockets:  # `localhost` may bind both ::1 and 127.0.0.1
        address: Any = sock.getsockname()
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        daemon.endpoints.append(f"tcp://{shown}:{address[1]}")
    return server


def remove_socket(path: Path) -> None:
    """Remove our socket file at exit."""
    with contextlib.suppress(FileNotFoundError):
        path.absolute().unlink()


