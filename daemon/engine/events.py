"""Run events, named after attractor §9.6 (StageStarted, PipelineCompleted, …)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal[
    "PipelineStarted", "PipelineCompleted", "PipelineFailed", "PipelineCancelled",
    "PipelineResumed",
    "StageStarted", "StageCompleted", "StageFailed", "StageRetrying",
    "ParallelStarted", "ParallelBranchStarted", "ParallelBranchCompleted", "ParallelCompleted",
    "InterviewStarted", "InterviewCompleted", "InterviewTimeout",
    "CheckpointSaved", "ReplayDiverged", "BudgetExceeded",
    "ModelRetrying", "LoopRestarted", "ChildRunStarted", "ManagerCycle", "ManagerSteered",
    "ToolProcessStarted",
]


@dataclass(slots=True)
class Event:
    """One event of a run; `seq` orders the events of a run across resumes."""

    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    time: str = ""
