"""The no-op handlers: start, exit, conditional (attractor §4.3, §4.4, §4.7)."""

from __future__ import annotations

from ..outcome import Outcome, Status
from .base import NodeRun


class StartHandler:
    """Entry point: nothing to do."""

    async def execute(self, run: NodeRun) -> Outcome:
        """Succeed."""
        return Outcome(Status.SUCCESS)


class ExitHandler:
    """Exit point; goal gates are the executor's business."""

    async def execute(self, run: NodeRun) -> Outcome:
        """Succeed."""
        return Outcome(Status.SUCCESS, notes="Pipeline completed")


class ConditionalHandler:
    """Routing point: passes the previous node's outcome through, so that its edges'
    `outcome=…` conditions test the node before it (docs/pipelines.md)."""

    retryable = False  # the same input gives the same answer

    async def execute(self, run: NodeRun) -> Outcome:
        """Succeed, keeping the previous node's outcome for the edge conditions."""
        previous = str(run.context.get("outcome", "success"))
        status = Status(previous) if previous in Status._value2member_map_ else Status.SUCCESS
        return Outcome(status if status is not Status.RETRY else Status.SUCCESS,
                       preferred_label=str(run.context.get("preferred_label", "") or ""),
                       notes=f"Conditional node evaluated: {run.node.id}")
