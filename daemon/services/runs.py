"""Runs family: run.start, run.get, run.list, run.cancel, run.resume, run.subscribe,
run.unsubscribe, human.answer, run.diff, run.reeval and run.prune."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ostinato.protocol.base import NullResult
from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.invariants import invariant_list
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import (
    HumanAnswerParams,
    RunDetail,
    RunDiffParams,
    RunGetParams,
    RunIdParams,
    RunListParams,
    RunListResult,
    RunPruneParams,
    RunPruneResult,
    RunReevalParams,
    RunReevalResult,
    RunResumeParams,
    RunSettings,
    RunStartParams,
    RunSummary,
    SubscribeParams,
)
from ostinato.protocol.trials import TrialSetSummary

from ..disk import DamagedFile
from ..engine.recording import NOT_WORK
from ..engine.redact import Redactor, run_secrets
from ..engine.run_state import completed_nodes
from ..engine.rundir import RunDirectory
from ..regression.invariants import drift, inputs_hash, verdict
from ..regression.replay import find_snapshot
from ..regression.stored import find_run, load_stored_run, reeval_checks
from ..runs.launch import Trials, launch, reply
from ..runs.options import RunOptions
from ..runs.prune import Live
from ..runs.prune import prune as prune_runs
from ..runs.runner import Runner
from ..store.records import RunRecord, SnapshotRecord
from ..store.runs import ACTIVE
from ..store.traces import TraceStore
from .base import HandlerTable, RequestContext, cursor_errors

table = HandlerTable()


async def _run(ctx: RequestContext, run_id: str) -> RunRecord:
    run = await ctx.services.runs.get_run(run_id)
    if run is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id}")
    return run


@table.method("run.start")
async def start(params: RunStartParams, ctx: RequestContext) -> RunSummary | TrialSetSummary:
    """Start a run (or a trial set); with `wait`, answer when it has ended."""
    services = ctx.services
    ref, inputs, variables, settings, pipeline_dir = await _scenario(params, services.runner)
    replay = params.replay
    options = RunOptions(record=params.record,
                         replay_of=replay.from_run if replay else None,
                         replay_mode=replay.mode if replay else None,
                         pipeline_dir=pipeline_dir)
    trials = None if params.trials is None else Trials(
        params.trials, params.concurrency, params.early_stop, params.pass_threshold)
    return await reply(launch(services, ref, inputs, variables, settings, options, trials),
                       params.wait, ctx.progress,
                       cancel_with_request=params.cancel_with_request,
                       return_on_question=params.return_on_question)


async def _scenario(params: RunStartParams, runner: Runner) -> tuple[
        PipelineRef, dict[str, Any], dict[str, str], RunSettings, str | None]:
    """Pipeline, inputs, variables, settings and the pipeline file's directory as given (None:
    the runner finds it); a replay of a recorded run takes whichever of them are not given
    from that run's launch record."""
    replay = params.replay
    if replay is None or replay.from_run is None:
        assert params.pipeline is not None  # RunStartParams requires one of the two
        return params.pipeline, params.inputs, params.variables, params.settings, None
    recorded, source, _ = await runner.recorded_launch(replay.from_run)
    given = params.model_fields_set
    return (params.pipeline or PipelineRef(source=source, format=recorded["pipeline_format"]),
            params.inputs if "inputs" in given else recorded["inputs"],
            params.variables if "variables" in given else recorded["variables"],
            params.settings if "settings" in given
            else RunSettings.model_validate(recorded["settings"]),
            None if params.pipeline else recorded.get("pipeline_dir"))


@table.method("run.resume")
async def resume(params: RunResumeParams, ctx: RequestContext) -> RunSummary:
    """Continue an interrupted or cancelled run."""
    resuming = ctx.services.runner.resume(params.run_id, params.inputs, params.variables)
    return await reply(resuming, params.wait, ctx.progress,  # type: ignore[return-value]
                       cancel_with_request=params.cancel_with_request,
                       return_on_question=params.return_on_question)


