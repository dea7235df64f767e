"""Runs family: run settings, start, get, list, cancel, resume, subscribe, human.answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .base import Model, NullResult, Params, Result, Root, Strict, cancel_needs_wait
from .bounds import JsonObject
from .invariants import Invariant, InvariantResult
from .pipelines import PipelineRef
from .registry import MethodSpec
from .trials import TrialSetSummary

# A real pipeline rarely runs more than a few dozen node executions; a loop of four LLM nodes
# that never ends stops after 50 rounds (half an hour at ten seconds a call, not a day).
DEFAULT_MAX_STEPS = 200
# Sane bounds (docs/protocol.md, "Bounds"): a backoff 100 times the preset's is already hours,
# 1,000 branches at once is far past any provider's rate limit, a million node executions
# far past any pipeline.
MAX_DELAY_SCALE = 100.0
MAX_PARALLEL = 1000
MAX_STEPS = 1_000_000

RunStatus = Literal["pending", "running", "waiting", "completed", "failed", "cancelled",
                    "interrupted", "budget_exceeded"]


class HumanSettings(Model):
    """How human gates are answered when nobody should be asked."""

    model_config = ConfigDict(extra="forbid")

    answers: list[str] = Field(
        default_factory=list,
        description="Preset answers, used in order by the run's human gates (a queue): "
                    "for multiple choice an option key, a label, or a target node id; for "
                    "yes_no and confirmation yes, y, true, no, n or false; for freeform any "
                    "text.")
    auto_approve: bool = Field(
        default=False, description="Answer every gate (once the queue is empty): multiple "
                                   "choice with its first option, yes_no and confirmation "
                                   "with yes, freeform with `auto-approved`.")


class RetrySettings(Model):
    """Node retry behaviour shared by the run."""

    model_config = ConfigDict(extra="forbid")

    delay_scale: float = Field(
        default=1.0, ge=0, le=MAX_DELAY_SCALE,
        description="Multiplies every backoff delay; 0 retries at once.")
    jitter: bool = True


class AgentSettings(Model):
    """Tools, MCP servers, the workspace and the bounds of agent nodes (codergen nodes with
    `tools` or `mcp`); a tool or server named here wins over the pipeline's of that name."""

    model_config = ConfigDict(extra="forbid")

    tools: dict[str, JsonObject] = Field(
        default_factory=dict,
        description="Command tools by name: description, schema, argv (a list; `{arg}` "
                    "placeholders fill whole elements, never a shell), timeout, cwd, "
                    "max_output, env, secrets.")
    mcp_servers: dict[str, JsonObject] = Field(
        default_factory=dict,
        description="MCP servers by name: command (a list) or url, env, secrets, headers, "
                    "tools (an allow-list), timeout, startup_timeout.")
    workspace: str | None = Field(
        default=None, description="The directory tools work in (absolute). Unset: the "
                                  "run's own `workspace/`, created empty.")
    workspace_from: str | None = Field(
        default=None, description="A directory copied into the run's own workspace when the "
                                  "run starts (relative to the pipeline's directory).")
    max_turns: int = Field(default=10, ge=1, le=1000,
                           description="Model turns per node attempt; the last one may call "
                                       "no tool, so the model answers.")
    max_tool_calls: int = Field(default=50, ge=1, le=10_000,
                                description="Tool calls per node attempt.")
    tool_concurrency: int = Field(default=4, ge=1, le=64,
                                  description="Tool calls of one turn run at once.")


