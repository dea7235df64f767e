"""The store's side of run.prune: how runs hang together, what refers to them, deleting their
rows, and giving the file's free pages back to the disk."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from .db import Database, Statement

log = logging.getLogger("ostinato.store")

# Tables whose rows belong to one run (by `run_id`), deleted before the run's own row.
RUN_TABLES = ("calls", "events", "stages")
VACUUM_STEP_PAGES = 1024  # one incremental_vacuum step: ~4 MB, a few tens of ms
# A store without incremental auto_vacuum (made before it was turned on) is rewritten once
# (VACUUM, which turns it on) when the pages a prune freed are worth it: at least this
# share of the file and this many bytes.
VACUUM_WORTH_SHARE = 0.10
VACUUM_WORTH_BYTES = 1024 * 1024
AUTO_VACUUM_INCREMENTAL = 2


@dataclass(slots=True)
class RunLink:
    """What prune needs of a run: how it ended, where its directory is, whom it belongs to."""

    id: str
    status: str
    created_at: str
    run_dir: str
    trial_set_id: str | None
    parent_run_id: str | None
    replay_of: str | None
    replay_mode: str | None


@dataclass(slots=True)
class TrialSetLink:
    """What prune needs of a trial set."""

    id: str
    status: str
    created_at: str
    set_dir: str


async def run_links(db: Database) -> list[RunLink]:
    """Every run, oldest first."""
    rows = await db.rows("SELECT id, status, created_at, run_dir, trial_set_id, parent_run_id, "
                         "replay_of, replay_mode FROM runs ORDER BY created_at, id")
    return [RunLink(*row) for row in rows]


async def trial_set_links(db: Database) -> dict[str, TrialSetLink]:
    """Every trial set by id."""
    rows = await db.rows("SELECT id, status, created_at, set_dir FROM trial_sets")
    return {row[0]: TrialSetLink(*row) for row in rows}


async def snapshot_references(db: Database) -> dict[str, str]:
    """Run id → the (first) snapshot made from it."""
    rows = await db.rows("SELECT reference_run_id, id FROM snapshots "
                         "WHERE reference_run_id IS NOT NULL ORDER BY id DESC")
    return {run_id: snapshot_id for run_id, snapshot_id in rows}


async def test_run_references(db: Database) -> tuple[dict[str, str], dict[str, str]]:
    """Run id → test run, and trial set id → test run, for the runs and trial sets the
    stored test runs' results name (their `run_ids` and `trial_set_id`)."""
    runs = await db.rows("SELECT run.value, result.test_run_id FROM test_results AS result, "
                         "json_each(result.result_json, '$.run_ids') AS run")
    sets = await db.rows("SELECT json_extract(result_json, '$.trial_set_id'), test_run_id "
                         "FROM test_results "
                         "WHERE json_extract(result_json, '$.trial_set_id') IS NOT NULL")
    return dict(runs), dict(sets)


def delete_statements(run_ids: list[str], set_ids: list[str]) -> list[Statement]:
    """The rows of these runs and trial sets, in foreign-key order."""
    runs = ", ".join("?" * len(run_ids))
    statements: list[Statement] = []
    if run_ids:
        statements += [(f"DELETE FROM {table} WHERE run_id IN ({runs})", tuple(run_ids))
                       for table in RUN_TABLES]
        statements.append((f"DELETE FROM runs WHERE id IN ({runs})", tuple(run_ids)))
    if set_ids:
        statements.append((f"DELETE FROM trial_sets WHERE id IN ({', '.join('?' * len(set_ids))})",
                           tuple(set_ids)))
    return statements


# Pipelines are recorded once per hash for the runs and trial sets that ran them; one that
# none of them names any more goes with the last of them.
ORPHAN_PIPELINES: Statement = (
    "DELETE FROM pipelines WHERE hash NOT IN (SELECT pipeline_hash FROM runs) "
    "AND hash NOT IN (SELECT pipeline_hash FROM trial_sets)", ())


def store_bytes(db: Database) -> int:
    """The database file and its WAL, in bytes."""
    total = 0
    for path in (str(db.path), f"{db.path}-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(path).st_size
    return total


async def reclaim(db: Database) -> str:
    """Give the store's free pages back to the disk: in small incremental_vacuum steps (each
    its own short transaction, so that other requests go on between them) when the store
    has incremental auto_vacuum; else, when it is worth it, one VACUUM that rewrites the
    file and turns incremental auto_vacuum on for the next time. The WAL is truncated
    after. Returns `incremental`, `vacuum` or `none`."""
    mode, = (await db.rows("PRAGMA auto_vacuum"))[0]
    free, = (await db.rows("PRAGMA freelist_count"))[0]
    pages, = (await db.rows("PRAGMA page_count"))[0]
    page_size, = (await db.rows("PRAGMA page_size"))[0]
    if not free:
        how = "none"
    elif mode == AUTO_VACUUM_INCREMENTAL:
        while free:
            # executescript steps the pragma to its end (execute would free one page).
            await db.connection.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})")
            free, = (await db.rows("PRAGMA freelist_count"))[0]
        how = "incremental"
    elif free < VACUUM_WORTH_SHARE * pages or free * page_size < VACUUM_WORTH_BYTES:
        how = "none"  # sqlite reuses the free pages for the next writes
    else:
        log.info("rewriting the store %s once (VACUUM) to give back %d free pages and turn "
                 "incremental auto_vacuum on", db.path, free)
        await db.connection.execute(f"PRAGMA auto_vacuum={AUTO_VACUUM_INCREMENTAL}")
        await db.connection.execute("VACUUM")
        how = "vacuum"
    await db.truncate_wal()  # the deletes and the moved pages went through the WAL
    return how