@table.method("run.get")
async def get(params: RunGetParams, ctx: RequestContext) -> RunDetail:
    """A run with its stages and latest checkpoint; with `wait`, once it has ended (or
    waits on a human, with `return_on_question`)."""
    services = ctx.services
    waiting = services.runner.active.get(params.run_id) if params.wait else None
    if waiting is not None:
        await waiting.settle(ctx.progress, params.return_on_question)
    run = await _run(ctx, params.run_id)
    stages = await services.runs.stages(params.run_id)
    run_dir = RunDirectory(ctx.services.home / run.run_dir)
    try:
        checkpoint = run_dir.read_json("checkpoint.json")
    except DamagedFile:  # the run is still shown: its row says what the store knows
        checkpoint = None
    active = services.runner.active.get(params.run_id)
    question = active.question.to_dict() if active and active.question else None
    return run.summary(
        ctx.services.home, RunDetail, stages=[stage.model() for stage in stages],
        context=checkpoint.get("context") if checkpoint else None,
        completed_nodes=completed_nodes(run_dir, checkpoint) if checkpoint else [],
        question=question, children=await services.runs.children(params.run_id))


@table.method("run.list")
async def list_runs(params: RunListParams, ctx: RequestContext) -> RunListResult:
    """Runs newest first, filtered and paged."""
    with cursor_errors():
        runs, cursor = await ctx.services.runs.list_runs(
            statuses=params.status, pipeline=params.pipeline, since=params.since,
            until=params.until, limit=params.limit, cursor=params.cursor)
    home = ctx.services.home
    return RunListResult(runs=[run.summary(home) for run in runs], next_cursor=cursor)


@table.method("run.cancel")
async def cancel(params: RunIdParams, ctx: RequestContext) -> RunSummary:
    """Cancel a running run and answer once it has stopped."""
    await ctx.services.runner.cancel(params.run_id)
    return (await _run(ctx, params.run_id)).summary(ctx.services.home)


@table.method("run.subscribe")
def subscribe(params: SubscribeParams, ctx: RequestContext) -> NullResult:
    """Send this connection the run's `run/event` notifications."""
    ctx.connection.subscriptions.add(f"run:{params.run_id}")
    return NullResult()


@table.method("run.unsubscribe")
def unsubscribe(params: SubscribeParams, ctx: RequestContext) -> NullResult:
    """Stop sending them."""
    ctx.connection.subscriptions.discard(f"run:{params.run_id}")
    return NullResult()


@table.method("human.answer")
def human_answer(params: HumanAnswerParams, ctx: RequestContext) -> NullResult:
    """Answer a waiting run's question."""
    ctx.services.runner.answer(params.run_id, params.question_id, params.answer)
    return NullResult()


@table.method("run.prune")
async def prune(params: RunPruneParams, ctx: RequestContext) -> RunPruneResult:
    """Remove ended runs by age and/or count, keeping what is active or referred to
    (daemon/runs/prune.py)."""
    services = ctx.services

    def live() -> Live:
        return Live(runs=services.runner.active, trial_sets=services.trials.sets,
                    test_runs={test_run.id: test_run.created_at
                               for test_run in services.tests.active.values()})

    def report(done: int, total: int) -> None:
        # A prune of empty trial sets alone has no runs to count.
        ctx.progress.report(f"{done}/{total} runs removed",
                            int(100 * done / total) if total else 100)

    async with services.pruning:  # one at a time: the second plans on what the first left
        outcome = await prune_runs(services.db, services.home, live, before=params.before,
                                   keep=params.keep, dry_run=params.dry_run, progress=report)
    ctx.progress.end(f"{len(outcome.removed)} runs removed")
    return RunPruneResult.model_validate({
        "dry_run": params.dry_run, "removed": outcome.removed,
        "trial_sets": outcome.trial_sets, "kept": outcome.kept,
        "bytes": {"run_dirs": outcome.run_dirs, "store": outcome.store},
        "compaction": outcome.compaction})


# -- run.diff -----------------------------------------------------------------------------


@table.method("run.diff")
async def diff(params: RunDiffParams, ctx: RequestContext) -> dict[str, Any]:
    """Compare two stored runs (daemon/runs/diff.py); a plain dict, validated
    against RunDiffResult in strict mode."""
    from ..runs.diff import diff_runs, from_store  # rarely asked for: imported when it is

    services = ctx.services
    traces = TraceStore(services.db)
    records = []
    for side, run_id in (("a", params.a), ("b", params.b)):
        run = await services.runs.get_run(run_id)
        if run is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id} (`{side}`)")
        # A recipe DAG runs its ready stages concurrently: compared in a stable order.
        plan = RunDirectory(ctx.services.home / run.run_dir).read_json("config", "plan.json") or {}
        calls = [c for c in await traces.run_calls(run_id) if c["kind"] not in NOT_WORK]
        records.append(from_store(run, await services.runs.stages(run_id), calls,
                                  dag=bool(plan.get("dag"))))
    return diff_runs(*records)


