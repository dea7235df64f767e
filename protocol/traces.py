"""Traces family: trace.get and trace.list, the ordered model and tool calls of a run."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from .base import Model, Params, Result
from .bounds import MAX_INTEGER
from .registry import MethodSpec
from .runs import RunSummary


class TraceCall(Model):
    """One model or tool call, as the run recorded it (a `calls` row, a trace.jsonl line)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    seq: int = Field(description="The call's number within the run, from 1.")
    node_id: str
    attempt: int
    kind: str = Field(description="`model` or `tool`; `run` for the entry that ends the trace "
                                  "of a run that failed without a failing call (no edge to "
                                  "follow, max_steps, a goal gate), with the reason as `error`.")
    request: dict[str, Any] | None = Field(
        description="Model: provider, model, messages, params, metadata. Tool: `argv`.")
    response: dict[str, Any] | None = Field(
        description="Model: text, usage, finish_reason, …; tool: exit_code, stdout, stderr; "
                    "null when a model call failed.")
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    finish_reason: str | None = Field(
        default=None, description="Model: `stop`, `length`, …, or `error` when the call "
                                  "failed. Tool: `exit` (code 0) or `error`.")
    created_at: str


class TraceTotals(Model):
    """Counts and sums over every call of a trace."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    error_calls: int = Field(default=0, description="Calls with an `error`.")
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = Field(default=0.0, description="The calls' latencies added up.")
    first_call_at: str | None = None
    last_call_at: str | None = None
    last_finish_reason: str | None = Field(
        default=None, description="`finish_reason` of the last call; `error` when the trace "
                                  "ends with a failed call.")


class TraceGetParams(Params):
    """A trace by id; `after_seq` and `limit` page through long ones."""

    trace_id: str
    after_seq: int = Field(default=0, ge=0, le=MAX_INTEGER,
                           description="Only calls whose `seq` is greater than this.")
    limit: int | None = Field(default=None, ge=1, le=MAX_INTEGER,
                              description="At most this many calls; all when absent.")


class TraceGetResult(Result):
    """A trace: the run it belongs to, its calls in order, and totals over all its calls."""

    trace_id: str
    run: RunSummary
    calls: list[TraceCall]
    totals: TraceTotals = Field(description="Over the whole trace, whatever the page.")
    next_after_seq: int | None = Field(
        default=None, description="Pass as `after_seq` for the next page; null on the last.")


class TraceListParams(Params):
    """The traces of a run."""

    run_id: str


class TraceSummary(TraceTotals):
    """One trace of a run, with its totals."""

    trace_id: str
    run_id: str


class TraceListResult(Result):
    """The traces of a run (today exactly one: the run's `trace_id`)."""

    run_id: str
    traces: list[TraceSummary]


METHODS = [
    MethodSpec("trace.get", TraceGetParams, TraceGetResult,
               "A trace: its run, its model and tool calls in order (request, response, "
               "usage, cost, latency, error, finish_reason) and totals; paged on request."),
    MethodSpec("trace.list", TraceListParams, TraceListResult,
               "The traces of a run with their call counts, tokens, cost and latency."),
]
