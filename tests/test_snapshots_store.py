"""The snapshot store under a real daemon: a schema version 1 snapshot (tests/fixtures/
snapshot_v1.json) written into the database file loads upgraded, replays and reevaluates;
a newer schema is refused clearly; listing 100,000 snapshots pages through indexes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ostinato.daemon.store.snapshots import encode_cursor, list_query

from .snapshots_support import CONFLICT, create, get, listing, replay
from .support import REPO, start_daemon

FIXTURE = json.loads((REPO / "tests" / "fixtures" / "snapshot_v1.json").read_text())
_JSON_COLUMNS = {"tags": "tags_json", "inputs": "inputs_json", "variables": "variables_json",
                 "settings": "settings_json", "invariants": "invariants_json",
                 "reference_metrics": "reference_metrics_json"}


def insert_snapshot(home: Path, snapshot: dict[str, Any],
                    cassette: list[dict[str, Any]]) -> None:
    """Write a snapshot's rows with sqlite3, as the daemon that made it would have."""
    row = {_JSON_COLUMNS.get(k, k): (None if v is None else json.dumps(v))
           if k in _JSON_COLUMNS else v for k, v in snapshot.items()}
    connection = sqlite3.connect(home / "ostinato.db")
    with connection:
        connection.execute(f"INSERT INTO snapshots ({', '.join(row)}) "
                           f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        connection.executemany("INSERT INTO snapshot_tags (tag, snapshot_id) VALUES (?, ?)",
                               [(tag, snapshot["id"]) for tag in snapshot["tags"]])
        connection.executemany(
            "INSERT INTO snapshot_calls (snapshot_id, seq, node_id, attempt, kind, "
            "request_json, response_json, input_tokens, output_tokens, cost_usd, latency_ms, "
            "error, finish_reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(snapshot["id"], c["seq"], c["node_id"], c["attempt"], c["kind"],
              json.dumps(c["request"]), json.dumps(c["response"]), c["input_tokens"],
              c["output_tokens"], c["cost_usd"], c["latency_ms"], c["error"],
              c["finish_reason"], c["created_at"]) for c in cassette])
    connection.close()


async def test_a_version_1_snapshot_loads_upgraded_and_replays(short_tmp: Path) -> None:
    home = short_tmp / "home"
    first = await start_daemon(home, "--socket", str(short_tmp / "d.sock"))
    assert await first.stop() == 0  # the database exists, migrated
    old = FIXTURE["snapshot"]
    insert_snapshot(home, old, FIXTURE["cassette"])
    daemon = await start_daemon(home, "--socket", str(short_tmp / "d.sock"))
    wire = await daemon.connect()

    loaded = await get(wire, old["id"], include_cassette=True)

    assert loaded["schema_version"] == 1  # as stored; read in today's shape
    assert (loaded["name"], loaded["version"], loaded["tags"]) == (
        old["name"], 1, ["seed-001", "regression"])
    assert loaded["variables"] == {}  # version 1 had none
    assert loaded["invariants"][1] == {"type": "run_status", "value": "completed",
                                       "description": "Run must complete successfully"}
    assert loaded["invariants"][0] == old["invariants"][0]
    metrics = loaded["reference"]["metrics"]
    assert loaded["reference"]["run_id"] == old["reference_run_id"]
    assert (metrics["status"], metrics["duration_ms"], metrics["cost_usd"]) == (
        "completed", 12.5, 0.0)
    assert (metrics["tokens_in"], metrics["tokens_out"], metrics["tokens"]) == (70, 80, 150)
    assert (metrics["calls"], metrics["score"], metrics["candidate_count"]) == (2, 0.8, 3)
    assert [c["node_id"] for c in loaded["cassette"]] == ["design", "evaluate"]
    listed = (await listing(wire, tags=["seed-001"]))["snapshots"]
    assert [(s["id"], s["schema_version"], s["invariants"]) for s in listed] == [
        (old["id"], 1, 4)]

    replayed = await replay(wire, old["id"], mode="hybrid")
    assert (replayed["status"], replayed["snapshot_id"]) == ("completed", old["id"])
    checked = await wire.result("run.reeval", {"run_id": replayed["run_id"],
                                               "snapshot_id": old["id"]})
    assert [r["status"] for r in checked["results"]] == ["passed"] * 4, checked
    # Its name goes on at version 2, in today's schema; version 1 stays as it was.
    newer = await create(wire, name=old["name"], run_id=replayed["run_id"])
    assert (newer["version"], newer["schema_version"]) == (2, 2)
    assert await get(wire, old["id"], include_cassette=True) == loaded
    assert await daemon.stop() == 0


