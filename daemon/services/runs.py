"""Runs family: run.start, run.get, run.list, run.cancel, run.resume, run.subscribe,
run.unsubscribe and human.answer."""

from __future__ import annotations

from typing import Any

import orjson

from ostinato.protocol.base import NullResult
from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.runs import (
    HumanAnswerParams,
    RunDetail,
    RunIdParams,
    RunListParams,
    RunListResult,
    RunResumeParams,
    RunStartParams,
    RunSummary,
    SubscribeParams,
)

from ..engine.executor import completed_nodes
from ..engine.rundir import RunDirectory
from .base import HandlerTable, RequestContext
from .runner import ActiveRun

table = HandlerTable()


def _services(ctx: RequestContext) -> Any:
    return ctx.daemon.services


def _summary(row: dict[str, Any], home: Any) -> dict[str, Any]:
    return {"run_id": row["id"], "status": row["status"], "outcome": row["outcome"],
            "failure_reason": row["failure_reason"], "pipeline_name": row["pipeline_name"],
            "pipeline_hash": row["pipeline_hash"], "run_dir": str(home / row["run_dir"]),
            "trace_id": row["trace_id"], "current_node": row["current_node"],
            "resumable": bool(row["resumable"]), "created_at": row["created_at"],
            "started_at": row["started_at"], "ended_at": row["ended_at"],
            "cost_usd": row["cost_usd"], "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"]}


async def _row(ctx: RequestContext, run_id: str) -> dict[str, Any]:
    row = await _services(ctx).runs.get_run(run_id)
    if row is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id}")
    return row


async def _answer_when_done(active: ActiveRun, ctx: RequestContext, wait: bool) -> RunSummary:
    """The run's summary now, or once it has ended (reporting its stages as progress)."""
    if wait:
        progress = ctx.progress
        progress.begin(f"run {active.run_id}", cancellable=True)

        def report(event: dict[str, Any]) -> None:
            if event["type"] in ("StageCompleted", "StageFailed", "InterviewStarted"):
                progress.report(f"{event['type']}: {event['data'].get('name') or ''}".strip())

        active.sink.listeners.append(report)
        await active.done
        progress.end(f"run {active.run_id} ended")
    return RunSummary.model_validate(_summary(await _row(ctx, active.run_id), ctx.daemon.home))


@table.method("run.start")
async def start(params: RunStartParams, ctx: RequestContext) -> RunSummary:
    """Start a run; with `wait`, answer when it has ended."""
    runner = _services(ctx).runner
    active = await runner.start(params.pipeline, params.inputs, params.variables,
                                params.settings)
    return await _answer_when_done(active, ctx, params.wait)


@table.method("run.resume")
async def resume(params: RunResumeParams, ctx: RequestContext) -> RunSummary:
    """Continue an interrupted or cancelled run."""
    active = await _services(ctx).runner.resume(params.run_id, params.inputs,
                                                params.variables)
    return await _answer_when_done(active, ctx, params.wait)


@table.method("run.get")
async def get(params: RunIdParams, ctx: RequestContext) -> RunDetail:
    """A run with its stages and latest checkpoint."""
    services = _services(ctx)
    row = await _row(ctx, params.run_id)
    stages = await services.runs.stages(params.run_id)
    run_dir = RunDirectory(ctx.daemon.home / row["run_dir"])
    checkpoint = run_dir.read_json("checkpoint.json")
    active = services.runner.active.get(params.run_id)
    question = active.question.to_dict() if active and active.question else None
    return RunDetail.model_validate({
        **_summary(row, ctx.daemon.home),
        "stages": [{k: v for k, v in s.items() if k != "run_id"} for s in stages],
        "context": checkpoint.get("context") if checkpoint else None,
        "completed_nodes": completed_nodes(run_dir, checkpoint) if checkpoint else [],
        "question": question})


@table.method("run.list")
async def list_runs(params: RunListParams, ctx: RequestContext) -> RunListResult:
    """Runs newest first, filtered and paged."""
    try:
        rows, cursor = await _services(ctx).runs.list_runs(
            statuses=params.status, pipeline=params.pipeline, since=params.since,
            until=params.until, limit=params.limit, cursor=params.cursor)
    except (ValueError, orjson.JSONDecodeError):
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params: bad cursor") from None
    return RunListResult(runs=[RunSummary.model_validate(_summary(r, ctx.daemon.home))
                               for r in rows], next_cursor=cursor)


@table.method("run.cancel")
async def cancel(params: RunIdParams, ctx: RequestContext) -> RunSummary:
    """Cancel a running run and answer once it has stopped."""
    await _services(ctx).runner.cancel(params.run_id)
    return RunSummary.model_validate(_summary(await _row(ctx, params.run_id), ctx.daemon.home))


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
    _services(ctx).runner.answer(params.run_id, params.question_id, params.answer)
    return NullResult()
