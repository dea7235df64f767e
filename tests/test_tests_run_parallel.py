"""tests.run with snapshots side by side: `concurrency` is the limit of the test run's runs
in flight, so with one trial each that many snapshots run at once, in order; a failure with
stop_on_first_failure, a spent budget and a cancel each stop what had not started."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.store.runs import RunStore

from .inprocess import InProcessDaemon
from .runs_support import dot, make_fifo, read_fifo
from .support import Wire
from .tests_run_support import (
    CALL_USD,
    FAILS,
    PRICED,
    priced,
    run_tests,
    snapshot,
    statuses,
)

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]


def held(name: str, fifo: Path, go: Path) -> dict[str, str]:
    """A pipeline whose tool announces itself in `fifo`, then waits until `go` exists."""
    return dot(f"""\
        digraph {name} {{
            start [shape=Mdiamond]
            hold [shape=parallelogram, tool_command="echo $$ > {fifo}; \\
                  while ! test -e {go}; do sleep 0.01; done"]
            done [shape=Msquare]
            start -> hold -> done
        }}""")


async def events_until(wire: Wire, until: str, count: int = 1) -> list[dict[str, Any]]:
    """The `tests/event`s on `wire` (those kept while it awaited answers first) up to the
    `count`th of type `until`; they are consumed."""
    events: list[dict[str, Any]] = []
    while sum(e["type"] == until for e in events) < count:
        message = wire.notifications.pop(0) if wire.notifications else await wire.recv()
        if message.get("method") == "tests/event":
            events.append(message["params"])
    return events


async def test_snapshots_run_side_by_side_up_to_the_concurrency(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    go = short_tmp / "go"
    fifos = [make_fifo(short_tmp / f"announce{i}") for i in range(3)]
    made = [await snapshot(wire, f"side-{i}", held(f"side{i}", fifo, go))
            for i, fifo in enumerate(fifos)]
    started = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                              "mode": "live", "concurrency": 2})
    await read_fifo(fifos[0])
    await read_fifo(fifos[1])  # the first two hold at once
    now = await wire.result("tests.get", {"test_run_id": started["test_run_id"]})
    assert statuses(now) == ["running", "running", "pending"]
    running = await wire.result("run.list", {"status": ["running"]})
    assert len(running["runs"]) == 2  # never more runs in flight than `concurrency`
    go.touch()
    await read_fifo(fifos[2])  # the third starts once a lane is free, and passes
    events = await events_until(wire, "TestRunFinished")
    ended = await wire.result("tests.get", {"test_run_id": started["test_run_id"]})
    assert ended["status"] == "passed"
    assert statuses(ended) == ["passed"] * 3
    # The events of the two that ran together, as they came: both started before either
    # finished; each snapshot's start comes before its end; seq counts them all.
    assert [(e["type"], e["data"].get("index")) for e in events][:2] == [
        ("SnapshotStarted", 0), ("SnapshotStarted", 1)]
    assert [e["seq"] for e in events] == list(range(1, 8))
    order = [(e["type"], e["data"].get("index")) for e in events]
    for index in range(3):
        assert order.index(("SnapshotStarted", index)) < order.index(("SnapshotFinished",
                                                                        index))
    finished = {e["data"]["index"]: e["data"] for e in events if e["type"] == "SnapshotFinished"}
    assert [finished[i] for i in range(3)] == ended["snapshots"]


async def test_stop_on_first_failure_lets_the_running_snapshot_finish(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    fifo, go = make_fifo(short_tmp / "announce"), short_tmp / "go"
    made = [await snapshot(wire, "sof-held", held("sofheld", fifo, go)),
            await snapshot(wire, "sof-fails", priced("soffails", 1), invariants=FAILS),
            await snapshot(wire, "sof-later", priced("soflater", 1))]
    started = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                              "mode": "live", "concurrency": 2,
                                              "stop_on_first_failure": True})
    await read_fifo(fifo)
    # The second fails while the first holds; the third may not start after it.
    events = await events_until(wire, "SnapshotFinished")
    assert events[-1]["data"]["index"] == 1 and events[-1]["data"]["status"] == "failed"
    go.touch()
    ended = await wire.result("tests.get", {"test_run_id": started["test_run_id"],
                                            "wait": True})
    assert ended["status"] == "failed"
    assert statuses(ended) == ["passed", "failed", "skipped"]
    assert ended["snapshots"][2]["run_ids"] == []
    assert "stop_on_first_failure" in ended["snapshots"][2]["message"]
    assert "sof-fails" in ended["message"]


async def test_a_budget_shared_by_snapshots_side_by_side(daemon: InProcessDaemon,
                                                         executor: str) -> None:
    wire = await daemon.connect()
    # Six snapshots of three $1 calls, two at a time, under $3.50: the fourth call spends it,
    # when at most three snapshots had started (one finished at most); the rest never start.
    # A call takes 20 ms: longer than a worker's run takes to learn the budget is spent.
    slow = {**PRICED, "providers": {"scripted": {"type": "scripted", "latency_ms": 20}}}
    made = [await snapshot(wire, f"pair-{i}", priced(f"pair{i}"), settings=slow)
            for i in range(6)]
    limit = 3.5
    result = await run_tests(wire, snapshot_ids=[s["id"] for s in made], mode="live",
                             cost_limit_usd=limit, concurrency=2)
    assert result["status"] == "budget_exceeded"
    assert "budget" in result["message"]
    found = statuses(result)
    assert found[3:] == ["skipped"] * 3
    # Each snapshot running passes the limit by its call in flight at most; on workers by
    # one call more, made before the daemon's word that the budget is spent reaches it.
    in_flight = 2 if executor == "inline" else 4
    assert limit <= result["total_cost_usd"] <= limit + in_flight * CALL_USD
    assert result["total_cost_usd"] == pytest.approx(
        sum(s["cost_usd"] for s in result["snapshots"]))
    for shown in result["snapshots"]:  # what ran is whole, or cut short by the budget
        assert shown["status"] in ("passed", "budget_exceeded", "skipped")
        if shown["status"] == "passed":
            assert shown["cost_usd"] == pytest.approx(3 * CALL_USD)
        elif shown["status"] == "budget_exceeded":
            assert shown["cost_usd"] < 3 * CALL_USD and len(shown["run_ids"]) == 1
        else:
            assert shown["run_ids"] == [] and "budget" in shown["message"]


@pytest.mark.parametrize("waiting", [True, False], ids=["one-waiting", "all-started"])
async def test_cancel_stops_every_replay_in_progress(daemon: InProcessDaemon,
                                                     short_tmp: Path, waiting: bool) -> None:
    """With a third snapshot waiting for a lane, and with every snapshot started."""
    wire = await daemon.connect()
    go = short_tmp / "go"  # never made: only the cancel ends these runs
    fifos = [make_fifo(short_tmp / f"announce{i}") for i in range(2)]
    made = [await snapshot(wire, f"cut-{i}", held("cutheld", fifo, go))
            for i, fifo in enumerate(fifos)]
    if waiting:
        made.append(await snapshot(wire, "cut-never", priced("cutnever", 1)))
    started = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                              "mode": "live", "concurrency": 2})
    for fifo in fifos:
        await read_fifo(fifo)
    cancelled = await wire.result("tests.cancel", {"test_run_id": started["test_run_id"]})
    assert cancelled["status"] == "cancelled"
    assert statuses(cancelled) == ["skipped"] * len(made)
    held_runs = (await wire.result("run.list", {"pipeline": "cutheld"}))["runs"]
    assert {r["status"] for r in held_runs} == {"cancelled"} and len(held_runs) == 2
    # Each cut-off snapshot names the run it had started; the third started none.
    named = [s["run_ids"] for s in cancelled["snapshots"]]
    assert sorted(run for ids in named[:2] for run in ids) == sorted(
        r["run_id"] for r in held_runs)
    assert named[2:] == ([[]] if waiting else [])
    assert all("cancelled" in s["message"] for s in cancelled["snapshots"])


async def test_a_cancel_while_a_replay_starts_stops_that_replay_too(
        daemon: InProcessDaemon, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancel lands while a snapshot's run is being created, its row committing with
    other writes (a write that joined a group commit is committed, whatever happens to its
    caller): the run is still cancelled and named with the rest, never left running."""
    wire = await daemon.connect()
    go = short_tmp / "go"  # never made: these runs end only when cancelled
    made = [await snapshot(wire, f"race-{i}", held("race", short_tmp / f"pid{i}", go))
            for i in range(2)]
    services = daemon.daemon.services
    assert services is not None
    add_run = RunStore.add_run
    cancelling: list[asyncio.Task[Any]] = []
    cancelled_now = asyncio.Event()

    async def committed_whatever_happens(store: RunStore, **row: Any) -> None:
        writing = asyncio.ensure_future(add_run(store, **row))
        if not cancelling:  # the first run's row: tests.cancel reaches its test run now
            [test_run] = services.tests.active.values()
            cancelling.append(asyncio.ensure_future(services.tests.cancel(test_run.id)))
            cancelled_now.set()
        await asyncio.shield(writing)

    monkeypatch.setattr(RunStore, "add_run", committed_whatever_happens)
    started = await wire.result("tests.run", {"snapshot_ids": [s["id"] for s in made],
                                              "mode": "live", "concurrency": 2})
    await cancelled_now.wait()
    cancelled = await cancelling[0]
    assert (cancelled.id, cancelled.status) == (started["test_run_id"], "cancelled")
    runs = (await wire.result("run.list", {}))["runs"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"cancelled"}
    named = {run for result in cancelled.results for run in result.run_ids}
    assert {r["run_id"] for r in runs} <= named  # every run it started, named