async def test_a_snapshot_from_a_newer_daemon_is_refused_clearly(short_tmp: Path) -> None:
    home = short_tmp / "home"
    daemon = await start_daemon(home, "--socket", str(short_tmp / "d.sock"))
    future = {**FIXTURE["snapshot"], "schema_version": 99}
    insert_snapshot(home, future, [])
    wire = await daemon.connect()

    reply = await wire.request("snapshot.get", {"id": future["id"]})
    assert reply["error"]["code"] == CONFLICT
    assert reply["error"]["message"] == (f"snapshot {future['id']} has schema version 99; "
                                         "this daemon reads versions up to 2")
    assert (await listing(wire))["snapshots"][0]["schema_version"] == 99
    for selection in ({"snapshot_ids": [future["id"]]}, {"all": True}):
        tested = await wire.request("tests.run", selection)
        assert tested["error"]["code"] == CONFLICT, tested
        assert "schema version 99" in tested["error"]["message"]
    assert await daemon.stop() == 0


# -- 100,000 snapshots --------------------------------------------------------------------

MANY = 100_000


def fill(home: Path) -> None:
    """MANY snapshots: every one tagged `all`, every 10th `nightly`, every 100th `rare`;
    1,000 names of 100 versions each; 50 pipelines."""
    rows, tags = [], []
    for i in range(MANY):
        snapshot_id = f"0190{i:08x}-0000-7000-8000-000000000000"
        rows.append((snapshot_id, f"snap-{i % 1000:03d}", i // 1000 + 1, f"pipe-{i % 50}",
                     f"{i % 50:064x}", f"2024-01-01T00:00:00.{i:06d}Z"))
        tags.append(("all", snapshot_id))
        if i % 10 == 0:
            tags.append(("nightly", snapshot_id))
        if i % 100 == 0:
            tags.append(("rare", snapshot_id))
    connection = sqlite3.connect(home / "ostinato.db")
    with connection:
        connection.executemany(
            "INSERT INTO snapshots (id, name, version, pipeline_format, pipeline_source, "
            "pipeline_name, pipeline_hash, schema_version, created_at) "
            "VALUES (?, ?, ?, 'dot', 'digraph g {}', ?, ?, 2, ?)", rows)
        connection.executemany("INSERT INTO snapshot_tags (tag, snapshot_id) VALUES (?, ?)",
                               tags)
    connection.close()


def plan(home: Path, **filters: Any) -> str:
    """EXPLAIN QUERY PLAN of the page the store would ask for, one step a line."""
    sql, params = list_query(limit=100, **filters)
    connection = sqlite3.connect(home / "ostinato.db")
    try:
        steps = connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    finally:
        connection.close()
    return "\n".join(step[-1] for step in steps)


async def test_listing_100000_snapshots_walks_indexes(short_tmp: Path) -> None:
    home = short_tmp / "home"
    daemon = await start_daemon(home, "--socket", str(short_tmp / "d.sock"))
    fill(home)
    wire = await daemon.connect()

    seen, cursor, pages = [], None, 0
    while True:
        page = await wire.result("snapshot.list", {"tags": ["nightly"], "limit": 1000,
                                                   **({"cursor": cursor} if cursor else {})})
        seen += [s["id"] for s in page["snapshots"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == MANY // 10 and len(set(seen)) == len(seen) and pages == 10
    assert seen == sorted(seen, reverse=True)  # newest first, across pages
    both = await wire.result("snapshot.list", {"tags": ["nightly", "rare"], "limit": 1000})
    assert len(both["snapshots"]) == MANY // 100 and both["next_cursor"] is None
    latest = await wire.result("snapshot.list", {"name": "snap-007", "latest": True})
    assert [(s["name"], s["version"]) for s in latest["snapshots"]] == [("snap-007", 100)]

    cursor_id = seen[500]
    driven_by = [  # the filters, and the index range the page walks first
        ({}, "USING INDEX sqlite_autoindex_snapshots_1"),
        ({"tags": ["nightly"]}, "SEARCH t USING PRIMARY KEY (tag=?"),
        ({"tags": ["nightly", "rare"]}, "SEARCH t USING PRIMARY KEY (tag=?"),
        ({"tags": ["all"], "latest": True}, "SEARCH t USING PRIMARY KEY (tag=?"),
        ({"name": "snap-007"}, "SEARCH s USING INDEX snapshots_by_name (name=?"),
        ({"name": "snap-007", "tags": ["all"]}, "SEARCH s USING INDEX snapshots_by_name"),
        ({"pipeline": "pipe-7"}, "SEARCH s USING INDEX snapshots_by_pipeline_name"),
        ({"pipeline": f"{7:064x}"}, "SEARCH s USING INDEX snapshots_by_pipeline_hash")]
    for filters, first in driven_by:
        for page_filters in (filters, {**filters, "cursor": encode_cursor(cursor_id)}):
            steps = plan(home, **page_filters).splitlines()
            assert first in steps[0], (page_filters, steps)
            # No table read whole, and rows come in the index's order: no sort of all that
            # matched before the first row of a page can be returned.
            assert not any(s.startswith("SCAN") and " USING " not in s for s in steps), steps
            assert not any("TEMP B-TREE" in s for s in steps), (page_filters, steps)
            if "cursor" in page_filters:  # a later page starts inside the range
                assert "id<?)" in steps[0], steps
    assert await daemon.stop() == 0
