"""One snapshot of a test run: replay it (one run, or a trial set), evaluate its invariants
on what the replay recorded, compare its metrics with the snapshot's reference, and say how
it went. `suite.py` checks each snapshot of a test run through this.

The test run's one Budget is given to the replay (the engine checks it before every node and
charges every call) and to the judge (each judge call is checked against it before it starts
and charged when it returns). A replay the budget cut short makes the snapshot
`budget_exceeded`, whatever its checks say.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ostinato.protocol.errors import RpcError
from ostinato.protocol.invariants import ACROSS_TRIALS, invariant_list

from ..engine.budget import Budget, BudgetExceeded
from ..ids import utc_now
from ..runs.launch import Launched
from ..store.records import SnapshotRecord, TestResult
from .invariants import evaluate, evaluate_trials, run_metrics
from .judge import Judged, Votes, judge_trials
from .replay import replay_snapshot
from .stored import find_run, load_stored_run

if TYPE_CHECKING:
    from .needs import Needs

# The check a snapshot without invariants is held to: its replay must complete.
IMPLICIT = {"type": "run_status", "value": "completed", "outcome": "success",
            "description": "implicit: the replay completes (the snapshot has no invariants)"}
_ENDED_BY_BUDGET = "budget_exceeded"


@dataclass
class CheckOptions:
    """How a test run replays its snapshots."""

    mode: str
    trials: int
    concurrency: int
    budget: Budget | None


def outcome_of(check: dict[str, Any]) -> dict[str, Any]:
    """An InvariantOutcome from an evaluator's result."""
    return {"type": check["type"], "description": check.get("description"),
            "status": check["status"], "expected": check.get("expected"),
            "actual": check.get("actual"), "message": check.get("message") or "",
            "trials": None}


