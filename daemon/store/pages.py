"""Keyset pages: opaque cursors holding the sort keys of a page's last row, and the newest
first pages of tables ordered by (created_at, id). A page is an index range, never an OFFSET
scan, so that page 1,000 costs what page 1 does."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

import orjson

from .db import Database


def encode_cursor(*keys: str) -> str:
    """The opaque cursor of a page that ended with the row of these sort keys."""
    return base64.urlsafe_b64encode(orjson.dumps(list(keys))).decode()


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The `size` sort keys a cursor holds; ValueError when it is not one of ours."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:  # binascii.Error and orjson.JSONDecodeError are ValueErrors
        raise ValueError("bad cursor") from None
    if not (isinstance(value, list) and len(value) == size
            and all(isinstance(key, str) for key in value)):
        raise ValueError("bad cursor")
    return value


async def newest_first(db: Database, table: str, columns: str, where: list[str],
                       params: list[Any], *, limit: int,
                       cursor: str | None) -> tuple[list[sqlite3.Row], str | None]:
    """A page of `table`'s rows (`columns` of them, `created_at` and `id` among them)
    matching `where` (clauses ANDed), newest first by (created_at, id), and the cursor of
    the next page (None on the last). ValueError on a bad cursor."""
    where, params = list(where), list(params)
    if cursor:
        created_at, row_id = decode_cursor(cursor, 2)
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [created_at, created_at, row_id]
    sql = f"SELECT {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    rows = list(await db.rows(sql, (*params, limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
