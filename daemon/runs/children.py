"""The child runs of manager nodes (attractor §4.11): started, found again after a resume,
replayed with their parent, and supervised in lockstep (engine/supervision.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.pipelines import PipelineRef

from ..engine.run_state import completed_nodes
from ..engine.rundir import RunDirectory
from ..engine.supervision import (
    INSTRUCTIONS,
    ChildLink,
    ChildReport,
    ChildRunError,
    ParentRun,
    Supervision,
)
from .options import RunOptions

if TYPE_CHECKING:
    from .runner import Runner

# A child stopped before its end: its manager resumes it.
_RESUMABLE = frozenset({"interrupted", "cancelled", "budget_exceeded"})


class ChildRunner:
    """The runner's side of engine.supervision.ChildRuns."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def attach(self, parent: ParentRun, pipeline: str) -> ChildLink:
        """The child of `parent`'s manager node: the one started before (resumed if it was
        cut short), else a new one, a replay of the recorded parent's when the parent is a
        replay. A child that cannot be had is a ChildRunError."""
        try:
            return await self._attach(parent, pipeline)
        except RpcError as exc:
            raise ChildRunError(exc.message) from None

    async def _attach(self, parent: ParentRun, pipeline: str) -> ChildLink:
        runner = self.runner
        supervision = Supervision()
        instructions = None
        child = await runner.store.child_run(parent.run_id, parent.key)
        if child is None:
            child_id = await self._start(parent, pipeline, supervision)
        else:
            child_id = child.id
            if child_id in runner.active:  # the node runs again in this daemon
                await runner.cancel(child_id)
                child = await runner.store.get_run(child_id) or child
            run_dir = RunDirectory(runner.home / child.run_dir)
            checkpoint = run_dir.read_json("checkpoint.json") or {}
            instructions = (checkpoint.get("context") or {}).get(INSTRUCTIONS)
            if child.status in _RESUMABLE:
                await runner.resume(child_id, supervisor=supervision)
            else:  # it ended before its parent was interrupted: as its end was reported
                done = completed_nodes(run_dir, checkpoint) if checkpoint else []
                supervision.ended(ChildReport(
                    child_id, child.status, child.outcome, len(done),
                    done[-1] if done else None, None, None, child.failure_reason))
        return ChildLink(child_id, f"runs/{child_id}", supervision,
                         lambda: self._stop(child_id),
                         str(instructions) if instructions else None)

    async def _start(self, parent: ParentRun, pipeline: str,
                     supervision: Supervision) -> str:
        runner = self.runner
        active = runner.active[parent.run_id]
        path = Path(pipeline)
        if active.pipeline_dir is not None and not path.is_absolute():
            path = Path(active.pipeline_dir) / path  # beside the parent's pipeline file
        options = RunOptions(record=parent.record, trial_index=parent.trial_index,
                             budget=parent.budget, parent_run_id=parent.run_id,
                             parent_node=parent.node_id, parent_key=parent.key,
                             supervisor=supervision, pipeline_dir=str(path.parent))
        ref, options = await self._replaying(parent, PipelineRef(path=str(path)), options)
        child = await runner.start(ref, dict(parent.inputs), {}, active.settings, options)
        return child.run_id

    async def _replaying(self, parent: ParentRun, ref: PipelineRef,
                         options: RunOptions) -> tuple[PipelineRef, RunOptions]:
        """A replayed parent's child replays the recorded parent's child for the same key,
        from the pipeline that child ran (the file may have changed since)."""
        if parent.replay_mode in (None, "live"):
            return ref, options
        run = await self.runner.store.get_run(parent.run_id)
        recorded = run.replay_of if run else None
        child = await self.runner.store.child_run(recorded, parent.key) if recorded else None
        if child is not None:
            launch, source, _ = await self.runner.recorded_launch(child.id)
            return (PipelineRef(source=source, format=launch["pipeline_format"]),
                    replace(options, replay_of=child.id, replay_mode=parent.replay_mode))
        if parent.replay_mode == "recorded":
            raise RpcError(ErrorCode.CONFLICT,
                           f"the recording has no child run for manager node {parent.key!r} "
                           "(a snapshot keeps its parent run's calls only): replay in hybrid "
                           "or live mode")
        return ref, options  # hybrid: the child runs live

    async def _stop(self, child_id: str) -> None:
        """Cancel the child if it still runs."""
        if child_id in self.runner.active:
            await self.runner.cancel(child_id)
