"""The handoff socket: `ostinato serve --stdio` started on a home this daemon owns sends its
stdin and stdout here (SCM_RIGHTS), and the daemon serves that client on them directly, as
it would its own stdio, with nothing copied in between. The process that handed them over
waits on the socket for the exit code a stdio daemon would have given (one byte), and exits
with it; if it goes away first, its client is gone too and the connection is closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bridge import pollable_pair
from . import transports
from .connection import Connection

if TYPE_CHECKING:
    from .app import Daemon

log = logging.getLogger("ostinato.transports")

RECEIVE_WITHIN_S = 10.0  # for a peer of the handoff socket to send its fds


class HandoffListener:
    """Accepts handed-over stdio clients on a unix socket (mode 0600)."""

    def __init__(self, daemon: Daemon, sock: socket.socket) -> None:
        self.daemon = daemon
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.sessions: set[asyncio.Task[None]] = set()
        # The pipes' file objects of each session: uvloop's pipe transports hold the fd, not
        # the file, which would close the fd under them once collected.
        self._files: dict[int, list[Any]] = {}
        sock.setblocking(False)
        self.loop.add_reader(sock, self._accept)

    def _accept(self) -> None:
        try:
            peer, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer.setblocking(False)
        # A bridge sends its fds at once; a peer that sends nothing is not kept waiting on.
        give_up = self.loop.call_later(RECEIVE_WITHIN_S, self._drop, peer)
        self.loop.add_reader(peer, self._receive, peer, give_up)

    def _drop(self, peer: socket.socket) -> None:
        self.loop.remove_reader(peer)
        peer.close()

    def _receive(self, peer: socket.socket, give_up: asyncio.TimerHandle) -> None:
        try:
            _, fds, _, _ = socket.recv_fds(peer, 1, 2)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        give_up.cancel()
        self.loop.remove_reader(peer)
        if len(fds) != 2 or not pollable_pair(*fds):
            for fd in fds:  # not what a bridge sends: refused, the peer gets EOF
                os.close(fd)
            peer.close()
            return
        task = self.loop.create_task(self._serve(peer, *fds))
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)

    async def _serve(self, peer: socket.socket, in_fd: int, out_fd: int) -> None:
        connection = Connection(self.daemon, "bridged")
        try:
            self._files[connection.id] = await transports.attach_pipes(
                connection, in_fd, out_fd)
            # Anything readable on the socket (its end) means the bridge went away.
            self.loop.add_reader(peer, connection.close)
            await connection.finished
        except Exception:  # the bridge gets exit code 1; the daemon goes on
            log.exception("a handed-over stdio client could not be served")
            connection.close()
        finally:
            self.loop.remove_reader(peer)
            with contextlib.suppress(OSError):
                peer.send(bytes([connection.exit_code]))
            peer.close()
            self._files.pop(connection.id, None)

    def close(self) -> None:
        """Stop accepting; sessions end with their connections, which the daemon closes."""
        self.loop.remove_reader(self.sock)
        self.sock.close()

    async def wait_closed(self) -> None:
        """Wait for the sessions to send their exit codes."""
        if self.sessions:
            await asyncio.wait(self.sessions, timeout=5)


def open_handoff(daemon: Daemon, path: Path) -> HandoffListener:
    """Listen for handed-over stdio clients on `path`."""
    sock = transports.bind_unix(path)
    sock.listen(16)
    return HandoffListener(daemon, sock)
