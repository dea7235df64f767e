"""`ostinato serve --stdio` on a home another daemon owns: carry the stdio client's bytes to
that daemon's socket and back, unchanged, so editors and agent hosts that spawn their own
server share the home's runs, events and store. The process ends as a stdio daemon would:
with `exit` (code 0 after `shutdown`, else 1) or when stdin closes."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import sys
import time
from pathlib import Path

from ostinato.protocol.codec import FrameDecoder
from ostinato.protocol.home import read_record, socket_path

CONNECT_PATIENCE_S = 30.0  # for a daemon that holds the lock but does not listen yet
CHUNK = 1 << 16


def home_socket(home: Path, patience: float = CONNECT_PATIENCE_S) -> socket.socket:
    """A connection to the daemon that owns `home`. It may still be starting (it took the
    lock, and opens its store before it listens), so refusals are retried for `patience`
    seconds: there is nothing to await across processes but the socket itself."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        record = read_record(home)
        path = record.socket if record is not None else str(socket_path(home))
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
    """Bridge stdin/stdout to the home's daemon until the client exits or either side
    closes; the exit code a stdio daemon would have given."""
    try:
        sock = home_socket(home)
    except OSError as exc:
        print(f"ostinato serve: home {home} has a daemon, but its socket does not answer "
              f"({exc})", file=sys.stderr)
        return 2
    shutdown = False
    # One thread and poll(2): no hand-over between threads on each message, and poll, unlike
    # epoll, takes any stdin (a file, /dev/null, a tty). After `exit` the daemon closes the
    # connection, which ends the loop.
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(sock, select.POLLIN)
    down = sock.fileno()
    with sock:
        try:
            while True:
                for fd, _ in poller.poll():
                    if fd == down:
                        data = sock.recv(CHUNK)
                        if not data:
                            return 0 if shutdown else 1
                        _write_all(data)
                        continue
                    data = os.read(0, CHUNK)
                    if data:
                        sock.sendall(data)
                        shutdown = shutdown or asked_to_shut_down(data)
                    else:  # the client closed stdin: the daemon closes once it has replied
                        poller.unregister(0)
                        sock.shutdown(socket.SHUT_WR)
        except OSError:  # the client or the daemon went away mid-copy
            return 0 if shutdown else 1


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
