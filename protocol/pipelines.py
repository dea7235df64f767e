"""Pipelines family: pipeline references, diagnostics, validate and plan."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import Model, Params, Result
from .bounds import JsonObject
from .registry import MethodSpec

Severity = Literal["error", "warning", "info"]


class PipelineRef(Model):
    """A pipeline by `path` (relative to the daemon's working directory or absolute), or
    inline as `source` with its `format`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    source: str | None = None
    format: Literal["dot", "recipe"] | None = Field(
        default=None, description="Required with `source`; with `path` taken from the suffix "
                                  "(.dot, .yaml/.yml) unless given.")

    @model_validator(mode="after")
    def _one_of(self) -> PipelineRef:
        if (self.path is None) == (self.source is None):
            raise ValueError("give exactly one of `path` or `source`")
        if self.source is not None and self.format is None:
            raise ValueError("`format` (dot or recipe) is required with `source`")
        return self


class Diagnostic(Model):
    """One finding about a pipeline: a parse error or a lint rule (attractor §7)."""

    rule: str = Field(description="`syntax` for parse errors, else the lint rule id.")
    severity: Severity
    message: str
    node: str | None = None
    edge: tuple[str, str] | None = None
    line: int | None = None
    col: int | None = None
    fix: str | None = None


class ValidateParams(Params):
    """Parse and lint a pipeline."""

    pipeline: PipelineRef
    variables: dict[str, str] = Field(
        default_factory=dict, description="`--set key=value` variables for `$key` expansion.")
    inputs: JsonObject = Field(
        default_factory=dict,
        description="The run's inputs: string inputs act as variables, and every input's name "
                    "is a context key `${name}` references may use.")


class ValidateResult(Result):
    """Whether the pipeline can run, and every diagnostic."""

    valid: bool = Field(description="No error-severity diagnostic.")
    diagnostics: list[Diagnostic]
    pipeline_hash: str | None = Field(default=None,
                                      description="sha256 of the canonical graph, if parsed.")


class PlanParams(ValidateParams):
    """Resolve a pipeline without running it: no run directory, no rows."""

    settings: JsonObject = Field(default_factory=dict)


class PlanResult(ValidateResult):
    """The resolved plan (what plan.json of a run holds)."""

    plan: dict[str, Any] | None = None


METHODS = [
    MethodSpec("pipeline.validate", ValidateParams, ValidateResult,
               "Parse, transform and lint a pipeline; every diagnostic with rule, severity, "
               "node or edge, and line:col."),
    MethodSpec("pipeline.plan", PlanParams, PlanResult,
               "Resolve a pipeline (stylesheet, variables) without running it: no run "
               "directory, no rows."),
]
