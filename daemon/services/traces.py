"""Traces family: trace.get and trace.list, read from the store's `calls` table."""

from __future__ import annotations

from typing import Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.traces import TraceGetParams, TraceListParams

from ..store.traces import TraceStore
from .base import HandlerTable, RequestContext

table = HandlerTable()


def trace_store(ctx: RequestContext) -> TraceStore:
    """The store's trace queries."""
    return TraceStore(ctx.services.db)


@table.method("trace.get")
async def get(params: TraceGetParams, ctx: RequestContext) -> dict[str, Any]:
    """The run of a trace, its calls in order (a page of them on request), and totals.

    A plain dict (validated against TraceGetResult in strict mode): traces can be long, and
    their requests and responses are already JSON from the store."""
    store = trace_store(ctx)
    run = await store.run_of_trace(ctx.services.runs, params.trace_id)
    if run is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no trace {params.trace_id}")
    # One more than asked for tells whether there is a next page.
    limit = None if params.limit is None else params.limit + 1
    calls = await store.trace_calls(params.trace_id, after_seq=params.after_seq, limit=limit)
    next_after = None
    if params.limit is not None and len(calls) > params.limit:
        calls = calls[:params.limit]
        next_after = calls[-1]["seq"]
    for call in calls:
        del call["run_id"], call["trace_id"]  # type: ignore[misc]
    return {"trace_id": params.trace_id,
            "run": run.summary_fields(ctx.services.home),
            "calls": calls, "totals": await store.trace_totals(params.trace_id),
            "next_after_seq": next_after}


@table.method("trace.list")
async def list_traces(params: TraceListParams, ctx: RequestContext) -> dict[str, Any]:
    """The traces of a run with their totals."""
    run = await ctx.services.runs.get_run(params.run_id)
    if run is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no run {params.run_id}")
    return {"run_id": params.run_id, "traces": await trace_store(ctx).run_traces(run)}
