"""run.prune through a real daemon and its real store: it removes exactly what it says (rows,
trace, events, directories), a dry run changes nothing, and what a snapshot, a stored test
run or an active run needs stays; `keep` keeps the newest; the disk is given back. And
`ostinato prune` as a subprocess."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .runs_support import (
    FAST,
    blocking,
    dot,
    make_fifo,
    next_event,
    of_type,
    read_fifo,
    run_to_end,
)
from .snapshots_support import NOT_FOUND, create
from .support import DaemonProcess, Wire, published, start_daemon
from .test_runs_manager import child_file, parent
from .test_snapshots_replay import GATE
from .test_tests_run_cli import ostinato
from .tests_run_support import priced, run_tests, snapshot

INVALID_PARAMS = -32602
# A run whose model answers 20 kB: rows that fill pages, so that their removal frees some.
BULKY = dot("""\
    digraph bulky {
        start [shape=Mdiamond]
        say [prompt="Say a lot"]
        done [shape=Msquare]
        start -> say -> done
    }""")
BULKY_SETTINGS = {**FAST, "providers": {"scripted": {"responses": {"say": "tide " * 4000}}}}
TABLES = ("runs", "stages", "calls", "events")


def rows_of(home: Path, run_ids: list[str]) -> dict[str, int]:
    """Rows of these runs in each run table, read from the store file itself."""
    marks = ", ".join("?" * len(run_ids))
    with sqlite3.connect(f"file:{home / 'ostinato.db'}?mode=ro", uri=True) as db:
        return {table: db.execute(
            f"SELECT COUNT(*) FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} "
            f"IN ({marks})", run_ids).fetchone()[0] for table in TABLES}


def store_size(home: Path) -> int:
    """The database file and its WAL, in bytes."""
    return sum(path.stat().st_size for path in home.glob("ostinato.db*")
               if not path.name.endswith("-shm"))


def home_bytes(home: Path) -> int:
    """What the home takes on disk."""
    return sum(path.lstat().st_blocks * 512 for path in home.rglob("*"))


async def prune(wire: Wire, **params: Any) -> dict[str, Any]:
    """run.prune, answered with a result that matches its schema."""
    return published("run.prune", await wire.result("run.prune", params))


async def test_prune_removes_what_it_says_and_keeps_what_is_needed(
        daemon: DaemonProcess, short_tmp: Path) -> None:
    wire = await daemon.connect()
    plain = await run_to_end(wire, BULKY, settings=BULKY_SETTINGS)
    trial_set = await wire.result("run.start", {"pipeline": BULKY, "settings": BULKY_SETTINGS,
                                                "trials": 3, "wait": True})
    trials = [trial["run_id"] for trial in trial_set["trial_runs"]]
    referenced = await run_to_end(wire, BULKY, settings=BULKY_SETTINGS)
    made = await create(wire, name="kept-by-snapshot", run_id=referenced["run_id"])
    tests = await snapshot(wire, "tested", priced("tested", 1))
    tested = await run_tests(wire, snapshot_ids=[tests["id"]], mode="live")
    replayed = tested["snapshots"][0]["run_ids"][0]
    fifo = make_fifo(short_tmp / "fifo")
    active = await wire.result("run.start", {"pipeline": blocking(fifo), "settings": FAST})
    await read_fifo(fifo)
    gone = [plain["run_id"], *trials]
    home = daemon.home
    before = home_bytes(home)
    counted = rows_of(home, gone)
    assert all(counted.values()), counted

    planned = await prune(wire, keep=0, dry_run=True)
    assert sorted(planned["removed"]) == sorted(gone)
    assert planned["trial_sets"] == [trial_set["trial_set_id"]]
    assert planned["bytes"]["run_dirs"] > 0 and planned["bytes"]["store"] is None
    kept = {entry["run_id"]: (entry["reason"], entry["by"]) for entry in planned["kept"]}
    assert kept == {referenced["run_id"]: ("snapshot", made["id"]),
                    replayed: ("test_run", tested["test_run_id"]),
                    active["run_id"]: ("active", None)}
    assert rows_of(home, gone) == counted  # a dry run changes nothing
    assert all((home / "runs" / run_id).is_dir() for run_id in gone)

    done = await prune(wire, keep=0)
    assert sorted(done["removed"]) == sorted(gone)
    assert done["kept"] == planned["kept"]
    assert rows_of(home, gone) == dict.fromkeys(TABLES, 0)
    assert not any((home / "runs" / run_id).exists() for run_id in gone)
    assert not (home / "trials" / trial_set["trial_set_id"]).exists()
    for run_id in gone:
        reply = await wire.request("run.get", {"run_id": run_id})
        assert reply["error"]["code"] == NOT_FOUND
    reply = await wire.request("trials.get", {"trial_set_id": trial_set["trial_set_id"]})
    assert reply["error"]["code"] == NOT_FOUND
    assert done["bytes"]["run_dirs"] == planned["bytes"]["run_dirs"]
    assert done["bytes"]["store"] > 0 and done["compaction"] == "incremental"
    assert home_bytes(home) < before
    for run_id in (referenced["run_id"], replayed, active["run_id"]):
        assert (await wire.result("run.get", {"run_id": run_id}))["run_id"] == run_id
        assert (home / "runs" / run_id).is_dir()
    await wire.result("snapshot.replay", {"id": made["id"], "mode": "recorded", "wait": True})
    await wire.result("run.cancel", {"run_id": active["run_id"]})
    await wire.close()


async def test_keep_keeps_the_newest_and_before_the_newer(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    runs = [(await run_to_end(wire, BULKY))["run_id"] for _ in range(4)]
    third = (await wire.result("run.get", {"run_id": runs[2]}))["created_at"]

    assert (await prune(wire, before=third, keep=3))["removed"] == runs[:1]
    assert (await prune(wire, before=third))["removed"] == runs[1:2]
    assert (await prune(wire, keep=1))["removed"] == runs[2:3]
    listed = await wire.result("run.list", {})
    assert [run["run_id"] for run in listed["runs"]] == runs[3:]
    assert (await prune(wire, keep=1))["removed"] == []
    await wire.close()


async def test_a_trial_set_that_ran_no_trial_is_pruned(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    # Early stop with a threshold of 0: decided before any trial starts.
    empty = await wire.result("run.start", {"pipeline": BULKY, "settings": FAST, "trials": 3,
                                            "early_stop": True, "pass_threshold": 0,
                                            "wait": True})
    assert empty["trial_runs"] == [] or all(
        trial["run_id"] is None for trial in empty["trial_runs"])
    assert (await prune(wire, keep=0))["trial_sets"] == [empty["trial_set_id"]]
    missing = await wire.request("trials.get", {"trial_set_id": empty["trial_set_id"]})
    assert missing["error"]["code"] == NOT_FOUND
    await wire.close()


async def test_prune_needs_a_selection_and_a_date(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    for params in ({}, {"dry_run": True}, {"before": "last tuesday"}, {"keep": -1}):
        reply = await wire.request("run.prune", params)
        assert reply["error"]["code"] == INVALID_PARAMS, (params, reply)
    await wire.close()


async def test_cli_says_what_goes_and_what_stays(daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    old = [(await run_to_end(wire, BULKY))["run_id"] for _ in range(2)]
    referenced = (await run_to_end(wire, BULKY))["run_id"]
    made = await create(wire, name="cli-kept", run_id=referenced)
    socket = ("--socket", daemon.socket)

    code, out, err = await ostinato("prune", "--keep", "0", "--dry-run", *socket, cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["would remove 2 run(s):", f"  {old[0]}", f"  {old[1]}"]
    assert f"kept {referenced}: snapshot {made['id']} was made from it" in lines
    assert lines[-1].startswith("would give back ")
    assert all((daemon.home / "runs" / run_id).is_dir() for run_id in old)

    code, out, err = await ostinato("prune", "--keep", "0", "--json", *socket, cwd=tmp_path)
    assert code == 0, err
    result = json.loads(out)
    assert result["removed"] == old and not result["dry_run"]
    assert [kept["run_id"] for kept in result["kept"]] == [referenced]
    assert not any((daemon.home / "runs" / run_id).exists() for run_id in old)

    code, out, err = await ostinato("prune", "--before", "someday", "--json", *socket,
                                    cwd=tmp_path)
    assert code == 2 and "not an ISO date" in err
    assert json.loads(out)["error"]["code"] == INVALID_PARAMS
    code, out, err = await ostinato("prune", "--json", *socket, cwd=tmp_path)
    assert (code, json.loads(out)["error"]["code"]) == (2, "usage"), err
    code, out, err = await ostinato("prune", "--keep", "1", "--json", "--socket",
                                    str(tmp_path / "nobody.sock"), cwd=tmp_path)
    assert (code, json.loads(out)["error"]["code"]) == (3, "unreachable"), err
    await wire.close()


async def test_a_run_and_its_children_go_or_stay_together(daemon: DaemonProcess,
                                                          short_tmp: Path) -> None:
    wire = await daemon.connect()
    family = await run_to_end(wire, parent(child_file(short_tmp)))
    [child] = family["children"]
    made = await create(wire, name="the-child", run_id=child)

    kept = await prune(wire, keep=0)
    assert kept["removed"] == []
    assert kept["kept"] == [{"run_id": child, "trial_set_id": None, "runs": 2,
                             "reason": "snapshot", "by": made["id"]}]
    await wire.result("snapshot.delete", {"id": made["id"], "confirm": True})
    assert (await prune(wire, keep=0))["removed"] == [family["run_id"], child]
    assert rows_of(daemon.home, [family["run_id"], child]) == dict.fromkeys(TABLES, 0)
    await wire.close()


async def test_a_store_made_before_incremental_vacuum_is_rewritten_once(
        short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir()
    # As an earlier version made it: WAL mode, tables without auto_vacuum.
    sqlite3.connect(home / "ostinato.db").execute("PRAGMA journal_mode=WAL").close()
    daemon = await start_daemon(home, "--socket", str(short_tmp / "d.sock"))
    wire = await daemon.connect()
    bulkier = {**FAST, "providers": {"scripted": {"responses": {"say": "tide " * 20000}}}}
    await wire.result("run.start", {"pipeline": BULKY, "settings": bulkier, "trials": 12,
                                    "wait": True})
    before = store_size(home)

    done = await prune(wire, keep=0)
    assert len(done["removed"]) == 12 and done["compaction"] == "vacuum"
    assert done["bytes"]["store"] > 0 and store_size(home) < before
    await wire.close()
    assert await daemon.stop() == 0
    with sqlite3.connect(home / "ostinato.db") as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on


async def test_the_recording_of_a_resumable_replay_stays(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    recorded = await run_to_end(wire, GATE, settings={**FAST, "human": {"auto_approve": True}})
    replay = await wire.result("run.start", {
        "replay": {"from_run": recorded["run_id"], "mode": "recorded"},
        "settings": {**FAST, "human": {"auto_approve": False}}})  # it stops at the gate
    await next_event(wire, of_type("InterviewStarted", stage="review"))
    cancelled = await wire.result("run.cancel", {"run_id": replay["run_id"]})
    assert cancelled["resumable"]
    started = (await wire.result("run.get", {"run_id": replay["run_id"]}))["created_at"]

    kept = await prune(wire, before=started)  # the replay is newer: it stays, resumable
    assert kept["removed"] == []
    assert [(k["run_id"], k["reason"], k["by"]) for k in kept["kept"]] == [
        (recorded["run_id"], "replay", replay["run_id"])]
    assert (await prune(wire, keep=0))["removed"] == [recorded["run_id"], replay["run_id"]]
    await wire.close()
