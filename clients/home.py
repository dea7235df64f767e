"""The home's daemon, from a client's side: find its socket, start it in the background when
none runs, stop it. Only the standard library: every command goes through here first."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path

from ostinato.protocol.home import EXIT_HOME_SERVED, read_record, resolve_home, socket_path

START_PATIENCE_S = 30.0  # a daemon opening (and checking) a large store takes a while


class DaemonUnavailable(Exception):
    """The home has no daemon that answers, and none could be started."""


class NoDaemon(DaemonUnavailable):
    """The home has no daemon that answers (and we were told not to start one)."""


def _connect(path: Path | str) -> socket.socket | None:
    """A connected socket to `path`; None when nothing answers there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def home_socket_path(home: Path) -> Path:
    """Where the home's daemon listens, by its record, else by the well-known rule."""
    record = read_record(home)
    return Path(record.socket) if record is not None else socket_path(home)


def connect_home(home: Path | str | None = None, *, start: bool = True) -> socket.socket:
    """A connection to the home's daemon, which is started in the background when none
    answers (`start`); raises NoDaemon (not `start`) or DaemonUnavailable (it could not
    start)."""
    home = resolve_home(home)
    sock = _connect(home_socket_path(home))
    if sock is not None:
        return sock
    if not start:
        raise NoDaemon(f"no daemon serves {home}")
    path = start_daemon(home)
    sock = _connect(path)
    if sock is None:
        raise DaemonUnavailable(f"the daemon started for {home} does not answer on {path}")
    return sock


def start_daemon(home: Path, serve_args: list[str] | tuple[str, ...] = ()) -> Path:
    """Start a daemon for `home` in the background (with `serve_args`) and return its socket
    once it listens. When another process starts one at the same time, that one is used."""
    deadline = time.monotonic() + START_PATIENCE_S
    while True:
        code, reason = _spawn(home, list(serve_args), deadline)
        path = home_socket_path(home)
        if code is None:
            return path
        if probe := _connect(path):  # another process's daemon won the home
            probe.close()
            return path
        if code != EXIT_HOME_SERVED:
            raise DaemonUnavailable(reason or f"the daemon for {home} exited with code {code}")
        # Another daemon owns the home: it is still starting, or just stopping.
        if time.monotonic() >= deadline:
            raise DaemonUnavailable(f"{reason.strip()}, but it does not answer on {path}")
        time.sleep(0.02)


def _spawn(home: Path, serve_args: list[str], deadline: float) -> tuple[int | None, str]:
    """Start one daemon; (None, "") once it said it listens, else its exit code and what it
    said on stderr."""
    import subprocess  # only to start a daemon: a command that finds one running is faster

    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    ready_read, ready_write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "ostinato.daemon", "--home", str(home),
             "--ready-fd", str(ready_write), *serve_args],
            pass_fds=(ready_write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, cwd=home,
            start_new_session=True)  # Ctrl-C in this terminal is not for the daemon
    finally:
        os.close(ready_write)
    assert process.stderr is not None
    said: list[bytes] = []
    with selectors.DefaultSelector() as selector, os.fdopen(ready_read, "rb", 0) as ready:
        selector.register(ready, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if key.fileobj is ready:
                    if chunk.startswith(b"ready"):
                        process.stderr.close()
                        return None, ""
                    selector.unregister(ready)  # closed without a word: it is exiting
                elif chunk:
                    said.append(chunk)
                else:
                    selector.unregister(process.stderr)
            if not selector.get_map():
                break
    try:
        code = process.wait(timeout=max(0.0, deadline - time.monotonic()) + 1)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    process.stderr.close()
    return code, _reason(b"".join(said).decode(errors="replace"))


def _reason(said: str) -> str:
    """What a daemon that could not start said, without its log lines' time, level and
    logger: its ERROR lines when it logged any, else all it said."""
    errors = [line.split(": ", 1)[1] for line in said.splitlines()
              if " ERROR " in line and ": " in line]
    return "; ".join(errors) if errors else said.strip()


STOP_PATIENCE_S = 60.0  # for a daemon to stop its runs and close its connections


def stop_daemon(home: Path, pid: int | None = None) -> int | None:
    """Stop the home's daemon (SIGTERM: its active runs become interrupted and resumable)
    and return its pid once it has closed its connections; None when none answers. `pid` is
    the daemon's own (daemon.status): the record may still name a predecessor killed with
    kill -9 for a moment after a new daemon listens. Raises TimeoutError when it has not
    stopped within STOP_PATIENCE_S."""
    record = read_record(home)
    path = record.socket if record is not None else str(socket_path(home))
    watch = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        watch.connect(path)
    except OSError:
        watch.close()
        return None
    pid = pid if pid is not None else record.pid if record is not None else None
    if pid is None:
        watch.close()
        return None
    # Our connection closes as it stops, which is what we wait for.
    with watch:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return None
        watch.settimeout(STOP_PATIENCE_S)
        try:
            while watch.recv(1 << 12):
                pass
        except TimeoutError:
            raise TimeoutError(f"daemon pid {pid} did not stop within {STOP_PATIENCE_S:g} s"
                               ) from None
    return pid
