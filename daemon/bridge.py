"""`ostinato serve --stdio` on a home another daemon owns, so that editors and agent hosts
that spawn their own server share the home's runs, events and store. When stdin and stdout
are pipes or sockets (as a spawning editor gives), they are handed to the daemon over its
handoff socket (SCM_RIGHTS), which serves them directly; this process only waits for the exit
code. Otherwise (a terminal, a file) the bytes are relayed to the daemon's socket and back,
unchanged. Either way the process ends as a stdio daemon would: with `exit` (code 0 after
`shutdown`, else 1) or when stdin closes."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import stat
import sys
import time
from pathlib import Path

from ostinato.protocol.codec import FrameDecoder
from ostinato.protocol.home import HANDOFF_NAME, SOCKET_NAME, read_record, socket_path

CONNECT_PATIENCE_S = 30.0  # for a daemon that holds the lock but does not listen yet
CHUNK = 1 << 16


def pollable_pair(in_fd: int, out_fd: int) -> bool:
    """Whether an event loop can watch both fds as two pipe transports: pipes or sockets, and
    not one socket on both (inetd, socat EXEC: a write-pipe transport would take the incoming
    bytes for the peer closing). Files, ttys and /dev/null cannot be watched (or not on every
    loop)."""
    in_stat, out_stat = os.fstat(in_fd), os.fstat(out_fd)
    if (in_stat.st_dev, in_stat.st_ino) == (out_stat.st_dev, out_stat.st_ino):
        return False
    return all(stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
               for mode in (in_stat.st_mode, out_stat.st_mode))


def home_socket(home: Path, name: str = SOCKET_NAME,
                patience: float = CONNECT_PATIENCE_S) -> socket.socket:
    """A connection to the socket `name` of the daemon that owns `home`. It may still be
    starting (it took the lock, and opens its store before it listens), so refusals are
    retried for `patience` seconds: there is nothing to await across processes but the
    socket itself."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        record = read_record(home)
        recorded = None if record is None else (
            record.handoff if name == HANDOFF_NAME else record.socket)
        path = recorded or str(socket_path(home, name))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# Cheap to search in every chunk; a hit is then confirmed by decoding the chunk's frames.
_SHUTDOWN = re.compile(rb'"method"\s*:\s*"shutdown"')


def asked_to_shut_down(data: bytes) -> bool:
    """Whether `data`, a chunk of what the client sent, holds a `shutdown` request. A fresh
    decoder per chunk: it skips a fragment of an earlier frame at the start (the decoder
    resynchronises), and a request split across two chunks only costs the exit code."""
    if not _SHUTDOWN.search(data):
        return False
    for frame in FrameDecoder().feed(data):
        try:
            message = json.loads(frame) if isinstance(frame, bytearray) else None
        except ValueError:
            continue
        for one in message if isinstance(message, list) else [message]:
            if isinstance(one, dict) and one.get("method") == "shutdown":
                return True
    return False


def run(home: Path) -> int:
    """Serve the stdio client through the home's daemon until it exits or either side
    closes; the exit code a stdio daemon would have given."""
    try:
        if pollable_pair(0, 1):
            return _hand_over(home_socket(home, HANDOFF_NAME))
        sock = home_socket(home)
    except OSError as exc:
        print(f"ostinato serve: home {home} has a daemon, but its socket does not answer "
              f"({exc})", file=sys.stderr)
        return 2
    with sock:
        return _Relay(sock).run()


def _hand_over(sock: socket.socket) -> int:
    """Give stdin and stdout to the daemon; its exit code for the session (1 when it went
    away without one)."""
    with sock:
        socket.send_fds(sock, [b"h"], [0, 1])
        code = sock.recv(1)
    return code[0] if code else 1


class _Relay:
    """Copies stdin to the socket and the socket to stdout on one thread with poll(2): no
    hand-over between threads on each message, and poll, unlike epoll, takes any stdin (a
    file, /dev/null, a tty). Writes to the daemon never block: the daemon stops reading
    while its replies to us are not read, so a relay blocked on sending would never read
    them, and both would wait forever. What the socket does not take waits here, and stdin
    is not read until it has gone. After `exit` the daemon closes the connection, which
    ends the loop."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.down = sock.fileno()
        self.poller = select.poll()
        self.poller.register(0, select.POLLIN)
        self.poller.register(sock, select.POLLIN)
        self.pending = bytearray()  # read from stdin, not yet taken by the socket
        self.stdin_open = True
        self.shutdown = False  # the client asked for `shutdown`: exit code 0

    def run(self) -> int:
        """Relay until the daemon closes the connection; the exit code."""
        try:
            while True:
                for fd, events in self.poller.poll():
                    if fd != self.down:
                        self._from_client()
                        continue
                    if events & select.POLLOUT:
                        self._flush()
                    if events & (select.POLLIN | select.POLLHUP | select.POLLERR) and (
                            not self._from_daemon()):
                        return 0 if self.shutdown else 1
        except OSError:  # the client or the daemon went away mid-copy
            return 0 if self.shutdown else 1

    def _from_daemon(self) -> bool:
        """daemon → stdout; False once the daemon closed the connection."""
        try:
            data = self.sock.recv(CHUNK)
        except BlockingIOError:
            return True
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
        return bool(data)

    def _from_client(self) -> None:
        """stdin → daemon, or into `pending` when the socket is full."""
        data = os.read(0, CHUNK)
        if not data:  # the client closed stdin: the daemon closes once it has replied
            self.poller.unregister(0)
            self.stdin_open = False
            if not self.pending:
                self.sock.shutdown(socket.SHUT_WR)
            return
        self.shutdown = self.shutdown or asked_to_shut_down(data)
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.pending += data[sent:]
            self.poller.unregister(0)
            self.poller.modify(self.sock, select.POLLIN | select.POLLOUT)

    def _flush(self) -> None:
        """Send what waits; once all is sent, read stdin again."""
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        del self.pending[:sent]
        if self.pending:
            return
        self.poller.modify(self.sock, select.POLLIN)
        if self.stdin_open:
            self.poller.register(0, select.POLLIN)
        else:
            self.sock.shutdown(socket.SHUT_WR)
