"""A full disk, however it shows: an OSError from a file write, or SQLITE_FULL from the
database. The engine, the store, the services and the server all ask here, so that one
failure has one name everywhere (a run's `disk full: …` reason, the -32006 error)."""

from __future__ import annotations

import errno
import sqlite3

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


def full_reason(exc: BaseException) -> str:
    """`disk full: …`: the reason a run that could not write ends with."""
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"disk full: {detail}"
