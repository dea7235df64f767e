"""`run_status` and seeds/001's named checks: candidate and scenario counts, the top
candidate's I-score, hard constraint violations, duration and evaluation coverage. The
context shapes they read are documented on their models (protocol/invariants.py)."""

from __future__ import annotations

from typing import Any

from ostinato.protocol.invariants import (
    CountAlias,
    CoverageAlias,
    DurationAlias,
    HardConstraintAlias,
    RunStatusInvariant,
    TopScoreAlias,
)

from .bounds import count_of
from .evaluate import evaluator
from .metrics import run_metrics
from .model import StoredRun, Unavailable, context_value, result


@evaluator("run_status")
def run_status(invariant: RunStatusInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """The run's status (and outcome) against the expected ones."""
    wanted = invariant.value if isinstance(invariant.value, list) else [invariant.value]
    status, outcome = run.run.get("status"), run.run.get("outcome")
    expected: dict[str, Any] = {"status": invariant.value}
    actual: dict[str, Any] = {"status": status}
    ok = status in wanted
    if invariant.outcome is not None:
        expected["outcome"] = invariant.outcome
        actual["outcome"] = outcome
        ok = ok and outcome == invariant.outcome
    described = " or ".join(wanted) + (f" ({invariant.outcome})" if invariant.outcome else "")
    ended = f"{status}" + (f" ({outcome})" if outcome else "")
    return result(ok, expected, actual,
                  f"the run ended {ended}" + ("" if ok else f", expected {described}"))


@evaluator("min_candidates", "max_candidates", "min_scenarios", "max_scenarios")
def count_bound(invariant: CountAlias, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """How many candidates (or scenarios) the final context holds, against the bound."""
    bound, noun = invariant.type.split("_", 1)
    key = invariant.key or noun
    count = count_of(context_value(key, run), f"context key {key!r}")
    ok = count >= invariant.value if bound == "min" else count <= invariant.value
    return result(ok, invariant.value, count,
                  f"the run has {count:g} {noun} (context key {key!r}), "
                  + ("at least" if bound == "min" else "at most") + f" {invariant.value} "
                  + ("as required" if ok else "expected"))


def _score_of(entry: Any) -> float | None:
    if isinstance(entry, dict):
        entry = entry.get("i_score", entry.get("score"))
    return float(entry) if isinstance(entry, int | float) and not isinstance(entry, bool) \
        else None


def top_score(run: StoredRun) -> float:
    """The highest I-score in the context's `rankings`, else in its `scores`."""
    context = run.context or {}
    key = "rankings" if "rankings" in context else "scores"
    value = context_value(key, run)
    entries = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(entries, list):
        raise Unavailable(f"context key {key!r} is neither a list nor an object")
    scores = [s for s in map(_score_of, entries) if s is not None]
    if not scores:
        raise Unavailable(f"context key {key!r} holds no scores")
    return max(scores)


@evaluator("min_top_i_score", "max_top_i_score")
def top_score_bound(invariant: TopScoreAlias, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """The top candidate's I-score against the bound."""
    score = top_score(run)
    low = invariant.type.startswith("min")
    ok = score >= invariant.value if low else score <= invariant.value
    return result(ok, invariant.value, score,
                  f"the top I-score is {score:g}, " + (("at least" if ok else "below") if low
                                                       else ("at most" if ok else "above"))
                  + f" {invariant.value:g}")


def _is_hard(violation: Any) -> bool:
    if not isinstance(violation, dict):
        return False
    weight = violation.get("weight")
    return violation.get("hard") is True or (
        isinstance(weight, int | float) and not isinstance(weight, bool) and weight >= 100)


def hard_violations(run: StoredRun) -> float:
    """How many hard constraint violations the final context records."""
    if "hard_constraint_violations" in (run.context or {}):
        return count_of(context_value("hard_constraint_violations", run),
                        "context key 'hard_constraint_violations'")
    evaluations = context_value("evaluations", run)
    if not isinstance(evaluations, list):
        raise Unavailable("context key 'evaluations' is not a list")
    return sum(_is_hard(v) for e in evaluations if isinstance(e, dict)
               for v in (e.get("violations") or []))


@evaluator("no_hard_constraint_violations")
def no_hard_violations(invariant: HardConstraintAlias, run: StoredRun,
                       _judge: Any) -> dict[str, Any]:
    """No hard constraint violated (`value: false`: not checked)."""
    if not invariant.value:
        return {"status": "skipped", "expected": False, "actual": None,
                "message": "value is false: hard constraint violations are not checked"}
    count = hard_violations(run)
    return result(count == 0, 0, count, "no hard constraint was violated" if count == 0 else
                  f"{count:g} hard constraint violation(s)")


@evaluator("max_duration_seconds")
def max_duration(invariant: DurationAlias, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """The run's duration in seconds against the limit."""
    duration_ms = run_metrics(run)["duration_ms"]
    if duration_ms is None:
        raise Unavailable("the run has no end time, so no duration")
    seconds = round(duration_ms / 1000, 3)
    ok = seconds <= invariant.value
    return result(ok, invariant.value, seconds, f"the run took {seconds:g} s, "
                  + ("within" if ok else "over") + f" the {invariant.value:g} s limit")


def _ids(key: str, run: StoredRun) -> list[Any]:
    value = context_value(key, run)
    if not isinstance(value, list):
        raise Unavailable(f"context key {key!r} is not a list")
    return [e.get("id", i) if isinstance(e, dict) else e for i, e in enumerate(value)]


def _pair(evaluation: Any) -> tuple[Any, Any] | None:
    if not isinstance(evaluation, dict):
        return None
    candidate = evaluation.get("candidate", evaluation.get("candidate_id"))
    scenario = evaluation.get("scenario", evaluation.get("scenario_id"))
    return None if candidate is None or scenario is None else (candidate, scenario)


@evaluator("min_evaluation_coverage")
def coverage(invariant: CoverageAlias, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """The share of (candidate, scenario) pairs with an evaluation."""
    candidates, scenarios = _ids("candidates", run), _ids("scenarios", run)
    expected_pairs = {(str(c), str(s)) for c in candidates for s in scenarios}
    if not expected_pairs:
        raise Unavailable("no (candidate, scenario) pairs: the run has no candidates or no "
                          "scenarios")
    evaluations = context_value("evaluations", run)
    if not isinstance(evaluations, list):
        raise Unavailable("context key 'evaluations' is not a list")
    pairs = {(str(p[0]), str(p[1])) for p in map(_pair, evaluations) if p is not None}
    covered = len(pairs & expected_pairs)
    share = round(covered / len(expected_pairs), 6)
    ok = share >= invariant.value
    return result(ok, invariant.value, share,
                  f"{covered} of {len(expected_pairs)} candidate/scenario pairs evaluated "
                  f"({share:.0%}), " + ("at least" if ok else "below") + f" {invariant.value:.0%}")
