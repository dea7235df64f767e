"""A run's store sink commits its stages in batches (decision 0007, inline and on workers):
the run never waits for a commit, a checkpoint is written after the commit holding its
stage, CheckpointSaved is published after its checkpoint, and a failed commit stops the run
at its next stage. A fake store stands in for sqlite: what each transaction held is kept."""

from __future__ import annotations

import asyncio
import errno
import json
from typing import Any

import pytest

from ostinato.daemon.engine.events import Event
from ostinato.daemon.engine.redact import Redactor
from ostinato.daemon.runs.sink import COMMIT_DELAY, MAX_BATCH, StoreSink


class FakeStore:
    """RunStore.record's signature; each transaction's stages, event types and run fields."""

    def __init__(self) -> None:
        self.transactions: list[tuple[list[int], list[str], dict[str, Any] | None]] = []
        self.failure: Exception | None = None
        self.gate: asyncio.Event | None = None  # a slow commit: it waits for this

    async def record(self, run_id: str, *, stages: Any, events: list[dict[str, Any]],
                     calls: list[dict[str, Any]], run_fields: dict[str, Any] | None = None,
                     concurrent: bool = False) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        self.transactions.append(([stage["seq"] for stage in stages],
                                  [event["type"] for event in events], run_fields))


class Run:
    """A sink over a fake store, with what it published and the checkpoints it wrote."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.published: list[str] = []
        self.written: list[int] = []  # stage_seq of each checkpoint written
        self.sink = StoreSink(self.publish, self.store, "r1", 1, Redactor(),  # type: ignore[arg-type]
                              checkpoint_file=lambda data: self.written.append(
                                  json.loads(data)["stage_seq"]))

    def publish(self, topics: Any, method: str, record: dict[str, Any]) -> int:
        self.published.append(record["type"])
        return 1

    async def node(self, seq: int) -> None:
        """One node as the executor reports it: its events, its stage, its checkpoint."""
        self.sink.emit(Event("StageStarted", {"name": f"n{seq}"}))
        self.sink.emit(Event("StageCompleted", {"name": f"n{seq}"}))
        await self.sink.stage_done(stage(seq))
        self.sink.save_checkpoint({"stage_seq": seq})
        self.sink.emit(Event("CheckpointSaved", {"node_id": f"n{seq}"}))


def stage(seq: int) -> dict[str, Any]:
    return {"seq": seq, "node_id": f"n{seq}", "branch": None, "outcome": {}}


async def settle() -> None:
    """Long enough for the sink's timer and its commit."""
    await asyncio.sleep(COMMIT_DELAY * 5)


async def test_stages_are_committed_together_later_then_the_checkpoint_then_its_event() -> None:
    run = Run()
    for seq in (1, 2, 3):
        await run.node(seq)
    # Nothing waited for a commit; CheckpointSaved waits for its file.
    assert run.store.transactions == [] and run.written == []
    assert run.published == ["StageStarted", "StageCompleted"]
    await settle()
    [(stages, events, fields)] = run.store.transactions
    assert stages == [1, 2, 3] and len(events) == 9
    assert fields is not None and fields["current_node"] == "n3"
    assert run.written == [3]  # the last checkpoint only, after the commit
    assert run.published.count("CheckpointSaved") == 3
    assert run.published[-3:] == ["StageStarted", "StageCompleted", "CheckpointSaved"]


async def test_a_full_batch_is_committed_at_once() -> None:
    run = Run()
    for seq in range(1, MAX_BATCH + 1):
        await run.node(seq)
    assert [stages for stages, _, _ in run.store.transactions] == [
        list(range(1, MAX_BATCH + 1))]
    # With it, the checkpoint handed over before; the last one waits for the next commit.
    assert run.written == [MAX_BATCH - 1]
    await settle()
    assert run.written == [MAX_BATCH - 1, MAX_BATCH]


async def test_a_failed_commit_stops_the_run_at_its_next_stage_and_writes_no_checkpoint(
        ) -> None:
    run = Run()
    await run.node(1)
    await settle()
    full = OSError(errno.ENOSPC, "No space left on device")
    run.store.failure = full
    await run.node(2)
    await settle()  # the deferred commit fails: nothing raised yet
    assert run.written == [1]
    with pytest.raises(OSError) as raised:
        await run.node(3)
    assert raised.value is full
    with pytest.raises(OSError):
        await run.sink.commit()
    run.sink.save_checkpoint({"stage_seq": 3})  # it would name a stage the store lacks
    run.store.failure = None
    run.sink.emit(Event("PipelineFailed", {"error": "disk full"}))
    await run.sink.flush(status="interrupted")
    # The run's end holds the events the failed commit had (kept in order), no stages.
    stages, events, fields = run.store.transactions[-1]
    assert stages == [] and events == ["StageStarted", "StageCompleted", "CheckpointSaved",
                                      "StageStarted", "StageCompleted", "PipelineFailed"]
    assert fields is not None and fields["status"] == "interrupted"
    assert run.written == [1]
    assert run.published[-3:] == ["StageStarted", "StageCompleted", "PipelineFailed"]


async def test_a_stage_that_comes_during_a_slow_commit_is_committed_after_it_unasked() -> None:
    run = Run()
    run.store.gate = asyncio.Event()
    await run.node(1)
    await settle()  # its commit waits on the gate
    await run.node(2)
    await settle()  # its timer fires while the first commit still waits
    run.store.gate.set()
    await settle()
    assert [stages for stages, _, _ in run.store.transactions] == [[1], [2]]
    assert run.written == [1, 2]
