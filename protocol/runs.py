"""Runs family: run settings, start, get, list, cancel, resume, subscribe, human.answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import NullResult, Params, Result
from .pipelines import PipelineRef
from .registry import MethodSpec

RunStatus = Literal["pending", "running", "waiting", "completed", "failed", "cancelled",
                    "interrupted", "budget_exceeded"]


class HumanSettings(BaseModel):
    """How human gates are answered when nobody should be asked."""

    model_config = ConfigDict(extra="forbid")

    answers: list[str] = Field(
        default_factory=list,
        description="Preset answers, used in order by the run's human gates (a queue); an "
                    "answer is an option key, a label, or a target node id.")
    auto_approve: bool = Field(
        default=False, description="Answer every gate (once the queue is empty) with its "
                                   "first option.")


class RetrySettings(BaseModel):
    """Node retry behaviour shared by the run."""

    model_config = ConfigDict(extra="forbid")

    delay_scale: float = Field(
        default=1.0, ge=0, description="Multiplies every backoff delay; 0 retries at once.")
    jitter: bool = True


class RunSettings(BaseModel):
    """Settings of one run; copied, with secrets redacted, into config/settings.json."""

    model_config = ConfigDict(extra="forbid")

    default_provider: str = Field(
        default="scripted", description="Provider of nodes that name none (node "
                                        "`llm_provider` or the stylesheet win).")
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per provider: base_url, api_key_env, timeout_s, concurrency, retry, and "
                    "for `scripted` its responses/statuses/latency_ms/fail_rate/seed.")
    pricing: dict[str, Any] | None = Field(
        default=None, description="Overrides of the shipped pricing table.")
    human: HumanSettings = Field(default_factory=HumanSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    max_parallel: int = Field(default=4, ge=1,
                              description="Default concurrency of parallel nodes and DAGs.")
    max_steps: int = Field(
        default=100_000, ge=0, description="Node executions after which a run fails, so "
                                           "that a loop cannot run forever; 0: no limit.")


class RunStartParams(Params):
    """Start a run."""

    pipeline: PipelineRef
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Initial context values (and `$name` variables "
                                          "when they are strings).")
    variables: dict[str, str] = Field(default_factory=dict,
                                      description="`--set key=value` variables.")
    settings: RunSettings = Field(default_factory=RunSettings)
    wait: bool = Field(default=False, description="Answer when the run ends, not at once.")


class RunSummary(Result):
    """One run as the store knows it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    status: RunStatus
    outcome: Literal["success", "fail"] | None = None
    failure_reason: str | None = None
    pipeline_name: str
    pipeline_hash: str
    run_dir: str = Field(description="Absolute path of the run directory.")
    trace_id: str
    current_node: str | None = None
    resumable: bool = False
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


class RunIdParams(Params):
    """A run by id."""

    run_id: str


class RunResumeParams(RunIdParams):
    """Resume a run; `wait` answers when it ends."""

    wait: bool = False
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Inputs to give again: secret-looking ones were "
                                          "never written down, so a resume needs them.")
    variables: dict[str, str] = Field(default_factory=dict,
                                      description="Variables to give again, likewise.")


class StageSummary(BaseModel):
    """One attempt of one node."""

    seq: int
    node_id: str
    attempt: int
    status: str
    handler: str
    branch: str | None = None
    started_at: str
    ended_at: str
    duration_ms: float
    outcome: dict[str, Any]


class RunDetail(RunSummary):
    """A run with its stages, final context and pending question."""

    stages: list[StageSummary] = Field(default_factory=list)
    context: dict[str, Any] | None = Field(default=None,
                                           description="From the latest checkpoint.")
    completed_nodes: list[str] = Field(default_factory=list)
    question: dict[str, Any] | None = Field(
        default=None, description="The open human question while `waiting`.")


class RunListParams(Params):
    """Filter and page through runs, newest first."""

    status: list[RunStatus] | None = None
    pipeline: str | None = Field(default=None, description="Pipeline name or hash.")
    since: str | None = Field(default=None, description="created_at ≥ this ISO time.")
    until: str | None = Field(default=None, description="created_at < this ISO time.")
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class RunListResult(Result):
    """A page of runs."""

    runs: list[RunSummary]
    next_cursor: str | None = None


class SubscribeParams(Params):
    """Receive `run/event` notifications of one run, or of every run with `*`."""

    run_id: str = Field(description="A run id, or `*` for all runs.")


class HumanAnswerParams(Params):
    """Answer the open question of a waiting run."""

    run_id: str
    question_id: str
    answer: str = Field(description="An option key, its label, or the target node id.")


class RunEventParams(BaseModel):
    """`run/event`, daemon → client: one event of a run (attractor §9.6 names)."""

    run_id: str
    seq: int
    type: str
    time: str
    data: dict[str, Any]


METHODS = [
    MethodSpec("run.start", RunStartParams, RunSummary,
               "Start a run of a pipeline; answers at once with its id, status and run "
               "directory, or when it ends with `wait: true`."),
    MethodSpec("run.get", RunIdParams, RunDetail,
               "A run with its stages, final context and any open human question."),
    MethodSpec("run.list", RunListParams, RunListResult,
               "Runs newest first, filtered by status, pipeline and time; paged."),
    MethodSpec("run.cancel", RunIdParams, RunSummary,
               "Cancel a running run; its tool processes are killed; it stays resumable."),
    MethodSpec("run.resume", RunResumeParams, RunSummary,
               "Continue an interrupted or cancelled run from its checkpoint."),
    MethodSpec("run.subscribe", SubscribeParams, NullResult,
               "Receive `run/event` notifications of a run, or of all runs with `*`."),
    MethodSpec("run.unsubscribe", SubscribeParams, NullResult,
               "Stop receiving a run's events."),
    MethodSpec("human.answer", HumanAnswerParams, NullResult,
               "Answer the open question of a waiting run; the run goes on."),
]

SERVER_NOTIFICATIONS = [
    MethodSpec("run/event", RunEventParams, None,
               "Daemon → client: an event of a subscribed run (attractor §9.6 names: "
               "PipelineStarted, StageStarted, StageCompleted, InterviewStarted, …)."),
]
