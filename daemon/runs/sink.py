"""What a running run reports to the daemon: its events to subscribers and, in batches of
stages, its rows to the store and its checkpoints to the run directory (StoreSink); and who
answers its human gates (DaemonInterviewer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ostinato.protocol.runs import RunSettings

from ..disk import disk_full
from ..engine.events import Event
from ..engine.handlers.base import Question, preset_answer
from ..engine.redact import Redactor
from ..engine.rundir import dump_json
from ..host import Publish
from ..ids import utc_now
from ..store.runs import RunStore

if TYPE_CHECKING:
    from .active import ActiveRun
    from .runner import Runner

TERMINAL_EVENTS = frozenset({"PipelineCompleted", "PipelineFailed", "PipelineCancelled"})
MAX_BATCH = 64  # stages of one run committed in one transaction, at most
# How long a finished stage may wait for those behind it before it is committed: what a
# crash of the daemon can lose of a run, which resume then runs again (decision 0007).
COMMIT_DELAY = 0.002


class StoreSink:
    """A run's sink, inline or on a worker (decision 0007): events to subscribers at once,
    rows to the store in batches of stages, each checkpoint written after the commit that
    holds its stage.

    Nothing waits for a commit: a finished stage is committed at most COMMIT_DELAY later
    (at once when MAX_BATCH wait), with every call and event kept before the commit; then
    the last checkpoint handed over before it is written, then the events held since a
    CheckpointSaved are published. So a checkpoint never names a stage the store lacks, and
    a crash loses at most the uncommitted tail, which resume runs again. A failed commit (a
    full disk) is raised by every later `stage_done` and `commit`, which the run cannot get
    past: its later stages and checkpoints are dropped (its events and calls are kept for
    its last write, `flush`)."""

    def __init__(self, publish: Publish, store: RunStore, run_id: str, next_event: int,
                 redactor: Redactor, grouped: Callable[[], bool] = lambda: False,
                 checkpoint_file: Callable[[bytes], None] | None = None) -> None:
        self.publish = publish
        # A run writes by group commit while other runs run beside it (a trial set's, or
        # single runs started together), in one transaction with theirs: a trial set of
        # 1,000 at 8 or 100 at a time spends about an eighth less CPU.
        self.grouped = grouped
        self.store = store
        self.run_id = run_id
        self.seq = next_event
        self.redactor = redactor
        self.checkpoint_file = checkpoint_file or (lambda checkpoint: None)
        self.events: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.stages: list[dict[str, Any]] = []  # finished, not committed yet
        self.checkpoint: bytes | None = None  # the last handed over (dumped), not written yet
        # Events from a CheckpointSaved on: kept (committed as any), published once that
        # checkpoint is written.
        self.held: list[dict[str, Any]] = []
        self.totals = {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
        self.listeners: list[Any] = []
        self.deferred: list[dict[str, Any]] = []
        self.last_score: float | None = None  # of the last stage that reported one
        self.failure: Exception | None = None  # of a failed commit: nothing goes on after it
        self._lock = asyncio.Lock()  # one commit at a time, in order
        self._timer: asyncio.TimerHandle | None = None
        self._later: set[asyncio.Task[None]] = set()  # commits the timer started (held)

    def emit(self, event: Event) -> None:
        """Number the event and keep it for the next commit; publish it as `run/event` now,
        or once the checkpoint it follows is written. A run's end is published once the
        run's final state is in the store, so that a client that sees it and calls run.get
        finds the run ended."""
        record = {"run_id": self.run_id, "seq": self.seq, "type": event.type,
                  "time": event.time or utc_now(), "data": self.redactor.values(event.data)}
        self.seq += 1
        self.events.append(record)
        if event.type in TERMINAL_EVENTS:
            self.deferred.append(record)
        elif self.held or record["type"] == "CheckpointSaved":
            self.held.append(record)
            self._commit_soon()
        else:
            self._announce(record)

    def _announce(self, record: dict[str, Any]) -> None:
        """Publish a kept event as `run/event` (to its listeners too)."""
        self.publish((f"run:{self.run_id}", "run:*"), "run/event", record)
        for listener in self.listeners:
            listener(record)

    def record_call(self, call: dict[str, Any]) -> None:
        """Keep the call for the next commit; add it to the run's totals."""
        self.calls.append(self.redactor.values(call))
        self.totals["cost_usd"] += call["cost_usd"]
        self.totals["input_tokens"] += call["input_tokens"]
        self.totals["output_tokens"] += call["output_tokens"]

    async def stage_done(self, stage: dict[str, Any]) -> None:
        """Keep a finished stage for the next commit (with the events and calls before it);
        a failed commit's error instead."""
        self._raise_failure()
        score = stage["outcome"].get("score")
        if isinstance(score, int | float):
            self.last_score = float(score)
        self.stages.append(self.redactor.values(stage))
        if len(self.stages) >= MAX_BATCH:
            await self.commit()
        else:
            self._commit_soon()

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write `checkpoint` once everything before it is committed (the executor's
        `write_checkpoint`, and a worker's checkpoints)."""
        if self.failure is None:  # dumped now: the engine goes on changing what it holds
            self.checkpoint = dump_json(checkpoint)
            self._commit_soon()

    async def commit(self) -> None:
        """Commit what is kept, write the last checkpoint and publish what waited for it;
        a failed commit's error instead."""
        self._raise_failure()
        await self.flush()

    async def flush(self, *, concurrent: bool = False, **run_fields: Any) -> None:
        """Write whatever is kept (and some run fields) in one transaction, then the last
        checkpoint; by group commit when `concurrent` or the run is a trial, or a parallel
        branch's stage is among them."""
        async with self._lock:
            await self._commit(concurrent, run_fields)

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _commit_soon(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(COMMIT_DELAY,
                                                                self._commit_later)

    def _commit_later(self) -> None:
        # Even while an earlier one commits: it took its records before these came.
        self._timer = None
        task = asyncio.ensure_future(self._deferred_commit())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _deferred_commit(self) -> None:
        """The timer's commit: its error waits for the run to ask (stage_done, commit)."""
        with contextlib.suppress(Exception):  # kept as self.failure
            await self.flush(concurrent=True)

    async def _commit(self, concurrent: bool, run_fields: dict[str, Any]) -> None:
        """The transaction, then the checkpoint, then the events that waited for it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stages, self.stages = self.stages, []
        checkpoint, self.checkpoint = self.checkpoint, None
        events, calls = self.events, self.calls
        self.events, self.calls = [], []
        held = len(self.held)  # those kept before the checkpoint was taken
        ending = "status" in run_fields and run_fields["status"] not in ("running", "waiting")
        if stages:
            run_fields = {"current_node": stages[-1]["node_id"], **run_fields}
            concurrent = concurrent or any(stage["branch"] is not None for stage in stages)
        fields = {**run_fields, **self.totals} if (calls or run_fields) else run_fields
        try:
            try:
                if stages or events or calls or fields:
                    await self.store.record(self.run_id, stages=stages, events=events,
                                            calls=calls, run_fields=fields or None,
                                            concurrent=concurrent or self.grouped())
            except Exception as exc:
                if disk_full(exc):  # kept for the next flush (the run's last one), in order
                    self.events, self.calls = events + self.events, calls + self.calls
                raise
            if checkpoint is not None:
                self.checkpoint_file(checkpoint)
        except Exception as exc:
            self.failure = exc  # a checkpoint after these stages would name what is lost
            self.checkpoint = None
            if ending:  # the store answers reads with the run's end all the same
                self._publish(len(self.held), self.deferred)
            raise
        # Held events kept after the checkpoint was taken wait for the next one, unless
        # there will be none (the run's end; a failed commit).
        self._publish(len(self.held) if ending or self.failure is not None else held,
                      self.deferred if ending else [])

    def _publish(self, held: int, deferred: list[dict[str, Any]]) -> None:
        """The first `held` held events, then `deferred` ones."""
        records, self.held = self.held[:held], self.held[held:]
        if deferred is self.deferred:
            self.deferred = []
        for record in [*records, *deferred]:
            self._announce(record)


class DaemonInterviewer:
    """Answers human gates: preset answers first, then auto-approve, then whoever answers
    `human.answer` on the daemon while the run is `waiting`."""

    def __init__(self, runner: Runner, run_id: str, settings: RunSettings) -> None:
        self.runner = runner
        self.run_id = run_id
        self.settings = settings

    async def ask(self, question: Question) -> str | None:
        """The answer to `question`."""
        active = self.runner.active[self.run_id]
        answer = preset_answer(self.settings, active.executor.state.context, question)
        if answer is None:
            answer = await self._ask_people(active, question)
        active.executor.emit("InterviewCompleted", question_id=question.id,
                             stage=question.node_id, answer=answer)
        return answer

    async def _ask_people(self, active: ActiveRun, question: Question) -> str | None:
        active.question = question  # run.get shows it, and the store says `waiting`, at once
        active.answer = asyncio.get_running_loop().create_future()
        # The store says `waiting` before anyone hears of the question, so that a client
        # reacting to InterviewStarted (or to `asking`, ActiveRun.settle) finds the run
        # waiting (run.get, run.list).
        await active.sink.flush(status="waiting")
        active.asking = True
        active.executor.emit("InterviewStarted", question=question.to_dict(),
                             stage=question.node_id)
        await active.sink.flush()
        try:
            return await active.answer
        finally:
            active.question = None
            active.answer = None
            active.asking = False
            await active.sink.flush(status="running")
