"""Queries for traces: the calls of a run or of a trace, in order, and their totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .db import Database
from .records import Call, RunRecord

if TYPE_CHECKING:
    from .runs import RunStore

# Totals over a set of calls; `{where}` selects them. The entry of kind `run` that ends a
# failed run's trace is no call: only its finish_reason counts.
_TOTALS = """
SELECT trace_id, run_id,
       COALESCE(SUM(kind != 'run'), 0) AS calls,
       COALESCE(SUM(kind = 'model'), 0) AS model_calls,
       COALESCE(SUM(kind = 'tool'), 0) AS tool_calls,
       COALESCE(SUM(error IS NOT NULL AND kind != 'run'), 0) AS error_calls,
       COALESCE(SUM(input_tokens), 0) AS input_tokens,
       COALESCE(SUM(output_tokens), 0) AS output_tokens,
       COALESCE(SUM(cost_usd), 0.0) AS cost_usd,
       COALESCE(SUM(latency_ms), 0.0) AS latency_ms,
       MIN(created_at) AS first_call_at,
       MAX(created_at) AS last_call_at,
       (SELECT finish_reason FROM calls AS last WHERE last.trace_id = calls.trace_id
        ORDER BY last.seq DESC, last.created_at DESC, last.id DESC LIMIT 1)
           AS last_finish_reason
FROM calls WHERE {where} GROUP BY trace_id, run_id
"""
_ORDER = "ORDER BY seq, created_at, id"
CALL_COLUMNS = ("id, run_id, trace_id, seq, node_id, attempt, kind, request_json, "
                "response_json, error, input_tokens, output_tokens, cost_usd, latency_ms, "
                "finish_reason, created_at")


def empty_totals() -> dict[str, Any]:
    """The totals of a trace without calls."""
    return {"calls": 0, "model_calls": 0, "tool_calls": 0, "error_calls": 0,
            "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "latency_ms": 0.0,
            "first_call_at": None, "last_call_at": None, "last_finish_reason": None}


def decode_call(row: Sequence[Any]) -> Call:
    """A row of CALL_COLUMNS with its request and response decoded, in trace.jsonl's field
    order."""
    (id_, run_id, trace_id, seq, node_id, attempt, kind, request, response, error,
     input_tokens, output_tokens, cost_usd, latency_ms, finish_reason, created_at) = row
    return {"id": id_, "run_id": run_id, "trace_id": trace_id, "seq": seq,
            "node_id": node_id, "attempt": attempt, "kind": kind,
            "request": orjson.loads(request),
            "response": None if response is None else orjson.loads(response),
            "error": error, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_usd": cost_usd, "latency_ms": latency_ms, "finish_reason": finish_reason,
            "created_at": created_at}


class TraceStore:
    """Everything the store knows about traces (the `calls` table)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def run_of_trace(self, runs: RunStore, trace_id: str) -> RunRecord | None:
        """The run a trace belongs to."""
        call = await self.db.fetchone(
            "SELECT run_id FROM calls WHERE trace_id = ? LIMIT 1", (trace_id,))
        if call is not None:
            return await runs.get_run(call["run_id"])
        # A trace without calls (a run of human gates and conditionals only, say): found
        # through the run's own trace id.
        return await runs.run_with_trace(trace_id)

    async def trace_calls(self, trace_id: str, *, after_seq: int = 0,
                          limit: int | None = None) -> list[Call]:
        """The calls of a trace in order, decoded; `after_seq` and `limit` page."""
        sql = f"SELECT {CALL_COLUMNS} FROM calls WHERE trace_id = ? AND seq > ? {_ORDER}"
        params: tuple[Any, ...] = (trace_id, after_seq)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [decode_call(row) for row in await self.db.rows(sql, params)]

    async def trace_totals(self, trace_id: str) -> dict[str, Any]:
        """Counts and sums over every call of a trace."""
        row = await self.db.fetchone(_TOTALS.format(where="trace_id = ?"), (trace_id,))
        if row is None:
            return empty_totals()
        row.pop("trace_id")
        row.pop("run_id")
        return row

    async def run_traces(self, run: RunRecord) -> list[dict[str, Any]]:
        """The traces of a run with their totals: the run's own trace first (also when it
        has no calls), then any other trace its calls carry, oldest first."""
        rows = await self.db.fetchall(_TOTALS.format(where="run_id = ?") +
                                      " ORDER BY first_call_at", (run.id,))
        by_id = {row["trace_id"]: row for row in rows}
        own = by_id.pop(run.trace_id, None) or {
            "trace_id": run.trace_id, "run_id": run.id, **empty_totals()}
        return [own, *by_id.values()]

    async def run_calls(self, run_id: str) -> list[Call]:
        """Every call of a run in order, decoded."""
        return [decode_call(row) for row in await self.db.rows(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE run_id = ? {_ORDER}", (run_id,))]
