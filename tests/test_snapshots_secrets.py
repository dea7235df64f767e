"""Secrets in snapshots: a canary planted in the daemon's environment, the inputs, the
variables and the settings is in no snapshot a daemon answers with, no test run or report
of it, no row of its database and no file under its home; the snapshot says [redacted] where
it was, and still replays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .runs_support import dot
from .snapshots_support import create, get, replay
from .support import DaemonProcess, daemon_with_environment

CANARY = "cnry-5e2a-snapshots-77"
ENVIRONMENT = {"OST_SNAP_API_KEY": CANARY, "OST_SNAP_TOKEN": CANARY}
PIPELINE = dot("""
    digraph canary {
        start [shape=Mdiamond]
        ask   [prompt="Repeat after me: $api_token and $secret_word"]
        shell [shape=parallelogram, tool_command="echo token=$OST_SNAP_TOKEN"]
        tell  [prompt="Tell"]
        done  [shape=Msquare]
        start -> ask -> shell -> tell -> done
    }
""")
PARAMS = {"pipeline": PIPELINE, "inputs": {"api_token": CANARY, "topic": "release"},
          "variables": {"secret_word": CANARY},
          "settings": {"providers": {"scripted": {"responses": {"tell": f"it is {CANARY}"}}}}}


@pytest.fixture
async def canary_daemon(short_tmp: Path) -> AsyncIterator[DaemonProcess]:
    async with daemon_with_environment(short_tmp, ENVIRONMENT) as daemon:
        yield daemon


async def test_no_snapshot_keeps_a_secret(canary_daemon: DaemonProcess) -> None:
    wire = await canary_daemon.connect()
    run = await wire.result("run.start", {**PARAMS, "wait": True})
    assert (run["status"], run["outcome"]) == ("completed", "success"), run

    of_run = await create(wire, run_id=run["run_id"], name="canary", tags=["secrets"],
                          invariants=[{"type": "contains", "path": "node.tell",
                                       "value": "it is"}])
    of_pipeline = await create(wire, name="canary setup", **PARAMS)
    answers = [of_run, of_pipeline, await get(wire, of_run["id"], include_cassette=True),
               await get(wire, of_pipeline["id"]),
               await wire.result("snapshot.list", {"tags": ["secrets"]})]
    assert all(CANARY not in str(answer) for answer in answers)
    for snapshot in (of_run, of_pipeline):
        assert snapshot["inputs"] == {"api_token": "[redacted]", "topic": "release"}
        assert snapshot["variables"] == {"secret_word": "[redacted]"}
        assert snapshot["settings"]["providers"]["scripted"]["responses"] == {
            "tell": "it is [redacted]"}
    cassette = {call["node_id"]: call for call in answers[2]["cassette"]}
    assert cassette["ask"]["request"]["messages"][-1]["content"] == \
        "Repeat after me: [redacted] and [redacted]"
    assert cassette["shell"]["response"]["stdout"] == "token=[redacted]\n"

    # The redacted inputs ask what the recording (redacted alike) holds: replayable.
    replayed = await replay(wire, of_run["id"], mode="recorded")
    assert (replayed["status"], replayed["cost_usd"]) == ("completed", 0.0), replayed
    # A test run of it, its stored results and its reports: the checks saw the redacted text.
    tested = await wire.result("tests.run", {"tags": ["secrets"], "trials": 2, "wait": True})
    assert tested["status"] == "passed", tested
    assert tested["snapshots"][0]["invariants"][0]["trials"][0]["actual"] == "it is [redacted]"
    reports = [await wire.result("tests.report", {"test_run_id": tested["test_run_id"],
                                                  "format": form})
               for form in ("junit", "markdown", "html")]
    assert all(CANARY not in str(answer) for answer in [tested, *reports])
    assert await canary_daemon.stop() == 0

    written = [p for p in canary_daemon.home.rglob("*") if p.is_file()]
    assert any(p.name == "ostinato.db" for p in written)
    assert [str(p) for p in written if CANARY.encode() in p.read_bytes()] == []
