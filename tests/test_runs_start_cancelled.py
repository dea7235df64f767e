"""A run's start whose caller is cancelled while the run's row commits with other runs'
writes: a write that joined a group commit is committed all the same, so the run must end
`cancelled` and resumable, not stay `running` with nothing left to end it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.runs.options import RunOptions
from ostinato.daemon.store.runs import RunStore
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

from .inprocess import InProcessDaemon
from .runs_support import blocking, make_fifo, read_fifo
from .tests_run_support import priced

pytestmark = pytest.mark.in_process


async def test_a_start_cancelled_while_its_row_commits_ends_the_run_cancelled(
        daemon: InProcessDaemon, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wire = await daemon.connect()
    services = daemon.daemon.services
    assert services is not None
    # A run running beside it, so that the next run's row joins a group commit.
    fifo = make_fifo(short_tmp / "announce")
    beside = await wire.result("run.start", {"pipeline": blocking(fifo)})
    await read_fifo(fifo)
    add_run = RunStore.add_run

    async def cancelled_meanwhile(store: RunStore, **row: Any) -> None:
        current = asyncio.current_task()
        assert current is not None
        current.cancel()  # reaches the start once its row has joined the group
        await add_run(store, **row)

    monkeypatch.setattr(RunStore, "add_run", cancelled_meanwhile)
    pipeline = priced("late", 1)
    starting = asyncio.ensure_future(services.runner.start(
        PipelineRef(source=pipeline["source"], format="dot"), {}, {}, RunSettings(),
        RunOptions()))
    with pytest.raises(asyncio.CancelledError):
        await starting
    monkeypatch.undo()

    runs = (await wire.result("run.list", {}))["runs"]
    [late] = [run for run in runs if run["run_id"] != beside["run_id"]]
    assert late["status"] == "cancelled"
    detail = await wire.result("run.get", {"run_id": late["run_id"]})
    assert detail["resumable"] and detail["failure_reason"] == "cancelled before it started"
    manifest = json.loads((daemon.home / "runs" / late["run_id"] / "manifest.json")
                          .read_bytes())
    assert (manifest["status"], manifest["resumable"]) == ("cancelled", True)
    # Resumed, it starts over and completes, as any run cancelled before its first node.
    resumed = await wire.result("run.resume", {"run_id": late["run_id"], "wait": True})
    assert resumed["status"] == "completed"
    await wire.result("run.cancel", {"run_id": beside["run_id"]})
