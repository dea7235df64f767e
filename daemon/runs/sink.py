"""What a running run reports to the daemon: its events to subscribers and, stage by stage,
its rows to the store (StoreSink); and who answers its human gates (DaemonInterviewer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ostinato.protocol.runs import RunSettings

from ..disk import disk_full
from ..engine.events import Event
from ..engine.handlers.base import Question, preset_answer
from ..engine.redact import Redactor
from ..host import Publish
from ..ids import utc_now
from ..store.runs import RunStore

if TYPE_CHECKING:
    from .active import ActiveRun
    from .runner import Runner

TERMINAL_EVENTS = frozenset({"PipelineCompleted", "PipelineFailed", "PipelineCancelled"})


class StoreSink:
    """The executor's sink: events to subscribers at once, rows to the store per stage."""

    def __init__(self, publish: Publish, store: RunStore, run_id: str, next_event: int,
                 redactor: Redactor, grouped: Callable[[], bool] = lambda: False) -> None:
        self.publish = publish
        # A run writes by group commit while other runs run beside it (a trial set's, or
        # single runs started together), in one transaction with theirs: a trial set of
        # 1,000 at 8 or 100 at a time spends about an eighth less CPU.
        self.grouped = grouped
        self.store = store
        self.run_id = run_id
        self.seq = next_event
        self.redactor = redactor
        self.events: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.totals = {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
        self.listeners: list[Any] = []
        self.deferred: list[dict[str, Any]] = []
        self.last_score: float | None = None  # of the last stage that reported one

    def emit(self, event: Event) -> None:
        """Number the event, publish it as `run/event`, keep it for the next flush."""
        record = self.keep(event)
        if record is not None:
            self.announce(record)

    def keep(self, event: Event) -> dict[str, Any] | None:
        """Number the event and keep it for the next flush; the record to publish, or None
        for a run's end, published once the run's final state is in the store (see flush),
        so that a client that sees it and calls run.get finds the run ended."""
        record = {"run_id": self.run_id, "seq": self.seq, "type": event.type,
                  "time": event.time or utc_now(), "data": self.redactor.values(event.data)}
        self.seq += 1
        self.events.append(record)
        if event.type in TERMINAL_EVENTS:
            self.deferred.append(record)
            return None
        return record

    def announce(self, record: dict[str, Any]) -> None:
        """Publish a kept event as `run/event` (to its listeners too)."""
        self.publish((f"run:{self.run_id}", "run:*"), "run/event", record)
        for listener in self.listeners:
            listener(record)

    def record_call(self, call: dict[str, Any]) -> None:
        """Keep the call for the next flush; add it to the run's totals."""
        self.calls.append(self.redactor.values(call))
        self.totals["cost_usd"] += call["cost_usd"]
        self.totals["input_tokens"] += call["input_tokens"]
        self.totals["output_tokens"] += call["output_tokens"]

    async def stage_done(self, stage: dict[str, Any], checkpoint: dict[str, Any]) -> None:
        """Write the stage, with the events and calls before it, in one transaction."""
        # A parallel branch's stages are written by group commit, beside its siblings'.
        await self.stages_done([stage], concurrent=stage["branch"] is not None)

    async def stages_done(self, stages: list[dict[str, Any]], concurrent: bool = True) -> None:
        """Write stages (several: a worker's run, decision 0007) with everything buffered,
        in one transaction."""
        for stage in stages:
            score = stage["outcome"].get("score")
            if isinstance(score, int | float):
                self.last_score = float(score)
        await self.flush([self.redactor.values(stage) for stage in stages],
                         current_node=stages[-1]["node_id"], concurrent=concurrent)

    async def flush(self, stages: list[dict[str, Any]] | None = None, *,
                    concurrent: bool = False, **run_fields: Any) -> None:
        """Write whatever is buffered (and some run fields) in one transaction; by group
        commit when `concurrent` or the run is a trial."""
        events, calls = self.events, self.calls
        self.events, self.calls = [], []
        fields = {**run_fields, **self.totals} if (calls or run_fields) else run_fields
        ending = "status" in run_fields and run_fields["status"] not in ("running", "waiting")
        try:
            await self.store.record(self.run_id, stages=stages or (), events=events, calls=calls,
                                    run_fields=fields or None,
                                    concurrent=concurrent or self.grouped())
        except Exception as exc:
            if disk_full(exc):  # kept for the next flush (the run's last one), in order
                self.events, self.calls = events + self.events, calls + self.calls
                if ending:  # the store answers reads with the run's end all the same
                    self._publish_deferred()
            raise
        if ending:
            self._publish_deferred()

    def _publish_deferred(self) -> None:
        deferred, self.deferred = self.deferred, []
        for record in deferred:
            self.announce(record)


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
