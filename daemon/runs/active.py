"""A run executing in this daemon (`ActiveRun`): what the runner, the trial sets and the
sink share of it, and its side of the `Launched` handle (runs/launch.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.runs import RunSettings, RunSummary

from ..engine.executor import Executor
from ..engine.handlers.base import Question
from ..engine.providers.runtime import ProviderPool
from ..engine.run_state import RunResult
from ..host import NO_PROGRESS, Progress
from ..workers.messages import Job
from .sink import StoreSink


@dataclass
class ActiveRun:
    """A run executing in this daemon; a `Launched` handle (runs/launch.py)."""

    run_id: str
    executor: Executor
    pool: ProviderPool
    sink: StoreSink
    settings: RunSettings
    home: Path  # the daemon's home (the summary's run_dir is under it)
    pipeline_dir: str | None = None  # see RunOptions.pipeline_dir
    task: asyncio.Task | None = None
    question: Question | None = None
    answer: asyncio.Future[str | None] | None = None
    asking: bool = False  # the question is told (InterviewStarted) and in the store
    done: asyncio.Future[RunResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    resume_inputs: dict[str, Any] = field(default_factory=dict)  # given again at resume
    started: bool = False  # _drive began (a task cancelled before its first step never does)
    owns_pool: bool = True  # False: the pool is shared (a trial set's), closed by its owner
    manifest: dict[str, Any] | None = None  # manifest.json as last written
    ended: dict[str, Any] | None = None  # the run's final status, outcome, failure_reason
    trial_set_id: str | None = None  # the trial set it is a trial of
    job: Job | None = None  # set when the run executes on a worker (decision 0007)

    def started_runs(self) -> list[tuple[int, str]]:
        """This run, at its trial index (0 for a run launched alone)."""
        return [(self.executor.trial_index or 0, self.run_id)]

    def run_ids(self) -> list[str]:
        """This run's id."""
        return [self.run_id]

    async def cancel(self) -> None:
        """Cancel the run (its tool processes are killed) and wait until it stopped."""
        if self.done.done():
            return
        self.interrupt()
        await asyncio.shield(self.done)

    def interrupt(self) -> None:
        """Cancel the run's task, unless its end is being recorded (`ended` is set then): a
        cancel there would cut the record of its end short, leaving a run the store says
        is running."""
        if self.task is not None and self.ended is None:
            self.task.cancel()

    @property
    def waits_on_human(self) -> bool:
        """Whether the run has asked a question no one answered yet (an answered one is
        still `question` until the run takes the answer)."""
        return self.asking and self.answer is not None and not self.answer.done()

    async def settle(self, progress: Progress = NO_PROGRESS,
                     return_on_question: bool = False) -> None:
        """Return once the run has ended, or (`return_on_question`) waits on a human;
        its stages and questions are reported as progress meanwhile."""
        progress.begin(f"run {self.run_id}", cancellable=True)
        asked = asyncio.get_running_loop().create_future()

        def report(event: dict[str, Any]) -> None:
            if event["type"] == "InterviewStarted":
                progress.report(_waiting_message(event["data"]["question"]))
                if not asked.done():
                    asked.set_result(None)
            elif event["type"] in ("StageCompleted", "StageFailed"):
                progress.report(f"{event['type']}: {event['data'].get('name') or ''}".strip())

        self.sink.listeners.append(report)
        try:
            if self.waits_on_human:  # it asked before this request listened
                report({"type": "InterviewStarted", "data": self.sink.redactor.values(
                    {"question": self.question.to_dict()})})  # as the event was published
            # Not cancelled with this request: others await `done` too.
            await asyncio.wait([self.done, asked] if return_on_question else [self.done],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.sink.listeners.remove(report)
        progress.end(f"run {self.run_id} ended" if self.done.done() else
                     f"run {self.run_id} waits on a human")

    async def reply(self, wait: bool, progress: Progress = NO_PROGRESS,
                    return_on_question: bool = False) -> RunSummary:
        """The run's summary now, or once it has ended (reporting its stages as progress);
        with `return_on_question`, also once it waits on a human (status `waiting`)."""
        if wait:
            await self.settle(progress, return_on_question)
        run = await self.sink.store.get_run(self.run_id)
        if run is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no run {self.run_id}")
        return run.summary(self.home)


def _waiting_message(question: dict[str, Any]) -> str:
    """Progress for a run that waits on a human: the question and how to answer it."""
    return (f"waiting on a human: {question.get('text') or ''} (question_id "
            f"{question.get('question_id')})")
