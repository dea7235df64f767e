"""Snapshots family: immutable, versioned captures of a scenario (pipeline source, inputs,
variables, settings, invariants, reference metrics, optionally a cassette) and their replays.

There is no update method: `snapshot.create` with an existing name makes its next version,
and no params model here names a snapshot to overwrite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from .base import Params, Result, Root, Strict, cancel_needs_wait
from .bounds import JsonObject
from .invariants import Invariant
from .pipelines import PipelineRef
from .registry import MethodSpec
from .runs import RunSettings, RunSummary
from .trials import TrialSetSummary

SnapshotName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
SNAPSHOT_REF = ("A snapshot's id, or its name (the latest version), or `name@version`; an "
                "unknown one is -32001 naming the names (or that name's versions) there are.")
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_TAGS = 50  # of a snapshot; so a selection by more tags than that matches nothing
ReplayMode = Literal["live", "recorded", "hybrid"]


class SnapshotCreateParams(Params):
    """Capture a scenario: from a stored run (`run_id`), or from a pipeline with inputs,
    variables and settings alone."""

    name: SnapshotName = Field(description="An existing name makes its next version.")
    description: str = Field(default="", max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS,
                            description="For `snapshot.list` and `tests.run` selections.")
    run_id: str | None = Field(
        default=None, description="Copy this run's pipeline source, inputs, variables and "
                                  "settings (secrets redacted), its metrics as the reference, "
                                  "and its calls as the cassette.")
    pipeline: PipelineRef | None = Field(
        default=None, description="Or capture this pipeline (its source is copied).")
    inputs: JsonObject | None = Field(default=None, description="With `pipeline`.")
    variables: dict[str, str] | None = Field(default=None, description="With `pipeline`.")
    settings: RunSettings | None = Field(default=None, description="With `pipeline`.")
    invariants: list[Invariant] = Field(
        default_factory=list, description="The checks a replay must pass "
                                          "(protocol/invariants.py); validated here, a bad "
                                          "entry is -32602 naming its index.")
    with_cassette: bool | None = Field(
        default=None, description="Keep the run's calls as the snapshot's cassette (default "
                                  "with `run_id`, when the run was recorded `full`).")

    @model_validator(mode="after")
    def _one_source(self) -> SnapshotCreateParams:
        if (self.run_id is None) == (self.pipeline is None):
            raise ValueError("give exactly one of `run_id` or `pipeline`")
        if self.run_id is not None:
            given = [f"`{name}`" for name in ("inputs", "variables", "settings")
                     if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} go with `pipeline`; a snapshot of a run "
                                 "copies the run's")
        elif self.with_cassette:
            raise ValueError("`with_cassette` needs `run_id`: a pipeline alone has no "
                             "recorded calls")
        return self


class SnapshotPipelineSummary(Strict):
    """The snapshot's pipeline, by name and hash."""

    format: Literal["dot", "recipe"]
    name: str
    hash: str = Field(description="sha256 of the canonical graph, as a run's pipeline_hash.")


class SnapshotPipeline(SnapshotPipelineSummary):
    """The snapshot's own copy of the pipeline."""

    source: str = Field(description="The full source (secrets redacted).")


class SnapshotReference(Strict):
    """The run a snapshot was made from and its metrics at the time."""

    run_id: str | None
    metrics: dict[str, Any] | None = Field(
        description="run_metrics of the run: status, outcome, duration_ms, cost_usd, tokens_in, "
                    "tokens_out, tokens, calls, model_calls, tool_calls, stages, "
                    "nodes_visited, latency_ms, max_call_latency_ms, score.")


class SnapshotSummary(Strict):
    """A snapshot as listed: no source, inputs, settings or cassette."""

    id: str
    name: str
    version: int
    description: str
    tags: list[str]
    pipeline: SnapshotPipelineSummary
    invariants: int = Field(description="How many invariants it holds.")
    reference_run_id: str | None
    has_cassette: bool
    cassette_calls: int
    schema_version: int = Field(description="The shape it was stored in (read in today's).")
    created_at: str


class SnapshotDetail(Result):
    """A whole snapshot, in the current schema's shape whatever version it was stored in."""

    id: str
    name: str
    version: int
    description: str
    tags: list[str]
    pipeline: SnapshotPipeline
    inputs: dict[str, Any]
    variables: dict[str, Any]
    settings: dict[str, Any] = Field(description="RunSettings as stored (secrets redacted).")
    invariants: list[dict[str, Any]] = Field(description="As protocol/invariants.py spells "
                                                         "them.")
    reference: SnapshotReference | None = Field(description="None for a snapshot made from a "
                                                            "pipeline.")
    has_cassette: bool
    cassette_calls: int
    cassette: list[dict[str, Any]] | None = Field(
        default=None, description="The recorded calls (trace.jsonl's fields), with "
                                  "`include_cassette`.")
    schema_version: int = Field(description="The shape it was stored in.")
    created_at: str


