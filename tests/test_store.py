"""The store's write path: on the loop when the database is free, off it when it is locked."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ostinato.daemon.store.db import Database

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
