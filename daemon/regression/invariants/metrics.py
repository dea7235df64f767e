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
    tokens, calls, model_calls, tool_calls, turns, stages, nodes_visited, latency_ms,
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
        "turns": sum(node["turns"] for node in node_metrics(run).values()),
        "stages": len(run.stages),
        "nodes_visited": len({s.get("node_id") for s in run.stages}),
        "latency_ms": round(sum(latencies), 3),
        "max_call_latency_ms": round(max(latencies), 3) if latencies else 0.0,
        "score": run_score(run),
    }


def node_metrics(run: StoredRun) -> dict[str, dict[str, int]]:
    """Per node that ran (a stage or a call), over all its attempts and visits: `turns`,
    `model_calls`, `tool_calls`. A node's turns are its model calls that carry an agent
    turn (`metadata.turn`), or, for a node that made none, its model calls: one each."""
    nodes: dict[str, dict[str, int]] = {}

    def entry(node_id: str) -> dict[str, int]:
        return nodes.setdefault(node_id, {"turns": 0, "model_calls": 0, "tool_calls": 0,
                                          "agent_turns": 0})

    for stage in run.stages:
        entry(str(stage.get("node_id")))
    for call in run.work_calls():
        node = entry(str(call.get("node_id")))
        if call.get("kind") == "model":
            node["model_calls"] += 1
            node["agent_turns"] += _has_turn(call)
        elif call.get("kind") == "tool":
            node["tool_calls"] += 1
    for node in nodes.values():
        agent_turns = node.pop("agent_turns")
        node["turns"] = agent_turns or node["model_calls"]
    return nodes


def _has_turn(call: dict[str, Any]) -> bool:
    request = call.get("request")
    metadata = request.get("metadata") if isinstance(request, dict) else None
    turn = metadata.get("turn") if isinstance(metadata, dict) else None
    return isinstance(turn, int) and not isinstance(turn, bool)


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
