"""Snapshots family: snapshot.create, snapshot.list, snapshot.get, snapshot.delete and
snapshot.replay (through regression/replay.py's `replay_snapshot`, which tests.run uses too).

A snapshot copies everything a replay needs (pipeline source, inputs, variables, settings,
optionally the source run's calls as its cassette) with secrets redacted again on the way
in, so that neither deleting nor changing the source run can change it. A replay is a new
run (or trial set) carrying the snapshot's id; it never writes to the snapshot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.runs import RunSettings
from ostinato.protocol.snapshots import (
    SnapshotCreateParams,
    SnapshotCreateResult,
    SnapshotDeleteParams,
    SnapshotDeleteResult,
    SnapshotDetail,
    SnapshotGetParams,
    SnapshotListParams,
    SnapshotListResult,
    SnapshotReplayParams,
    SnapshotReplayResult,
)

from ..engine.redact import Redactor, run_secrets
from ..regression.invariants import run_metrics
from ..regression.replay import find_snapshot, replay_snapshot
from ..regression.stored import load_stored_run
from ..store.records import SnapshotRecord
from ..store.runs import ACTIVE
from .base import HandlerTable, RequestContext, cursor_errors

if TYPE_CHECKING:
    from . import Services

table = HandlerTable()


async def _snapshot(services: Services, ref: str) -> SnapshotRecord:
    """A stored snapshot by id, name (latest version) or name@version."""
    return await find_snapshot(services.snapshots, ref)


# -- snapshot.create ----------------------------------------------------------------------


async def _from_run(services: Services, home: Path,
                    params: SnapshotCreateParams) -> tuple[dict[str, Any], list[str]]:
    """A run's scenario, reference metrics and (recorded `full`) calls, redacted again."""
    run_id = params.run_id
    assert run_id is not None
    run = await services.runs.get_run(run_id)
    if run is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id}", {"run_id": run_id})
    if run.status in ACTIVE:
        raise RpcError(ErrorCode.CONFLICT, f"run {run_id} is {run.status}; snapshot it "
                                           "once it has ended", {"run_id": run_id})
    launch, source, _ = await services.runner.recorded_launch(run_id)
    stored = await load_stored_run(services, home, run)
    inputs, variables = launch.get("inputs") or {}, launch.get("variables") or {}
    # The run redacted what it wrote; secrets of this daemon's environment are taken out
    # again, in case one reached the run some other way.
    redactor = Redactor(run_secrets({**inputs, **variables}))
    warnings, cassette = [], None
    record = stored.record
    if params.with_cassette is not False:
        if record == "full":
            cassette = [redactor.values(call) for call in stored.calls]
        elif params.with_cassette:
            raise RpcError(ErrorCode.CONFLICT,
                           f"run {run_id} was recorded {record}: it kept no responses to "
                           "make a cassette of; leave out with_cassette", {"run_id": run_id})
        else:
            warnings.append(f"run {run_id} was recorded {record}: the snapshot has no "
                            "cassette, so it can be replayed live (or hybrid) only")
    return {
        "pipeline": {"format": launch["pipeline_format"], "source": redactor.text(source),
                     "name": run.pipeline_name, "hash": run.pipeline_hash},
        "inputs": redactor.data(inputs), "variables": redactor.data(variables),
        "settings": redactor.data(launch.get("settings") or {}),
        "reference": {"run_id": run_id, "metrics": run_metrics(stored)},
        "cassette": cassette}, warnings


async def _from_pipeline(services: Services,
                         params: SnapshotCreateParams) -> dict[str, Any]:
    """A pipeline's scenario: loaded (it must be valid) and redacted as a run would be."""
    assert params.pipeline is not None
    inputs, variables = params.inputs or {}, params.variables or {}
    prepared = await services.runner.prepare(params.pipeline, inputs, variables,
                                       params.settings or RunSettings())
    await prepared.pool.aclose()  # nothing runs: the pool only served the redaction
    graph = prepared.graph
    return {
        "pipeline": {"format": graph.source_format, "source": prepared.stored_source,
                     "name": graph.name, "hash": prepared.digest},
        "inputs": prepared.stored_inputs,
        "variables": prepared.redactor.data(variables),
        "settings": prepared.stored_settings, "reference": None, "cassette": None}


