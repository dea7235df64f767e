"""Queries for snapshots: immutable, versioned captures of a scenario, their tags and their
cassettes. There is no update: a snapshot is created whole, read, and deleted.

Pages are keyset pages on the snapshot id (uuid7: newest first), each filter walking an
index that ends in the id (migration 003), so that page 1,000 costs what page 1 does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ostinato.protocol.snapshots import SnapshotSummary

from ..ids import utc_now, uuid7
from .db import Database, Statement
from .pages import decode_cursor, encode_cursor
from .records import SnapshotRecord
from .snapshot_schema import CURRENT_SCHEMA, upgrade

# What a listing returns of each snapshot: no source, inputs, settings or cassette.
SUMMARY_COLUMNS = ("id", "name", "version", "description", "tags_json", "pipeline_format",
                   "pipeline_name", "pipeline_hash", "invariants_json", "reference_run_id",
                   "has_cassette", "cassette_calls", "schema_version", "created_at")
_CALL_COLUMNS = ("seq", "node_id", "attempt", "kind", "request_json", "response_json",
                 "input_tokens", "output_tokens", "cost_usd", "latency_ms", "error",
                 "finish_reason", "created_at")
_HASH = re.compile(r"^[0-9a-f]{64}$")
# The latest version of the row's name (one probe of the UNIQUE (name, version) index).
_LATEST = "s.version = (SELECT MAX(m.version) FROM snapshots AS m WHERE m.name = s.name)"


_NAMES_SHOWN = 20  # snapshot names an unknown reference's error lists


class SnapshotNotFound(LookupError):
    """No snapshot has that id, name or name@version; `data` says what exists."""

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.data = data


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else orjson.loads(text)


def _tag_filter(tags: Iterable[str], column: str) -> tuple[list[str], list[Any]]:
    """One EXISTS probe of snapshot_tags' primary key per tag."""
    where, params = [], []
    for tag in tags:
        where.append("EXISTS (SELECT 1 FROM snapshot_tags AS x "
                     f"WHERE x.tag = ? AND x.snapshot_id = {column})")
        params.append(tag)
    return where, params


def list_query(*, tags: list[str] | None = None, name: str | None = None,
               pipeline: str | None = None, latest: bool = False, limit: int = 50,
               cursor: str | None = None) -> tuple[str, tuple[Any, ...]]:
    """The SELECT of one page (newest first, `limit + 1` rows to know whether more follow).

    The most selective filter drives: a name, else the first tag (walking snapshot_tags'
    (tag, snapshot_id) key), else the pipeline, else the id; the others are probes."""
    columns = ", ".join(f"s.{c}" for c in SUMMARY_COLUMNS)
    tags = list(dict.fromkeys(tags or []))
    where: list[str] = []
    params: list[Any] = []
    if tags and name is None:
        # CROSS JOIN fixes the order: the tag's index range first, each row's snapshot by key.
        sql = f"SELECT {columns} FROM snapshot_tags AS t CROSS JOIN snapshots AS s"
        where += ["t.tag = ?", "s.id = t.snapshot_id"]
        params.append(tags[0])
        key, rest = "t.snapshot_id", tags[1:]
    else:
        sql = f"SELECT {columns} FROM snapshots AS s"
        key, rest = "s.id", tags
    if name is not None:
        where.append("s.name = ?")
        params.append(name)
    if pipeline is not None:
        where.append("s.pipeline_hash = ?" if _HASH.match(pipeline) else "s.pipeline_name = ?")
        params.append(pipeline)
    probes, probe_params = _tag_filter(rest, key)
    where += probes
    params += probe_params
    if latest:
        where.append(_LATEST)
    if cursor is not None:
        where.append(f"{key} < ?")
        params.append(decode_cursor(cursor, 1)[0])
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {key} DESC LIMIT ?"
    return sql, (*params, limit + 1)


def decode_summary(row: Sequence[Any]) -> SnapshotSummary:
    """A listed row (SUMMARY_COLUMNS) as the protocol's snapshot summary: a listing's
    record is its result."""
    (id_, name, version, description, tags, pipeline_format, pipeline_name, pipeline_hash,
     invariants, reference_run_id, has_cassette, cassette_calls, schema_version,
     created_at) = row
    return SnapshotSummary.model_validate({
        "id": id_, "name": name, "version": version, "description": description or "",
        "tags": _loads(tags, []),
        "pipeline": {"format": pipeline_format, "name": pipeline_name, "hash": pipeline_hash},
        "invariants": len(_loads(invariants, [])), "reference_run_id": reference_run_id,
        "has_cassette": bool(has_cassette), "cassette_calls": cassette_calls,
        "schema_version": schema_version, "created_at": created_at})


