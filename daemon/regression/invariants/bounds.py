"""Metric bounds: `min`, `max` and `between` on a run metric, a node's metric or a context
value."""

from __future__ import annotations

from typing import Any

from ostinato.protocol.invariants import (
    BetweenInvariant,
    MaxInvariant,
    MinInvariant,
    node_metric,
)

from .evaluate import evaluator
from .metrics import node_metrics, run_metrics
from .model import StoredRun, Unavailable, context_value, result


def count_of(value: Any, what: str) -> float:
    """A value as a number: a number itself, a numeric string its number, a list or an
    object its length."""
    if isinstance(value, bool):
        raise Unavailable(f"{what} is a boolean, not a number or a collection")
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | dict):
        return len(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise Unavailable(f"{what} is not a number, a list or an object: {str(value)[:80]!r}")


def metric_value(metric: str, run: StoredRun) -> float:
    """A metric path's value: a run metric, a node's metric, or a context key counted as
    count_of does."""
    if metric.startswith("context."):
        key = metric[len("context."):]
        return count_of(context_value(key, run), f"context key {key!r}")
    of_node = node_metric(metric)
    if of_node is not None:
        node_id, name = of_node
        nodes = node_metrics(run)
        if node_id not in nodes:
            # Likely a misspelt id: an error says so, where 0 would pass a `max` silently.
            ran = ", ".join(map(repr, nodes)) or "none"
            raise Unavailable(f"node {node_id!r} did not run (nodes that ran: {ran})")
        return nodes[node_id][name]
    value = run_metrics(run).get(metric)
    if value is None:
        raise Unavailable(f"the run has no {metric}" + (" (no stage or context reported a "
                                                        "score)" if metric == "score" else ""))
    return value


def _named(metric: str) -> str:
    of_node = node_metric(metric)
    if of_node is not None:
        return f"{of_node[1]} of node {of_node[0]!r}"
    return f"context key {metric[8:]!r}" if metric.startswith("context.") else metric


@evaluator("min")
def at_least(invariant: MinInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """metric >= value."""
    value = metric_value(invariant.metric, run)
    ok = value >= invariant.value
    return result(ok, {"metric": invariant.metric, "min": invariant.value}, value,
                  f"{_named(invariant.metric)} is {value:g}, "
                  + ("at least" if ok else "below") + f" {invariant.value:g}")


@evaluator("max")
def at_most(invariant: MaxInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """metric <= value."""
    value = metric_value(invariant.metric, run)
    ok = value <= invariant.value
    return result(ok, {"metric": invariant.metric, "max": invariant.value}, value,
                  f"{_named(invariant.metric)} is {value:g}, "
                  + ("at most" if ok else "above") + f" {invariant.value:g}")


@evaluator("between")
def between(invariant: BetweenInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """min <= metric <= max."""
    value = metric_value(invariant.metric, run)
    ok = invariant.min <= value <= invariant.max
    return result(ok, {"metric": invariant.metric, "min": invariant.min,
                       "max": invariant.max}, value,
                  f"{_named(invariant.metric)} is {value:g}, "
                  + ("within" if ok else "outside") + f" [{invariant.min:g}, {invariant.max:g}]")