@table.method("snapshot.create")
async def create(params: SnapshotCreateParams, ctx: RequestContext) -> SnapshotCreateResult:
    """Capture a run's or a pipeline's scenario as the next version of `name`."""
    services = ctx.services
    warnings: list[str] = []
    if params.run_id is not None:
        captured, warnings = await _from_run(services, ctx.services.home, params)
    else:
        captured = await _from_pipeline(services, params)
    # As given, in canonical form: the fields set (a check may depend on which were set).
    invariants = [{"type": invariant.type,
                   **invariant.model_dump(mode="json", by_alias=True, exclude_unset=True)}
                  for invariant in params.invariants]
    snapshot = await services.snapshots.create(
        name=params.name, description=params.description, tags=list(params.tags),
        invariants=invariants, **captured)
    return snapshot.detail(SnapshotCreateResult, warnings=warnings)


# -- snapshot.list, snapshot.get, snapshot.delete -----------------------------------------


@table.method("snapshot.list")
async def list_snapshots(params: SnapshotListParams, ctx: RequestContext) -> SnapshotListResult:
    """Snapshot summaries newest first, filtered and keyset paged."""
    with cursor_errors():
        summaries, cursor = await ctx.services.snapshots.list(
            tags=params.tags, name=params.name, pipeline=params.pipeline,
            latest=params.latest, limit=params.limit, cursor=params.cursor)
    return SnapshotListResult(snapshots=summaries, next_cursor=cursor)


@table.method("snapshot.get")
async def get(params: SnapshotGetParams, ctx: RequestContext) -> SnapshotDetail:
    """A whole snapshot; its cassette's calls on request."""
    services = ctx.services
    snapshot = await _snapshot(services, params.id)
    if params.include_cassette:
        return snapshot.detail(cassette=await services.snapshots.cassette(snapshot.id)
                               if snapshot.has_cassette else None)
    return snapshot.detail()


@table.method("snapshot.delete")
async def delete(params: SnapshotDeleteParams, ctx: RequestContext) -> SnapshotDeleteResult:
    """Delete a snapshot and its cassette, with `confirm: true`; its runs stay."""
    services = ctx.services
    snapshot = await _snapshot(services, params.id)
    label = f"snapshot {snapshot.id} ({snapshot.name} v{snapshot.version})"
    if not params.confirm:
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       f"Invalid params: deleting {label} cannot be undone; pass "
                       "`confirm: true` to delete it (its runs are kept)",
                       {"id": params.id, "confirm": False})
    runs_kept = await services.snapshots.replay_runs(snapshot.id)
    if not await services.snapshots.delete(snapshot.id):  # deleted meanwhile
        raise RpcError(ErrorCode.NOT_FOUND, f"no snapshot {snapshot.id}", {"id": snapshot.id})
    return SnapshotDeleteResult(id=snapshot.id, name=snapshot.name, version=snapshot.version,
                                deleted=True, cassette_calls=snapshot.cassette_calls,
                                runs_kept=runs_kept)


# -- snapshot.replay ----------------------------------------------------------------------


@table.method("snapshot.replay")
async def replay(params: SnapshotReplayParams, ctx: RequestContext) -> SnapshotReplayResult:
    """Replay a snapshot as a new run (or trial set); with `wait`, answer once it ended."""
    services = ctx.services
    snapshot = await _snapshot(services, params.id)
    started = await replay_snapshot(
        services, ctx.services.home, snapshot, mode=params.mode, trials=params.trials,
        concurrency=params.concurrency, overrides=params.overrides, record=params.record,
        inputs=params.inputs, variables=params.variables)
    try:
        return SnapshotReplayResult(await started.reply(params.wait, ctx.progress))
    except asyncio.CancelledError:
        if params.cancel_with_request:  # answered -32800 once the replay has stopped
            await started.cancel()
        raise
