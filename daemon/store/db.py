"""The sqlite store: one aiosqlite connection in WAL mode, numbered SQL migrations."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from ..ids import utc_now

log = logging.getLogger("ostinato.store")

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class _Abandoned(Exception):
    """A write whose caller was cancelled before it committed: rolled back."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every shipped migration, in order."""
    found = []
    for entry in resources.files("ostinato.daemon.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """The daemon's database file; all writes go through this one connection."""

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self._write_lock = asyncio.Lock()  # one transaction at a time on the connection

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) and migrate the database at `path`."""
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a killed process; only a
        # power loss may drop the last ones.
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        database = cls(connection, path)
        await database._migrate()
        return database

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

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        """The first row as a dict, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run `statements` in one transaction: all of them are durable, or none.

        The whole transaction is one call on the connection's thread, not one hand-off per
        statement (a run writes one per stage). A caller cancelled before the COMMIT leaves
        nothing behind, as with statement-by-statement writes.
        """
        abort = threading.Event()

        def transaction(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN")
            try:
                for sql, params in statements:
                    connection.execute(sql, params)
                if abort.is_set():
                    raise _Abandoned
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

        async with self._write_lock:
            try:
                # aiosqlite has no public way to run a callable on its thread; `_execute` is
                # what its own methods use (in every release from 0.17 to 0.22).
                await self.connection._execute(transaction, self.connection._conn)
            except asyncio.CancelledError:
                abort.set()
                raise

    async def close(self) -> None:
        """Close the connection."""
        await self.connection.close()


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (they contain no semicolons in strings)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
