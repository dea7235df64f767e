"""The home's layout that daemons and clients agree on: where the home is, the lock a daemon
holds on it, the well-known socket it listens on and the record that says who it is. Only the
standard library: the command line reads this before anything heavy is imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

# The state directory of a daemon started without --home and without $OSTINATO_HOME.
DEFAULT_HOME = ".ostinato"
# The file in a daemon's home that holds the token it generated for TCP (mode 0600); a
# client reaching that daemon over TCP without a token of its own reads it from there.
TOKEN_FILE = "token"
LOCK_FILE = "daemon.lock"  # flock'ed by the daemon that owns the home, for its lifetime
RECORD_FILE = "daemon.json"  # who owns the home: pid, socket, endpoints (a DaemonRecord)
SOCKET_NAME = "daemon.sock"  # the well-known socket, when its path is short enough
# Where `serve --stdio` on a served home hands its stdin and stdout to the daemon (SCM_RIGHTS).
HANDOFF_NAME = "handoff.sock"
EXIT_HOME_SERVED = 4  # `serve`'s exit code when another daemon owns the home (not --stdio)
# sun_path holds 108 bytes with the terminating NUL on Linux (104 on the BSDs and macOS).
MAX_SOCKET_PATH = 103

def parse_tcp(value: str) -> tuple[str, int]:
    """A TCP endpoint as `--tcp` takes it: `HOST:PORT`, `[v6]:PORT` or `:PORT` (127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--tcp expects HOST:PORT with a port from 0 to 65535, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def resolve_home(given: Path | str | None = None) -> Path:
    """The home a command means: `given`, else $OSTINATO_HOME, else ./.ostinato; absolute."""
    return Path(given or os.environ.get("OSTINATO_HOME") or DEFAULT_HOME).absolute()


def runtime_dir() -> Path:
    """Where sockets of homes with long paths live: $XDG_RUNTIME_DIR/ostinato, else
    /tmp/ostinato-UID (the daemon creates it 0700 and checks that it is ours)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_absolute():
        return Path(base) / "ostinato"
    return Path("/tmp") / f"ostinato-{os.getuid()}"


def socket_path(home: Path, name: str = SOCKET_NAME) -> Path:
    """The home's well-known socket `name`: HOME/name, or, when that path is too long for a
    unix socket, a short path in the runtime directory named after the home's path."""
    home = home.absolute()
    inside = home / name
    if len(os.fsencode(inside)) <= MAX_SOCKET_PATH:
        return inside
    import hashlib  # only for long paths: it costs a few ms at start

    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:20]
    return runtime_dir() / f"{digest}.{name}"


class DaemonRecord:
    """What HOME/daemon.json says of the daemon that owns the home (a plain class: the
    dataclasses module costs the command line several ms to import)."""

    __slots__ = ("endpoints", "handoff", "home", "pid", "socket", "started_at", "version")

    def __init__(self, pid: int, socket: str, home: str, started_at: str, version: str = "",
                 endpoints: list[str] | None = None, handoff: str = "") -> None:
        self.pid = pid
        self.socket = socket
        self.home = home
        self.started_at = started_at
        self.version = version
        self.endpoints = list(endpoints or [])
        self.handoff = handoff  # the socket `serve --stdio` hands its stdio to

    def to_dict(self) -> dict[str, object]:
        """The record as a JSON object."""
        return {name: getattr(self, name) for name in (
            "pid", "socket", "home", "started_at", "version", "endpoints", "handoff")}

    def to_json(self) -> str:
        """The record as daemon.json holds it."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def read_record(home: Path) -> DaemonRecord | None:
    """The home's daemon record; None when there is none or it is not readable. It may be
    stale (a daemon killed with kill -9 leaves it): only the socket answering proves a
    daemon is alive."""
    try:
        value = json.loads((home / RECORD_FILE).read_text(encoding="utf-8"))
        return DaemonRecord(**value)
    except (OSError, ValueError, TypeError):
        return None


def read_token(home: Path) -> str | None:
    """The token the home's daemon generated for TCP; None when there is no such file we can
    read (initialize then says which file it wants)."""
    try:
        return (home / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
