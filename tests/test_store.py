"""The store's write path: on the loop when the database is free, off it when it is locked."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ostinato.daemon.store.db import Database, migrations

INSERT = ("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",)


def _row(version: int) -> tuple[str, tuple[object, ...]]:
    return INSERT[0], (version, f"test_{version}", "2026-01-01T00:00:00Z")


def _versions(path: Path) -> set[int]:
    """What another connection (another process, for sqlite) sees committed."""
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT version FROM schema_migrations")}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "ostinato.db")
    yield database
    await database.close()


async def _loop_turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_write_is_committed_when_it_returns(db: Database) -> None:
    await db.write([_row(9001), _row(9002)])
    assert {9001, 9002} <= _versions(db.path)


async def test_a_failing_statement_rolls_the_whole_transaction_back(db: Database) -> None:
    await db.write([_row(9001)])
    with pytest.raises(sqlite3.IntegrityError):
        await db.write([_row(9002), _row(9001)])  # 9001 again: primary key
    assert 9002 not in _versions(db.path)


async def test_a_locked_database_is_waited_for_off_the_loop(db: Database) -> None:
    holder = sqlite3.connect(db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        write = asyncio.ensure_future(db.write([_row(9101)]))
        await _loop_turns(20)  # the loop keeps serving others while the write waits
        assert not write.done()
        later = asyncio.ensure_future(db.write([_row(9102)]))  # queues behind the first
        await _loop_turns(5)
        assert not later.done()
    finally:
        holder.execute("COMMIT")
        holder.close()
    await asyncio.gather(write, later)
    assert {9101, 9102} <= _versions(db.path)


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_nothing(
        db: Database) -> None:
    holder = sqlite3.connect(db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.ensure_future(db.write([_row(9201)]))
        await _loop_turns(20)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
    finally:
        holder.execute("COMMIT")
        holder.close()
    await db.write([_row(9202)])  # the next write goes through (and after the abandoned one)
    await db.fetchall("SELECT 1")  # aiosqlite's thread has finished the abandoned one
    versions = _versions(db.path)
    assert 9202 in versions and 9201 not in versions


async def test_concurrent_writes_commit_together_and_a_bad_one_fails_alone(
        db: Database) -> None:
    await db.write([_row(9300)])
    writes = [db.write([_row(9301 + i)], concurrent=True) for i in range(4)]
    writes.append(db.write([_row(9300)], concurrent=True))  # a duplicate key: fails
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert outcomes[:4] == [None] * 4
    assert isinstance(outcomes[4], sqlite3.IntegrityError)
    assert {9301, 9302, 9303, 9304} <= _versions(db.path)


async def test_concurrent_writes_wait_off_the_loop_while_the_database_is_locked(
        db: Database) -> None:
    holder = sqlite3.connect(db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        writes = asyncio.gather(*(db.write([_row(9401 + i)], concurrent=True)
                                  for i in range(3)))
        await _loop_turns(20)
        assert not writes.done()
    finally:
        holder.execute("COMMIT")
        holder.close()
    await writes
    assert {9401, 9402, 9403} <= _versions(db.path)


def _store_of_version(path: Path, version: int) -> None:
    """A store as a daemon of `version` migrations left it, with a manager's child run and a
    snapshot's run among plain ones."""
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        for number, name, sql in migrations():
            if number <= version:
                old.executescript(sql)
                old.execute(INSERT[0], (number, name, "2026-01-01T00:00:00Z"))
        old.execute("INSERT INTO pipelines VALUES ('h', 'p', 'dot', 'digraph {}', 't')")
        for run_id, parent, snapshot in (("r1", None, None), ("r2", "r1", None),
                                         ("r3", None, "s1"), ("r4", None, None)):
            old.execute("INSERT INTO runs (id, pipeline_hash, pipeline_name, status, run_dir, "
                        "trace_id, created_at, parent_run_id, parent_key, snapshot_id) "
                        "VALUES (?, 'h', 'p', 'completed', ?, ?, ?, ?, ?, ?)",
                        (run_id, f"runs/{run_id}", run_id, f"2026-01-0{run_id[1]}", parent,
                         None if parent is None else "manage:1:1", snapshot))


async def test_a_store_of_the_previous_version_keeps_finding_child_and_snapshot_runs(
        tmp_path: Path) -> None:
    """Migration 006 makes the child-run and snapshot-run indexes partial (most runs are
    neither): the rows are all there and the lookups still find them through the indexes."""
    path = tmp_path / "ostinato.db"
    _store_of_version(path, 5)
    database = await Database.open(path)
    try:
        children = await database.fetchall(
            "SELECT id FROM runs WHERE parent_run_id = ? ORDER BY created_at, id", ("r1",))
        of_snapshot = await database.fetchall(
            "SELECT id FROM runs WHERE snapshot_id = ?", ("s1",))
        plans = [row["detail"] for query, params in (
            ("SELECT id FROM runs WHERE parent_run_id = ? AND parent_key = ?", ("r1", "k")),
            ("SELECT COUNT(*) FROM runs WHERE snapshot_id = ?", ("s1",)))
            for row in await database.fetchall(f"EXPLAIN QUERY PLAN {query}", params)]
        total = (await database.fetchone("SELECT COUNT(*) AS n FROM runs"))["n"]
    finally:
        await database.close()
    assert [row["id"] for row in children] == ["r2"]
    assert [row["id"] for row in of_snapshot] == ["r3"]
    assert any("runs_by_parent" in plan for plan in plans)
    assert any("runs_by_snapshot" in plan for plan in plans)
    assert total == 4
    assert max(_versions(path)) == max(number for number, _, _ in migrations())
