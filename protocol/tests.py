"""Tests family: a test run replays a selection of snapshots, evaluates their invariants and
compares their metrics with the reference, under one cost budget (`tests.run`); it is stored
(`tests.get`, `tests.list`) and rendered on request (`tests.report`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .base import Model, NullResult, Params, Result, Strict, cancel_needs_wait
from .bounds import MAX_INTEGER
from .registry import MethodSpec
from .snapshots import MAX_TAGS, Tag

TestMode = Literal["recorded", "hybrid", "live"]
TestRunStatus = Literal["running", "passed", "failed", "error", "budget_exceeded",
                        "cancelled", "interrupted"]
SnapshotTestStatus = Literal["pending", "running", "passed", "failed", "error", "skipped",
                             "budget_exceeded"]
ReportFormat = Literal["junit", "markdown", "html"]


class TestsRunParams(Params):
    """Replay a selection of snapshots and check them: exactly one of `snapshot_ids`, `tags`
    or `all`."""

    __test__ = False  # not a pytest class, whatever its name

    snapshot_ids: list[str] | None = Field(
        default=None, min_length=1,
        description="These snapshots, in this order: ids (exactly those versions), names "
                    "(each one's latest version when the test run starts) or name@version.")
    tags: list[Tag] | None = Field(
        default=None, min_length=1, max_length=MAX_TAGS,
        description="The latest version of every snapshot name that has all these tags.")
    all: bool = Field(default=False,
                      description="The latest version of every snapshot name.")
    max_snapshots: int | None = Field(default=None, ge=1, le=MAX_INTEGER,
                                      description="Test at most this many of the selected.")
    trials: int = Field(default=1, ge=1, le=1000,
                        description="Replays of each snapshot; above 1 a trial set.")
    concurrency: int = Field(
        default=4, ge=1, le=1000,
        description="Runs in flight at once across the test run. Snapshots start in "
                    "order: a snapshot's trials run at once, up to this many, and as many "
                    "snapshots as their trials fit run side by side (one trial each: this "
                    "many snapshots at once; 1: one run at a time, in order).")
    mode: TestMode = Field(
        default="recorded",
        description="`recorded` (default): every model and tool call, the judge's too, "
                    "served from the snapshot's cassette at zero cost (a snapshot without "
                    "one is an `error`); `hybrid`: recorded where the cassette matches, live "
                    "otherwise; `live`: every call live.")
    stop_on_first_failure: bool = Field(
        default=False, description="After the first snapshot that fails or errors, start "
                                   "nothing more: the snapshots already running finish, the "
                                   "rest are `skipped`.")
    cost_limit_usd: float | None = Field(
        default=None, ge=0,
        description="A budget for the whole test run (replays and judge calls). Once "
                    "reached nothing new starts: the snapshots in progress stop at their next "
                    "node (`budget_exceeded`, unless they had finished), the test run ends "
                    "`budget_exceeded`, the snapshots not started are `skipped`.")
    wait: bool = Field(default=False, description="Answer when the test run has ended, not "
                                                  "at once with its id.")
    cancel_with_request: bool = Field(
        default=False, description="With `wait`: cancelling this request cancels the test "
                                   "run too (as for run.start).")

    @model_validator(mode="after")
    def _one_selector(self) -> TestsRunParams:
        cancel_needs_wait(self)
        given = [name for name, value in (("snapshot_ids", self.snapshot_ids),
                                          ("tags", self.tags), ("all", self.all or None))
                 if value is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `snapshot_ids`, `tags` or `all: true`"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class TestSummary(Strict):
    """Snapshots by status; `total` counts every selected snapshot."""

    __test__ = False

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    budget_exceeded: int = 0


class TrialCheck(Strict):
    """One per-run invariant on one trial."""

    index: int = Field(description="The trial's 0-based index.")
    run_id: str | None = None
    status: Literal["passed", "failed", "error", "skipped"]
    actual: Any = None
    message: str = ""


class InvariantOutcome(Strict):
    """One invariant of a snapshot after its replay (InvariantResult's fields); with
    trials, a per-run invariant's result on each trial in `trials`."""

    type: str
    description: str | None = None
    status: Literal["passed", "failed", "error", "skipped"]
    expected: Any = None
    actual: Any = None
    message: str
    trials: list[TrialCheck] | None = Field(
        default=None, description="Per trial (trials > 1, per-run invariants only).")


class MetricChange(Strict):
    """One run metric: the snapshot's reference value, the replay's (the mean over trials),
    and replay - baseline (null when a side has no value)."""

    baseline: float | None
    replay: float | None
    delta: float | None


class SnapshotTestResult(Strict):
    """One snapshot of a test run."""

    index: int = Field(description="0-based position in the test run.")
    snapshot_id: str
    name: str
    version: int
    status: SnapshotTestStatus
    run_ids: list[str] = Field(default_factory=list,
                               description="The replay's run, or each trial's run.")
    trial_set_id: str | None = None
    trials: int = 1
    trials_passed: int | None = Field(
        default=None, description="Trials whose per-run invariants all passed.")
    invariants: list[InvariantOutcome] = Field(default_factory=list)
    metrics_delta: dict[str, MetricChange] = Field(
        default_factory=dict, description="Numeric run metrics against the snapshot's "
                                          "reference metrics; empty without a reference.")
    cost_usd: float = 0.0
    duration_ms: float | None = None
    message: str | None = Field(default=None,
                                description="Why it errored, was skipped or ran out of "
                                            "budget; a failure's first failed check.")
    started_at: str | None = None
    ended_at: str | None = None


class TestRunSummary(Result):
    """A test run: its options, summary, and every selected snapshot's result."""

    __test__ = False

    test_run_id: str
    status: TestRunStatus
    mode: TestMode
    trials: int
    concurrency: int
    stop_on_first_failure: bool
    selector: dict[str, Any] = Field(description="snapshot_ids, tags or all, and "
                                                 "max_snapshots, as given.")
    summary: TestSummary
    snapshots: list[SnapshotTestResult]
    total_cost_usd: float
    cost_limit_usd: float | None
    message: str | None = None
    started_at: str
    ended_at: str | None = None


class TestRunIdParams(Params):
    """A test run by id."""

    __test__ = False

    test_run_id: str
    wait: bool = Field(default=False, description="Answer when the test run has ended.")


class TestRunRef(Params):
    """A test run by id (cancel)."""

    __test__ = False

    test_run_id: str


class TestsListParams(Params):
    """Page through test runs, newest first."""

    __test__ = False

    status: list[TestRunStatus] | None = None
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class TestRunEntry(Strict):
    """A test run in a list: everything but the per-snapshot results."""

    __test__ = False

    test_run_id: str
    status: TestRunStatus
    mode: TestMode
    trials: int
    summary: TestSummary
    total_cost_usd: float
    cost_limit_usd: float | None
    started_at: str
    ended_at: str | None = None


class TestsListResult(Result):
    """A page of test runs."""

    __test__ = False

    test_runs: list[TestRunEntry]
    next_cursor: str | None = None


class TestsReportParams(Params):
    """Render a stored test run."""

    __test__ = False

    test_run_id: str
    format: ReportFormat = Field(
        description="`junit` (JUnit XML), `markdown`, or `html` (one self-contained page: "
                    "a pass/fail matrix and charts of metric deltas).")


class TestsReportResult(Result):
    """The rendered report."""

    __test__ = False

    test_run_id: str
    format: ReportFormat
    media_type: str = Field(description="application/xml, text/markdown or text/html.")
    content: str


class TestsSubscribeParams(Params):
    """Receive `tests/event` notifications of one test run, or of every one with `*`."""

    __test__ = False

    test_run_id: str = Field(description="A test run id, or `*` for all.")


class TestsEventParams(Model):
    """`tests/event`, daemon → client: a snapshot started or finished, or the test run
    ended. `data` is the snapshot's SnapshotTestResult (SnapshotStarted: its id, name,
    version and index) or, for TestRunFinished, the status, summary and total cost."""

    __test__ = False

    test_run_id: str
    seq: int
    type: Literal["SnapshotStarted", "SnapshotFinished", "TestRunFinished"]
    time: str
    data: dict[str, Any]


METHODS = [
    MethodSpec("tests.run", TestsRunParams, TestRunSummary,
               "Replay snapshots (by ids, tags or all), check their invariants and compare "
               "their metrics with the reference, under one cost budget; answers at once "
               "with the test run (status `running`), or when it ends with `wait: true`."),
    MethodSpec("tests.get", TestRunIdParams, TestRunSummary,
               "A test run with every snapshot's result, as stored; `wait` answers once it "
               "has ended."),
    MethodSpec("tests.list", TestsListParams, TestsListResult,
               "Test runs newest first, with their summaries; paged."),
    MethodSpec("tests.report", TestsReportParams, TestsReportResult,
               "A stored test run rendered as JUnit XML, Markdown or one self-contained "
               "HTML page."),
    MethodSpec("tests.cancel", TestRunRef, TestRunSummary,
               "Cancel a running test run: its replays are cancelled, what finished is "
               "kept, the rest skipped; answers once it has stopped."),
    MethodSpec("tests.subscribe", TestsSubscribeParams, NullResult,
               "Receive `tests/event` notifications of a test run, or of all with `*` "
               "(`tests.run` subscribes its own connection to the run it starts)."),
    MethodSpec("tests.unsubscribe", TestsSubscribeParams, NullResult,
               "Stop receiving a test run's events."),
]

SERVER_NOTIFICATIONS = [
    MethodSpec("tests/event", TestsEventParams, None,
               "Daemon → client: a snapshot of a subscribed test run started or finished "
               "(with its result), or the test run ended."),
]
