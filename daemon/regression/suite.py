"""Test runs while they run in this daemon (`TestRuns`, which tests.py serves).

A test run replays its selected snapshots, each checked by check.py under the test run's one
cost Budget. Snapshots start in order, as many at once as their trials fit in the test
run's `concurrency` (the limit of its runs in flight): with one trial each, `concurrency`
snapshots; with trials, a snapshot's trials run concurrently and the snapshots share what
is left. Each snapshot's result is in the store as soon as it finished, so a daemon killed
mid test run keeps what had finished (at its next start the test run is `interrupted`).
Once the budget is reached, or with `stop_on_first_failure` once a snapshot failed, nothing
new starts: the snapshots in progress finish (a budget stops their replays at their next
node: `budget_exceeded`, unless they had finished) and the snapshots not started are
`skipped`. `tests/event` notifications go to subscribed connections (the one that called
tests.run is subscribed to its test run) as each snapshot starts and finishes, and when the
test run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.tests import TestsRunParams

from ..engine.budget import Budget
from ..host import Session
from ..ids import utc_now, uuid7
from ..runs.launch import Launched
from ..store.records import SnapshotRecord, TestResult, TestRunRecord, summary_of
from ..store.snapshot_schema import UnknownSchema
from ..store.suites import TestRunStore
from .check import CheckOptions, check_snapshot, not_run
from .replay import find_snapshot

if TYPE_CHECKING:
    from .needs import Needs

log = logging.getLogger("ostinato.tests")


@dataclass
class TestRun:
    """One test run while it runs in this daemon."""

    __test__ = False  # not a pytest class, whatever its name

    id: str
    options: dict[str, Any]
    snapshots: list[SnapshotRecord]
    results: list[TestResult]
    budget: Budget | None
    created_at: str = field(default_factory=utc_now)
    status: str = "running"
    message: str | None = None
    ended_at: str | None = None
    seq: int = 1
    replays: dict[int, Launched] = field(default_factory=dict)  # of the snapshots checking
    stop: tuple[str, str] | None = None  # why nothing more starts: (message, skipped's)
    # Cancelled or being cut off: its task is not cancelled again, which would cut its end
    # short (results left `running` in the store).
    ending: bool = False
    listeners: list[Any] = field(default_factory=list)  # called with each finished result
    task: asyncio.Task[None] | None = None
    # Kept as results end, not summed over all of them at each save: a suite of thousands
    # would pay for every result at every snapshot.
    ended_counts: Counter[str] = field(default_factory=Counter)
    ended_cost_usd: float = 0.0
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def total_cost_usd(self) -> float:
        """What the finished snapshots cost."""
        return round(self.ended_cost_usd, 10)

    @property
    def summary(self) -> dict[str, int]:
        """The counts by status, as `summarize` gives them."""
        return summary_of(self.ended_counts, len(self.results))

    def ended(self, result: TestResult) -> None:
        """Count a result whose status is final (once)."""
        self.ended_counts[result.status] += 1
        self.ended_cost_usd += result.cost_usd

    def record(self) -> TestRunRecord:
        """The test run as it stands, as the store would return it."""
        return TestRunRecord(
            id=self.id, status=self.status, options=self.options,
            summary=self.summary, total_cost_usd=self.total_cost_usd,
            cost_limit_usd=self.budget.limit_usd if self.budget else None,
            message=self.message, created_at=self.created_at, ended_at=self.ended_at,
            results=self.results)


class TestRuns:
    """Starts, follows, cancels and stores test runs."""

    __test__ = False

    def __init__(self, services: Needs, store: TestRunStore) -> None:
        self.services = services
        self.store = store
        self.active: dict[str, TestRun] = {}
        self.stopping = False

    async def _select(self, params: TestsRunParams) -> list[SnapshotRecord]:
        """The snapshots to test, in order; NOT_FOUND for unknown references (ids, names,
        name@version) or an empty choice, CONFLICT for one that a newer daemon wrote."""
        snapshots = self.services.snapshots
        if params.snapshot_ids is not None:
            return await self._resolve(params.snapshot_ids, params.max_snapshots)
        try:
            found = await snapshots.select(tags=params.tags, all=params.all,
                                           limit=params.max_snapshots)
        except UnknownSchema as exc:
            raise RpcError(ErrorCode.CONFLICT, str(exc)) from None
        if not found:
            raise RpcError(ErrorCode.NOT_FOUND,
                           f"no snapshot has the tags {', '.join(params.tags)}" if params.tags
                           else "there are no snapshots to test")
        return found

    async def _resolve(self, refs: list[str], limit: int | None) -> list[SnapshotRecord]:
        """Each reference's snapshot once, in order (a name: its latest version now)."""
        found: dict[str, SnapshotRecord] = {}
        missing: list[RpcError] = []
        for ref in dict.fromkeys(refs):
            try:
                snapshot = await find_snapshot(self.services.snapshots, ref)
            except RpcError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
                missing.append(exc)
                continue
            found.setdefault(snapshot.id, snapshot)
        if missing:
            raise RpcError(ErrorCode.NOT_FOUND, "; ".join(exc.message for exc in missing),
                           {"missing": [exc.data["id"] for exc in missing],
                            "errors": [exc.data for exc in missing]})
        return list(found.values())[:limit]

    async def start(self, params: TestsRunParams, connection: Session) -> TestRun:
        """Select the snapshots, store the test run, subscribe `connection`, start it."""
        snapshots = await self._select(params)
        selector = {"snapshot_ids": params.snapshot_ids, "tags": params.tags,
                    "all": params.all, "max_snapshots": params.max_snapshots}
        options = {"mode": params.mode, "trials": params.trials,
                   "concurrency": params.concurrency,
                   "stop_on_first_failure": params.stop_on_first_failure,
                   "selector": {k: v for k, v in selector.items() if v not in (None, False)}}
        budget = None if params.cost_limit_usd is None else Budget(params.cost_limit_usd)
        results = [TestResult(i, s.id, s.name, s.version, trials=params.trials)
                   for i, s in enumerate(snapshots)]
        test_run = TestRun(uuid7(), options, snapshots, results, budget)
        await self.store.add(test_run.id, options=options, cost_limit_usd=params.cost_limit_usd,
                             created_at=test_run.created_at, results=results)
        connection.subscriptions.add(f"tests:{test_run.id}")
        self.active[test_run.id] = test_run
        test_run.task = asyncio.ensure_future(self._run(test_run))
        return test_run

    def _publish(self, test_run: TestRun, type_: str, data: dict[str, Any]) -> None:
        self.services.host.publish((f"tests:{test_run.id}", "tests:*"), "tests/event",
                                   {"test_run_id": test_run.id, "seq": test_run.seq,
                                    "type": type_, "time": utc_now(), "data": data})
        test_run.seq += 1

    async def _run(self, test_run: TestRun) -> None:
        """The snapshots; the test run's end, whatever happens."""
        # Cut off, every result is stored again: a check cancelled while its result was
        # being stored still has it kept.
        changed: list[TestResult] = []
        try:
            await self._snapshots(test_run)
            test_run.status = _final_status(test_run)
        except asyncio.CancelledError:
            test_run.ending = True
            why = "the daemon stopped" if self.stopping else "the test run was cancelled"
            await self._cut_off(test_run, "interrupted" if self.stopping else "cancelled",
                                f"{why} before every snapshot ran", f"not finished: {why}")
            changed = test_run.results
        except Exception:  # a bug: the test run errors, the daemon goes on
            test_run.ending = True
            log.exception("test run %s crashed", test_run.id)
            await self._cut_off(test_run, "error", "internal error (see the daemon log)",
                                "not run: the test run stopped on an internal error")
            changed = test_run.results
        finally:
            test_run.ended_at = utc_now()  # from now on tests.cancel only awaits the end
            try:
                await self.store.save(test_run.id, changed,
                                      total_cost_usd=test_run.total_cost_usd,
                                      summary=test_run.summary, status=test_run.status,
                                      message=test_run.message, ended_at=test_run.ended_at)
            finally:
                # Live until its end is stored: tests.get never reads a `running` row of a
                # test run that has ended.
                self.active.pop(test_run.id, None)
                self._publish(test_run, "TestRunFinished", {
                    "status": test_run.status, "summary": test_run.summary,
                    "total_cost_usd": test_run.total_cost_usd, "message": test_run.message})
                if not test_run.done.done():
                    test_run.done.set_result(None)

    async def _snapshots(self, test_run: TestRun) -> None:
        """Start the snapshots in order, each once a lane is free, until one says stop;
        cancelled, the snapshots checking are cancelled with it."""
        options = test_run.options
        trials, concurrency = options["trials"], options["concurrency"]
        per_snapshot = min(trials, concurrency)
        lanes = asyncio.Semaphore(max(1, concurrency // per_snapshot))
        check = CheckOptions(options["mode"], trials, per_snapshot, test_run.budget)
        budget = test_run.budget
        async with asyncio.TaskGroup() as checking:
            for snapshot, result in zip(test_run.snapshots, test_run.results, strict=True):
                await lanes.acquire()
                if test_run.stop is None and budget is not None and budget.exceeded:
                    test_run.stop = (f"the cost budget (${budget.limit_usd:g}) ran out "
                                     "before every snapshot ran",
                                     "not run: the cost budget ran out")
                if test_run.stop is not None:
                    lanes.release()
                    break
                self._publish(test_run, "SnapshotStarted", {
                    "index": result.index, "snapshot_id": result.snapshot_id,
                    "name": result.name, "version": result.version})
                checking.create_task(self._check(test_run, snapshot, result, check, lanes))
        if test_run.stop is not None:
            test_run.message, skipped = test_run.stop
            await self._skip(test_run, skipped)

    async def _check(self, test_run: TestRun, snapshot: SnapshotRecord, result: TestResult,
                     check: CheckOptions, lane: asyncio.Semaphore) -> None:
        """One snapshot checked, stored and announced; its lane freed at the end."""
        try:
            async def started(handle: Launched) -> None:
                # Stored at once: a daemon killed during the replay leaves a result that
                # names the run it started.
                test_run.replays[result.index] = handle
                await self.store.save(test_run.id, [result],
                                      total_cost_usd=test_run.total_cost_usd,
                                      summary=test_run.summary)

            try:
                await check_snapshot(self.services, self.services.home, snapshot, check,
                                     result, on_started=started)
            except Exception as exc:  # a bug in one snapshot's check: it errors, others run
                log.exception("test run %s: snapshot %s crashed", test_run.id, snapshot.id)
                result.status, result.message = "error", f"internal error: {type(exc).__name__}"
                replay = test_run.replays.get(result.index)
                if replay is not None:  # still running, perhaps: it would outlive its lane
                    with contextlib.suppress(Exception):
                        await replay.cancel()
            test_run.ended(result)
            test_run.replays.pop(result.index, None)
            if test_run.stop is None:  # before anything awaits: no lane opens meanwhile
                test_run.stop = self._stop_reason(test_run, result)
            await self.store.save(test_run.id, [result], total_cost_usd=test_run.total_cost_usd,
                                  summary=test_run.summary)
            self._publish(test_run, "SnapshotFinished", result.as_dict())
            for listener in test_run.listeners:
                listener(result)
        finally:
            lane.release()

    @staticmethod
    def _stop_reason(test_run: TestRun, result: TestResult) -> tuple[str, str] | None:
        """(the test run's message, the skipped snapshots' message) when nothing more may
        start after this result."""
        label = f"{result.name!r} v{result.version}"
        if result.status == "budget_exceeded":
            limit = f" (${test_run.budget.limit_usd:g})" if test_run.budget else ""
            return (f"the cost budget{limit} ran out during snapshot {label}",
                    "not run: the cost budget ran out")
        if test_run.options["stop_on_first_failure"] and result.status in ("failed", "error"):
            return (f"stop_on_first_failure: snapshot {label} {result.status}",
                    f"not run: stop_on_first_failure after snapshot {label} {result.status}")
        return None

    async def _skip(self, test_run: TestRun, message: str) -> None:
        changed = _skip_rest(test_run, message)
        if changed:
            await self.store.save(test_run.id, changed, total_cost_usd=test_run.total_cost_usd,
                                  summary=test_run.summary)

    async def _cut_off(self, test_run: TestRun, status: str, message: str,
                       skipped: str) -> None:
        """tests.cancel, the daemon stopping, or a bug: the replays in progress are stopped
        (by the runner when the daemon stops), the snapshots not finished are `skipped`."""
        test_run.status, test_run.message = status, message
        replays, test_run.replays = test_run.replays, {}
        for index, replay in replays.items():
            if not self.stopping:
                await replay.cancel()
            cut = test_run.results[index]
            cut.run_ids, cut.trial_set_id = replay.run_ids(), replay.trial_set_id
        _skip_rest(test_run, skipped)

    async def get(self, test_run_id: str, wait: bool = False) -> TestRunRecord:
        """A test run: live while it runs here (after its end with `wait`), else as
        stored."""
        test_run = self.active.get(test_run_id)
        if test_run is not None:
            if not wait:
                return test_run.record()
            await asyncio.shield(test_run.done)
        stored = await self.store.get(test_run_id)
        if stored is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no test run {test_run_id}")
        return stored

    async def cancel(self, test_run_id: str) -> TestRunRecord:
        """Cancel a running test run; its summary once it stopped."""
        test_run = self.active.get(test_run_id)
        if test_run is None or test_run.task is None:
            known = await self.store.get(test_run_id)
            if known is None:
                raise RpcError(ErrorCode.NOT_FOUND, f"no test run {test_run_id}")
            raise RpcError(ErrorCode.CONFLICT,
                           f"test run {test_run_id} is {known.status}, not running")
        if not test_run.ending and test_run.ended_at is None:  # once, and not while it ends
            test_run.ending = True
            test_run.task.cancel()
        await asyncio.shield(test_run.done)
        return await self.get(test_run_id)

    async def close(self) -> None:
        """The daemon is stopping: every test run ends `interrupted`, keeping what finished
        (their replays are interrupted with every other run, by the runner)."""
        self.stopping = True
        tasks = []
        for test_run in self.active.values():
            if test_run.task is not None:
                if not test_run.ending and test_run.ended_at is None:  # else let it end
                    test_run.ending = True
                    test_run.task.cancel()
                tasks.append(test_run.task)
        await asyncio.gather(*tasks, return_exceptions=True)


def _skip_rest(test_run: TestRun, message: str) -> list[TestResult]:
    """Every snapshot not finished becomes `skipped` with `message`; returns them."""
    changed = []
    for snapshot, result in zip(test_run.snapshots, test_run.results, strict=True):
        if result.status in ("pending", "running"):
            result.status, result.message = "skipped", message
            result.invariants = result.invariants or not_run(snapshot, message)
            test_run.ended(result)
            changed.append(result)
    return changed


def _final_status(test_run: TestRun) -> str:
    """budget_exceeded, error, failed or passed, in that order of precedence."""
    statuses = {r.status for r in test_run.results}
    budget = test_run.budget
    if "budget_exceeded" in statuses or (budget is not None and budget.exceeded
                                         and "skipped" in statuses):
        return "budget_exceeded"
    for status in ("error", "failed"):
        if status in statuses:
            return status
    return "passed"

