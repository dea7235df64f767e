"""The child runs of manager nodes (attractor §4.11): started, found again after a resume,
replayed with their parent, and supervised in lockstep (engine/supervision.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.pipelines import PipelineRef

from ..engine.executor import Executor, completed_nodes
from ..engine.rundir import RunDirectory
from ..engine.supervision import (
    INSTRUCTIONS,
    ChildLink,
    ChildReport,
    ChildRunError,
    Supervision,
)
from .run_options import RunOptions

if TYPE_CHECKING:
    from .runner import Runner

# A child stopped before its end: its manager resumes it.
_RESUMABLE = frozenset({"interrupted", "cancelled", "budget_exceeded"})


class ChildRunner:
    """The runner's side of engine.supervision.ChildRuns."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def attach(self, parent: Executor, node_id: str, key: str,
                     pipeline: str) -> ChildLink:
        """The child of `parent`'s manager node for `key`: the one started before (resumed
        if it was cut short), else a new one, a replay of the recorded parent's when the
        parent is a replay. A child that cannot be had is a ChildRunError."""
        try:
            return await self._attach(parent, node_id, key, pipeline)
        except RpcError as exc:
            raise ChildRunError(exc.message) from None

    async def _attach(self, parent: Executor, node_id: str, key: str,
                      pipeline: str) -> ChildLink:
        runner = self.runner
        supervision = Supervision()
        instructions = None
        row = await runner.store.child_run(parent.run_id, key)
        if row is None:
            child_id = await self._start(parent, node_id, key, pipeline, supervision)
        else:
            child_id = row["id"]
            if child_id in runner.active:  # the node runs again in this daemon
                await runner.cancel(child_id)
                row = await runner.store.get_run(child_id) or row
            run_dir = RunDirectory(runner.home / row["run_dir"])
            checkpoint = run_dir.read_json("checkpoint.json") or {}
            instructions = (checkpoint.get("context") or {}).get(INSTRUCTIONS)
            if row["status"] in _RESUMABLE:
                await runner.resume(child_id, supervisor=supervision)
            else:  # it ended before its parent was interrupted: as its end was reported
                done = completed_nodes(run_dir, checkpoint) if checkpoint else []
                supervision.ended(ChildReport(
                    child_id, row["status"], row["outcome"], len(done),
                    done[-1] if done else None, None, None, row["failure_reason"]))
        return ChildLink(child_id, f"runs/{child_id}", supervision,
                         lambda: self._stop(child_id),
                         str(instructions) if instructions else None)

    async def _start(self, parent: Executor, node_id: str, key: str, pipeline: str,
                     supervision: Supervision) -> str:
        runner = self.runner
        settings = runner.active[parent.run_id].settings
        options = RunOptions(record=parent.record, trial_index=parent.trial_index,
                             budget=parent.budget, parent_run_id=parent.run_id,
                             parent_node=node_id, parent_key=key, supervisor=supervision)
        options = await self._replaying(parent, key, options)
        active = await runner.start(PipelineRef(path=pipeline), dict(parent.inputs), {},
                                    settings, options)
        return active.run_id

    async def _replaying(self, parent: Executor, key: str, options: RunOptions) -> RunOptions:
        """A replayed parent's child replays the recorded parent's child for the same key."""
        if parent.replayer is None or parent.replayer.mode == "live":
            return options
        row = await self.runner.store.get_run(parent.run_id)
        recorded = row.get("replay_of") if row else None
        child = await self.runner.store.child_run(recorded, key) if recorded else None
        if child is not None:
            return replace(options, replay_of=child["id"], replay_mode=parent.replayer.mode)
        if parent.replayer.mode == "recorded":
            raise RpcError(ErrorCode.CONFLICT,
                           f"the recording has no child run for manager node {key!r} "
                           "(a snapshot keeps its parent run's calls only): replay in hybrid "
                           "or live mode")
        return options  # hybrid: the child runs live

    async def _stop(self, child_id: str) -> None:
        """Cancel the child if it still runs."""
        if child_id in self.runner.active:
            await self.runner.cancel(child_id)
