"""`ostinato tests list | show`: the test runs the daemon stored (tests.list, tests.get), as a
table and as a detail view with each snapshot's result, or as JSON with --json."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import (
    EXIT_OK,
    add_connection_arguments,
    positive_int,
    print_json,
    run_client,
    text_table,
)
from .testing import snapshot_lines, summary_lines

if TYPE_CHECKING:  # the command line starts light: see common.py
    from ..python import AsyncClient

STATUSES = ("running", "passed", "failed", "error", "budget_exceeded", "cancelled",
            "interrupted")
DEFAULT_LIMIT = 20  # test runs listed without --limit
_RUN_IDS_SHOWN = 5  # a snapshot's replay runs listed in `show`


def _counts(summary: dict[str, Any]) -> str:
    return (f"{summary['passed']}/{summary['total']} passed, {summary['failed']} failed, "
            f"{summary['errors']} errors")


async def _list(args: argparse.Namespace, client: AsyncClient) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    page = await client.request("tests.list", params)
    if args.json:
        print_json(page)
        return EXIT_OK
    test_runs = page["test_runs"]
    if not test_runs:
        print("no test runs")
        return EXIT_OK
    rows = [("TEST RUN", "STATUS", "MODE", "SNAPSHOTS", "COST", "STARTED")]
    rows += [(t["test_run_id"], t["status"], t["mode"], _counts(t["summary"]),
              f"${t['total_cost_usd']:.4f}", t["started_at"]) for t in test_runs]
    for line in text_table(rows):
        print(line)
    if page["next_cursor"]:
        print(f"more: the newest {args.limit} shown; --limit N shows more")
    return EXIT_OK


def detail_lines(test_run: dict[str, Any]) -> list[str]:
    """A stored test run for people: its options, each snapshot's result, its verdict."""
    selector = ", ".join(key if value is True else f"{key} {', '.join(map(str, value))}"
                         if isinstance(value, list) else f"{key} {value}"
                         for key, value in test_run["selector"].items())
    limit = test_run["cost_limit_usd"]
    lines = [f"test run {test_run['test_run_id']}: {test_run['status']}",
             f"  mode {test_run['mode']}, {test_run['trials']} trial(s) each, concurrency "
             f"{test_run['concurrency']}"
             + (", stop on first failure" if test_run["stop_on_first_failure"] else "")
             + (f", cost limit ${limit:g}" if limit is not None else ""),
             f"  selected by {selector or '-'}",
             f"  started {test_run['started_at']}, ended {test_run['ended_at'] or '-'}"]
    for result in test_run["snapshots"]:
        lines += snapshot_lines(result)
        runs = result["run_ids"]
        if runs:
            more = f" … and {len(runs) - _RUN_IDS_SHOWN} more" if len(runs) > _RUN_IDS_SHOWN \
                else ""
            lines.append(f"      run(s) {', '.join(runs[:_RUN_IDS_SHOWN])}{more}")
    return lines + summary_lines(test_run)


async def _show(args: argparse.Namespace, client: AsyncClient) -> int:
    test_run = await client.request("tests.get", {"test_run_id": args.test_run,
                                                  "wait": args.wait})
    if args.json:
        print_json(test_run)
    else:
        print("\n".join(detail_lines(test_run)))
    return EXIT_OK


_ACTIONS = {"list": _list, "show": _show}
_EXITS = "Exit codes: 0 ok, 1 the daemon refused (e.g. no such test run), 2 usage, 3 unreachable."


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato tests ACTION`."""
    action = _ACTIONS[args.action]
    return run_client(args, f"ostinato tests {args.action}", lambda client: action(args, client))


def add_parsers(commands: Any) -> None:
    """The `tests` command: `list` and `show`."""
    tests = commands.add_parser(
        "tests", help="list and show stored test runs",
        description="The test runs the daemon stored (`ostinato test` starts one). " + _EXITS)
    actions = tests.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="test runs, newest first",
                                 description="Test runs newest first, with their counts "
                                             "and cost. " + _EXITS)
    listing.add_argument("--status", action="append", choices=STATUSES, metavar="STATUS",
                         help=f"only test runs in this status ({', '.join(STATUSES)}); "
                              "repeatable")
    listing.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                         help=f"show the newest N (default {DEFAULT_LIMIT})")
    show = actions.add_parser("show", help="a test run with each snapshot's result",
                              description="A test run: its options, each snapshot's status, "
                                          "invariants, cost and replay runs, and its "
                                          "verdict. " + _EXITS)
    show.add_argument("test_run", metavar="TEST_RUN", help="a test run's id")
    show.add_argument("--wait", action="store_true",
                      help="if it is still running, wait until it has ended")
    for parser in (listing, show):
        parser.add_argument("--json", action="store_true",
                            help="print the daemon's answer (tests.list / tests.get) as JSON")
        add_connection_arguments(parser)
        parser.set_defaults(func=run)
