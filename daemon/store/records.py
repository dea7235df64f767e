"""Typed records of the store's rows: what the store returns to the services.

Each record is built from a sqlite row in one place (the query selects the record's
`*_COLUMNS` in field order, so that a row becomes a record positionally, with no dict in
between: `Record(*row)`, or `from_row` where a column is decoded) and produces its
protocol result in one place. JSON columns are decoded where the store reads them; a
run's inputs and settings, which listings never show, on first use.

Calls stay JSON documents (`Call`, trace.jsonl's shape): the store decodes them once, and
trace.get, cassettes and the invariant library read them as such.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import orjson

from ostinato.protocol.runs import RunSummary, StageSummary
from ostinato.protocol.snapshots import SnapshotDetail
from ostinato.protocol.tests import TestRunEntry, TestRunSummary

_Summary = TypeVar("_Summary", bound=RunSummary)
# Statuses of a snapshot's result that count in a summary, by summary key.
SUMMARY_KEYS = {"passed": "passed", "failed": "failed", "error": "errors",
                "skipped": "skipped", "budget_exceeded": "budget_exceeded"}


def _columns(record: type[Any]) -> str:
    """The SELECT list of a record's columns, in field order."""
    return ", ".join(f.name for f in fields(record))


@dataclass(slots=True)
class RunRecord:
    """A row of `runs`. Mutable: fields a full disk kept out of the store are laid over it
    (RunStore.unwritten)."""

    id: str
    pipeline_hash: str
    pipeline_name: str
    status: str
    outcome: str | None
    failure_reason: str | None
    resumable: int
    run_dir: str  # relative to the home
    trace_id: str
    inputs_json: str
    settings_json: str
    current_node: str | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    resumed_from: str | None
    cost_usd: float
    input_tokens: int
    output_tokens: int
    record: str
    replay_of: str | None
    replay_mode: str | None
    trial_set_id: str | None
    trial_index: int | None
    snapshot_id: str | None
    parent_run_id: str | None
    parent_node: str | None
    parent_key: str | None

    @property
    def inputs(self) -> dict[str, Any]:
        """The run's inputs as stored (redacted)."""
        return orjson.loads(self.inputs_json)  # type: ignore[no-any-return]

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings as stored (redacted)."""
        return orjson.loads(self.settings_json)  # type: ignore[no-any-return]

    def summary(self, home: Path, model: type[_Summary] = RunSummary,  # type: ignore[assignment]
                **extra: Any) -> _Summary:
        """The run's RunSummary (or `model`, a RunSummary with `extra` fields: RunDetail)."""
        return model.model_validate(self.summary_fields(home) | extra)

    def summary_fields(self, home: Path) -> dict[str, Any]:
        """RunSummary's fields, for results answered as plain dicts (trace.get)."""
        return {
            "run_id": self.id, "status": self.status, "outcome": self.outcome,
            "failure_reason": self.failure_reason, "pipeline_name": self.pipeline_name,
            "pipeline_hash": self.pipeline_hash, "run_dir": str(home / self.run_dir),
            "trace_id": self.trace_id, "current_node": self.current_node,
            "resumable": bool(self.resumable), "created_at": self.created_at,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "cost_usd": self.cost_usd, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "snapshot_id": self.snapshot_id,
            "parent_run_id": self.parent_run_id}

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON document, inputs and settings decoded (what the invariant
        library and run.diff read)."""
        decoded = {f: getattr(self, f) for f in _RUN_FIELDS}
        decoded.update(inputs=self.inputs, settings=self.settings)
        return decoded


_RUN_FIELDS = [f.name for f in fields(RunRecord) if not f.name.endswith("_json")]
RUN_COLUMNS = _columns(RunRecord)


@dataclass(slots=True)
class StageRecord:
    """A row of `stages`, its outcome decoded."""

    run_id: str
    seq: int
    node_id: str
    attempt: int
    status: str
    handler: str
    branch: str | None
    started_at: str
    ended_at: str
    duration_ms: float
    outcome: dict[str, Any]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StageRecord:
        """A record from a row of STAGE_COLUMNS (`outcome_json` last, decoded)."""
        *head, outcome = row
        return cls(*head, orjson.loads(outcome))

    def model(self) -> StageSummary:
        """The stage as run.get shows it."""
        return StageSummary(seq=self.seq, node_id=self.node_id, attempt=self.attempt,
                            status=self.status, handler=self.handler, branch=self.branch,
                            started_at=self.started_at, ended_at=self.ended_at,
                            duration_ms=self.duration_ms, outcome=self.outcome)

    def as_dict(self) -> dict[str, Any]:
        """The stage as a JSON document (what the invariant library and run.diff read)."""
        return {f: getattr(self, f) for f in _STAGE_FIELDS}


_STAGE_FIELDS = [f.name for f in fields(StageRecord)]
STAGE_COLUMNS = _columns(StageRecord).replace("outcome", "outcome_json")


class Call(TypedDict):
    """A call of a run's trace (a row of `calls`, trace.jsonl's fields), request and
    response decoded."""

    id: str
    run_id: str
    trace_id: str
    seq: int
    node_id: str
    attempt: int
    kind: str
    request: Any
    response: Any
    error: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    finish_reason: str | None
    created_at: str


@dataclass(slots=True)
class TrialSetRecord:
    """A row of `trial_sets` (its aggregates are rebuilt from its runs and manifest)."""

    id: str
    pipeline_name: str
    status: str
    trials: int
    concurrency: int
    early_stop: int
    pass_threshold: float
    set_dir: str  # relative to the home
    created_at: str
    ended_at: str | None


TRIAL_SET_COLUMNS = _columns(TrialSetRecord)


@dataclass(slots=True)
class SnapshotRecord:
    """A whole snapshot in the current shape (older schema versions upgraded), without
    its cassette's calls."""

    id: str
    name: str
    version: int
    description: str
    tags: list[str]
    pipeline: dict[str, str]  # format, source, name, hash
    inputs: dict[str, Any]
    variables: dict[str, Any] | None
    settings: dict[str, Any]
    invariants: list[dict[str, Any]]
    reference: dict[str, Any] | None  # run_id, metrics
    has_cassette: bool
    cassette_calls: int
    schema_version: int
    created_at: str

    def detail(self, model: type[SnapshotDetail] = SnapshotDetail,
               **extra: Any) -> SnapshotDetail:
        """The snapshot as snapshot.get shows it (or `model` with `extra` fields)."""
        return model.model_validate({f: getattr(self, f) for f in _SNAPSHOT_FIELDS} | extra)


