"""Trials family: a trial set is N runs of one pipeline, inputs and settings (`run.start`
with `trials`); `trials.get` reports it, `trials.cancel` stops it."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from .base import Model, Params, Result
from .registry import MethodSpec

TrialSetStatus = Literal["running", "completed", "cancelled", "interrupted", "budget_exceeded"]
TrialStatus = Literal["pending", "running", "completed", "failed", "cancelled", "skipped",
                      "interrupted", "waiting", "budget_exceeded"]


class Percentiles(Model):
    """Distribution of one measure over the finished trials."""

    model_config = ConfigDict(extra="forbid")

    count: int
    mean: float
    min: float
    max: float
    p50: float
    p95: float


class TrialRun(Model):
    """One trial of a set: its run and how it ended."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="0-based position in the set.")
    run_id: str | None = Field(default=None, description="None until the trial started.")
    trace_id: str | None = None
    status: TrialStatus
    outcome: Literal["success", "fail"] | None = None
    passed: bool | None = Field(default=None, description="None until the trial ended.")
    failure_reason: str | None = None
    duration_ms: float | None = None
    cost_usd: float = 0.0
    score: float | None = None


class TrialSetSummary(Result):
    """A trial set: its trials and aggregates over those that finished."""

    trial_set_id: str
    status: TrialSetStatus
    pipeline_name: str
    trials: int
    concurrency: int
    early_stop: bool
    pass_threshold: float
    set_dir: str = Field(description="Absolute path of the set's directory (manifest.json).")
    finished: int
    passed: int
    failed: int
    pass_rate: float | None = Field(description="passed / finished; None before any ended.")
    verdict: Literal["passed", "failed"] | None = Field(
        description="Whether at least pass_threshold of all the trials passed; None while "
                    "the trials still to finish could change it.")
    early_stopped: bool = False
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: Percentiles | None = None
    scores: Percentiles | None = None
    created_at: str
    ended_at: str | None = None
    trial_runs: list[TrialRun]


class TrialSetIdParams(Params):
    """A trial set by id."""

    trial_set_id: str
    wait: bool = Field(default=False, description="Answer when the set has ended.")


class TrialSetRef(Params):
    """A trial set by id (cancel)."""

    trial_set_id: str


METHODS = [
    MethodSpec("trials.get", TrialSetIdParams, TrialSetSummary,
               "A trial set: its trials, pass rate, cost, tokens, latency and scores."),
    MethodSpec("trials.cancel", TrialSetRef, TrialSetSummary,
               "Cancel a running trial set: no trial starts any more, the running ones are "
               "cancelled; answers once it has stopped."),
]
