"""The sqlite store: one aiosqlite connection in WAL mode, numbered SQL migrations."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from ..disk import disk_full
from ..ids import utc_now

log = logging.getLogger("ostinato.store")

# SQL and its parameters: a tuple, or a list of tuples for one row each.
Statement = tuple[str, tuple[Any, ...] | list[tuple[Any, ...]]]

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
DEFAULT_WAL_MAX_BYTES = 64 * 1024 * 1024  # the WAL is truncated once it passes this size


class _Abandoned(Exception):
    """A write whose caller was cancelled before it committed: rolled back."""


class DamagedStore(Exception):
    """The database file fails sqlite's quick_check: the daemon does not write to it."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        shown = "; ".join(problems[:3]) + (f"; … ({len(problems)} problems)"
                                           if len(problems) > 3 else "")
        super().__init__(
            f"the store {path} is damaged (sqlite quick_check: {shown}). The daemon does not "
            f"write to a damaged store: move it aside with its -wal and -shm files to start "
            f"on an empty one, or try to salvage it (sqlite3 {path} .recover)")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every shipped migration, in order."""
    found = []
    for entry in resources.files("ostinato.daemon.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """The daemon's database file.

    Reads go through aiosqlite's thread. Writes are small transactions (a run writes one per
    stage), so they run on the event loop's thread on a connection of their own: a commit
    in WAL mode with synchronous=NORMAL does not wait for the disk, and is several times
    cheaper than the two thread hand-offs around it. When another process holds the write
    lock the write waits for it on aiosqlite's thread instead, never on the loop.
    """

    CHECKPOINT_EVERY = 256  # commits on the loop between passive WAL checkpoints
    WAL_CHECK_EVERY = 4  # commits between looks at the WAL's size (one stat)
    IDLE_SECONDS = 1.0  # no commit for this long: idle, the WAL is truncated

    def __init__(self, connection: aiosqlite.Connection, writer: sqlite3.Connection,
                 path: Path, wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES) -> None:
        self.connection = connection
        self.writer = writer
        self.path = path
        self.wal_max_bytes = wal_max_bytes
        self._wal = f"{path}-wal"
        self._idle: asyncio.TimerHandle | None = None  # armed while commits go on
        self._idle_seen = 0  # self._commits when the idle timer was armed
        self._write_lock = asyncio.Lock()  # held by a write waiting on aiosqlite's thread
        self._commits = 0
        self._checkpoint: asyncio.Task[Any] | None = None
        self._group: Group = []
        self._group_writer: asyncio.Task[None] | None = None
        # A write failed on a full disk: once one commits again, the WAL is truncated, so
        # that the space it grew into is given back (see _after_commit).
        self.was_full = False

    @classmethod
    async def open(cls, path: Path, wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES) -> Database:
        """Open (creating if needed), check and migrate the database at `path`; its WAL is
        truncated if the disk allows. Raises DamagedStore when sqlite's quick_check finds it
        damaged. On any failure both connections are closed again: aiosqlite's thread left
        running would keep the process from ever exiting."""
        connection = await aiosqlite.connect(path, isolation_level=None)
        writer: sqlite3.Connection | None = None
        try:
            connection.row_factory = aiosqlite.Row
            await _wal_mode_checked(connection, path)
            # A WAL that a checkpoint resets is cut back to this size, not left as large as
            # it grew.
            await connection.execute(f"PRAGMA journal_size_limit={int(wal_max_bytes)}")
            # NORMAL in WAL mode: a committed transaction survives a killed process; only a
            # power loss may drop the last ones.
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA foreign_keys=ON")
            await connection.execute("PRAGMA busy_timeout=5000")
            # The loop's writer never waits for a lock (busy timeout 0) and never
            # checkpoints the WAL itself, which syncs the disk: _after_commit has that done
            # off the loop.
            writer = sqlite3.connect(path, isolation_level=None, timeout=0,
                                     check_same_thread=False)
            for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "wal_autocheckpoint=0"):
                writer.execute(f"PRAGMA {pragma}")
            database = cls(connection, writer, path, wal_max_bytes)
            await database._migrate()
        except BaseException:
            if writer is not None:
                writer.close()
            await connection.close()
            raise
        await database.truncate_wal()  # a WAL left large by an earlier daemon shrinks
        return database

    async def truncate_wal(self) -> bool:
        """Checkpoint the whole WAL into the database and truncate it to nothing; False when
        it could not be done now (readers in the way, a disk still full)."""
        try:
            rows = await self.connection.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # the checkpoint grows the database file: it may not fit
            self.note_failure(exc)  # tried again after the next commit
            log.warning("the WAL of %s was not truncated: %s", self.path, exc)
            return False
        busy = bool(rows and rows[0][0])
        if busy:
            log.info("the WAL of %s was not truncated: the database is busy", self.path)
        return not busy

    async def _migrate(self) -> None:
        """Apply every migration not yet applied, all in one transaction."""
        await self.connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        rows = await self.connection.execute_fetchall("SELECT version FROM schema_migrations")
        applied = {row[0] for row in rows}
        pending = [m for m in migrations() if m[0] not in applied]
        if not pending:
            return
        await self.connection.execute("BEGIN IMMEDIATE")
        try:
            for version, name, sql in pending:
                for statement in _statements(sql):
                    await self.connection.execute(statement)
                await self.connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, utc_now()))
            await self.connection.execute("COMMIT")
        except BaseException:
            await self.connection.execute("ROLLBACK")
            raise
        log.info("database %s migrated to version %d", self.path, pending[-1][0])

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows as dicts."""
        rows = await self.connection.execute_fetchall(sql, params)
        return [dict(row) for row in rows]

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterable[sqlite3.Row]:
        """Rows as sqlite returns them (sequences; a record is built from one positionally,
        store/records.py)."""
        return await self.connection.execute_fetchall(sql, params)

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        """The first row as a dict, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, statements: list[Statement], *, concurrent: bool = False) -> None:
        """Run `statements` in one transaction: all of them are durable, or none. A statement
        whose parameters are a list of tuples runs once per tuple.

        On the loop's thread when the database is free, so that it cannot be cancelled
        half-way; when another process holds the write lock, on aiosqlite's thread, where a
        caller cancelled before the COMMIT leaves nothing behind.

        `concurrent`: the caller is one of several tasks writing (parallel branches): the
        write joins a group commit, one transaction for the writes that the tasks ready to
        run queue before it (on the loop; on aiosqlite's thread when the database is
        locked). Once joined, a write is committed even if its caller is cancelled.
        """
        if concurrent:
            future = asyncio.get_running_loop().create_future()
            self._group.append((statements, future))
            if len(self._group) == 1:  # a new group: the other ready tasks join it first
                asyncio.get_running_loop().call_soon(self._commit_group)
            await asyncio.shield(future)
            return
        if not self._write_lock.locked():
            try:
                _transaction(self.writer, statements)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in _BUSY:  # extended codes too
                    self.note_failure(exc)
                    raise
            else:
                self._after_commit()
                return
        abort = threading.Event()
        async with self._write_lock:
            try:
                # aiosqlite has no public way to run a callable on its thread; `_execute` is
                # what its own methods use (in every release from 0.17 to 0.22).
                await self.connection._execute(_transaction, self.connection._conn,
                                               statements, abort)
            except asyncio.CancelledError:
                abort.set()
                raise
            except Exception as exc:
                self.note_failure(exc)
                raise
        self._after_commit()

    def note_failure(self, exc: BaseException) -> None:
        """Remember a write that failed on a full disk (see `was_full`)."""
        if disk_full(exc):
            self.was_full = True

    def _commit_group(self) -> None:
        """Commit the queued concurrent writes on the loop, in one transaction; a group that
        fails is written one by one, so that one bad write fails alone."""
        if not self._group or self._write_lock.locked() or (
                self._group_writer is not None and not self._group_writer.done()):
            self._drain_off_loop()
            return
        group, self._group = self._group, []
        try:
            _transaction(self.writer, [each for statements, _ in group for each in statements])
            outcomes: list[BaseException | None] = [None] * len(group)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY:
                outcomes = [_try(self.writer, statements) for statements, _ in group]
            else:  # another process writes: wait for it on the thread, never on the loop
                self._group = group + self._group
                self._drain_off_loop()
                return
        except Exception:
            outcomes = [_try(self.writer, statements) for statements, _ in group]
        for error in outcomes:
            if error is not None:
                self.note_failure(error)
        if None in outcomes:
            self._after_commit()
        _settle(group, outcomes)

    def _drain_off_loop(self) -> None:
        if self._group and (self._group_writer is None or self._group_writer.done()):
            self._group_writer = asyncio.ensure_future(self._write_groups())

    async def _write_groups(self) -> None:
        """The queued concurrent writes, on aiosqlite's thread (the database was locked)."""
        while self._group:
            group, self._group = self._group, []
            async with self._write_lock:
                try:
                    await self.connection._execute(
                        _transaction, self.connection._conn,
                        [each for statements, _ in group for each in statements])
                    outcomes: list[BaseException | None] = [None] * len(group)
                except Exception:
                    outcomes = []
                    for statements, _ in group:
                        try:
                            await self.connection._execute(_transaction, self.connection._conn,
                                                           statements)
                            outcomes.append(None)
                        except Exception as exc:
                            self.note_failure(exc)
                            outcomes.append(exc)
            if None in outcomes:
                self._after_commit()
            _settle(group, outcomes)

    def _after_commit(self) -> None:
        """WAL upkeep, on aiosqlite's thread: truncated by the first commit after a full
        disk, and when a look every WAL_CHECK_EVERY commits finds it past wal_max_bytes;
        else a passive checkpoint every CHECKPOINT_EVERY commits. A passive one never
        resets a WAL that readers and writers keep busy (a trial set), so only the
        truncation bounds it; the idle timer truncates it once writes stop."""
        self._commits += 1
        if self._idle is None:
            self._idle_seen = self._commits
            self._idle = asyncio.get_running_loop().call_later(self.IDLE_SECONDS,
                                                               self._when_idle)
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        if self.was_full:
            self.was_full = False
            self._checkpoint = asyncio.ensure_future(self.truncate_wal())
        elif self._commits % self.WAL_CHECK_EVERY == 0 and self._wal_past_bound():
            self._checkpoint = asyncio.ensure_future(self.truncate_wal())
        elif self._commits % self.CHECKPOINT_EVERY == 0:
            self._checkpoint = asyncio.ensure_future(self._passive_checkpoint())

    def _wal_past_bound(self) -> bool:
        try:
            return os.stat(self._wal).st_size > self.wal_max_bytes
        except OSError:  # no WAL file: nothing to bound
            return False

    def _when_idle(self) -> None:
        """The idle timer: re-armed while commits go on; after a period with none, the
        WAL is truncated (once; the next commit arms the timer again)."""
        loop = asyncio.get_running_loop()
        busy = self._checkpoint is not None and not self._checkpoint.done()
        if self._commits != self._idle_seen or busy:
            self._idle_seen = self._commits
            self._idle = loop.call_later(self.IDLE_SECONDS, self._when_idle)
            return
        self._idle = None
        self._checkpoint = asyncio.ensure_future(self.truncate_wal())

    async def _passive_checkpoint(self) -> None:
        try:
            await self.connection.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # it grows the database file: a full disk refuses it
            self.note_failure(exc)
            log.warning("WAL checkpoint of %s failed: %s", self.path, exc)

    async def close(self) -> None:
        """Close both connections."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        pending = [task for task in (self._group_writer, self._checkpoint) if task is not None]
        await asyncio.gather(*pending, return_exceptions=True)
        self.writer.close()
        await self.connection.close()


_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


async def _wal_mode_checked(connection: aiosqlite.Connection, path: Path) -> None:
    """WAL mode, then sqlite's quick_check (pages and indexes, without matching index
    contents to tables; a few ms per MB); raises DamagedStore with what it found. A file
    that is not a database at all keeps sqlite's own error."""
    try:
        # A new store gives the pages that run.prune frees back to the disk in small steps
        # (store/prune.py); it must be said before the file is first written, and is a
        # no-op on an existing one.
        await connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await connection.execute("PRAGMA journal_mode=WAL")  # reads the schema: may fail
        rows = await connection.execute_fetchall("PRAGMA quick_check")
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_CORRUPT:
            raise
        raise DamagedStore(path, [str(exc)]) from exc
    problems = [row[0] for row in rows if row[0] != "ok"]
    if problems:
        raise DamagedStore(path, problems)
Group = list[tuple[list[Statement], "asyncio.Future[None]"]]


def _try(connection: sqlite3.Connection, statements: list[Statement]) -> Exception | None:
    """One write on its own: None, or what it failed with."""
    try:
        _transaction(connection, statements)
    except Exception as exc:
        return exc
    return None


def _settle(group: Group, outcomes: list[BaseException | None]) -> None:
    """Answer each waiting writer of a group with its write's outcome."""
    for (_, future), error in zip(group, outcomes, strict=True):
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _transaction(connection: sqlite3.Connection, statements: list[Statement],
                 abort: threading.Event | None = None) -> None:
    """BEGIN, the statements, COMMIT; a ROLLBACK on any failure or when `abort` is set."""
    connection.execute("BEGIN")
    try:
        for sql, params in statements:
            if isinstance(params, list):  # one statement, one row per tuple
                connection.executemany(sql, params)
            else:
                connection.execute(sql, params)
        if abort is not None and abort.is_set():
            raise _Abandoned
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (they contain no semicolons in strings)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
