"""Finding and killing the processes a run's agent tools left behind.

A tool runs in a process group of its own, so that a timeout or a cancel kills all of it.
The same group survives a daemon killed with -9. Every process a tool, hook or MCP server
starts therefore carries the run's id in its environment (`OSTINATO_RUN_ID`), which its own
children inherit; the next daemon, and the run's own end, kill every process that carries
it. The environment is set before the program runs, so there is no moment at which a
process exists that a sweep could not find (a registry written after the start would have
one).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Collection
from pathlib import Path

MARK = "OSTINATO_RUN_ID"
_EXIT_WAIT_MS = 2000


def marked(run_id: str) -> dict[str, str]:
    """The environment entry that marks a process as the run's."""
    return {MARK: run_id}


def sweep(run_ids: Collection[str]) -> dict[str, list[int]]:
    """Kill every process of this user marked with one of the runs' ids; the pids killed,
    by run id."""
    wanted = {f"{MARK}={run_id}".encode(): run_id for run_id in run_ids}
    killed: dict[str, list[int]] = {}
    if not wanted:
        return killed
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        for variable in environ.split(b"\0"):
            run_id = wanted.get(variable)
            if run_id is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    _kill_and_wait(int(entry.name))
                    killed.setdefault(run_id, []).append(int(entry.name))
                break
    return killed


def _kill_and_wait(pid: int) -> None:
    """SIGKILL `pid` and wait (briefly) until it has exited: it may not be our child, so
    only a pidfd can tell."""
    pidfd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(_EXIT_WAIT_MS)
    finally:
        os.close(pidfd)
