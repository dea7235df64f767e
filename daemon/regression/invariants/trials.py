"""Across trials: `pass_rate` (the Wilson score lower bound of the pass rate must clear a
threshold) and `pass_at_k`, and `evaluate_trials`, which evaluates a list of invariants over
the runs of a trial set.

A trial passes when none of its per-run checks failed or errored (with no per-run checks:
when its run completed with outcome success). Each per-run invariant gets one aggregated
result: without an across-trials check it fails when it failed on any trial (else errors
when it errored on any, else passes; skipped when skipped on all). With one, the per-run
results feed the rate instead of the verdict: a per-run invariant that did not pass on every
trial is reported `skipped`, its message saying on how many it failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, TypedDict

from ostinato.protocol.invariants import (
    ACROSS_TRIALS,
    InvariantBase,
    PassAtKInvariant,
    PassRateInvariant,
)

from .evaluate import evaluate, expected_of, parsed, verdict
from .model import StoredRun

if TYPE_CHECKING:
    from .judge import Judge


class TrialsEvaluation(TypedDict):
    """What evaluate_trials answers."""

    results: list[dict[str, Any]]  # one per invariant, in order, aggregated over the trials
    per_trial: list[list[dict[str, Any]]]  # the per-run results of each trial
    trial_passed: list[bool]  # whether each trial passed
    verdict: str


def wilson_lower(passes: int, n: int, confidence: float) -> float:
    """The Wilson score interval's one-sided lower bound for `passes` of `n` at
    `confidence`: z = inv_cdf(confidence), (p + z²/2n - z·√(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    if n <= 0:
        raise ValueError("no trials")
    z = NormalDist().inv_cdf(confidence)
    p = passes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def pass_at_k(passes: int, n: int, k: int) -> float:
    """The unbiased estimate of pass@k from n trials with `passes` passes."""
    if n - passes < k:
        return 1.0
    return 1.0 - math.comb(n - passes, k) / math.comb(n, k)


def trial_passed(results: Sequence[dict[str, Any]], run: StoredRun) -> bool:
    """A trial's verdict: its per-run checks, or (with none) its run's success."""
    if results:
        return verdict(results) == "passed"
    return run.run.get("status") == "completed" and run.run.get("outcome") == "success"


async def evaluate_trials(invariants: Sequence[InvariantBase | dict[str, Any]],
                          runs: Sequence[StoredRun], *, allow_partial: bool = False,
                          judge: Judge | None = None) -> TrialsEvaluation:
    """Per-run invariants on each trial, across-trials ones on the list (see the module);
    invariants are models or dicts, as for evaluate."""
    models = parsed(invariants)
    per_run = [i for i in models if getattr(i, "type", "") not in ACROSS_TRIALS]
    per_trial = [await evaluate(per_run, run, allow_partial=allow_partial, judge=judge)
                 for run in runs]
    passed = [trial_passed(results, run) for results, run in zip(per_trial, runs, strict=True)]
    rated = len(per_run) < len(models)
    results, at = [], 0
    for invariant in models:
        type_ = str(getattr(invariant, "type", ""))
        base = {"type": type_, "description": invariant.description}
        if type_ in ACROSS_TRIALS:
            results.append({**base, **_across(invariant, passed)})
        else:
            results.append({**base, **_aggregate([t[at] for t in per_trial], invariant,
                                                 rated)})
            at += 1
    return {"results": results, "per_trial": per_trial, "trial_passed": passed,
            "verdict": verdict(results)}


def _aggregate(results: list[dict[str, Any]], invariant: Any, rated: bool) -> dict[str, Any]:
    """One per-run invariant's results over the trials, as one result."""
    n = len(results)
    counts = {s: sum(r["status"] == s for r in results)
              for s in ("passed", "failed", "error", "skipped")}
    actual = {"trials": n, **counts}
    expected = results[0]["expected"] if results else expected_of(invariant)
    if n == 0:
        return {"status": "skipped", "expected": expected, "actual": actual,
                "message": "no trials ran"}
    if counts["passed"] == n:
        return {"status": "passed", "expected": expected, "actual": actual,
                "message": f"passed on all {n} trial(s)"}
    if counts["skipped"] == n:
        return {"status": "skipped", "expected": expected, "actual": actual,
                "message": results[0]["message"]}
    if not counts["failed"] and not counts["error"]:  # passed where it was evaluated
        return {"status": "passed", "expected": expected, "actual": actual,
                "message": f"passed on {counts['passed']} trial(s), skipped on "
                           f"{counts['skipped']}"}
    first = next(r for r in results if r["status"] in ("failed", "error"))
    summary = (f"failed on {counts['failed']} and errored on {counts['error']} of {n} "
               f"trial(s); first: {first['message']}")
    if rated:
        return {"status": "skipped", "expected": expected, "actual": actual,
                "message": summary + " (counted by the across-trials checks, not a verdict "
                                     "of its own)"}
    status = "failed" if counts["failed"] else "error"
    return {"status": status, "expected": expected, "actual": actual, "message": summary}


def _across(invariant: Any, passed: list[bool]) -> dict[str, Any]:
    n, c = len(passed), sum(passed)
    if isinstance(invariant, PassRateInvariant):
        return _pass_rate(invariant, n, c)
    assert isinstance(invariant, PassAtKInvariant)
    expected = {"k": invariant.k, "threshold": invariant.threshold}
    if n < invariant.k:
        return {"status": "error", "expected": expected, "actual": {"n": n, "passed": c},
                "message": f"pass_at_k with k={invariant.k} needs at least {invariant.k} "
                           f"trials, got {n}"}
    estimate = round(pass_at_k(c, n, invariant.k), 6)
    ok = estimate >= invariant.threshold
    return {"status": "passed" if ok else "failed", "expected": expected,
            "actual": {"pass_at_k": estimate, "n": n, "passed": c},
            "message": f"pass@{invariant.k} is {estimate:.3f} ({c} of {n} trials passed), "
                       + ("at least" if ok else "below") + f" {invariant.threshold:g}"}


def _pass_rate(invariant: PassRateInvariant, n: int, c: int) -> dict[str, Any]:
    expected = {"threshold": invariant.threshold, "confidence": invariant.confidence}
    if n == 0:
        return {"status": "error", "expected": expected, "actual": {"n": 0, "passed": 0},
                "message": "no trials ran, so no pass rate"}
    lower = round(wilson_lower(c, n, invariant.confidence), 6)
    ok = lower >= invariant.threshold
    return {"status": "passed" if ok else "failed", "expected": expected,
            "actual": {"rate": round(c / n, 6), "lower_bound": lower, "n": n, "passed": c},
            "message": f"{c} of {n} trials passed ({c / n:.0%}); the Wilson lower bound at "
                       f"{invariant.confidence:.0%} confidence is {lower:.3f}, "
                       + ("clearing" if ok else "below") + f" the {invariant.threshold:g} "
                       "threshold"}