# -- run.reeval ---------------------------------------------------------------------------

@table.method("run.reeval")
async def reeval(params: RunReevalParams, ctx: RequestContext) -> RunReevalResult:
    """Evaluate invariants against what a run recorded; executes nothing. A `judge` asked
    live appends its calls to the run's trace; nothing else is written."""
    snapshot, invariants = None, params.invariants
    if params.snapshot_id is not None:
        snapshot, invariants = await _snapshot_checks(ctx, params.snapshot_id)
    run = await find_run(ctx.services, params.run_id)
    if run.status in ACTIVE:
        raise RpcError(ErrorCode.CONFLICT, f"run {params.run_id} is {run.status}; "
                                           "re-evaluate it once it has ended")
    stored = await load_stored_run(ctx.services, ctx.services.home, run)
    launch, record = stored.launch, stored.record
    results = await reeval_checks(ctx.services, ctx.services.home, stored,
                                  invariants or [], allow_partial=params.allow_partial)
    warnings = []
    if run.status != "completed":
        warnings.append(f"run {params.run_id} ended {run.status}"
                        + (f" ({run.failure_reason})" if run.failure_reason else "")
                        + ": the checks see what it recorded until then")
    drifts = await _drift(ctx, params, run, launch, snapshot)
    for check in drifts:
        if check["drifted"]:
            what = ("the pipeline given is not the one the run ran"
                    if check["subject"] == "pipeline" else "the inputs given are not the run's")
            warnings.append(
                f"scenario drift: {what} (sha256 {check['given_hash'][:12]}… given, "
                f"{(check['run_hash'] or '?')[:12]}… recorded)"
                + ("; strict_scenario fails the reeval" if params.strict_scenario else ""))
    overall = verdict(results)
    if params.strict_scenario and any(check["drifted"] for check in drifts):
        overall = "failed"
    counts = {status: sum(r["status"] == status for r in results)
              for status in ("passed", "failed", "error", "skipped")}
    return RunReevalResult.model_validate({
        "run_id": params.run_id, "verdict": overall, "results": results, "counts": counts,
        "drift": drifts, "warnings": warnings, "record": record})


async def _snapshot_checks(ctx: RequestContext,
                           snapshot_id: str) -> tuple[SnapshotRecord, list[Any]]:
    """A snapshot (its scenario to check drift against) and its invariants, validated."""
    snapshot = await find_snapshot(ctx.services.snapshots, snapshot_id)
    try:
        return snapshot, invariant_list.validate_python(snapshot.invariants)
    except ValidationError as exc:
        raise RpcError(ErrorCode.CONFLICT, f"snapshot {snapshot_id} holds invariants this "
                       "daemon cannot read", exc.errors(include_url=False)) from None


async def _drift(ctx: RequestContext, params: RunReevalParams, run: RunRecord,
                 launch: dict[str, Any],
                 snapshot: SnapshotRecord | None) -> list[dict[str, Any]]:
    """The pipeline and inputs given (else the snapshot's), hashed as the run's were,
    against the run's hashes."""
    checks = []
    recorded_inputs = run.inputs
    if snapshot is not None and params.pipeline is None:
        checks.append(drift("pipeline", run.pipeline_hash, snapshot.pipeline["hash"]))
    if snapshot is not None and params.inputs is None:  # both stored redacted
        checks.append(drift("inputs", inputs_hash(recorded_inputs),
                            inputs_hash(snapshot.inputs)))
    if params.pipeline is not None:
        # Expanded with the variables the run had (and the inputs given, as run.start does).
        inputs = params.inputs if params.inputs is not None else launch.get("inputs", {})
        variables = {**{k: v for k, v in inputs.items() if isinstance(v, str)},
                     **launch.get("variables", {})}
        graph = await ctx.services.runner.load(params.pipeline, variables)
        checks.append(drift("pipeline", run.pipeline_hash, graph.digest()))
    if params.inputs is not None:
        # The run's inputs were stored with secrets redacted: the given ones are too.
        given = Redactor(run_secrets(params.inputs)).data(params.inputs)
        checks.append(drift("inputs", inputs_hash(recorded_inputs), inputs_hash(given)))
    return checks