_SNAPSHOT_FIELDS = [f.name for f in fields(SnapshotRecord)]


@dataclass(slots=True)
class TestResult:
    """One snapshot's result in a test run (SnapshotTestResult's fields), filled in while
    its check runs and stored as JSON in `test_results`."""

    __test__ = False  # not a pytest class, whatever its name

    index: int
    snapshot_id: str
    name: str
    version: int
    status: str = "pending"
    run_ids: list[str] = field(default_factory=list)
    trial_set_id: str | None = None
    trials: int = 1
    trials_passed: int | None = None
    invariants: list[dict[str, Any]] = field(default_factory=list)
    metrics_delta: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0
    duration_ms: float | None = None
    message: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON document (stored, published, answered)."""
        return {f: getattr(self, f) for f in _RESULT_FIELDS}


_RESULT_FIELDS = [f.name for f in fields(TestResult)]


def summarize(results: Sequence[TestResult]) -> dict[str, int]:
    """{total, passed, failed, errors, skipped, budget_exceeded} over snapshot results;
    pending and running ones count only in `total`."""
    return summary_of(Counter(result.status for result in results), len(results))


def summary_of(statuses: Mapping[str, int], total: int) -> dict[str, int]:
    """The summary of `total` results, `statuses` counting them by status."""
    return {"total": total, **{key: statuses.get(status, 0)
                               for status, key in SUMMARY_KEYS.items()}}


@dataclass(slots=True)
class TestRunRecord:
    """A test run as stored or as it stands: its row, options and summary decoded, with
    its results (none in a listing)."""

    __test__ = False

    id: str
    status: str
    options: dict[str, Any]  # mode, trials, concurrency, stop_on_first_failure, selector
    summary: dict[str, int]  # counts by status as stored (summarize)
    total_cost_usd: float
    cost_limit_usd: float | None
    message: str | None
    created_at: str
    ended_at: str | None
    results: list[TestResult] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> TestRunRecord:
        """A record from a row of TEST_RUN_COLUMNS, without results."""
        id_, status, options, summary, *rest = row
        return cls(id_, status, orjson.loads(options), orjson.loads(summary), *rest)

    def result(self) -> TestRunSummary:
        """The TestRunSummary (tests.get)."""
        return TestRunSummary.model_validate({
            "test_run_id": self.id, "status": self.status, **self.options,
            "summary": summarize(self.results),
            "snapshots": [r.as_dict() for r in self.results],
            "total_cost_usd": self.total_cost_usd, "cost_limit_usd": self.cost_limit_usd,
            "message": self.message, "started_at": self.created_at,
            "ended_at": self.ended_at})

    def entry(self) -> TestRunEntry:
        """The test run in a listing (tests.list)."""
        return TestRunEntry(
            test_run_id=self.id, status=self.status,  # type: ignore[arg-type]
            mode=self.options["mode"], trials=self.options["trials"],
            summary=self.summary,  # type: ignore[arg-type]
            total_cost_usd=self.total_cost_usd, cost_limit_usd=self.cost_limit_usd,
            started_at=self.created_at, ended_at=self.ended_at)


TEST_RUN_COLUMNS = ", ".join(
    f"{f.name}_json" if f.name in ("options", "summary") else f.name
    for f in fields(TestRunRecord) if f.name != "results")
