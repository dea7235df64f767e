"""Outcomes of node handlers (attractor §5.2) and the status-file contract (appendix C)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """What a stage ended with; the lowercase value is what conditions compare against."""

    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    RETRY = "retry"
    FAIL = "fail"
    SKIPPED = "skipped"

    @property
    def succeeded(self) -> bool:
        """SUCCESS or PARTIAL_SUCCESS: what goal gates accept."""
        return self in (Status.SUCCESS, Status.PARTIAL_SUCCESS)


@dataclass
class Outcome:
    """The result of executing one node."""

    status: Status
    preferred_label: str = ""
    suggested_next_ids: list[str] = field(default_factory=list)
    context_updates: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    failure_reason: str = ""
    score: float | None = None
    # Engine-only: where traversal continues after a parallel block (its fan-in node).
    jump_to: str | None = None
    # Engine-only: False when running the node again cannot help (node retries skip it).
    retryable: bool = True
    # Engine-only: the node's work as text (a model's whole answer, a tool's output, a
    # human's answer): the run log's note, a branch's result for a fan-in to rank.
    answer: str | None = None
    # Engine-only: the turn a `full` node adds to its thread: {thread, node, status, user,
    # assistant}.
    turn: dict[str, str] | None = None

    def to_status_file(self) -> dict[str, Any]:
        """The status.json form (appendix C), with failure_reason when there is one."""
        data: dict[str, Any] = {
            "outcome": self.status.value,
            "preferred_label": self.preferred_label,
            "suggested_next_ids": self.suggested_next_ids,
            "context_updates": self.context_updates,
            "notes": self.notes,
        }
        if self.failure_reason:
            data["failure_reason"] = self.failure_reason
        if self.score is not None:
            data["score"] = self.score
        return data

    @classmethod
    def from_status_file(cls, data: dict[str, Any]) -> Outcome:
        """Read a status.json written by us or by an external tool."""
        return cls(
            status=Status(str(data.get("outcome", "success")).lower()),
            preferred_label=str(data.get("preferred_label", "")),
            suggested_next_ids=list(data.get("suggested_next_ids", [])),
            context_updates=dict(data.get("context_updates", {})),
            notes=str(data.get("notes", "")),
            failure_reason=str(data.get("failure_reason", "")),
            score=data.get("score"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything, for checkpoints and the store."""
        data = self.to_status_file()
        if self.jump_to is not None:
            data["jump_to"] = self.jump_to
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """Inverse of `to_dict`."""
        outcome = cls.from_status_file(data)
        outcome.jump_to = data.get("jump_to")
        return outcome
