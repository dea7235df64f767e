"""Secrets in snapshots: a canary planted in the daemon's environment, the inputs, the
variables and the settings is in no snapshot a daemon answers with, no row of its database
and no file under its home; the snapshot says [redacted] where it was, and still replays."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .runs_support import dot
from .snapshots_support import create, get, replay
from .support import DaemonProcess, start_daemon

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
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    os.environ.update(ENVIRONMENT)
    try:
        daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    yield daemon
    if daemon.process.returncode is None:
        assert await daemon.stop() == 0


async def test_no_snapshot_keeps_a_secret(canary_daemon: DaemonProcess) -> None:
    wire = await canary_daemon.connect()
    run = await wire.result("run.start", {**PARAMS, "wait": True})
    assert (run["status"], run["outcome"]) == ("completed", "success"), run

    of_run = await create(wire, run_id=run["run_id"], name="canary", tags=["secrets"])
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
    assert await canary_daemon.stop() == 0

    written = [p for p in canary_daemon.home.rglob("*") if p.is_file()]
    assert any(p.name == "ostinato.db" for p in written)
    assert [str(p) for p in written if CANARY.encode() in p.read_bytes()] == []
