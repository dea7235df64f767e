"""A worker without the daemon's home (a Ray node of another machine): the run's files are
written to a local copy of its directory, and every write is sent to the daemon, which writes
it into the home (decision 0007). The home ends up as an inline run would leave it."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine.tools.runtime import WORKSPACE_DIR

Send = Callable[[bytes, bool, str], None]  # (data, appended, path in the run directory)


def encode(data: bytes) -> str:
    """Bytes as the channel carries them."""
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> bytes:
    """What `encode` made."""
    return base64.b64decode(text)


def snapshot(root: Path) -> dict[str, str]:
    """Every file of a run directory, encoded, by relative path: what a resumed run on a
    worker without the home starts from."""
    return {str(path.relative_to(root)): encode(path.read_bytes())
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()}


class LocalCopy:
    """The worker's copy of one run's directory, and what it has sent of it."""

    def __init__(self, send: Send, seed: dict[str, str]) -> None:
        self.send = send
        self.root = Path(tempfile.mkdtemp(prefix="ostinato-run-"))
        for relative, data in seed.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(decode(data))
        # Tools write the workspace behind the run directory's back: its files are compared
        # with what was last sent (size, modification time) and sent again whole.
        self.sent = {relative: self._stamp(self.root / relative) for relative in seed}

    def tee(self, relative: str, data: bytes, append: bool) -> None:
        """A file the run directory wrote: sent as written."""
        self.send(data, append, relative)

    def sync_workspace(self) -> None:
        """Send the workspace's files that changed since they were last sent."""
        workspace = self.root / WORKSPACE_DIR
        if not workspace.is_dir():
            return
        for directory, _, names in os.walk(workspace):
            for name in names:
                path = Path(directory, name)
                if path.is_symlink() or not path.is_file():
                    continue
                relative, stamp = str(path.relative_to(self.root)), self._stamp(path)
                if self.sent.get(relative) != stamp:
                    self.sent[relative] = stamp
                    self.send(path.read_bytes(), False, relative)

    def close(self) -> None:
        """The last of the workspace sent, the copy removed."""
        try:
            self.sync_workspace()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _stamp(path: Path) -> Any:
        stat = path.stat()
        return (stat.st_size, stat.st_mtime_ns)
