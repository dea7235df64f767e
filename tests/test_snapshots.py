"""Snapshots through a real daemon: created from a run or a pipeline, listed by tag, name and
pipeline, versioned on re-create, never updated, deleted only with confirm (runs remain), and
used by run.reeval."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import NOT_A_LIST, TWO_KEYS, dot
from .snapshots_support import (
    BRIEF,
    CHECKS,
    CONFLICT,
    INPUTS,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PRICED,
    brief_run,
    create,
    db_rows,
    error,
    get,
    listing,
    published,
    replay,
)
from .support import REPO

pytestmark = pytest.mark.in_process

OTHER = dot("""digraph other { start [shape=Mdiamond]; a [prompt="a"]; exit [shape=Msquare];
               start -> a -> exit }""")


def names(page: dict[str, Any]) -> list[tuple[str, int]]:
    return [(s["name"], s["version"]) for s in page["snapshots"]]


async def test_a_snapshot_of_a_run_copies_its_scenario_metrics_and_calls(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief_run(wire)

    snapshot = await create(wire, run_id=run["run_id"], name="brief", tags=["smoke", "brief"],
                            description="the tides brief", invariants=CHECKS)

    assert (snapshot["name"], snapshot["version"], snapshot["schema_version"]) == ("brief", 1, 2)
    assert snapshot["tags"] == ["smoke", "brief"] and snapshot["warnings"] == []
    assert snapshot["pipeline"] == {"format": "dot", "name": "brief",
                                    "hash": run["pipeline_hash"],
                                    "source": BRIEF["source"]}
    assert snapshot["inputs"] == INPUTS and snapshot["variables"] == {}
    assert snapshot["settings"]["providers"] == PRICED["providers"]
    assert snapshot["settings"]["pricing"] == PRICED["pricing"]
    # seeds/001's spelling is stored as protocol/invariants.py spells it.
    assert snapshot["invariants"][0] == {"type": "run_status", "value": "completed",
                                         "description": "seeds/001 spelling"}
    assert snapshot["invariants"][1:] == CHECKS[1:]
    metrics = snapshot["reference"]["metrics"]
    assert snapshot["reference"]["run_id"] == run["run_id"]
    assert (metrics["status"], metrics["cost_usd"], metrics["tokens"]) == ("completed", 65.0, 40)
    assert (metrics["calls"], metrics["model_calls"], metrics["tool_calls"]) == (3, 2, 1)
    assert (snapshot["has_cassette"], snapshot["cassette_calls"]) == (True, 3)

    full = await get(wire, snapshot["id"], include_cassette=True)
    assert [c["node_id"] for c in full["cassette"]] == ["research", "count", "write"]
    assert full["cassette"][2]["response"]["text"] == "The brief: tides follow the moon."
    plain = await get(wire, snapshot["id"])
    assert plain["cassette"] is None and plain["cassette_calls"] == 3
    assert {k: v for k, v in plain.items() if k != "cassette"} == {
        k: v for k, v in snapshot.items() if k not in ("cassette", "warnings")}


async def test_a_snapshot_of_a_pipeline_alone_has_no_reference_and_no_cassette(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    snapshot = await create(wire, name="setup only", pipeline=BRIEF, inputs=INPUTS,
                            variables={"tone": "dry"}, settings=PRICED)

    assert snapshot["reference"] is None and snapshot["has_cassette"] is False
    assert snapshot["pipeline"]["source"] == BRIEF["source"]
    assert snapshot["variables"] == {"tone": "dry"} and snapshot["inputs"] == INPUTS
    run = await brief_run(wire)  # the same pipeline and inputs hash the same
    assert snapshot["pipeline"]["hash"] == run["pipeline_hash"]

    invalid = await error(wire, "snapshot.create", {"name": "x", "pipeline": dot("digraph {")})
    assert invalid["code"] == -32005  # as run.start answers an invalid pipeline
    both = await error(wire, "snapshot.create", {"name": "x", "pipeline": BRIEF,
                                                 "run_id": run["run_id"]})
    assert both["code"] == INVALID_PARAMS and "exactly one of" in both["data"][0]["msg"]
    mixed = await error(wire, "snapshot.create", {"name": "x", "run_id": run["run_id"],
                                                  "inputs": {"topic": "waves"}})
    assert "go with `pipeline`" in mixed["data"][0]["msg"]


async def test_recreating_a_name_makes_the_next_version(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    first = await create(wire, name="brief", pipeline=BRIEF, inputs=INPUTS)
    second = await create(wire, name="brief", pipeline=BRIEF, inputs={"topic": "waves"},
                          description="waves now")
    other = await create(wire, name="other", pipeline=OTHER)

    assert [first["version"], second["version"], other["version"]] == [1, 2, 1]
    assert first["id"] != second["id"]
    again = await get(wire, first["id"])  # the first version is as it was
    assert (again["inputs"], again["description"]) == (INPUTS, "")
    assert names(await listing(wire, name="brief")) == [("brief", 2), ("brief", 1)]
    assert names(await listing(wire, latest=True)) == [("other", 1), ("brief", 2)]


async def test_listing_by_tags_name_and_pipeline_with_keyset_pages(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    made = {}
    for name, tags, pipeline in (("a", ["smoke"], BRIEF), ("b", ["smoke", "nightly"], OTHER),
                                 ("c", ["nightly"], BRIEF), ("d", ["smoke", "nightly"], BRIEF)):
        made[name] = await create(wire, name=name, tags=tags, pipeline=pipeline, inputs=INPUTS)

    assert names(await listing(wire)) == [("d", 1), ("c", 1), ("b", 1), ("a", 1)]
    assert names(await listing(wire, tags=["smoke"])) == [("d", 1), ("b", 1), ("a", 1)]
    assert names(await listing(wire, tags=["smoke", "nightly"])) == [("d", 1), ("b", 1)]
    assert names(await listing(wire, tags=["nightly", "smoke"], name="b")) == [("b", 1)]
    assert (await listing(wire, tags=["absent"]))["snapshots"] == []
    assert names(await listing(wire, pipeline="other")) == [("b", 1)]
    brief_hash = made["a"]["pipeline"]["hash"]
    assert names(await listing(wire, pipeline=brief_hash, tags=["nightly"])) == [("d", 1), ("c", 1)]
    summary = (await listing(wire, name="a"))["snapshots"][0]
    assert "source" not in summary["pipeline"] and "inputs" not in summary
    assert summary["invariants"] == 0 and summary["tags"] == ["smoke"]

    seen, cursor = [], None
    while True:  # one at a time: every page after the first starts from a cursor
        page = await listing(wire, tags=["smoke"], limit=1,
                             **({"cursor": cursor} if cursor else {}))
        seen += names(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [("d", 1), ("b", 1), ("a", 1)]
    for cursor in ("not-a-cursor", NOT_A_LIST, TWO_KEYS):
        bad = await error(wire, "snapshot.list", {"cursor": cursor})
        assert (bad["code"], bad["message"]) == (INVALID_PARAMS, "Invalid params: bad cursor")
    many = await error(wire, "snapshot.list", {"tags": [f"t{i}" for i in range(3000)]})
    assert many["code"] == INVALID_PARAMS


async def test_snapshots_are_never_updated(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    snapshot = await create(wire, name="brief", pipeline=BRIEF)

    discovered = await wire.result("rpc.discover")
    methods = sorted(m["name"] for m in discovered["methods"] if m["name"].startswith("snap"))
    assert methods == ["snapshot.create", "snapshot.delete", "snapshot.get", "snapshot.list",
                       "snapshot.replay"]
    assert (await error(wire, "snapshot.update", {"id": snapshot["id"], "name": "x"}))[
        "code"] == METHOD_NOT_FOUND
    schema = json.loads((REPO / "schemas" / "methods" / "snapshot.create.json").read_text())
    params = schema["$defs"]["SnapshotCreateParams"]
    assert schema["properties"]["params"] == {"$ref": "#/$defs/SnapshotCreateParams"}
    assert not {"id", "snapshot_id", "version"} & set(params["properties"])
    assert params["additionalProperties"] is False
    for field in ("id", "version"):  # no way to name the snapshot to overwrite
        refused = await error(wire, "snapshot.create", {"name": "brief", "pipeline": BRIEF,
                                                        field: snapshot[field]})
        assert refused["code"] == INVALID_PARAMS
        assert refused["data"][0]["type"] == "extra_forbidden"
    assert names(await listing(wire)) == [("brief", 1)]
    assert await get(wire, snapshot["id"]) == {k: v for k, v in snapshot.items()
                                               if k != "warnings"}


async def test_a_bad_invariant_is_refused_naming_its_index(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    refused = await error(wire, "snapshot.create", {
        "name": "brief", "pipeline": BRIEF,
        "invariants": [{"type": "run_status"}, {"type": "contains", "value": "x", "path": "n"},
                       {"type": "max_tokenz", "value": 3}]})

    assert refused["code"] == INVALID_PARAMS
    where = [tuple(e["loc"][:2]) for e in refused["data"]]
    assert where == [("invariants", 1), ("invariants", 2)]
    assert (await listing(wire))["snapshots"] == []  # nothing was stored


async def test_delete_needs_confirm_and_keeps_every_run(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief_run(wire)
    snapshot = await create(wire, name="brief", run_id=run["run_id"], tags=["smoke"])
    replayed = await replay(wire, snapshot["id"], mode="recorded")

    refused = await error(wire, "snapshot.delete", {"id": snapshot["id"]})
    assert refused["code"] == INVALID_PARAMS
    assert "pass `confirm: true`" in refused["message"] and "brief v1" in refused["message"]
    assert (await error(wire, "snapshot.delete", {"id": snapshot["id"], "confirm": False}))[
        "code"] == INVALID_PARAMS
    assert (await get(wire, snapshot["id"]))["id"] == snapshot["id"]  # still there

    deleted = published("snapshot.delete", await wire.result(
        "snapshot.delete", {"id": snapshot["id"], "confirm": True}))
    assert deleted == {"id": snapshot["id"], "name": "brief", "version": 1, "deleted": True,
                       "cassette_calls": 3, "runs_kept": 1}
    gone = await error(wire, "snapshot.get", {"id": snapshot["id"]})
    assert gone["code"] == NOT_FOUND
    assert gone["message"].startswith(f"no snapshot {snapshot['id']} (no such id, name")
    assert (await error(wire, "snapshot.delete", {"id": snapshot["id"], "confirm": True}))[
        "code"] == NOT_FOUND
    assert (await listing(wire, tags=["smoke"]))["snapshots"] == []
    for run_id in (run["run_id"], replayed["run_id"]):  # both runs remain, as they were
        kept = await wire.result("run.get", {"run_id": run_id})
        assert kept["status"] == "completed"
    assert (await wire.result("run.get", {"run_id": replayed["run_id"]}))["snapshot_id"] == \
        snapshot["id"]
    for table in ("snapshots", "snapshot_tags", "snapshot_calls"):
        assert db_rows(daemon.home, f"SELECT COUNT(*) FROM {table}") == [(0,)]


async def test_reeval_takes_a_snapshots_invariants_and_checks_drift(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await brief_run(wire)
    snapshot = await create(wire, name="brief", run_id=run["run_id"], invariants=CHECKS)

    same = await wire.result("run.reeval", {"run_id": run["run_id"],
                                            "snapshot_id": snapshot["id"]})
    assert same["verdict"] == "passed" and same["counts"]["passed"] == 3
    assert [r["type"] for r in same["results"]] == ["run_status", "contains", "max_cost_usd"]
    assert [(d["subject"], d["drifted"]) for d in same["drift"]] == [
        ("pipeline", False), ("inputs", False)]
    assert same["warnings"] == []

    waves = await brief_run(wire, inputs={"topic": "waves"})  # another scenario
    drifted = await wire.result("run.reeval", {"run_id": waves["run_id"],
                                               "snapshot_id": snapshot["id"]})
    assert [(d["subject"], d["drifted"]) for d in drifted["drift"]] == [
        ("pipeline", True), ("inputs", True)]
    assert drifted["verdict"] == "passed" and len(drifted["warnings"]) == 2
    strict = await wire.result("run.reeval", {"run_id": waves["run_id"], "strict_scenario": True,
                                              "snapshot_id": snapshot["id"]})
    assert strict["verdict"] == "failed"
    # Inputs given explicitly replace the snapshot's as what the run is checked against.
    given = await wire.result("run.reeval", {"run_id": waves["run_id"], "inputs": {
        "topic": "waves"}, "snapshot_id": snapshot["id"]})
    assert [(d["subject"], d["drifted"]) for d in given["drift"]] == [
        ("pipeline", True), ("inputs", False)]

    unknown = await error(wire, "run.reeval", {"run_id": run["run_id"],
                                               "snapshot_id": "01a20000-0000-7000-8000-0000"})
    assert unknown["code"] == NOT_FOUND and "no snapshot" in unknown["message"]


async def test_a_running_or_unknown_run_cannot_be_snapshotted(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    unknown = await error(wire, "snapshot.create", {"name": "x", "run_id": "nope"})
    assert (unknown["code"], unknown["message"]) == (NOT_FOUND, "no run nope")
    gate = dot("""digraph gate { start [shape=Mdiamond]; ask [shape=hexagon, label="Go?"];
                  done [shape=Msquare]; start -> ask; ask -> done [label="[Y] Yes"] }""")
    waiting = await wire.result("run.start", {"pipeline": gate})
    busy = await error(wire, "snapshot.create", {"name": "x", "run_id": waiting["run_id"]})
    assert busy["code"] == CONFLICT and "once it has ended" in busy["message"]
    await wire.result("run.cancel", {"run_id": waiting["run_id"]})


async def test_a_metadata_only_run_gives_a_snapshot_without_cassette(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    quiet = await brief_run(wire, record="metadata_only")

    snapshot = await create(wire, name="quiet", run_id=quiet["run_id"])
    assert snapshot["has_cassette"] is False and snapshot["cassette_calls"] == 0
    assert "recorded metadata_only" in snapshot["warnings"][0]
    assert snapshot["reference"]["metrics"]["cost_usd"] == 65.0
    refused = await error(wire, "snapshot.create", {"name": "quiet", "run_id": quiet["run_id"],
                                                    "with_cassette": True})
    assert refused["code"] == CONFLICT and "no responses" in refused["message"]
    bare = await create(wire, name="bare", run_id=(await brief_run(wire))["run_id"],
                        with_cassette=False)
    assert bare["has_cassette"] is False and bare["warnings"] == []
    assert bare["pipeline"]["source"] == BRIEF["source"]
