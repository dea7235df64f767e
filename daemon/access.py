"""Who may use the daemon and read what it keeps: a private home, the TCP token file, and
the limit on failed `initialize` attempts."""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ostinato.protocol.home import TOKEN_FILE

# Everything the daemon creates (database, WAL, log, run directories, snapshots) is its
# user's alone: files 0600, directories 0700.
PRIVATE_UMASK = 0o077
DEFAULT_AUTH_FAILURES = 10
DEFAULT_AUTH_WINDOW = 60.0
# Addresses whose failures are remembered; beyond it the one that failed longest ago is
# forgotten, so that guesses from many addresses cannot grow the table without bound.
MAX_ADDRESSES = 4096


def private_home(home: Path) -> bool:
    """Create `home` (0700 under the private umask), or take group and other access away
    from an existing one; True if it had to be changed. Files made by older daemons keep
    their modes, but no other user can reach them through a 0700 home."""
    home.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(home.stat().st_mode)
    if not mode & 0o077:
        return False
    os.chmod(home, mode & 0o700)
    return True


def write_token_file(home: Path) -> tuple[str, Path]:
    """A fresh random token, and `<home>/token` that holds it. The file is born 0600 (no
    moment where another user could read it) and replaces any older one at once."""
    token = secrets.token_urlsafe(32)
    path = home / TOKEN_FILE
    partial = home / f".{TOKEN_FILE}.{os.getpid()}.partial"
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    return token, path


class FailureLimiter:
    """Failed `initialize` attempts per address: after `max_failures` of them within
    `window` seconds, the address is refused until the oldest of those leaves the window."""

    def __init__(self, max_failures: int = DEFAULT_AUTH_FAILURES,
                 window: float = DEFAULT_AUTH_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        # address -> times of its last `max_failures` failures; ordered by the latest one.
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float | None:
        """Seconds before `address` may try again, or None if it may try now."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        now = self._clock()
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        if len(failures) < self.max_failures:
            return None
        return failures[0] + self.window - now

    def failed(self, address: str) -> None:
        """Count a failed attempt from `address`."""
        failures = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        failures.append(self._clock())
        self._failures[address] = failures
        if len(self._failures) > MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]
