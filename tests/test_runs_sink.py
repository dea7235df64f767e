"""A run's store sink commits its stages in batches (decision 0007, inline and on workers):
the run never waits for a commit, a checkpoint is written after the commit holding its
stage, and CheckpointSaved is published after its checkpoint. The store is a real sqlite
file; what a test waits for is a publication, never a delay. (A commit that fails on a full
disk: tests/test_faults.py.)"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.engine.events import Event
from ostinato.daemon.engine.redact import Redactor
from ostinato.daemon.runs.sink import MAX_BATCH, StoreSink
from ostinato.daemon.store.db import Database
from ostinato.daemon.store.runs import RunStore

RUN = "01a24d00-0000-7000-8000-000000000001"


class Run:
    """A sink over the real store, with what it published and the checkpoints it wrote."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.published: list[str] = []
        self.written: list[int] = []  # stage_seq of each checkpoint written
        self.saved = 0  # CheckpointSaved published
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self.sink = StoreSink(self.publish, store, RUN, 1, Redactor(),
                              checkpoint_file=lambda data: self.written.append(
                                  json.loads(data)["stage_seq"]))

    def publish(self, topics: Any, method: str, record: dict[str, Any]) -> int:
        self.published.append(record["type"])
        if record["type"] == "CheckpointSaved":
            self.saved += 1
            for count, future in self._waiting:
                if self.saved >= count and not future.done():
                    future.set_result(None)
        return 1

    async def checkpoints_saved(self, count: int) -> None:
        """Return once `count` CheckpointSaved have been published (their files written)."""
        if self.saved < count:
            future = asyncio.get_running_loop().create_future()
            self._waiting.append((count, future))
            await asyncio.wait_for(future, 10)

    async def node(self, seq: int) -> None:
        """One node as the executor reports it: its events, its stage, its checkpoint."""
        self.sink.emit(Event("StageStarted", {"name": f"n{seq}"}))
        self.sink.emit(Event("StageCompleted", {"name": f"n{seq}"}))
        await self.sink.stage_done({
            "seq": seq, "node_id": f"n{seq}", "attempt": 1, "status": "success",
            "handler": "codergen", "branch": None, "started_at": "2026-12-06T00:00:00Z",
            "ended_at": "2026-12-06T00:00:01Z", "duration_ms": 1.0,
            "outcome": {"status": "success"}})
        self.sink.save_checkpoint({"stage_seq": seq})
        self.sink.emit(Event("CheckpointSaved", {"node_id": f"n{seq}"}))

    async def stored(self) -> list[int]:
        """The stages the store holds."""
        rows = await self.store.db.fetchall("SELECT seq FROM stages WHERE run_id = ? "
                                            "ORDER BY seq", (RUN,))
        return [row["seq"] for row in rows]


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    """A run in a real store."""
    db = await Database.open(tmp_path / "ostinato.db")
    store = RunStore(db)
    await store.add_run(pipeline_hash="h", pipeline_name="p", pipeline_format="dot",
                        source="digraph p {}", run={
                            "id": RUN, "status": "running", "run_dir": f"runs/{RUN}",
                            "trace_id": RUN, "inputs": {}, "settings": {},
                            "created_at": "2026-12-06T00:00:00Z",
                            "started_at": "2026-12-06T00:00:00Z"})
    yield Run(store)
    await db.close()


async def test_stages_are_committed_together_later_then_the_checkpoint_then_its_event(
        run: Run) -> None:
    for seq in (1, 2, 3):
        await run.node(seq)
    # Nothing waited for a commit; CheckpointSaved, and what follows it, wait for its file.
    assert await run.stored() == [] and run.written == []
    assert run.published == ["StageStarted", "StageCompleted"]
    await run.checkpoints_saved(3)
    assert await run.stored() == [1, 2, 3]
    assert run.written == [3]  # the last checkpoint only, after the commit
    assert run.published == ["StageStarted", "StageCompleted", "CheckpointSaved"] * 3


async def test_a_full_batch_is_committed_at_once(run: Run) -> None:
    for seq in range(1, MAX_BATCH + 1):
        await run.node(seq)
    # With it, the checkpoint handed over before; the last one waits for the next commit
    # (the timer's, which may come while the store is read).
    assert run.written[0] == MAX_BATCH - 1
    assert await run.stored() == list(range(1, MAX_BATCH + 1))
    await run.checkpoints_saved(MAX_BATCH)
    assert run.written == [MAX_BATCH - 1, MAX_BATCH]


async def test_stages_wait_for_another_writer_and_lose_nothing(
        run: Run, tmp_path: Path) -> None:
    """Another process holds the store's write lock: the run goes on meanwhile, and its
    stages are committed, then checkpointed, once the lock is free, without its next
    record."""
    other = sqlite3.connect(tmp_path / "ostinato.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        await run.node(1)
        await run.node(2)
        assert run.written == []
    finally:
        other.execute("COMMIT")
        other.close()
    await run.checkpoints_saved(2)
    assert await run.stored() == [1, 2]
    assert run.written[-1] == 2
