"""Launching work: one run, or a trial set of runs, behind one handle (`Launched`).

`run.start`, `snapshot.replay` and `tests.run` (through `replay_snapshot`) start work with
`launch`; what they do with it afterwards (wait, reply, cancel, list its runs) is the
same for both kinds, so none of them needs to know which kind it holds. `reply` answers the
request that launched it, cancelling the work with the request when asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings, RunSummary
from ostinato.protocol.trials import TrialSetSummary

from ..host import NO_PROGRESS, Progress
from .options import RunOptions

if TYPE_CHECKING:
    from .runner import Runner
    from .trial_sets import TrialSets


class Launched(Protocol):
    """Work started by `launch`: a single run (`ActiveRun`) or a trial set (`TrialSet`)."""

    done: asyncio.Future[Any]  # resolves once the work and its records have ended

    @property
    def trial_set_id(self) -> str | None:
        """The trial set's id; None for a single run."""
        ...

    def started_runs(self) -> list[tuple[int, str]]:
        """(trial index, run id) of each run started so far, in trial order."""
        ...

    def run_ids(self) -> list[str]:
        """The ids of the runs started so far."""
        ...

    async def cancel(self) -> None:
        """Stop the work (nothing more starts, what runs is cancelled); return once it
        has ended. Nothing to do once it has."""
        ...

    async def reply(self, wait: bool, progress: Progress = NO_PROGRESS,
                    return_on_question: bool = False) -> RunSummary | TrialSetSummary:
        """The work's summary for the request that launched it: now, or once it has ended
        when `wait` (or a run waits on a human, with `return_on_question`)."""
        ...


@dataclass(frozen=True, slots=True)
class Trials:
    """Launch a trial set of `count` runs, `concurrency` at a time, instead of one run."""

    count: int
    concurrency: int = 1
    early_stop: bool = False
    pass_threshold: float = 1.0


class Launchers(Protocol):
    """What launches work: the runner and the trial sets (the services have both)."""

    runner: Runner
    trials: TrialSets


async def reply(starting: Awaitable[Launched], wait: bool, progress: Progress = NO_PROGRESS,
                *, cancel_with_request: bool = False,
                return_on_question: bool = False) -> RunSummary | TrialSetSummary:
    """The launched work's reply (`Launched.reply`) once `starting` has launched it. With
    `cancel_with_request`, a cancelled request (`$/cancelRequest`, or its connection gone)
    cancels the work too, even one cancelled while the work was being launched, and ends
    once the work has stopped."""
    if not cancel_with_request:
        return await (await starting).reply(wait, progress, return_on_question)
    launching = asyncio.ensure_future(starting)
    try:
        # Shielded: a request cancelled now must still learn what to cancel.
        launched = await asyncio.shield(launching)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # a launch that failed left nothing running
            await (await launching).cancel()
        raise
    try:
        return await launched.reply(wait, progress, return_on_question)
    except asyncio.CancelledError:
        await launched.cancel()
        raise


async def launch(launchers: Launchers, ref: PipelineRef, inputs: dict[str, Any],
                 variables: dict[str, str], settings: RunSettings, options: RunOptions,
                 trials: Trials | None = None) -> Launched:
    """Start one run, or the trial set `trials` describes."""
    if trials is None:
        return await launchers.runner.start(ref, inputs, variables, settings, options)
    return await launchers.trials.start(
        ref, inputs, variables, settings, options, trials=trials.count,
        concurrency=trials.concurrency, early_stop=trials.early_stop,
        pass_threshold=trials.pass_threshold)
