"""Trial sets (`run.start` with `trials`; `trials.get` reads them).

A trial set runs N runs of one pipeline, `concurrency` at a time; each trial is a whole run
with its own trace, in the store (with its set and index) as soon as it ends, so that a set
cut off halfway keeps what had finished. The set's row (aggregates) and its manifest
(`{home}/trials/{id}/manifest.json`, rewritten atomically, mapping every trial to its run,
trace and status) follow at most every 50 ms and at the end. With
`early_stop`, the set ends as soon as its verdict (at least `pass_threshold` of all N trials
pass) can no longer change: trials not started are skipped, running ones cancelled.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings
from ostinato.protocol.trials import TrialSetSummary

from ..engine.budget import Budget
from ..engine.rundir import dump_json, write_atomic
from ..host import NO_PROGRESS, Progress
from ..ids import utc_now, uuid7
from .active import ActiveRun
from .options import RunOptions
from .runner import Runner

if TYPE_CHECKING:
    from ..store.runs import RunStore

MANIFEST_EVERY_S = 0.05
# The set's row and manifest cost O(trials) to build: a large set writes them less often, so
# that they never take more than about 1/MANIFEST_SHARE of its time (10,000 trials written
# every 50 ms would otherwise spend most of the set on them).
MANIFEST_SHARE = 50
# Trials start at most this many at a time. All of a hundred at once, their model calls
# would return together and their remaining work interleave, so that they all end late
# together and the next ones start together again: waves, with the loop idle between them.
# One at a time, each start waits alone for the commit of its run's row, which no other
# start shares: a zero-latency set of 8 at a time took a third longer per trial (1.12
# against 0.84 ms). A few at once share their commits, and their burst is short beside a
# model's latency.
STARTS_AT_ONCE = 8


@dataclass
class TrialSet:
    """One trial set while it runs (and its final state, kept for `trials.get`); a
    `Launched` handle (runs/launch.py)."""

    id: str
    pipeline_name: str
    trials: int
    concurrency: int
    early_stop: bool
    pass_threshold: float
    set_dir: Path
    created_at: str = field(default_factory=utc_now)
    status: str = "running"
    ended_at: str | None = None
    early_stopped: bool = False
    cancelled: bool = False  # TrialSets.cancel: no trial starts any more
    running: dict[int, ActiveRun] = field(default_factory=dict)  # trial index -> its run
    next_write: float = 0.0  # time.monotonic() before which the row and manifest wait
    passed_n: int = 0  # trials that passed
    not_passed_n: int = 0  # trials that failed, were skipped or cut short
    runs: list[dict[str, Any]] = field(default_factory=list)  # trial_runs of the manifest
    tokens: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (in, out)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        self.runs = [{"index": i, "run_id": None, "trace_id": None, "status": "pending",
                      "outcome": None, "passed": None, "failure_reason": None,
                      "duration_ms": None, "cost_usd": 0.0,
                      "score": None}
                     for i in range(self.trials)]

    @property
    def trial_set_id(self) -> str:
        """The set's id (a `Launched` handle's, runs/launch.py)."""
        return self.id

    def started_runs(self) -> list[tuple[int, str]]:
        """(trial index, run id) of each trial started so far."""
        return [(r["index"], r["run_id"]) for r in self.runs if r["run_id"] is not None]

    def run_ids(self) -> list[str]:
        """The runs of the trials started so far."""
        return [r["run_id"] for r in self.runs if r["run_id"] is not None]

    async def cancel(self) -> None:
        """Start no more trials, cancel the running ones, and wait until the set has ended
        (`cancelled`); nothing to do once it has."""
        if self.done.done():
            return
        self.cancelled = True
        for active in list(self.running.values()):
            await active.cancel()
        await asyncio.shield(self.done)

    async def reply(self, wait: bool, progress: Progress = NO_PROGRESS,
                    return_on_question: bool = False) -> TrialSetSummary:
        """The set's summary, after it ended when `wait` (it reports no progress, and its
        trials' questions do not end the wait)."""
        if wait:
            await asyncio.shield(self.done)
        return TrialSetSummary.model_validate(self.summary())

    @property
    def needed(self) -> int:
        """Trials that must pass for the verdict to be `passed`."""
        return math.ceil(self.pass_threshold * self.trials - 1e-9)

    def settle(self, entry: dict[str, Any], **final: Any) -> None:
        """A trial reached its final state (ended, skipped, failed to start): once each."""
        entry.update(final)
        if entry["passed"] is True:
            self.passed_n += 1
        elif entry["passed"] is False or entry["status"] in ("skipped", "cancelled"):
            self.not_passed_n += 1

    def verdict(self) -> str | None:
        """passed / failed once the trials still to end cannot change it, else None."""
        if self.passed_n >= self.needed:
            return "passed"
        if self.not_passed_n > self.trials - self.needed:
            return "failed"
        return None

    def stops_early(self) -> bool:
        """With `early_stop`, True once the verdict is settled: no more trials are needed."""
        return self.early_stop and self.verdict() is not None

    def summary(self) -> dict[str, Any]:
        """The TrialSetSummary of the set as it stands."""
        ended = [r for r in self.runs if r["passed"] is not None]
        passed = sum(r["passed"] for r in ended)
        scores = [r["score"] for r in ended if r["score"] is not None]
        return {
            "trial_set_id": self.id, "status": self.status, "pipeline_name": self.pipeline_name,
            "trials": self.trials, "concurrency": self.concurrency,
            "early_stop": self.early_stop, "pass_threshold": self.pass_threshold,
            "set_dir": str(self.set_dir), "finished": len(ended), "passed": passed,
            "failed": len(ended) - passed,
            "pass_rate": round(passed / len(ended), 6) if ended else None,
            "verdict": self.verdict(), "early_stopped": self.early_stopped,
            "cost_usd": round(sum(r["cost_usd"] for r in self.runs), 10),
            "input_tokens": sum(t[0] for t in self.tokens.values()),
            "output_tokens": sum(t[1] for t in self.tokens.values()),
            "latency_ms": percentiles([r["duration_ms"] for r in ended
                                       if r["duration_ms"] is not None]),
            "scores": percentiles(scores),
            "created_at": self.created_at, "ended_at": self.ended_at,
            "trial_runs": self.runs,
        }


