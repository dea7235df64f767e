"""Services: one module per method family, each exporting a `table` of handlers, and the
long-lived parts they share (the store, the runner)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.handlers.base import HandlerRegistry
from ..host import Host
from ..regression.suite import TestRuns
from ..runs.runner import Runner
from ..runs.trial_sets import TrialSets
from ..store.db import Database
from ..store.runs import RunStore
from ..store.snapshots import SnapshotStore
from ..store.suites import TestRunStore
from . import pipelines, runs, snapshots, tests, traces, trials
from .base import HandlerTable

# An extension's register_handlers(registry): adds its node types to the runner's handlers.
HandlerHook = Callable[[HandlerRegistry], None]

log = logging.getLogger("ostinato.services")


@dataclass
class Services:
    """What the handlers of every family share for the daemon's lifetime."""

    host: Host
    db: Database
    runs: RunStore
    runner: Runner
    trials: TrialSets
    snapshots: SnapshotStore = field(init=False)
    tests: TestRuns = field(init=False)  # set by start(): it needs the services
    # Held while calls are appended to a stored run (a judge's): they are numbered after
    # its last call, which must not change between the read and the write.
    appending_calls: asyncio.Lock = field(default_factory=asyncio.Lock)
    pruning: asyncio.Lock = field(default_factory=asyncio.Lock)  # one run.prune at a time

    def __post_init__(self) -> None:
        self.snapshots = SnapshotStore(self.db)

    @property
    def home(self) -> Path:
        """The daemon's home: the store, run directories, trial sets and snapshots."""
        return self.host.home

    async def stop(self) -> None:
        """Stop trial sets and running runs (they stay resumable), close the store."""
        self.runner.stopping = True
        await self.tests.close()  # test runs end interrupted before their replays do
        await self.trials.close()  # closes the runner too
        if not await self.runs.write_unwritten():
            log.error("the disk is still full: the end of runs %s is not in the store; the "
                      "next daemon finds them interrupted", ", ".join(self.runs.unwritten))
        await self.db.close()


async def start(host: Host, handler_hooks: Iterable[HandlerHook] = ()) -> Services:
    """Open the store, note runs a previous daemon left running, build the runner (with the
    extensions' node types from `handler_hooks`). On any failure the store is closed again:
    its thread would keep the process alive."""
    db = await Database.open(host.home / "ostinato.db", host.settings.wal_max_bytes)
    try:
        return await _start(host, handler_hooks, db)
    except BaseException:
        await db.close()
        raise


async def _start(host: Host, handler_hooks: Iterable[HandlerHook],
                 db: Database) -> Services:
    runs = RunStore(db)
    runner = Runner(host, runs)
    interrupted = await runs.mark_interrupted()
    if interrupted:
        damaged = await runner.note_interrupted(interrupted)
        resumable = [run.id for run in interrupted if run.id not in damaged]
        if resumable:
            log.info("%d run(s) were running when the daemon last stopped; they are "
                     "resumable: %s", len(resumable), ", ".join(resumable))
    if await runs.mark_trial_sets_interrupted():
        log.info("trial sets that were running when the daemon last stopped are interrupted")
    test_runs = TestRunStore(db)
    if cut_off := await test_runs.mark_interrupted():
        log.info("test runs that were running when the daemon last stopped are interrupted "
                 "(what finished is kept): %s", ", ".join(cut_off))
    for hook in handler_hooks:  # extensions' custom node types (main.load_extension)
        hook(runner.handlers)
    if runner.workers is not None:
        runner.workers.warm()  # a Ray cluster starts joining now, not with the first run
    services = Services(host, db, runs, runner, TrialSets(runner, runs))
    services.tests = TestRuns(services, test_runs)
    return services


def tables() -> list[HandlerTable]:
    """The handler tables of every service family (the server adds its lifecycle table)."""
    return [pipelines.table, runs.table, trials.table, traces.table,
            snapshots.table, tests.table]
