"""`ostinato serve --stdio` on a home another daemon owns: carry the stdio client's bytes to
that daemon's socket and back, unchanged, so editors and agent hosts that spawn their own
server share the home's runs, events and store. The process ends as a stdio daemon would:
with `exit` (code 0 after `shutdown`, else 1) or when stdin closes."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
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


class _ClientStream:
    """Watches what the client sends for `shutdown` and `exit` (the bytes go on as read)."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self.shutdown = False
        self.exited = False

    def feed(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            if isinstance(frame, bytearray) and (b"shutdown" in frame or b"exit" in frame):
                self._note(frame)

    def _note(self, frame: bytearray) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            return
        for one in message if isinstance(message, list) else [message]:
            method = one.get("method") if isinstance(one, dict) else None
            self.shutdown = self.shutdown or method == "shutdown"
            self.exited = self.exited or method == "exit"


def run(home: Path) -> int:
    """Bridge stdin/stdout to the home's daemon until the client exits or either side
    closes; the exit code a stdio daemon would have given."""
    try:
        sock = home_socket(home)
    except OSError as exc:
        print(f"ostinato serve: home {home} has a daemon, but its socket does not answer "
              f"({exc})", file=sys.stderr)
        return 2
    client = _ClientStream()
    done = threading.Event()

    def upstream() -> None:  # stdin → daemon
        try:
            while data := os.read(0, CHUNK):
                sock.sendall(data)
                client.feed(data)
                if client.exited:
                    break
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if client.exited or not data:
            done.set()

    def downstream() -> None:  # daemon → stdout
        try:
            while data := sock.recv(CHUNK):
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]
        except OSError:
            pass
        done.set()

    threading.Thread(target=upstream, name="bridge-up", daemon=True).start()
    down = threading.Thread(target=downstream, name="bridge-down", daemon=True)
    down.start()
    done.wait()
    down.join(timeout=5)  # the daemon closes after `exit`: its last replies come first
    sock.close()
    return 0 if client.shutdown else 1
