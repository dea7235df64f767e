"""`ostinato serve --stdio` on a home another daemon owns, so that editors and agent hosts
that spawn their own server share the home's runs, events and store. Its stdin and stdout are
handed to the daemon over its handoff socket (SCM_RIGHTS), which serves them as it serves its
own stdio; this process waits for the exit code. When they are not pipes or sockets (a
terminal, a file, which an event loop cannot watch), the daemon gets two pipes instead, and
this process copies stdin into one and the other to stdout. Either way the client gets what a
stdio daemon gives: the same replies, `exit` ending the process (code 0 after `shutdown`,
else 1), and the end of stdin finishing what was asked."""

from __future__ import annotations

import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

from ostinato.protocol.home import HANDOFF_NAME, read_record, socket_path

CONNECT_PATIENCE_S = 30.0  # for a daemon that holds the lock but does not listen yet
CHUNK = 1 << 16
DRAIN_PATIENCE_S = 5.0  # for the daemon's last replies to reach stdout once it is done


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


def handoff_socket(home: Path, patience: float = CONNECT_PATIENCE_S) -> socket.socket:
    """A connection to the handoff socket of the daemon that owns `home`. It may still be
    starting (it took the lock, and opens its store before it listens), so refusals are
    retried for `patience` seconds: there is nothing to await across processes but the
    socket itself."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        record = read_record(home)
        path = (record.handoff if record is not None else "") or str(
            socket_path(home, HANDOFF_NAME))
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


def run(home: Path) -> int:
    """Serve the stdio client through the home's daemon until it exits or either side
    closes; the exit code a stdio daemon would have given."""
    try:
        sock = handoff_socket(home)
    except OSError as exc:
        print(f"ostinato serve: home {home} has a daemon, but its socket does not answer "
              f"({exc})", file=sys.stderr)
        return 2
    with sock:
        try:
            if pollable_pair(0, 1):
                return _hand_over(sock, 0, 1)
            # A terminal or a file: the daemon gets two pipes, which this process fills
            # from stdin and drains to stdout.
            to_daemon, from_stdin = os.pipe()
            to_stdout, from_daemon = os.pipe()
            _copy_in_background(0, from_stdin, close_target=True)
            drained = _copy_in_background(to_stdout, 1, close_target=False)
            code = _hand_over(sock, to_daemon, from_daemon, ours=True)
            drained.join(DRAIN_PATIENCE_S)  # the daemon's last replies, already in the pipe
            return code
        except OSError as exc:  # the daemon went away before it took the session
            print(f"ostinato serve: the daemon of {home} went away ({exc})", file=sys.stderr)
            return 1


def _hand_over(sock: socket.socket, in_fd: int, out_fd: int, ours: bool = False) -> int:
    """Give `in_fd` and `out_fd` to the daemon (closing them here when `ours`: the daemon's
    copies must be the last, or their ends would never see the pipe close); its exit code
    for the session (1 when it went away without one)."""
    try:
        socket.send_fds(sock, [b"h"], [in_fd, out_fd])
    finally:
        if ours:
            os.close(in_fd)
            os.close(out_fd)
    code = sock.recv(1)
    return code[0] if code else 1


def _copy_in_background(source: int, target: int, close_target: bool) -> threading.Thread:
    """Copy `source` to `target` until `source` ends (then close `target` if asked) or
    either fails, on a daemon thread (a terminal's read never ends by itself)."""
    def copy() -> None:
        try:
            while data := os.read(source, CHUNK):
                view = memoryview(data)
                while view:
                    view = view[os.write(target, view):]
        except OSError:
            pass
        if close_target:
            os.close(target)

    thread = threading.Thread(target=copy, name="bridge-copy", daemon=True)
    thread.start()
    return thread
