"""`ostinato test`: run a test run of snapshots (tests.run), show each snapshot as it
finishes and a table of them at the end, write the JUnit, HTML and Markdown reports asked
for, and exit by the verdict: 0 every snapshot passed, 1 some failed, 2 errors, budget
exceeded, cancelled or bad usage, 3 the daemon cannot be reached, 130 interrupted (Ctrl-C
cancels the test run)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_connection_arguments,
    positive_int,
    print_json,
    report_rpc_error,
    run_client,
)
from .interrupt import CancelOnInterrupt, Interrupted, cancel_work, detached
from .progress import PLAIN_EVERY_S, Display

if TYPE_CHECKING:  # the command line starts light: see common.py
    import asyncio

    from ..python import AsyncClient

EXIT_ERRORS = 2  # errors, budget exceeded, cancelled or interrupted: no verdict to trust
_MARKS = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "-", "budget_exceeded": "$"}
_REPORTS = ("junit", "html", "markdown")  # each an option (--junit FILE) and a format
_SHOWN = 5  # failed invariants listed per snapshot
_RUNNING_SHOWN = 3  # snapshots named while they run side by side


class TestDisplay(Display):
    """A header; on a terminal a bar over the snapshots (done of all, those running,
    elapsed time and ETA), without one a status line now and then; a line per snapshot as
    it finishes; the results table and the verdict."""

    __test__ = False  # not a pytest class, whatever its name
    total = 0  # snapshots in the test run
    done = 0  # snapshots finished
    _task: Any = None  # the bar's task in the rich Progress

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        super().__init__(out, quiet)
        self.running: dict[int, str] = {}  # the snapshots running, by index

    @property
    def current(self) -> str:
        """The snapshots running, in order (the first few, and how many more)."""
        names = [name for _, name in sorted(self.running.items())]
        more = len(names) - _RUNNING_SHOWN
        return ", ".join(names[:_RUNNING_SHOWN]) + (f" and {more} more" if more > 0 else "")

    def started(self, test_run: dict[str, Any]) -> None:
        """The test run was created."""
        limit = test_run["cost_limit_usd"]
        how = [f"mode {test_run['mode']}", f"{test_run['trials']} trial(s) each"]
        if limit is not None:
            how.append(f"cost limit ${limit:g}")
        if test_run["stop_on_first_failure"]:
            how.append("stop on first failure")
        self._line(f"test run {test_run['test_run_id']}: {len(test_run['snapshots'])} "
                   f"snapshot(s) ({', '.join(how)})")
        self.total = len(test_run["snapshots"])

    def _bar(self) -> None:
        if not self.live or self.quiet:
            return
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            bars = self._bars(TextColumn("  snapshots"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                              TextColumn("{task.description}"))
            self._task = bars.add_task("", total=self.total)
        self._progress.update(self._task, completed=self.done, description=self.current)

    def event(self, event: dict[str, Any]) -> None:
        """Show one tests/event."""
        data = event["data"]
        if event["type"] == "SnapshotStarted":
            self.running[data["index"]] = f"{data['name']} v{data['version']}"
        elif event["type"] == "SnapshotFinished":
            self.done += 1
            self.running.pop(data["index"], None)
            for line in snapshot_lines(data):
                self._line(line)
        self._bar()

    def heartbeat(self) -> None:
        """Without a terminal, once PLAIN_EVERY_S passed in silence: where the run is."""
        if self.due():
            running = f"; running {self.current}" if self.current else ""
            self._line(f"  … {self.done}/{self.total} snapshots done{running}, "
                       f"{time.monotonic() - self.began:.0f} s elapsed")

    def finished(self, test_run: dict[str, Any]) -> None:
        """The test run ended: a table of its snapshots, then its verdict."""
        self.stop()
        if not self.quiet and test_run["snapshots"]:
            self.console.print(results_table(test_run["snapshots"], self.live))
        for line in summary_lines(test_run):
            self._line(line)


def results_table(results: list[dict[str, Any]], styled: bool = True) -> Any:
    """The snapshots of a test run as a rich Table: status, invariants, trials, cost."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column, justify in (("", "left"), ("snapshot", "left"), ("version", "right"),
                            ("status", "left"), ("invariants", "right"),
                            ("trials", "right"), ("cost", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        checks = result["invariants"]
        passed = sum(c["status"] == "passed" for c in checks)
        trials = (f"{result['trials_passed']}/{result['trials']}"
                  if result["trials_passed"] is not None else str(result["trials"]))
        mark = _MARKS.get(result["status"], "?")
        style = {"✓": "green", "✗": "red"}.get(mark, "yellow") if styled else None
        table.add_row(mark, result["name"], f"v{result['version']}", result["status"],
                      f"{passed}/{len(checks)}", trials, f"${result['cost_usd']:.4f}",
                      style=style)
    return table


def snapshot_lines(result: dict[str, Any]) -> list[str]:
    """A finished snapshot for people: its status, checks passed and cost; why it did not
    pass."""
    checks = result["invariants"]
    passed = sum(c["status"] == "passed" for c in checks)
    trials = (f", {result['trials_passed']}/{result['trials']} trials passed"
              if result["trials"] > 1 and result["trials_passed"] is not None else "")
    lines = [f"  {_MARKS.get(result['status'], '?')} {result['name']} v{result['version']}"
             f"  {result['status']}  {passed}/{len(checks)} invariants{trials}"
             f"  ${result['cost_usd']:.4f}"]
    bad = [c for c in checks if c["status"] in ("failed", "error")]
    for check in bad[:_SHOWN]:
        lines.append(f"      {_MARKS[check['status']]} {check['type']}: {check['message']}")
    if len(bad) > _SHOWN:
        lines.append(f"      … and {len(bad) - _SHOWN} more")
    if result.get("message") and result["status"] not in ("passed", "failed"):
        lines.append(f"      {result['message']}")
    return lines


def summary_lines(test_run: dict[str, Any]) -> list[str]:
    """The test run's verdict, counts and cost."""
    s = test_run["summary"]
    limit = test_run["cost_limit_usd"]
    lines = [f"{test_run['status']}: {s['passed']} passed, {s['failed']} failed, "
             f"{s['errors']} errors, {s['skipped']} skipped, {s['budget_exceeded']} budget "
             f"exceeded, of {s['total']}; cost ${test_run['total_cost_usd']:.4f}"
             + (f" of ${limit:g}" if limit is not None else "")]
    if test_run.get("message"):
        lines.append(f"  {test_run['message']}")
    return lines


def exit_code(status: str) -> int:
    """0 passed, 1 failed, 2 anything else (error, budget exceeded, cancelled, …)."""
    return {"passed": EXIT_OK, "failed": EXIT_FAILED}.get(status, EXIT_ERRORS)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    chosen = [bool(args.snapshot), bool(args.tags), args.all]
    if sum(chosen) != 1:
        raise UsageError("choose the snapshots with exactly one of --snapshot, --tags or --all")
    params: dict[str, Any] = {"mode": args.mode, "stop_on_first_failure": args.stop_on_failure}
    if args.snapshot:
        params["snapshot_ids"] = args.snapshot
    elif args.tags:
        params["tags"] = args.tags
    else:
        params["all"] = True
    for name in ("trials", "concurrency", "max_snapshots", "cost_limit_usd"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    for report_format in _REPORTS:  # before the test run: its verdict must not be lost
        path = getattr(args, report_format)
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"--{report_format}: no directory {path.parent} to write "
                             f"{path.name} in")
    return params


async def _test(args: argparse.Namespace, client: AsyncClient, out: TextIO) -> int:
    import asyncio

    name = "ostinato test"
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on_notification("tests/event", lambda _method, params: events.put_nowait(params))
    async with CancelOnInterrupt(name) as interrupts:
        # tests.run subscribes this connection to the test run's events before it answers.
        started = await client.request("tests.run", _params(args))
        test_run_id = started["test_run_id"]
        if args.detach:
            return detached(args, started)
        with TestDisplay(out, quiet=args.json) as display:
            display.started(started)
            try:
                await interrupts.guard(_events(test_run_id, events, display))
            except Interrupted:
                display.stop()
                return await cancel_work(name, "test run", test_run_id, lambda: client.request(
                    "tests.cancel", {"test_run_id": test_run_id}), args.json)
            # TestRunFinished is published once the test run's end is in the store.
            final = await client.request("tests.get", {"test_run_id": test_run_id})
            await _write_reports(args, client, test_run_id)
            if args.json:
                print_json(final)
            else:
                display.finished(final)
    return exit_code(final["status"])


async def _events(test_run_id: str, events: asyncio.Queue[dict[str, Any]],
                  display: TestDisplay) -> None:
    """Show the test run's events until it finished."""
    import asyncio  # here, not at the top: the command line starts light

    while True:
        try:
            event = await asyncio.wait_for(events.get(), PLAIN_EVERY_S)
        except TimeoutError:
            display.heartbeat()
            continue
        if event["test_run_id"] != test_run_id:
            continue
        display.event(event)
        if event["type"] == "TestRunFinished":
            return


async def _write_reports(args: argparse.Namespace, client: AsyncClient,
                         test_run_id: str) -> None:
    """The reports asked for, each in its file."""
    for report_format in _REPORTS:
        path = getattr(args, report_format)
        if path is not None:
            report = await client.request("tests.report", {"test_run_id": test_run_id,
                                                           "format": report_format})
            try:
                path.write_text(report["content"], encoding="utf-8")
            except OSError as exc:  # not the daemon's fault: bad usage, not "unreachable"
                raise UsageError(f"--{report_format}: cannot write {path}: "
                                 f"{exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato test`."""
    name = "ostinato test"
    # Whatever the daemon refused, there is no verdict: exit 2 (as for errors).
    return run_client(args, name, lambda client: _test(args, client, sys.stdout),
                      on_rpc_error=lambda error: report_rpc_error(name, error, EXIT_ERRORS,
                                                                json_mode=args.json))


def _dollars(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative amount, not {text}")
    return value


def add_parsers(commands: Any) -> None:
    """The `test` subcommand."""
    summary = "replay snapshots and check their invariants under one cost budget"
    parser = commands.add_parser(
        "test", help=summary,
        description=summary + " (tests.run). Exit codes: 0 every snapshot passed, 1 some "
                    "failed, 2 errors, budget exceeded or bad usage, 3 the daemon cannot be "
                    "reached, 130 interrupted (Ctrl-C cancels the test run; with --detach it "
                    "goes on).")
    chosen = parser.add_argument_group("which snapshots (exactly one)")
    chosen.add_argument("--snapshot", action="append", default=[], metavar="SNAPSHOT",
                        help="a snapshot: an id, a name (its latest version) or "
                             "name@version; repeatable")
    chosen.add_argument("--tags", nargs="+", action="extend", default=[], metavar="TAG",
                        help="the latest version of every snapshot that has all these tags")
    chosen.add_argument("--all", action="store_true",
                        help="the latest version of every snapshot")
    parser.add_argument("--max-snapshots", type=positive_int, metavar="N",
                        help="test at most N of the chosen snapshots")
    parser.add_argument("--trials", type=positive_int, metavar="N",
                        help="replays of each snapshot (default 1)")
    parser.add_argument("--concurrency", type=positive_int, metavar="N",
                        help="runs in flight at once: a snapshot's trials, and as many "
                             "snapshots side by side as theirs fit (default 4)")
    parser.add_argument("--mode", choices=("recorded", "hybrid", "live"), default="recorded",
                        metavar="recorded|hybrid|live",
                        help="recorded (default): every call from the snapshot's cassette, "
                             "at zero cost; hybrid: unmatched calls go live; live: every "
                             "call live")
    parser.add_argument("--cost-limit-usd", type=_dollars, metavar="X",
                        help="stop starting work once the test run has cost X dollars")
    parser.add_argument("--stop-on-failure", action="store_true",
                        help="skip the remaining snapshots after the first that fails")
    for option, what in (("junit", "JUnit XML"), ("html", "HTML"), ("markdown", "Markdown")):
        parser.add_argument(f"--{option}", type=Path, metavar="FILE",
                            help=f"write the {what} report to FILE")
    parser.add_argument("--detach", action="store_true",
                        help="start the test run, print its id and how to follow and cancel "
                             "it, and exit 0, leaving it running (without --detach, Ctrl-C "
                             "cancels it)")
    parser.add_argument("--json", action="store_true",
                        help="print the final test run (tests.get) as JSON (with --detach: "
                             "the test run as started)")
    add_connection_arguments(parser)
    parser.set_defaults(func=run)
