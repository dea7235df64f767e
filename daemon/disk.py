"""Storage faults. A full disk, however it shows: an OSError from a file write, or
SQLITE_FULL from the database; the engine, the store, the services and the server all ask
here, so that one failure has one name everywhere (a run's `disk full: …` reason, the -32006
error). A damaged file: a run file that is not JSON."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

# ENOSPC: no space left on the device; EDQUOT: the user's quota is used up.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException | None) -> bool:
    """True when `exc`, or an exception it was explicitly raised from, says the disk is
    full. Only `__cause__` is followed: an unrelated error raised while handling a full
    disk stays what it is."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL:
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def no_space_left(path: str | Path) -> bool:
    """True when the file system holding `path` has (almost) no space left: less than a
    few pages, so that nothing new fits. For errors that do not say why, e.g. sqlite's
    `disk I/O error` when it cannot grow its shared-memory file."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024


def full_reason(exc: BaseException) -> str:
    """`disk full: …`: the reason a run that could not write ends with."""
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"disk full: {detail}"


class DamagedFile(ValueError):
    """A run file that exists but cannot be read as JSON (not written by us, or the disk
    failed): its run is damaged."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} is not valid JSON ({reason})")
        self.name = name