def decode_snapshot(row: dict[str, Any]) -> SnapshotRecord:
    """A full row as a snapshot in the current shape (older schema versions upgraded);
    UnknownSchema for a newer one."""
    metrics = _loads(row["reference_metrics_json"])
    reference = None if row["reference_run_id"] is None and metrics is None else {
        "run_id": row["reference_run_id"], "metrics": metrics}
    snapshot = {
        "id": row["id"], "name": row["name"], "version": row["version"],
        "description": row["description"] or "", "tags": _loads(row["tags_json"], []),
        "pipeline": {"format": row["pipeline_format"], "source": row["pipeline_source"],
                     "name": row["pipeline_name"], "hash": row["pipeline_hash"]},
        "inputs": _loads(row["inputs_json"], {}), "variables": _loads(row["variables_json"]),
        "settings": _loads(row["settings_json"], {}),
        "invariants": _loads(row["invariants_json"], []), "reference": reference,
        "has_cassette": bool(row["has_cassette"]), "cassette_calls": row["cassette_calls"],
        "schema_version": row["schema_version"], "created_at": row["created_at"]}
    return SnapshotRecord(**upgrade(snapshot, row["schema_version"]))


def decode_cassette_call(row: dict[str, Any]) -> dict[str, Any]:
    """A snapshot_calls row as a call dict (trace.jsonl's fields, request decoded)."""
    return {"seq": row["seq"], "node_id": row["node_id"], "attempt": row["attempt"],
            "kind": row["kind"], "request": orjson.loads(row["request_json"]),
            "response": _loads(row["response_json"]), "error": row["error"],
            "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
            "cost_usd": row["cost_usd"], "latency_ms": row["latency_ms"],
            "finish_reason": row["finish_reason"], "created_at": row["created_at"]}


