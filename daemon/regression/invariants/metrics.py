"""A run's metrics (`run_metrics`): what snapshots keep as reference, what test runs compare,
what metric bounds and `expr` read. The judge calls a reeval recorded on a run are not the
run's work and are left out (the run row's cost and tokens never included them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ostinato.protocol.invariants import RUN_METRICS

from .model import StoredRun

# The keys of run_metrics; every one is always present (None when unknown).
METRIC_KEYS = RUN_METRICS


def run_metrics(run: StoredRun) -> dict[str, Any]:
    """The run's metrics: status, outcome, duration_ms, cost_usd, tokens_in, tokens_out,
    tokens, calls, model_calls, tool_calls, stages, nodes_visited, latency_ms,
    max_call_latency_ms, score."""
    row = run.run
    calls = run.work_calls()
    latencies = [float(c.get("latency_ms") or 0.0) for c in calls]
    cost = row.get("cost_usd")
    if cost is None:
        cost = sum(float(c.get("cost_usd") or 0) for c in calls)
    tokens_in = int(row.get("input_tokens") or 0)
    tokens_out = int(row.get("output_tokens") or 0)
    return {
        "status": row.get("status"),
        "outcome": row.get("outcome"),
        "duration_ms": _duration_ms(row.get("started_at"), row.get("ended_at")),
        # float sums leave noise such as 0.30000000000000004
        "cost_usd": round(float(cost), 10),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens": tokens_in + tokens_out,
        "calls": len(calls),
        "model_calls": sum(c.get("kind") == "model" for c in calls),
        "tool_calls": sum(c.get("kind") == "tool" for c in calls),
        "stages": len(run.stages),
        "nodes_visited": len({s.get("node_id") for s in run.stages}),
        "latency_ms": round(sum(latencies), 3),
        "max_call_latency_ms": round(max(latencies), 3) if latencies else 0.0,
        "score": run_score(run),
    }


def _duration_ms(started: str | None, ended: str | None) -> float | None:
    if not started or not ended:
        return None
    seconds = (_time(ended) - _time(started)).total_seconds()
    return round(seconds * 1000, 3)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def run_score(run: StoredRun) -> float | None:
    """The score the run reported: the last stage outcome's `score`, else the final
    context's `score` (as trial sets count it)."""
    for stage in reversed(run.stages):
        score = _number((stage.get("outcome") or {}).get("score"))
        if score is not None:
            return score
    return _number((run.context or {}).get("score"))