class SnapshotCreateResult(SnapshotDetail):
    """The new snapshot, and what to know about it."""

    warnings: list[str] = Field(default_factory=list)


class SnapshotListParams(Params):
    """Filter and page through snapshots, newest first."""

    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS,
                                   description="Every tag must match.")
    name: str | None = None
    pipeline: str | None = Field(default=None,
                                 description="Pipeline name, or hash (64 hex digits).")
    latest: bool = Field(default=False, description="Only each name's latest version.")
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class SnapshotListResult(Result):
    """A page of snapshots."""

    snapshots: list[SnapshotSummary]
    next_cursor: str | None = None


class SnapshotGetParams(Params):
    """A snapshot by id, name or name@version."""

    id: str = Field(description=SNAPSHOT_REF)
    include_cassette: bool = Field(default=False,
                                   description="Include the cassette's calls, not only "
                                               "their count.")


class SnapshotDeleteParams(Params):
    """Delete a snapshot and its cassette; runs are never deleted."""

    id: str = Field(description=SNAPSHOT_REF + " A name deletes its latest version only.")
    confirm: bool = Field(default=False, description="Must be true: nothing else deletes.")


class SnapshotDeleteResult(Result):
    """What was deleted, and what was kept."""

    id: str
    name: str
    version: int
    deleted: bool
    cassette_calls: int = Field(description="Calls of its cassette deleted with it.")
    runs_kept: int = Field(description="Runs that replayed it; kept, their snapshot_id "
                                       "left as it was.")


class SnapshotReplayParams(Params):
    """Replay a snapshot: a new run (or trial set); the snapshot and its source run are
    never changed."""

    id: str = Field(description=SNAPSHOT_REF)
    mode: ReplayMode = Field(
        default="recorded",
        description="`recorded`: every call from the snapshot's cassette (zero cost; a call "
                    "it does not hold stops the run); `hybrid`: unmatched calls go live; "
                    "`live`: every call live.")
    trials: int = Field(default=1, ge=1, le=100_000,
                        description="More than 1: a trial set of that many runs.")
    concurrency: int = Field(default=4, ge=1, le=1000, description="Trials running at once.")
    overrides: JsonObject = Field(
        default_factory=dict, description="Settings shallow-merged over the stored ones "
                                          "(e.g. `providers`, `max_parallel`).")
    inputs: JsonObject | None = Field(
        default=None, description="Inputs shallow-merged over the stored ones (secret ones "
                                  "were stored redacted: give them again).")
    variables: dict[str, str] | None = Field(default=None,
                                             description="Likewise for variables.")
    record: Literal["full", "metadata_only"] = "full"
    wait: bool = Field(default=False, description="Answer when the run (or set) ended.")
    cancel_with_request: bool = Field(
        default=False, description="With `wait`: cancelling this request cancels the run (or "
                                   "set) too (as for run.start).")

    @model_validator(mode="after")
    def _cancel_needs_wait(self) -> SnapshotReplayParams:
        cancel_needs_wait(self)
        return self


class SnapshotReplayResult(Root[RunSummary | TrialSetSummary]):
    """The replay's run summary (its `snapshot_id` set); with `trials` > 1, the trial set's."""


METHODS = [
    MethodSpec("snapshot.create", SnapshotCreateParams, SnapshotCreateResult,
               "Capture a scenario from a run or a pipeline as an immutable snapshot; an "
               "existing name makes its next version."),
    MethodSpec("snapshot.list", SnapshotListParams, SnapshotListResult,
               "Snapshots newest first, filtered by tags, name and pipeline; keyset paged."),
    MethodSpec("snapshot.get", SnapshotGetParams, SnapshotDetail,
               "A whole snapshot; its cassette's calls with `include_cassette`."),
    MethodSpec("snapshot.delete", SnapshotDeleteParams, SnapshotDeleteResult,
               "Delete a snapshot and its cassette (`confirm: true` required); never runs."),
    MethodSpec("snapshot.replay", SnapshotReplayParams, SnapshotReplayResult,
               "Run a snapshot again, live, recorded or hybrid, once or as a trial set."),
]