def _cassette_rows(snapshot_id: str, calls: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """One row per seq (a resumed run may hold a seq twice: the last one is what ran)."""
    by_seq = {int(call["seq"]): call for call in calls}
    return [(snapshot_id, seq, c["node_id"], c["attempt"], c["kind"], _json(c["request"]),
             None if c.get("response") is None else _json(c["response"]),
             c.get("input_tokens", 0), c.get("output_tokens", 0), c.get("cost_usd", 0.0),
             c.get("latency_ms", 0.0), c.get("error"), c.get("finish_reason"),
             c.get("created_at") or utc_now())
            for seq, c in sorted(by_seq.items())]


class SnapshotStore:
    """Everything the store knows about snapshots."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, *, name: str, description: str, tags: list[str],
                     pipeline: dict[str, str], inputs: dict[str, Any],
                     variables: dict[str, Any], settings: dict[str, Any],
                     invariants: list[dict[str, Any]], reference: dict[str, Any] | None,
                     cassette: list[dict[str, Any]] | None) -> SnapshotRecord:
        """Store a new snapshot (already redacted) as the next version of `name`: the
        version is read and written by one INSERT … SELECT in one transaction with its tags
        and cassette, and UNIQUE (name, version) stands behind it."""
        snapshot_id = uuid7()
        tags = list(dict.fromkeys(tags))
        rows = _cassette_rows(snapshot_id, cassette or [])
        statements: list[Statement] = [(
            "INSERT INTO snapshots (id, name, version, description, tags_json, "
            "pipeline_format, pipeline_source, pipeline_name, pipeline_hash, inputs_json, "
            "variables_json, settings_json, invariants_json, reference_run_id, "
            "reference_metrics_json, has_cassette, cassette_calls, schema_version, created_at) "
            "SELECT ?, ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ? FROM snapshots WHERE name = ?",
            (snapshot_id, name, description, _json(tags), pipeline["format"],
             pipeline["source"], pipeline["name"], pipeline["hash"], _json(inputs),
             _json(variables), _json(settings), _json(invariants),
             reference["run_id"] if reference else None,
             _json(reference["metrics"]) if reference and reference.get("metrics") is not None
             else None, int(cassette is not None), len(rows), CURRENT_SCHEMA, utc_now(), name))]
        if tags:
            statements.append(("INSERT INTO snapshot_tags (tag, snapshot_id) VALUES (?, ?)",
                               [(tag, snapshot_id) for tag in tags]))
        if rows:
            statements.append((
                f"INSERT INTO snapshot_calls (snapshot_id, {', '.join(_CALL_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (len(_CALL_COLUMNS) + 1))})", rows))
        await self.db.write(statements)
        created = await self.get(snapshot_id)
        assert created is not None
        return created

    async def get(self, snapshot_id: str) -> SnapshotRecord | None:
        """One snapshot in the current shape, without its cassette's calls."""
        row = await self.db.fetchone("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,))
        return None if row is None else decode_snapshot(row)

    async def resolve(self, ref: str) -> SnapshotRecord:
        """A snapshot by id, by `name@version`, or by name (its latest version); else
        SnapshotNotFound saying which names (or that name's versions) exist."""
        snapshot = await self.get(ref)
        if snapshot is not None:
            return snapshot
        name, at, version = ref.rpartition("@")
        if at and version.isdigit() and name:  # `name@N`, unless `name` is no snapshot's
            row = await self.db.fetchone(
                "SELECT * FROM snapshots WHERE name = ? AND version = ?", (name, int(version)))
            if row is not None:
                return decode_snapshot(row)
            versions = [r["version"] for r in await self.db.fetchall(
                "SELECT version FROM snapshots WHERE name = ? ORDER BY version", (name,))]
            if versions:
                raise SnapshotNotFound(
                    f"snapshot {name!r} has no version {version} (versions: "
                    f"{', '.join(map(str, versions))})",
                    {"id": ref, "name": name, "versions": versions})
        row = await self.db.fetchone(
            "SELECT * FROM snapshots WHERE name = ? ORDER BY version DESC LIMIT 1", (ref,))
        if row is not None:
            return decode_snapshot(row)
        names = [r["name"] for r in await self.db.fetchall(
            "SELECT DISTINCT name FROM snapshots ORDER BY name LIMIT ?", (_NAMES_SHOWN + 1,))]
        known = ", ".join(repr(n) for n in names[:_NAMES_SHOWN]) or "none"
        more = ", …" if len(names) > _NAMES_SHOWN else ""
        raise SnapshotNotFound(
            f"no snapshot {ref} (no such id, name or name@version; names: {known}{more})",
            {"id": ref, "names": names[:_NAMES_SHOWN]})

    async def list(self, *, tags: list[str] | None = None, name: str | None = None,
                   pipeline: str | None = None, limit: int = 50, cursor: str | None = None,
                   latest: bool = False) -> tuple[list[SnapshotSummary], str | None]:
        """A page of snapshot summaries, newest first, and the cursor of the next page
        (None on the last); every tag given must match. ValueError on a bad cursor."""
        sql, params = list_query(tags=tags, name=name, pipeline=pipeline, latest=latest,
                                 limit=limit, cursor=cursor)
        rows = list(await self.db.rows(sql, params))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1][0])
        return [decode_summary(row) for row in rows], next_cursor

    async def select(self, tags: list[str] | None = None, all: bool = False,
                     limit: int | None = None) -> list[SnapshotRecord]:
        """Snapshots to replay: each name's latest version, when it has every tag in `tags`
        (every name's with `all`), by name. Nothing without tags or all (`resolve` finds
        one snapshot by id or name)."""
        if not tags and not all:
            return []
        tags = list(dict.fromkeys(tags or []))
        if tags:  # walk the first tag's index range, not every snapshot
            sql = "SELECT s.* FROM snapshot_tags AS t CROSS JOIN snapshots AS s"
            where, params = ["t.tag = ?", "s.id = t.snapshot_id"], [tags[0]]
        else:
            sql, where, params = "SELECT s.* FROM snapshots AS s", [], []
        probes, probe_params = _tag_filter(tags[1:], "s.id")
        sql += f" WHERE {' AND '.join([*where, _LATEST, *probes])} ORDER BY s.name"
        params += probe_params
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [decode_snapshot(row) for row in await self.db.fetchall(sql, tuple(params))]

    async def delete(self, snapshot_id: str) -> bool:
        """Delete a snapshot with its tags and cassette (never a run); False if unknown."""
        if await self.db.fetchone("SELECT id FROM snapshots WHERE id = ?",
                                  (snapshot_id,)) is None:
            return False
        await self.db.write([
            ("DELETE FROM snapshot_calls WHERE snapshot_id = ?", (snapshot_id,)),
            ("DELETE FROM snapshot_tags WHERE snapshot_id = ?", (snapshot_id,)),
            ("DELETE FROM snapshots WHERE id = ?", (snapshot_id,)),
        ])
        return True

    async def replay_runs(self, snapshot_id: str) -> int:
        """How many runs replayed the snapshot."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS runs FROM runs WHERE snapshot_id = ?", (snapshot_id,))
        return int(row["runs"]) if row else 0

    async def cassette(self, snapshot_id: str) -> list[dict[str, Any]]:
        """The snapshot's recorded calls in order, decoded (Cassette.from_calls reads them)."""
        rows = await self.db.fetchall(
            f"SELECT {', '.join(_CALL_COLUMNS)} FROM snapshot_calls WHERE snapshot_id = ? "
            "ORDER BY seq", (snapshot_id,))
        return [decode_cassette_call(row) for row in rows]
