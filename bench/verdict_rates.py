"""The exact side of bench/verdicts.py: which pass counts fail a `pass_rate`, as the
product's `evaluate_trials` decides it, and the binomial chances of those counts: the
false-alarm and detection rates, the best threshold for N trials, the fewest trials that
meet both targets, and the Wilson interval of a simulated rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ostinato.daemon.regression.invariants import StoredRun, evaluate_trials, wilson_lower

FALSE_ALARM_TARGET = 0.05  # at most
DETECTION_TARGET = 0.90  # at least
GUIDE_N = (10, 20, 30, 50)
GUIDE_DROPS = (0.6, 0.75)
# What the engine stores for a run whose one node answered this status (verdicts.py checks
# it against runs the daemon stored).
RUN_ROW = {"success": {"status": "completed", "outcome": "success"},
           "fail": {"status": "failed", "outcome": "fail"}}


async def verdict_of(statuses: Sequence[str],
                     checks: list[dict[str, Any]]) -> tuple[list[bool], str]:
    """(each trial passed, the pass_rate's status) by the product's evaluate_trials."""
    runs = [StoredRun(run={"id": f"trial-{t}", **RUN_ROW[s]}) for t, s in enumerate(statuses)]
    evaluation = await evaluate_trials(checks, runs)
    rate = next(r for r in evaluation["results"] if r["type"] == "pass_rate")
    return evaluation["trial_passed"], rate["status"]


def binomial(k: int, n: int, p: float) -> float:
    """P(X = k) for X ~ Binomial(n, p) (in logs: n may be in the thousands)."""
    if p <= 0 or p >= 1:
        return float(k == (n if p >= 1 else 0))
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


async def failing_counts(n: int, threshold: float, confidence: float) -> list[int]:
    """The pass counts c of n trials whose pass_rate fails, as evaluate_trials decides."""
    checks = [{"type": "pass_rate", "threshold": threshold, "confidence": confidence}]
    failing = []
    for c in range(n + 1):
        _, status = await verdict_of(["success"] * c + ["fail"] * (n - c), checks)
        if status == "failed":
            failing.append(c)
    return failing


def alarm_rate(failing: Sequence[int], n: int, p: float) -> float:
    """The chance that a pass_rate failing at these counts fails, at true pass rate p."""
    return sum(binomial(c, n, p) for c in failing)


def cdf(k: int, n: int, p: float) -> float:
    """P(X <= k)."""
    return sum(binomial(c, n, p) for c in range(k + 1))


def best_cutoff(n: int, base: float) -> int:
    """The largest k such that failing at <= k passes keeps false alarms within target (-1:
    none)."""
    k, total = -1, 0.0
    while k + 1 <= n and (total := total + binomial(k + 1, n, base)) <= FALSE_ALARM_TARGET:
        k += 1
    return k


def threshold_range(k: int, n: int, confidence: float) -> tuple[float, float]:
    """(low, high]: the thresholds that fail exactly at <= k passes, from the Wilson lower
    bounds of k and k + 1 passes."""
    return (wilson_lower(k, n, confidence) if k >= 0 else -1.0,
            wilson_lower(k + 1, n, confidence) if k < n else 1.0)


def threshold_for(k: int, n: int, confidence: float) -> float:
    """The roundest threshold that fails exactly at <= k passes."""
    low, high = threshold_range(k, n, confidence)
    for digits in (1, 2, 3, 4, 6):
        threshold = round(math.floor(low * 10 ** digits + 1) / 10 ** digits, digits)
        if low < threshold <= high:
            return threshold
    return high


async def guidance(base: float, confidence: float) -> list[dict[str, Any]]:
    """Per N of GUIDE_N: the best threshold and its exact rates (checked by the product's
    evaluation: it fails at exactly the counts 0..k)."""
    rows = []
    for n in GUIDE_N:
        k = best_cutoff(n, base)
        threshold = threshold_for(k, n, confidence)
        failing = await failing_counts(n, threshold, confidence)
        if failing != list(range(k + 1)):
            raise RuntimeError(f"N={n}: threshold {threshold} fails at {failing}, not <= {k}")
        low, high = threshold_range(k, n, confidence)
        rows.append({"n": n, "threshold": threshold, "fails_at_most": k,
                     "same_verdicts_for": [round(low, 4), round(high, 4)],
                     "false_alarm": alarm_rate(failing, n, base),
                     "detection": {f"{p:g}": alarm_rate(failing, n, p) for p in GUIDE_DROPS}})
    return rows


def enough_trials(base: float, dropped: float, limit: int = 500) -> dict[str, int | None]:
    """The fewest trials with which some threshold keeps false alarms within target and
    detects a drop to `dropped` at least DETECTION_TARGET of the time (`first`), and the
    fewest from which every larger N up to `limit` does (`from`: the counts are whole
    numbers, so one more trial can lose a target that one fewer met)."""
    meets = []
    for n in range(1, limit + 1):
        k = best_cutoff(n, base)
        meets.append(k >= 0 and cdf(k, n, dropped) >= DETECTION_TARGET)
    first = meets.index(True) + 1 if True in meets else None
    steady = None
    for n in range(limit, 0, -1):
        if not meets[n - 1]:
            break
        steady = n
    return {"first": first, "from": steady}


def interval(hits: int, n: int) -> tuple[float, float]:
    """The two-sided 95% Wilson interval of hits / n (each side a one-sided 97.5% bound)."""
    if n == 0:
        return math.nan, math.nan
    return wilson_lower(hits, n, 0.975), 1 - wilson_lower(n - hits, n, 0.975)