class RunSettings(Model):
    """Settings of one run; copied, with secrets redacted, into config/settings.json."""

    model_config = ConfigDict(extra="forbid")

    default_provider: str = Field(
        default="scripted", description="Provider of nodes that name none (node "
                                        "`llm_provider` or the stylesheet win).")
    providers: dict[str, JsonObject] = Field(
        default_factory=dict,
        description="Per provider: base_url, api_key_env, timeout_s, concurrency, retry, and "
                    "for `scripted` its responses/statuses/latency_ms/fail_rate/"
                    "pass_probability/seed.")
    pricing: JsonObject | None = Field(
        default=None, description="Overrides of the shipped pricing table.")
    human: HumanSettings = Field(default_factory=HumanSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    max_parallel: int = Field(default=4, ge=1, le=MAX_PARALLEL,
                              description="Default concurrency of parallel nodes and DAGs.")
    max_steps: int = Field(
        default=DEFAULT_MAX_STEPS, ge=0, le=MAX_STEPS,
        description="Node executions (attempts, parallel branches' included) after which a "
                    "run fails, so that a loop whose exit condition never holds stops long "
                    "before it costs hours; 0: no limit.")


class ReplaySpec(Model):
    """Serve a run's model and tool calls from another run's recording (a cassette)."""

    model_config = ConfigDict(extra="forbid")

    from_run: str | None = Field(
        default=None, description="The recorded run. Without `pipeline`, its pipeline, "
                                  "inputs, variables and settings are used again.")
    mode: Literal["recorded", "hybrid", "live"] = Field(
        default="recorded",
        description="`recorded`: every call from the recording, a call it does not hold "
                    "stops the run (divergence); `hybrid`: unmatched calls go live; `live`: "
                    "every call live.")


RETURN_ON_QUESTION = ("With `wait`: answer also when the run starts waiting on a human "
                      "(status `waiting`; run.get has the question, human.answer answers it). "
                      "MCP's `run` tool does so unless told `false`.")


class RunStartParams(Params):
    """Start a run, or a trial set of runs."""

    pipeline: PipelineRef | None = Field(
        default=None, description="Required unless `replay.from_run` names a run to rerun.")
    inputs: JsonObject = Field(
        default_factory=dict, description="Initial context values (and `$name` variables "
                                          "when they are strings).")
    variables: dict[str, str] = Field(default_factory=dict,
                                      description="`--set key=value` variables.")
    settings: RunSettings = Field(default_factory=RunSettings)
    wait: bool = Field(default=False, description="Answer when the run ends, not at once.")
    cancel_with_request: bool = Field(
        default=False,
        description="With `wait`: cancelling this request (`$/cancelRequest`, or the "
                    "connection closing) cancels the run (or trial set) too, and the error "
                    "-32800 answers once it has stopped. Without it, a cancelled request only "
                    "ends the wait and the run goes on.")
    return_on_question: bool = Field(default=False, description=RETURN_ON_QUESTION)
    record: Literal["full", "metadata_only"] = Field(
        default="full", description="`metadata_only`: no prompt or response content in the "
                                    "trace, the calls, stage records and node files.")
    replay: ReplaySpec | None = None
    trials: int | None = Field(default=None, ge=1, le=100_000,
                               description="Run a trial set of this many runs.")
    concurrency: int = Field(default=4, ge=1, le=1000,
                             description="Trials running at once.")
    early_stop: bool = Field(default=False,
                             description="End the trial set once its verdict is settled.")
    pass_threshold: float = Field(default=1.0, ge=0.0, le=1.0,
                                  description="Share of trials that must pass (verdict).")

    @model_validator(mode="after")
    def _pipeline_or_replay(self) -> RunStartParams:
        if self.pipeline is None and (self.replay is None or self.replay.from_run is None):
            raise ValueError("give `pipeline`, or `replay.from_run` to run a recorded "
                             "run's pipeline again")
        # Only values other than the defaults: typed clients send every field.
        stray = [name for name in _TRIAL_SET_ONLY
                 if getattr(self, name) != type(self).model_fields[name].default]
        if self.trials is None and stray:
            raise ValueError(", ".join(f"`{name}`" for name in stray)
                             + (" applies" if len(stray) == 1 else " apply")
                             + " to a trial set: give `trials` too")
        cancel_needs_wait(self)
        return self


_TRIAL_SET_ONLY = ("concurrency", "early_stop", "pass_threshold")


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
    snapshot_id: str | None = Field(default=None,
                                    description="The snapshot this run replays, if any.")
    parent_run_id: str | None = Field(
        default=None, description="The run whose manager node started this one, if any.")


class RunStartResult(Root[RunSummary | TrialSetSummary]):
    """The run's summary; with `trials`, the trial set's."""


class RunIdParams(Params):
    """A run by id."""

    run_id: str


class RunGetParams(RunIdParams):
    """A run by id; `wait` answers once it has ended."""

    wait: bool = Field(default=False, description="Answer once the run has ended (at once "
                                                  "for a run that is not active).")
    return_on_question: bool = Field(default=False, description=RETURN_ON_QUESTION)

    @model_validator(mode="after")
    def _needs_wait(self) -> RunGetParams:
        cancel_needs_wait(self)
        return self


class RunResumeParams(RunIdParams):
    """Resume a run; `wait` answers when it ends."""

    wait: bool = False
    cancel_with_request: bool = Field(
        default=False, description="With `wait`: cancelling this request cancels the run "
                                   "too (as for run.start).")
    return_on_question: bool = Field(default=False, description=RETURN_ON_QUESTION)
    inputs: JsonObject = Field(
        default_factory=dict, description="Inputs to give again: secret-looking ones were "
                                          "never written down, so a resume needs them.")
    variables: dict[str, str] = Field(default_factory=dict,
                                      description="Variables to give again, likewise.")

    @model_validator(mode="after")
    def _cancel_with_wait(self) -> RunResumeParams:
        cancel_needs_wait(self)
        return self


class StageSummary(Model):
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
        default=None, description="The open human question while `waiting`: "
                                  "question_id, run_id, node_id, text, type "
                                  "(multiple_choice, yes_no, confirmation or freeform), "
                                  "options (key, label, target; empty for freeform), "
                                  "default.")
    children: list[str] = Field(
        default_factory=list, description="The runs this run's manager nodes started.")


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
    answer: str = Field(
        description="Multiple choice: an option key, its label, or the target node id (one "
                    "that matches nothing takes the first option). yes_no and confirmation: "
                    "yes, y, true, no, n or false, any case (anything else is refused with "
                    "-32602 and the question stays open). freeform: any text.")


