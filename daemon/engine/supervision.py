"""The link between a manager node (attractor §4.11) and the child run it supervises.

The child pauses after each of its nodes until its manager has observed it (and perhaps
steered it): a manager's cycle is one node of the child. In lockstep, what the manager sees
and when its instructions take effect do not depend on timing, so a supervised pair of runs
replays and resumes like any run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .budget import Budget

# The context key of a supervised run that holds its manager's latest instructions; its
# LLM nodes' requests carry them (fidelity.py).
INSTRUCTIONS = "stack.instructions"


class ChildRunError(Exception):
    """The child run could not be started or found again (its pipeline does not load, a
    recorded replay has no recorded child, ...): the manager node fails, saying why."""


@dataclass(frozen=True)
class ChildReport:
    """What the manager observes of its child at one of the child's node boundaries."""

    run_id: str
    status: str  # running while it goes on; else how it ended (completed, failed, …)
    outcome: str | None  # the run's outcome once ended
    completed_nodes: int
    current_node: str | None  # the node it last completed
    node_outcome: str | None  # that node's outcome
    next_node: str | None
    failure_reason: str | None = None

    @property
    def ended(self) -> bool:
        """The child stopped: completed, failed, cancelled, …"""
        return self.status not in ("running", "waiting")


class Supervision:
    """One child's side and its manager's side of the lockstep."""

    def __init__(self) -> None:
        self._reports: asyncio.Queue[ChildReport] = asyncio.Queue()
        self._release: asyncio.Future[str | None] | None = None

    # -- the child ------------------------------------------------------------------------

    async def boundary(self, report: ChildReport) -> str | None:
        """The child finished a node: report it and wait until the manager lets it go on;
        returns the manager's instructions for the child, if it gave any."""
        self._release = asyncio.get_running_loop().create_future()
        self._reports.put_nowait(report)
        try:
            return await self._release
        finally:
            self._release = None

    def ended(self, report: ChildReport) -> None:
        """The child's run is over (the manager is told, nothing waits)."""
        self._reports.put_nowait(report)

    # -- the manager ----------------------------------------------------------------------

    async def next_report(self) -> ChildReport:
        """The child's next boundary, or its end."""
        return await self._reports.get()

    def release(self, message: str | None = None) -> None:
        """Let the child go on, with instructions or without."""
        if self._release is not None and not self._release.done():
            self._release.set_result(message)


@dataclass(frozen=True)
class ChildLink:
    """A manager's child run: its id and directory, the lockstep, and how to stop it."""

    run_id: str
    run_dir: str  # relative to the home
    supervision: Supervision
    cancel: Callable[[], Awaitable[None]]
    # The manager's instructions a child found again (resumed or ended) already follows.
    instructions: str | None = None


@dataclass(frozen=True)
class ParentRun:
    """What starting a child run needs of its parent and of the manager node."""

    run_id: str
    node_id: str
    # The manager node's visit and attempt (`node:visit:attempt`, a branch's with the
    # branch): a resumed or replayed parent finds the child it started by it.
    key: str
    inputs: Mapping[str, Any]
    record: str
    trial_index: int | None
    budget: Budget | None
    replay_mode: str | None  # the parent's, when it replays a recording


class ChildRuns(Protocol):
    """Starts the child runs of manager nodes (the daemon's runner provides it)."""

    async def attach(self, parent: ParentRun, pipeline: str) -> ChildLink:
        """The child run of `parent`'s manager node: started from `pipeline` (a path), or,
        when the parent is resumed, the one started before, resumed if it was interrupted;
        supervised in lockstep either way."""
        ...