def _ended_status(trial_set: TrialSet, stopping: bool, budget: Budget | None) -> str:
    """How a set whose trials all ended, ran or were skipped, ended."""
    if stopping:
        return "interrupted"
    if trial_set.cancelled:
        return "cancelled"
    cut_short = any(r["status"] in ("budget_exceeded", "skipped") for r in trial_set.runs)
    if budget is not None and budget.exceeded and cut_short:
        return "budget_exceeded"
    return "completed"


def _score(active: Any) -> float | None:
    """A trial's score: the last one a stage's outcome reported, else the run's final
    context `score` (what codergen nodes and tools report)."""
    if active.sink.last_score is not None:
        return float(active.sink.last_score)
    result = active.done.result() if active.done.done() else None
    score = result.context.get("score") if result is not None else None
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) \
        else None


def percentiles(values: list[float]) -> dict[str, float] | None:
    """count, mean, min, max, p50, p95 (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return {"count": len(ordered), "mean": round(statistics.fmean(ordered), 6),
            "min": ordered[0], "max": ordered[-1], "p50": rank(0.5), "p95": rank(0.95)}


class TrialSets:
    """Runs trial sets through the runner and records them."""

    def __init__(self, runner: Runner, store: RunStore) -> None:
        self.runner = runner
        self.store = store
        self.home = runner.home
        self.sets: dict[str, TrialSet] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, ref: PipelineRef, inputs: dict[str, Any], variables: dict[str, str],
                    settings: RunSettings, options: RunOptions, *, trials: int,
                    concurrency: int, early_stop: bool, pass_threshold: float) -> TrialSet:
        """Create the set (row, directory, manifest) and start its trials."""
        # Loaded, pooled and snapshotted once: the trials share the pool (so its concurrency
        # limit holds across the set) and the config/ files.
        prepared = await self.runner.prepare(ref, inputs, variables, settings)
        graph = prepared.graph
        set_id = uuid7()
        trial_set = TrialSet(set_id, graph.name, trials, concurrency, early_stop,
                             pass_threshold, self.home / "trials" / set_id)
        trial_set.set_dir.mkdir(parents=True)
        prepared.write_config(trial_set.set_dir / "config")
        await self.store.add_trial_set(
            set_id, pipeline_hash=prepared.digest, pipeline_name=graph.name,
            pipeline_format=graph.source_format, source=prepared.stored_source, trials=trials,
            concurrency=concurrency, early_stop=early_stop, pass_threshold=pass_threshold,
            set_dir=f"trials/{set_id}", created_at=trial_set.created_at)
        prepared.pipeline_stored = True
        self.sets[set_id] = trial_set
        self._write_manifest(trial_set)
        base = RunOptions(record=options.record, replay_of=options.replay_of,
                          replay_mode=options.replay_mode, trial_set_id=set_id,
                          prepared=prepared, budget=options.budget,
                          snapshot_id=options.snapshot_id, cassette=options.cassette)
        task = asyncio.ensure_future(self._run(trial_set, ref, inputs, variables, settings,
                                               base))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return trial_set

    async def _run(self, trial_set: TrialSet, ref: PipelineRef, inputs: dict[str, Any],
                   variables: dict[str, str], settings: RunSettings, base: RunOptions) -> None:
        # At most STARTS_AT_ONCE trials start at a time (see there).
        starting = asyncio.Semaphore(STARTS_AT_ONCE)
        running = trial_set.running

        async def trial(index: int) -> None:
            entry = trial_set.runs[index]
            async with starting:
                if self.runner.stopping or trial_set.cancelled or (
                        base.budget is not None and base.budget.exceeded) or \
                        trial_set.stops_early():
                    trial_set.settle(entry, status="skipped")
                    return
                started = time.monotonic()
                options = RunOptions(**{**base.__dict__, "trial_index": index})
                try:
                    active = await self.runner.start(ref, inputs, variables, settings,
                                                     options)
                except RpcError as exc:  # e.g. the replayed run is gone: this trial fails
                    trial_set.settle(entry, status="failed", passed=False,
                                     failure_reason=exc.message)
                    await self._record(trial_set)
                    return
            entry.update(run_id=active.run_id, trace_id=active.executor.trace_id,
                         status="running")
            running[index] = active
            # Cancelled, or the verdict settled, while it started: it was not yet
            # among the running ones that those cancel.
            if trial_set.cancelled or trial_set.stops_early():
                await active.cancel()
            await asyncio.shield(active.done)
            running.pop(index, None)
            await self._trial_ended(trial_set, entry, active, time.monotonic() - started)
            if trial_set.stops_early():
                trial_set.early_stopped = trial_set.early_stopped or any(
                    r["status"] in ("pending", "running") for r in trial_set.runs)
                for other in list(running.values()):  # their result cannot matter now
                    await other.cancel()

        # `concurrency` trials in flight: as many takers of the next index (a task per trial
        # waiting on a semaphore costs several times as much, and memory for every trial).
        indices = iter(range(trial_set.trials))

        async def taker() -> None:
            for index in indices:
                await trial(index)

        try:
            await asyncio.gather(*(taker() for _ in range(trial_set.concurrency)))
            trial_set.status = _ended_status(trial_set, self.runner.stopping, base.budget)
        except asyncio.CancelledError:
            trial_set.status = "interrupted" if self.runner.stopping else "cancelled"
            raise
        finally:
            # Trials cut off with the set (the daemon is stopping) end with their runs.
            await asyncio.gather(*(asyncio.shield(a.done) for a in running.values()))
            for entry in trial_set.runs:
                if entry["status"] == "pending":
                    trial_set.settle(entry, status="skipped")
                elif entry["status"] == "running":
                    trial_set.settle(entry, status="interrupted")
            trial_set.ended_at = utc_now()
            await self._record(trial_set, final=True)
            if base.prepared is not None:  # no run uses the shared pool any more
                await base.prepared.pool.aclose()
            # Ended: trials.get reads it back from the store and its manifest from now on.
            self.sets.pop(trial_set.id, None)
            if not trial_set.done.done():
                trial_set.done.set_result(None)

    async def _trial_ended(self, trial_set: TrialSet, entry: dict[str, Any], active: Any,
                           seconds: float) -> None:
        """Fill in a finished trial and persist the set (store row, manifest) at once."""
        ended = active.ended or {"status": "failed", "outcome": None, "failure_reason": None}
        status, totals = ended["status"], active.sink.totals
        trial_set.tokens[entry["index"]] = (totals["input_tokens"], totals["output_tokens"])
        trial_set.settle(
            entry, **ended, duration_ms=round(seconds * 1000, 3),
            cost_usd=round(totals["cost_usd"], 10), score=_score(active),
            # A trial cut short by the early stop or the budget neither passed nor failed.
            passed=None if status == "budget_exceeded" or (
                status == "cancelled" and trial_set.early_stop)
            else status == "completed" and ended["outcome"] == "success")
        await self._record(trial_set)

    async def _record(self, trial_set: TrialSet, final: bool = False) -> None:
        """The set's row (aggregates) and manifest (every trial), at most every
        MANIFEST_EVERY_S (longer for a large set: MANIFEST_SHARE) and at the end. Each
        trial's own run is in the store as it ends, and a set cut off is rebuilt from those
        (get)."""
        started = time.monotonic()
        if not final and started < trial_set.next_write:
            return
        trial_set.next_write = started + MANIFEST_EVERY_S  # trials ending meanwhile wait
        summary = trial_set.summary()
        cost = time.monotonic() - started
        aggregates = {k: v for k, v in summary.items() if k != "trial_runs"}
        await self.store.update_trial_set(trial_set.id, status=trial_set.status,
                                          summary=aggregates, ended_at=trial_set.ended_at)
        writing = time.monotonic()
        self._write_manifest(trial_set, summary)
        cost += time.monotonic() - writing
        trial_set.next_write = started + max(MANIFEST_EVERY_S, MANIFEST_SHARE * cost)

    @staticmethod
    def _write_manifest(trial_set: TrialSet, summary: dict[str, Any] | None = None) -> None:
        # One event loop writes it: a rename over the old one, never two writers at once.
        write_atomic(trial_set.set_dir / "manifest.json",
                     dump_json(summary or trial_set.summary()))

    async def get(self, set_id: str) -> dict[str, Any]:
        """A set's summary: live if it runs in this daemon, else rebuilt from the store (its
        trials' runs) and its last manifest (durations, scores)."""
        trial_set = self.sets.get(set_id)
        if trial_set is not None:
            return trial_set.summary()
        stored = await self.store.get_trial_set(set_id)
        if stored is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no trial set {set_id}")
        trial_set = TrialSet(set_id, stored.pipeline_name, stored.trials, stored.concurrency,
                             bool(stored.early_stop), stored.pass_threshold,
                             self.home / stored.set_dir, created_at=stored.created_at,
                             status=stored.status, ended_at=stored.ended_at)
        manifest = trial_set.set_dir / "manifest.json"
        if manifest.exists():
            written = orjson.loads(manifest.read_bytes())
            trial_set.early_stopped = written.get("early_stopped", False)
            for entry in written.get("trial_runs", []):
                trial_set.runs[entry["index"]].update(entry)
        for run in await self.store.trial_runs(set_id):  # the truth, as each trial ended
            index = run.trial_index
            assert index is not None  # a trial set's runs have one
            entry = trial_set.runs[index]
            entry.update(run_id=run.id, trace_id=run.trace_id, status=run.status,
                         outcome=run.outcome, failure_reason=run.failure_reason,
                         cost_usd=run.cost_usd)
            trial_set.tokens[index] = (run.input_tokens, run.output_tokens)
            if run.status in ("completed", "failed") or (
                    run.status == "cancelled" and not trial_set.early_stop):
                entry["passed"] = run.status == "completed" and run.outcome == "success"
        for entry in trial_set.runs:
            trial_set.settle(entry)
        return trial_set.summary()

    async def close(self) -> None:
        """The daemon is stopping: no set starts another trial, their running trials are
        interrupted (resumable) with every other run, and the sets end `interrupted`."""
        for task in list(self._tasks):
            task.cancel()
        await self.runner.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
