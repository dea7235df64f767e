"""run.list filters and pages; run.start with `wait` reports progress."""

from __future__ import annotations

import pytest

from .inprocess import InProcessDaemon
from .runs_support import NOT_A_LIST, ONE_KEY, dot

pytestmark = pytest.mark.in_process


OK = dot("""digraph ok { start [shape=Mdiamond]; a [prompt="a"]; exit [shape=Msquare];
            start -> a -> exit }""")
BAD = dot("""digraph bad { start [shape=Mdiamond]; a [prompt="a", scripted.status=fail];
             exit [shape=Msquare]; start -> a -> exit }""")


async def test_runs_are_listed_newest_first_filtered_and_paged(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    ids = []
    for pipeline in (OK, BAD, OK, OK, BAD):
        ids.append((await wire.result("run.start", {"pipeline": pipeline, "wait": True}))
                   ["run_id"])
    pages, cursor = [], None
    while True:
        page = await wire.result("run.list", {"limit": 2, **({"cursor": cursor} if cursor
                                                             else {})})
        pages.append([r["run_id"] for r in page["runs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [ids[::-1][0:2], ids[::-1][2:4], ids[::-1][4:5]]
    failed = await wire.result("run.list", {"status": ["failed"]})
    assert [r["run_id"] for r in failed["runs"]] == [ids[4], ids[1]]
    by_name = await wire.result("run.list", {"pipeline": "ok"})
    assert [r["run_id"] for r in by_name["runs"]] == [ids[3], ids[2], ids[0]]
    third = (await wire.result("run.get", {"run_id": ids[2]}))["created_at"]
    since = await wire.result("run.list", {"since": third})
    assert [r["run_id"] for r in since["runs"]] == [ids[4], ids[3], ids[2]]
    until = await wire.result("run.list", {"until": third})
    assert [r["run_id"] for r in until["runs"]] == [ids[1], ids[0]]
    # Not base64, then base64 of JSON that is not a cursor's list of keys.
    for cursor in ("not-a-cursor", NOT_A_LIST, ONE_KEY):
        bad_cursor = await wire.request("run.list", {"cursor": cursor})
        assert bad_cursor["error"]["code"] == -32602, cursor


async def test_a_waiting_start_reports_stages_as_progress(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    run = await wire.result("run.start", {"pipeline": OK, "wait": True,
                                          "workDoneToken": "w1"})
    values = [n["params"]["value"] for n in wire.notifications
              if n["method"] == "$/progress" and n["params"]["token"] == "w1"]
    assert values[0]["kind"] == "begin" and run["run_id"] in values[0]["title"]
    assert [v["message"] for v in values if v["kind"] == "report"] == [
        "StageCompleted: start", "StageCompleted: a", "StageCompleted: exit"]
    assert values[-1]["kind"] == "end"


async def test_unknown_runs_are_not_found(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    for method in ("run.get", "run.cancel", "run.resume"):
        reply = await wire.request(method, {"run_id": "01a20000-0000-7000-8000-000000000000"})
        assert reply["error"]["code"] == -32001, (method, reply)
