"""The `processes` backend: workers are local processes (`python -m ostinato.daemon.workers`)
whose stdin and stdout are the channel (decision 0007)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator

from .messages import LINE_LIMIT, line_batches
from .pool import CLOSE_SECONDS, Worker

log = logging.getLogger("ostinato.workers")


class ProcessWorker(Worker):
    """One worker process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.name = f"worker {process.pid}"
        # Its death, even while something it started still holds its stdout open.
        self._watching = asyncio.ensure_future(self._watch())
        self._logging = asyncio.ensure_future(self._log())
        super().__init__()

    async def _watch(self) -> None:
        await self.process.wait()
        assert self.process.stdout is not None
        if not self.process.stdout.at_eof():
            self.process.stdout.feed_eof()  # what it wrote before it died is read first

    async def _log(self) -> None:
        """What the worker writes on stderr (Python's own reports; its log records come up
        the channel) goes to the daemon's log: a background daemon has no stderr to share."""
        assert self.process.stderr is not None
        while raw := await self.process.stderr.readline():
            log.warning("%s: %s", self.name, raw.decode(errors="replace").rstrip())

    def batches(self) -> AsyncIterator[list[bytes]]:
        """Its stdout's lines."""
        assert self.process.stdout is not None
        return line_batches(self.process.stdout)

    def died(self) -> bool:
        """Whether the process has exited."""
        return self.process.returncode is not None

    def write(self, data: bytes) -> None:
        """To its stdin."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)

    def kill(self) -> None:
        """SIGKILL."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def close(self) -> None:
        """Close its stdin (it cancels what runs and exits), killing it if it lingers."""
        self.flush()
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), CLOSE_SECONDS)
        except TimeoutError:
            self.kill()
            await self.process.wait()
        await asyncio.gather(self.reading, self._watching, self._logging)


class Processes:
    """Local worker processes, by default one per core."""

    async def capacity(self) -> int:
        """One per core."""
        return os.cpu_count() or 1

    async def start(self) -> ProcessWorker:
        """A new worker process."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ostinato.daemon.workers",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
        return ProcessWorker(process)

    starts_ahead = True  # a worker process costs nothing to keep

    def warm(self) -> None:
        """Nothing to join: the pool starts a worker now (starts_ahead)."""

    async def close(self) -> None:
        """Nothing beyond the workers."""