class RunEventParams(Model):
    """`run/event`, daemon → client: one event of a run (attractor §9.6 names)."""

    run_id: str
    seq: int
    type: str
    time: str
    data: dict[str, Any]


METHODS = [
    MethodSpec("run.start", RunStartParams, RunStartResult,
               "Start a run of a pipeline (or, with `trials`, a trial set); answers at once "
               "with its id, status and directory, or when it ends with `wait: true`."),
    MethodSpec("run.get", RunGetParams, RunDetail,
               "A run with its stages, final context and any open human question; with "
               "`wait`, once it has ended."),
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


# -- run.diff -----------------------------------------------------------------------------


class RunDiffParams(Params):
    """Compare two stored runs."""

    a: str = Field(description="The run compared against (the baseline).")
    b: str = Field(description="The run compared with it.")


class DiffEntry(Strict):
    """One JSON leaf where the two sides differ."""

    path: str = Field(description="Where, as `messages[1].content`, `status`, `metadata[\"k\"]`.")
    a: Any = None
    b: Any = None
    at: int | None = Field(default=None, description="Strings: the first differing character; "
                                                     "long strings are cut around it.")
    only_in: Literal["a", "b"] | None = Field(
        default=None, description="A key or item only one side has.")


class Divergence(Strict):
    """Where the two runs first differ, walking their stages in a canonical order."""

    step: int = Field(description="1-based position of the stage in the canonical order.")
    node_id: str | None = Field(description="a's node at that step (b's when a has none); "
                                            "null for a `status` divergence.")
    b_node_id: str | None
    branch: str | None = None
    attempt: int | None = None
    turn: int | None = Field(default=None, description="The agent turn (1-based within the "
                                                       "node attempt) of the divergent call; "
                                                       "null for a call of no turn.")
    tool: str | None = Field(default=None, description="The tool the divergent call "
                                                       "called, as the model named it.")
    kind: Literal["path", "request", "error", "response", "outcome", "status"] = Field(
        description="`path`: another node ran (or none); `request`: a call was sent "
                    "differently; `error`/`response`: it came back differently; `outcome`: "
                    "the stage routed differently; `status`: the same stages, another end.")
    a: Any = Field(description="a's side: the stage, call, outcome or run it refers to.")
    b: Any
    differences: list[DiffEntry]
    more: int = Field(description="Differences beyond those listed.")
    summary: str = Field(default="", description="One line for people: the step, node, "
                                                 "attempt, turn and tool call, and what "
                                                 "differs.")


class ScenarioDiff(Strict):
    """What differed before either run started."""

    pipeline_changed: bool | None = Field(description="The pipeline hashes differ.")
    inputs: list[DiffEntry]
    settings: list[DiffEntry]


class NodeMetrics(Strict):
    """One node in one run: visits, attempts, last status, time, tokens and cost."""

    visits: int
    attempts: int
    status: str | None
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float


class MetricDelta(Strict):
    """b - a; a side without the node counts as zero. Null where a side has no value."""

    duration_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    tokens: int | None
    cost_usd: float | None


class NodeDiff(Strict):
    """One node in both runs: null on the side that never ran it."""

    a: NodeMetrics | None
    b: NodeMetrics | None
    delta: MetricDelta
    outcome_changed: bool


class RunTotals(Strict):
    """Whole-run metrics of one side."""

    status: str | None
    outcome: str | None
    duration_ms: float | None = Field(description="Wall time start to end; null until it "
                                                  "ended.")
    input_tokens: int
    output_tokens: int
    cost_usd: float
    nodes: int
    stages: int
    calls: int


class TotalsDelta(MetricDelta):
    """b - a for the whole run."""

    nodes: int
    stages: int
    calls: int


class TotalsDiff(Strict):
    """Whole-run metrics of both sides and their deltas."""

    a: RunTotals
    b: RunTotals
    delta: TotalsDelta
    status_changed: bool


class RunDiffResult(Result):
    """The first divergence of two runs, and their per-node and whole-run metric deltas.
    Volatile values (ids, times, latencies, retry counters, costs) never count as a
    divergence; costs show as deltas."""

    a: str
    b: str
    identical: bool = Field(description="No divergence: the same path, calls, responses, "
                                        "outcomes and end.")
    first_divergence: Divergence | None
    scenario: ScenarioDiff
    nodes: dict[str, NodeDiff] = Field(description="Every node either run visited, in the "
                                                   "order they first ran (a's, then b's).")
    totals: TotalsDiff


# -- run.reeval ---------------------------------------------------------------------------


class RunReevalParams(Params):
    """Evaluate invariants against a stored run, executing nothing."""

    run_id: str
    invariants: list[Invariant] | None = Field(
        default=None, description="The checks (see protocol/invariants.py).")
    snapshot_id: str | None = Field(
        default=None, description="Take the invariants of a snapshot (its id, name or "
                                  "name@version) instead, and check "
                                  "drift against its pipeline and inputs (unless `pipeline` "
                                  "or `inputs` are given).")
    allow_partial: bool = Field(
        default=False, description="Content checks on a run recorded `metadata_only` are "
                                   "`skipped` rather than `error`.")
    strict_scenario: bool = Field(
        default=False, description="Scenario drift fails the reeval instead of warning.")
    pipeline: PipelineRef | None = Field(
        default=None, description="The pipeline the run should have run: drift when its "
                                  "hash differs from the run's.")
    inputs: JsonObject | None = Field(
        default=None, description="The inputs the run should have had: drift when their hash "
                                  "differs from the run's.")

    @model_validator(mode="after")
    def _one_source(self) -> RunReevalParams:
        if (self.invariants is None) == (self.snapshot_id is None):
            raise ValueError("give exactly one of `invariants` or `snapshot_id`")
        return self


class DriftCheck(Strict):
    """One part of the scenario compared with what the run recorded."""

    subject: Literal["pipeline", "inputs"]
    run_hash: str | None = Field(description="sha256 of what the run recorded.")
    given_hash: str = Field(description="sha256 of what was given to check against.")
    drifted: bool


class ReevalCounts(Strict):
    """Results by status."""

    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0


class RunReevalResult(Result):
    """Each invariant's result and the overall verdict: `passed` when no check failed or
    errored and, under `strict_scenario`, nothing drifted."""

    run_id: str
    verdict: Literal["passed", "failed"]
    results: list[InvariantResult]
    counts: ReevalCounts
    drift: list[DriftCheck] = Field(description="One entry per part given to check against.")
    warnings: list[str] = Field(description="Drift (without `strict_scenario`) and other "
                                            "things to know about the verdict.")
    record: Literal["full", "metadata_only"] = Field(description="How the run was recorded.")


METHODS += [
    MethodSpec("run.diff", RunDiffParams, RunDiffResult,
               "Compare two stored runs: the first divergence (node, step, what differed) "
               "and per-node and whole-run metric deltas."),
    MethodSpec("run.reeval", RunReevalParams, RunReevalResult,
               "Evaluate invariants against a stored run without executing anything; warns "
               "(or fails under `strict_scenario`) when the pipeline or inputs drifted. A "
               "`judge` is served from the run's recorded `$judge` calls where they match "
               "(same vote, same request); otherwise it asks the run's providers live and "
               "records those calls on the run (calls table and trace.jsonl; the run's own "
               "cost is unchanged). Across-trials checks (`pass_rate`, `pass_at_k`) are "
               "`skipped` on one run."),
]


# -- run.prune ----------------------------------------------------------------------------

PruneReason = Literal["active", "snapshot", "test_run", "replay"]


def _utc_instant(text: str) -> str:
    """An ISO date or date-time as the store writes times (UTC, microseconds, `Z`); a date
    is its midnight UTC, a time without an offset is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO date or date-time: {text!r} (e.g. 2026-11-30 or "
                         "2026-11-30T12:00:00Z)") from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RunPruneParams(Params):
    """Remove ended runs: those created before a time, those beyond the newest N, or both
    (then a run must be both to go)."""

    before: str | None = Field(
        default=None, description="An ISO date or date-time (UTC when it has no offset): "
                                  "runs created before it go.")
    keep: int | None = Field(
        default=None, ge=0, description="Keep the newest N ended runs (a trial set counts "
                                        "as one, a run with its child runs as one).")
    dry_run: bool = Field(default=False, description="Say what would go; change nothing.")

    @field_validator("before")
    @classmethod
    def _instant(cls, before: str | None) -> str | None:
        return None if before is None else _utc_instant(before)

    @model_validator(mode="after")
    def _some_selection(self) -> RunPruneParams:
        if self.before is None and self.keep is None:
            raise ValueError("give `before`, `keep` or both")
        return self


class PruneKept(Strict):
    """Runs the selection took in that stay, and why."""

    run_id: str = Field(description="The run the reason is about (referenced or active).")
    trial_set_id: str | None = Field(description="Its trial set, which stays whole.")
    runs: int = Field(description="Runs that stay with it: itself, its parent and child "
                                  "runs, the other runs of its trial set.")
    reason: PruneReason = Field(
        description="`active`: running, paused or waiting (or a test run in progress may "
                    "still read it); `snapshot`: a snapshot was made from it; `test_run`: "
                    "a stored test run refers to it; `replay`: a run that is active or can "
                    "be resumed replays its recording.")
    by: str | None = Field(description="The snapshot, test run or run that refers to it.")


class PruneBytes(Strict):
    """Disk space given back."""

    run_dirs: int = Field(description="Run and trial-set directories (blocks on disk).")
    store: int | None = Field(description="The database file and its WAL, before less "
                                          "after; null in a dry run (measured, not guessed).")


class RunPruneResult(Result):
    """What went (or, in a dry run, would go), what stayed and why, and the space given
    back."""

    dry_run: bool
    removed: list[str] = Field(description="Ids of the runs removed (rows, trace, events, "
                                           "directory), oldest first.")
    trial_sets: list[str] = Field(description="Trial sets removed whole.")
    kept: list[PruneKept]
    bytes: PruneBytes
    compaction: Literal["none", "incremental", "vacuum"] = Field(
        description="How the store file was shrunk: `incremental` (free pages given back), "
                    "`vacuum` (a one-time rewrite that turns incremental vacuum on), or "
                    "`none` (a dry run, or too little to give back).")


METHODS += [
    MethodSpec("run.prune", RunPruneParams, RunPruneResult,
               "Remove ended runs created before a time and/or beyond the newest N: their "
               "store rows and directories; never an active run, nor one a snapshot, a "
               "stored test run or a resumable replay refers to (those are listed with the "
               "reason). `dry_run` says what would go. Gives the disk space back."),
]
