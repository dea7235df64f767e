"""The shapes of a snapshot's JSON columns, by schema version, and the loader that brings an
older snapshot up to the current shape when it is read (the row itself is never rewritten:
snapshots are immutable).

Version 1 (the first snapshots, shaped after seeds/001): invariants in seeds/001's spelling
(`run_status` values upper case, as `"COMPLETED"`), reference metrics as seeds/001 named them
(`status` upper case, `duration_seconds`, `llm_usage {input_tokens, output_tokens, cost_usd,
calls}`, `top_i_score`), and no variables. Version 2: invariants as protocol/invariants.py
spells them, reference metrics with run_metrics' keys, variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CURRENT_SCHEMA = 2

# run_metrics' keys (daemon/regression/invariants/metrics.py): what version 2 stores.
METRIC_KEYS = ("status", "outcome", "duration_ms", "cost_usd", "tokens_in", "tokens_out",
               "tokens", "calls", "model_calls", "tool_calls", "stages", "nodes_visited",
               "latency_ms", "max_call_latency_ms", "score")


class UnknownSchema(ValueError):
    """A snapshot written by a newer daemon, in a shape this one does not know."""


def _v1_invariant(invariant: Any) -> Any:
    """seeds/001 wrote statuses upper case; version 2 writes them as run statuses are."""
    if not isinstance(invariant, dict) or invariant.get("type") != "run_status":
        return invariant
    value = invariant.get("value")
    if isinstance(value, str):
        return {**invariant, "value": value.lower()}
    if isinstance(value, list):
        return {**invariant, "value": [v.lower() if isinstance(v, str) else v for v in value]}
    return invariant


def _v1_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """seeds/001's reference metrics under run_metrics' keys; keys version 2 has no place
    for (candidate counts, say) are kept as they were."""
    old = dict(metrics)
    usage = old.pop("llm_usage", None) or {}
    seconds = old.pop("duration_seconds", None)
    status = old.pop("status", None)
    tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
    new: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    new.update(
        status=status.lower() if isinstance(status, str) else status,
        duration_ms=None if seconds is None else round(seconds * 1000, 3),
        cost_usd=usage.get("cost_usd"), tokens_in=tokens_in, tokens_out=tokens_out,
        tokens=None if tokens_in is None or tokens_out is None else tokens_in + tokens_out,
        calls=usage.get("calls"), model_calls=usage.get("calls"),
        score=old.pop("top_i_score", None))
    return {**new, **old}


def _v1_to_v2(snapshot: dict[str, Any]) -> dict[str, Any]:
    reference = snapshot.get("reference")
    if reference is not None and isinstance(reference.get("metrics"), dict):
        reference = {**reference, "metrics": _v1_metrics(reference["metrics"])}
    return {**snapshot, "variables": snapshot.get("variables") or {},
            "invariants": [_v1_invariant(i) for i in snapshot.get("invariants") or []],
            "reference": reference}


_STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def upgrade(snapshot: dict[str, Any], version: int) -> dict[str, Any]:
    """A decoded snapshot of schema `version` in the current shape (a new dict)."""
    if version > CURRENT_SCHEMA:
        raise UnknownSchema(f"snapshot {snapshot.get('id')} has schema version {version}; "
                            f"this daemon reads versions up to {CURRENT_SCHEMA}")
    for step in range(version, CURRENT_SCHEMA):
        snapshot = _STEPS[step](snapshot)
    return snapshot
