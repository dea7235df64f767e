"""run.prune: which runs go, removing them in batches, and giving the disk back.

Runs go in whole units: a top-level run with all its child runs (a manager's children are
found again by its resume and replayed with it), or a trial set with all its runs (its
stored aggregates describe them all). A unit stays whole when any of its runs is active or
referred to: by a snapshot made from it, by a stored test run, or as the recording that a
run which is active or can be resumed replays."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store.db import Database
from ..store.prune import (
    ORPHAN_PIPELINES,
    RunLink,
    TrialSetLink,
    delete_statements,
    reclaim,
    run_links,
    snapshot_references,
    store_bytes,
    test_run_references,
    trial_set_links,
)
from ..store.runs import ACTIVE
from .runner import RESUMABLE

log = logging.getLogger("ostinato.prune")

# Runs deleted per transaction: each batch is one short write on the loop (10-25 ms for 100
# one-node trial runs on the 2-core VM, with their calls, events and stages), and
# other requests are served between batches while the directories go on a thread.
BATCH_RUNS = 100


@dataclass
class Unit:
    """Runs that go together or stay together."""

    key: str  # the top-level run's id, or the trial set's
    created_at: str
    trial_set: TrialSetLink | None = None
    runs: list[RunLink] = field(default_factory=list)

    def first_run(self) -> str:
        """The run that stands for the unit in what prune reports."""
        return self.runs[0].id if self.runs else self.key


@dataclass
class Live:
    """What this daemon is working on now (the services know; asked again before each
    batch)."""

    runs: Collection[str]  # ids of the runs in the runner
    trial_sets: Collection[str]  # ids of the trial sets running
    test_runs: dict[str, str]  # test runs in progress: id -> created_at


@dataclass
class Plan:
    """What a prune removes, and what it took in but keeps (PruneKept dicts)."""

    remove: list[Unit]
    kept: list[dict[str, Any]]


def _units(runs: list[RunLink], sets: dict[str, TrialSetLink]) -> list[Unit]:
    """Every run in its unit (runs oldest first, so a unit's first run is its oldest)."""
    by_id = {run.id: run for run in runs}
    units = {set_id: Unit(set_id, link.created_at, link) for set_id, link in sets.items()}
    for run in runs:
        top, seen = run, {run.id}
        while top.parent_run_id in by_id and top.parent_run_id not in seen:
            top = by_id[top.parent_run_id]
            seen.add(top.id)
        key = top.trial_set_id if top.trial_set_id in sets else top.id
        units.setdefault(key, Unit(key, top.created_at)).runs.append(run)
    return list(units.values())


def _kept(unit: Unit, reason: str, run_id: str | None = None,
          by: str | None = None) -> dict[str, Any]:
    return {"run_id": run_id or unit.first_run(),
            "trial_set_id": unit.trial_set.id if unit.trial_set else None,
            "runs": len(unit.runs), "reason": reason, "by": by}


async def plan(db: Database, live: Live, *, before: str | None, keep: int | None) -> Plan:
    """The units to remove: ended, created before `before`, beyond the newest `keep` ended
    ones, and referred to by nothing that stays."""
    runs, sets = await run_links(db), await trial_set_links(db)
    snapshots = await snapshot_references(db)
    test_runs, test_sets = await test_run_references(db)
    units = _units(runs, sets)
    in_scope = {unit.key for unit in units if before is None or unit.created_at < before}
    kept, ended = [], []
    for unit in units:
        reason = _activity(live, unit)
        if reason is None:
            ended.append(unit)
        elif unit.key in in_scope:
            kept.append(_kept(unit, "active", *reason))
    ended.sort(key=lambda unit: unit.created_at, reverse=True)
    chosen = ended[keep:] if keep is not None else ended
    remove = {}
    for unit in chosen:
        if before is not None and unit.created_at >= before:
            continue
        reference = _reference(unit, snapshots, test_runs, test_sets)
        if reference is None:
            remove[unit.key] = unit
        else:
            kept.append(_kept(unit, *reference))
    kept += _replayed(remove, units)
    return Plan(sorted(remove.values(), key=lambda unit: unit.created_at), kept)


def _activity(live: Live, unit: Unit) -> tuple[str, str | None] | None:
    """(run id, test run id) when the unit is still at work, or may still be read by a test
    run in progress (it checks its replays after they end); else None."""
    if unit.trial_set and (unit.trial_set.status == "running"
                           or unit.key in live.trial_sets):
        return unit.first_run(), None
    for run in unit.runs:
        if run.status in ACTIVE or run.id in live.runs:
            return run.id, None
        for test_run_id, created_at in live.test_runs.items():
            if run.created_at >= created_at:
                return run.id, test_run_id
    return None


def _reference(unit: Unit, snapshots: dict[str, str], test_runs: dict[str, str],
               test_sets: dict[str, str]) -> tuple[str, str, str] | None:
    """(reason, run id, referrer) when a snapshot or a stored test run refers to the unit."""
    if unit.trial_set and unit.key in test_sets:
        return "test_run", unit.first_run(), test_sets[unit.key]
    for run in unit.runs:
        if run.id in test_runs:
            return "test_run", run.id, test_runs[run.id]
        if run.id in snapshots:
            return "snapshot", run.id, snapshots[run.id]
    return None


def _replayed(remove: dict[str, Unit], units: list[Unit]) -> list[dict[str, Any]]:
    """Units taken back out of `remove` because a run that stays, active or resumable,
    replays one of their runs `recorded` or `hybrid` (a resume reads the recording again);
    until none is left."""
    kept = []
    while True:
        going = {run.id: unit for unit in remove.values() for run in unit.runs}
        found = [(going[run.replay_of], run) for unit in units if unit.key not in remove
                 for run in unit.runs
                 if run.replay_of in going and run.replay_mode != "live"
                 and (run.status in ACTIVE or run.status in RESUMABLE)]
        if not found:
            return kept
        for unit, by in found:
            if remove.pop(unit.key, None) is not None:
                kept.append(_kept(unit, "replay", by.replay_of, by.id))


@dataclass
class Outcome:
    """What a prune did."""

    removed: list[str] = field(default_factory=list)
    trial_sets: list[str] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    run_dirs: int = 0
    store: int | None = None
    compaction: str = "none"


async def prune(db: Database, home: Path, live: Callable[[], Live], *,
                before: str | None, keep: int | None, dry_run: bool,
                progress: Callable[[int, int], None] = lambda done, total: None) -> Outcome:
    """Plan, then (unless `dry_run`) remove in batches of whole units: the rows of a batch
    in one transaction, then its directories; then the store's free pages. `progress` is
    told (runs removed, runs to remove) after each batch. The caller runs one prune at a
    time."""
    chosen = await plan(db, live(), before=before, keep=keep)
    outcome = Outcome(kept=chosen.kept)
    root = os.path.realpath(home)
    if dry_run:
        outcome.removed = [run.id for unit in chosen.remove for run in unit.runs]
        outcome.trial_sets = [u.key for u in chosen.remove if u.trial_set]
        outcome.run_dirs = await asyncio.to_thread(
            sum, (tree_bytes(root, where) for where in _dirs(chosen.remove)))
        return outcome
    stored = store_bytes(db)
    total = sum(len(unit.runs) for unit in chosen.remove)
    for run_ids, set_ids, dirs in _batches(live, chosen.remove, outcome):
        await db.write(delete_statements(run_ids, set_ids))
        outcome.removed += run_ids
        outcome.trial_sets += set_ids
        outcome.run_dirs += await asyncio.to_thread(_remove_dirs, root, dirs)
        progress(len(outcome.removed), total)
    if outcome.removed or outcome.trial_sets:
        await db.write([ORPHAN_PIPELINES])
        outcome.compaction = await reclaim(db)
    outcome.store = max(0, stored - store_bytes(db))
    log.info("pruned %d run(s) and %d trial set(s): %d bytes of directories, %d of store "
             "(%s); %d kept", len(outcome.removed), len(outcome.trial_sets),
             outcome.run_dirs, outcome.store, outcome.compaction, len(outcome.kept))
    return outcome


def _dirs(units: list[Unit]) -> Iterator[str]:
    for unit in units:
        yield from (run.run_dir for run in unit.runs)
        if unit.trial_set:
            yield unit.trial_set.set_dir


def _batches(live: Callable[[], Live], units: list[Unit],
             outcome: Outcome) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(run ids, trial set ids, directories) of at most BATCH_RUNS runs; a unit is looked
    at again just before its batch is written, and one resumed meanwhile stays. A unit
    larger than a batch spans several, its trial set's row in the last."""
    run_ids: list[str] = []
    set_ids: list[str] = []
    dirs: list[str] = []
    for unit in units:
        active = _activity(live(), unit)
        if active is not None:
            outcome.kept.append(_kept(unit, "active", *active))
            continue
        for run in unit.runs:
            run_ids.append(run.id)
            dirs.append(run.run_dir)
            if len(run_ids) >= BATCH_RUNS:
                yield run_ids, set_ids, dirs
                run_ids, set_ids, dirs = [], [], []
        if unit.trial_set:
            set_ids.append(unit.key)
            dirs.append(unit.trial_set.set_dir)
    if run_ids or set_ids:
        yield run_ids, set_ids, dirs


def _inside(home: str, relative: str) -> str | None:
    """The directory `relative` names inside `home` (a real path), or None when it would be
    the home itself or lead out of it (an absolute path, `..`, a symlinked parent)."""
    path = os.path.normpath(os.path.join(home, relative))
    parent = os.path.realpath(os.path.dirname(path))
    if os.path.isabs(relative) or path == home or os.path.commonpath([home, parent]) != home:
        log.warning("not removing %s: it is not inside the home %s", relative, home)
        return None
    return path


def tree_bytes(home: str, relative: str) -> int:
    """Bytes on disk under a directory inside the home; links are counted, never followed."""
    path = _inside(home, relative)
    if path is None or os.path.islink(path):
        return 0
    try:
        total = os.lstat(path).st_blocks * 512
    except OSError:  # gone already
        return 0
    for root, dirs, files in os.walk(path):  # os.walk follows no symlinked directory
        for name in dirs + files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _remove_dirs(home: str, dirs: list[str]) -> int:
    """Remove these directories inside the home; the bytes given back. A symlink is
    removed as a link: what it points to is never touched."""
    freed = 0
    for relative in dirs:
        path = _inside(home, relative)
        if path is None:
            continue
        if os.path.islink(path):
            os.unlink(path)
            continue
        freed += tree_bytes(home, relative)
        # rmtree never follows a symlink inside the tree (its fd-based walk resists one
        # swapped in meanwhile too).
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove all of %s: %s", path, exc)
    return freed
