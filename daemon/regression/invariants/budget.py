"""Budget checks: `max_cost_usd`, `max_tokens`, `max_latency_ms`."""

from __future__ import annotations

from typing import Any

from ostinato.protocol.invariants import MaxCostInvariant, MaxLatencyInvariant, MaxTokensInvariant

from .evaluate import evaluator
from .metrics import run_metrics
from .model import StoredRun, Unavailable, result


@evaluator("max_cost_usd")
def max_cost(invariant: MaxCostInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """The run's cost (its calls' sum) against the limit."""
    cost = run_metrics(run)["cost_usd"]
    ok = cost <= invariant.value
    return result(ok, invariant.value, cost, f"the run cost ${cost:g}, "
                  + ("within" if ok else "over") + f" the ${invariant.value:g} limit")


_TOKEN_METRIC = {"total": "tokens", "input": "tokens_in", "output": "tokens_out"}


@evaluator("max_tokens")
def max_tokens(invariant: MaxTokensInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """Tokens used (total, input or output) against the limit."""
    used = run_metrics(run)[_TOKEN_METRIC[invariant.which]]
    ok = used <= invariant.value
    what = "tokens" if invariant.which == "total" else f"{invariant.which} tokens"
    return result(ok, invariant.value, used, f"the run used {used} {what}, "
                  + ("within" if ok else "over") + f" the limit of {invariant.value}")


_LATENCY_WORDS = {"duration_ms": "took", "latency_ms": "spent in calls",
                  "max_call_latency_ms": "waited on its slowest call"}


@evaluator("max_latency_ms")
def max_latency(invariant: MaxLatencyInvariant, run: StoredRun,
                _judge: Any) -> dict[str, Any]:
    """A latency metric against the limit."""
    value = run_metrics(run)[invariant.metric]
    if value is None:
        raise Unavailable("the run has no end time, so no duration")
    ok = value <= invariant.value
    return result(ok, invariant.value, value,
                  f"the run {_LATENCY_WORDS[invariant.metric]} {value:g} ms, "
                  + ("within" if ok else "over") + f" the {invariant.value:g} ms limit")
