"""Fixtures: short temporary directories and a daemon listening on a socket and TCP."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .support import TEST_EXTENSION, DaemonProcess, start_daemon

# Every daemon the tests start holds the handlers' dict results to their result models.
os.environ["OSTINATO_STRICT_RESULTS"] = "1"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: unix socket paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ost-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def daemon(short_tmp: Path) -> AsyncIterator[DaemonProcess]:
    """A daemon on a unix socket and loopback TCP, with the test-only methods."""
    process = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                 "--tcp", "127.0.0.1:0", "--extension", TEST_EXTENSION)
    yield process
    assert await process.stop() == 0, "".join(process.log)
