"""A test run cut off by its daemon's death (SIGKILL) or stop (SIGTERM) keeps the results
of the snapshots that finished; the next daemon reports it `interrupted`."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from .runs_support import blocking, make_fifo, read_fifo
from .support import Wire, start_daemon
from .tests_run_support import CALL_USD, priced, snapshot, statuses


async def _finished_events(wire: Wire, count: int) -> list[dict[str, Any]]:
    """Wait for `count` SnapshotFinished events on `wire`."""
    finished: list[dict[str, Any]] = []
    while len(finished) < count:
        message = await wire.recv()
        if message.get("method") == "tests/event" and \
                message["params"]["type"] == "SnapshotFinished":
            finished.append(message["params"]["data"])
    return finished


@pytest.mark.parametrize("stop", ["kill", "term"])
async def test_a_test_run_cut_off_keeps_the_snapshots_that_finished(
        short_tmp: Path, stop: str, executor: str) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    fifo = make_fifo(short_tmp / "announce")
    first = await start_daemon(home, "--socket", socket, "--executor", executor)
    wire = await first.connect()
    made = [await snapshot(wire, "cut-first", priced("cutfirst", 2)),
            await snapshot(wire, "cut-blocked", blocking(fifo)),
            await snapshot(wire, "cut-never", priced("cutnever", 1))]
    # One at a time: the third has not started when the daemon stops.
    started = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                              "mode": "live", "concurrency": 1})
    [done] = await _finished_events(wire, 1)
    assert done["status"] == "passed"
    pid = int(await read_fifo(fifo))  # the second snapshot's replay is running
    if stop == "kill":
        first.process.kill()
        await first.stop()
    else:
        assert await first.stop() == 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        kept = await wire.result("tests.get", {"test_run_id": started["test_run_id"]})
        listed = await wire.result("tests.list", {"status": ["interrupted"]})
        # The cut-off snapshot names the run it started, even after a SIGKILL, and that
        # run is there (interrupted, resumable).
        [cut] = kept["snapshots"][1]["run_ids"]
        cut_run = await wire.result("run.get", {"run_id": cut})
    finally:
        assert await second.stop() == 0
    assert kept["status"] == "interrupted"
    assert statuses(kept) == ["passed", "skipped", "skipped"]
    assert kept["snapshots"][0] == done  # exactly what finished, as it finished
    assert kept["snapshots"][0]["cost_usd"] == pytest.approx(2 * CALL_USD)
    assert kept["total_cost_usd"] == pytest.approx(2 * CALL_USD)
    assert "daemon stopped" in kept["snapshots"][1]["message"]
    assert cut != done["run_ids"][0] and cut_run["status"] == "interrupted"
    assert kept["summary"] == {"total": 3, "passed": 1, "failed": 0, "errors": 0,
                               "skipped": 2, "budget_exceeded": 0}
    assert [t["test_run_id"] for t in listed["test_runs"]] == [started["test_run_id"]]
