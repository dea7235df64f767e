"""The daemon's ownership of its home: an exclusive lock held for the process's lifetime (the
kernel releases it when the process dies, so a kill -9 leaves nothing stale), the runtime
directory of the well-known socket, and the record that tells clients who owns the home."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from ostinato.protocol.home import (
    LOCK_FILE,
    RECORD_FILE,
    SOCKET_NAME,
    DaemonRecord,
    read_record,
    socket_path,
)


class HomeLocked(Exception):
    """Another live daemon owns the home."""

    def __init__(self, home: Path, record: DaemonRecord | None) -> None:
        self.home = home
        self.record = record
        who = (f"daemon pid {record.pid} (socket {record.socket})" if record is not None
               else "another daemon, still starting")
        super().__init__(f"home {home} is already served by {who}")


class HomeLock:
    """The exclusive lock on a home, taken without waiting; held until `release` or death."""

    def __init__(self, home: Path, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, home: Path) -> HomeLock:
        """Take the home's lock, or raise HomeLocked naming the daemon that holds it."""
        # O_CLOEXEC (Python's default): a tool a run starts must not inherit the lock and
        # keep the home locked after the daemon is gone.
        fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HomeLocked(home, read_record(home)) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(home, fd)

    def publish(self, socket: Path, handoff: Path, endpoints: list[str],
                version: str) -> None:
        """Write the home's record (atomically): clients read the sockets from it."""
        record = DaemonRecord(pid=os.getpid(), socket=str(socket), home=str(self.home),
                              started_at=datetime.now(UTC).isoformat(), version=version,
                              endpoints=endpoints, handoff=str(handoff))
        partial = self.home / f".{RECORD_FILE}.{os.getpid()}.partial"
        partial.write_text(record.to_json(), encoding="utf-8")
        os.replace(partial, self.home / RECORD_FILE)

    def release(self) -> None:
        """Remove the record, then let the lock go (in that order: a daemon that takes the
        lock next writes its own record)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.home / RECORD_FILE).unlink()
        os.close(self._fd)
        self._fd = None


def prepare_socket_dir(home: Path, name: str = SOCKET_NAME) -> Path:
    """The path of the home's well-known socket `name`, its directory made and checked: a
    runtime directory shared with other users (/tmp) must be ours and private, or someone
    else could stand in for the daemon."""
    path = socket_path(home, name)
    directory = path.parent
    if directory == home.absolute():
        return path
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{directory} is not a directory of this user: refusing to put the "
                      "home's socket there")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)
    return path
