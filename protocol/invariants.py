"""Invariants: typed checks over a stored run, one discriminated union on `type`.

`run.reeval` evaluates them against a stored run; snapshots will store them and test runs
will evaluate them after each replay. Every invariant has a `type` and an optional
`description`; each evaluates to an `InvariantResult`. To add a check: a model here with its
own `type` literal, added to `Invariant`, and an evaluator in daemon/services/invariants.py.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

RunStatusName = Literal["pending", "running", "waiting", "completed", "failed", "cancelled",
                        "interrupted", "budget_exceeded"]
CheckStatus = Literal["passed", "failed", "error", "skipped"]

# Where `contains` looks (see ContainsInvariant.path).
OUTPUT_PATH = re.compile(r"^(output|node\.[^.\s].*|context\..+)$")


class InvariantBase(BaseModel):
    """What every invariant has besides its `type`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = Field(default=None,
                                    description="What the check means, shown in results.")


class RunStatusInvariant(InvariantBase):
    """The run ended with this status (and outcome). seeds/001 spelling works too:
    `{"type": "run_status", "value": "COMPLETED"}`; statuses are case-insensitive."""

    type: Literal["run_status"]
    value: RunStatusName | list[RunStatusName] = Field(
        default="completed", description="The expected status, or any of several.")
    outcome: Literal["success", "fail"] | None = Field(
        default=None, description="Also require this outcome.")

    @field_validator("value", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.lower()
        if isinstance(value, list):
            return [v.lower() if isinstance(v, str) else v for v in value]
        return value


class ContainsInvariant(InvariantBase):
    """A substring of an output (case-sensitive).

    `path` says which output: `output` (the default) is the full response text of the run's
    last call that has one (a model's text, a tool's stdout); `node.<node_id>` is that of the
    node's last call; `context.<key>` is the value of a key of the run's final context
    (non-string values are searched in their JSON text). A content check: a run recorded with
    `record: "metadata_only"` has no content to search."""

    type: Literal["contains"]
    value: str = Field(min_length=1, description="The text that must occur.")
    path: str = Field(default="output",
                      description="`output`, `node.<node_id>` or `context.<key>`.")

    @field_validator("path")
    @classmethod
    def _known_path(cls, path: str) -> str:
        if not OUTPUT_PATH.match(path):
            raise ValueError(f"path must be `output`, `node.<node_id>` or `context.<key>`, "
                             f"not {path!r}")
        return path


class MaxCostInvariant(InvariantBase):
    """The run cost at most `value` US dollars (the sum over its calls)."""

    type: Literal["max_cost_usd"]
    value: float = Field(ge=0, description="The most the run may have cost, in USD.")


Invariant = Annotated[RunStatusInvariant | ContainsInvariant | MaxCostInvariant,
                      Field(discriminator="type")]

# Content checks read what a run said; a metadata-only recording does not keep it.
CONTENT_CHECKS = frozenset({"contains"})

invariant_list = TypeAdapter(list[Invariant])


class InvariantResult(BaseModel):
    """The verdict of one invariant on one run."""

    model_config = ConfigDict(extra="forbid")

    type: str
    description: str | None = None
    status: CheckStatus = Field(
        description="`error`: the check could not be evaluated (missing content, say); "
                    "`skipped`: not evaluated on purpose (`allow_partial`).")
    expected: Any = None
    actual: Any = None
    message: str