def not_run(snapshot: SnapshotRecord, message: str) -> list[dict[str, Any]]:
    """The snapshot's invariants, each `skipped` with `message` (the matrix shows them)."""
    return [{"type": i.get("type", "?"), "description": i.get("description"),
             "status": "skipped", "expected": None, "actual": None, "message": message,
             "trials": None}
            for i in (snapshot.invariants or [IMPLICIT]) if isinstance(i, dict)]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def metrics_delta(reference: dict[str, Any] | None,
                  replays: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{metric: {baseline, replay, delta}} for every numeric metric either side has; the
    replay side is the mean over the trials that have the value."""
    if not reference:
        return {}
    deltas = {}
    for key in dict.fromkeys([*reference, *(k for m in replays for k in m)]):
        baseline = reference.get(key)
        values = [m[key] for m in replays if _number(m.get(key))]
        if not _number(baseline) and not values:
            continue  # not a number on either side (status, outcome) or unknown (score)
        replay = round(statistics.fmean(values), 10) if values else None
        base = float(baseline) if _number(baseline) else None
        delta = None if replay is None or base is None else round(replay - base, 10)
        deltas[key] = {"baseline": base, "replay": replay, "delta": delta}
    return deltas


async def check_snapshot(services: Needs, home: Path, snapshot: SnapshotRecord,
                         options: CheckOptions, result: TestResult,
                         on_started: Callable[[Launched], Awaitable[None]] | None = None) -> None:
    """Replay, evaluate and compare one snapshot, filling in `result`; `await
    on_started(handle)` learns the replay as soon as it started, with the runs started so
    far already in `result` (so that it can store them)."""
    started = time.monotonic()
    result.status, result.started_at, result.trials = "running", utc_now(), options.trials
    try:
        invariants = invariant_list.validate_python(snapshot.invariants or [IMPLICIT])
    except ValidationError as exc:
        _end(result, "error", f"the snapshot's invariants do not load: "
                              f"{exc.errors()[0]['msg']}", not_run(snapshot, "not evaluated"))
        return
    try:
        try:
            handle = await _replay(services, home, snapshot, options, result, on_started)
        except BudgetExceeded as exc:
            _end(result, _ENDED_BY_BUDGET, str(exc),
                 not_run(snapshot, "not evaluated: " + str(exc)))
            return
        except RpcError as exc:
            _end(result, "error", f"the replay did not start: {exc.message}",
                 not_run(snapshot, "not evaluated: the replay did not start"))
            return
        result.run_ids, result.trial_set_id = handle.run_ids(), handle.trial_set_id
        if on_started is not None:
            await on_started(handle)
        await asyncio.shield(handle.done)
        started_runs = handle.started_runs()
        result.run_ids = [run_id for _, run_id in started_runs]
        await _evaluate(services, home, snapshot, options, invariants, result,
                        [index for index, _ in started_runs])
    finally:
        result.ended_at = utc_now()
        result.duration_ms = round((time.monotonic() - started) * 1000, 3)


async def _replay(services: Needs, home: Path, snapshot: SnapshotRecord,
                  options: CheckOptions, result: TestResult,
                  on_started: Callable[[Launched], Awaitable[None]] | None) -> Launched:
    """The snapshot's replay, started. Shielded: a check cancelled while its replay starts
    (a run's row committing with other runs' writes) still hands what it started to
    `on_started`, so that it is stopped and named with the rest, never left running."""
    launching = asyncio.ensure_future(replay_snapshot(
        services, home, snapshot, mode=options.mode, trials=options.trials,
        concurrency=options.concurrency, budget=options.budget))
    try:
        return await asyncio.shield(launching)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # a replay that failed to start left nothing
            handle = await launching
            result.run_ids, result.trial_set_id = handle.run_ids(), handle.trial_set_id
            if on_started is not None:
                await on_started(handle)
        raise


def _end(result: TestResult, status: str, message: str | None,
         invariants: list[dict[str, Any]] | None = None) -> None:
    """A result's status and message (and its invariants' outcomes, when given)."""
    result.status, result.message = status, message
    if invariants is not None:
        result.invariants = invariants


async def _evaluate(services: Needs, home: Path, snapshot: SnapshotRecord,
                    options: CheckOptions, invariants: list[Any], result: TestResult,
                    indices: list[int]) -> None:
    """Evaluate the invariants over the replay's runs (of these trial indices); status,
    cost and metric deltas."""
    records = [await find_run(services, run_id) for run_id in result.run_ids]
    runs = [await load_stored_run(services, home, record) for record in records]
    cut_short = any(record.status == _ENDED_BY_BUDGET for record in records) or (
        options.budget is not None and options.budget.exceeded
        and len(runs) < options.trials)
    judged, checks = Judged(), not_run(snapshot, "no replay ran")
    single = options.trials == 1 and len(runs) == 1
    if runs and any(getattr(i, "type", None) == "judge" for i in invariants):
        cassette = (await services.snapshots.cassette(snapshot.id)
                    if options.mode != "live" and snapshot.has_cassette else [])
        judged, evaluated = await judge_trials(
            services, home, runs, invariants, mode=options.mode, budget=options.budget,
            cassette=cassette, evaluate_all=single)
        if single:
            checks = [outcome_of(c) for c in evaluated[0]]
    elif single:
        checks = [outcome_of(c) for c in await evaluate(invariants, runs[0])]
    if runs and not single:
        checks = await _evaluate_trials(invariants, runs, indices, Votes(judged.outcomes),
                                        result)
    result.invariants = checks
    result.cost_usd = round(sum(float(record.cost_usd or 0) for record in records)
                            + judged.cost_usd, 10)
    result.metrics_delta = metrics_delta((snapshot.reference or {}).get("metrics"),
                                         [run_metrics(run) for run in runs])
    if cut_short or judged.refused:
        _end(result, _ENDED_BY_BUDGET, "the cost budget ran out during this snapshot: "
                                       + ("its replay stopped before it finished" if cut_short
                                          else "its judge was refused votes"))
    elif failed := [c for c in checks if c["status"] == "failed"]:
        _end(result, "failed", _first(failed))
    elif errored := [c for c in checks if c["status"] == "error"]:
        _end(result, "error", _first(errored))
    else:
        _end(result, "passed", None)


def _first(checks: list[dict[str, Any]]) -> str:
    check = checks[0]
    more = f" (and {len(checks) - 1} more)" if len(checks) > 1 else ""
    return f"{check['type']}: {check['message']}{more}"


async def _evaluate_trials(invariants: list[Any], runs: list[Any], indices: list[int],
                           judge: Any, result: TestResult) -> list[dict[str, Any]]:
    """Across the trials: the aggregated results, each per-run invariant with its result on
    every trial (`indices`: the trial index of each run), and how many trials passed."""
    evaluation = await evaluate_trials(invariants, runs, judge=judge)
    result.trials_passed = sum(evaluation["trial_passed"])
    checks, at = [], 0
    for invariant, check in zip(invariants, evaluation["results"], strict=True):
        outcome = outcome_of(check)
        if invariant.type not in ACROSS_TRIALS:  # per_trial holds the per-run ones, in order
            outcome["trials"] = [
                {"index": index, "run_id": run.run_id, "status": found["status"],
                 "actual": found.get("actual"), "message": found.get("message") or ""}
                for index, run, found in zip(indices, runs,
                                             (t[at] for t in evaluation["per_trial"]),
                                             strict=True)]
            at += 1
        checks.append(outcome)
    return checks
