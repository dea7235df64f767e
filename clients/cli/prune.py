"""`ostinato prune`: remove ended runs older than a date or beyond the newest N (run.prune),
saying what went, what stayed and why, and the disk space given back."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..python import AsyncClient

NAME = "ostinato prune"
EXITS = ("Exit codes: 0 done (also when nothing was to go), 1 the daemon refused, 2 usage, "
         "3 unreachable, 130 interrupted.")
_WHY = {"active": "active", "snapshot": "snapshot {by} was made from it",
        "test_run": "test run {by} refers to it", "replay": "run {by} replays it"}


def _size(count: int | None) -> str:
    if count is None:
        return "unknown until removed"
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _print(result: dict[str, Any]) -> None:
    """What went, what stayed and why, and the bytes given back."""
    dry = result["dry_run"]
    removed, sets = result["removed"], result["trial_sets"]
    verb = "would remove" if dry else "removed"
    what = f"{len(removed)} run(s)" + (f" ({len(sets)} trial set(s) whole)" if sets else "")
    print(f"{verb} {what}" + (":" if removed else ""))
    for run_id in removed:
        print(f"  {run_id}")
    for kept in result["kept"]:
        why = _WHY[kept["reason"]].format(by=kept["by"])
        if kept["reason"] == "active" and kept["by"]:
            why = f"test run {kept['by']} in progress"
        also = f", with {kept['runs'] - 1} more run(s)" if kept["runs"] > 1 else ""
        where = f" (trial set {kept['trial_set_id']})" if kept["trial_set_id"] else ""
        print(f"kept {kept['run_id']}{where}{also}: {why}")
    sizes = result["bytes"]
    if dry:
        print(f"would give back {_size(sizes['run_dirs'])} of run directories, and store "
              "space (measured when removed)")
    else:
        total = sizes["run_dirs"] + (sizes["store"] or 0)
        print(f"gave back {_size(total)}: {_size(sizes['run_dirs'])} of run directories, "
              f"{_size(sizes['store'])} of store (compaction: {result['compaction']})")


class _Reporter:
    """A line on stderr with the daemon's progress, at most every PROGRESS_EVERY_S: a
    large prune takes a while (unlinking files is most of it)."""

    PROGRESS_EVERY_S = 2.0

    def __init__(self) -> None:
        self.shown = time.monotonic()

    def __call__(self, value: dict[str, Any]) -> None:
        now = time.monotonic()
        if value.get("kind") == "report" and now - self.shown >= self.PROGRESS_EVERY_S:
            self.shown = now
            print(f"{NAME}: {value.get('message')}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato prune`."""
    from .common import EXIT_OK, EXIT_USAGE, print_json, run_client
    from .failure import USAGE, fail

    if args.before is None and args.keep is None:
        return fail(NAME, "say what goes: --before DATE, --keep N, or both", EXIT_USAGE,
                    json_mode=args.json, code=USAGE)
    params: dict[str, Any] = {"dry_run": args.dry_run}
    if args.before is not None:
        params["before"] = args.before
    if args.keep is not None:
        params["keep"] = args.keep

    async def action(client: AsyncClient) -> int:
        result = await client.request("run.prune", params, on_progress=_Reporter())
        if args.json:
            print_json(result)
        else:
            _print(result)
        return EXIT_OK

    return run_client(args, NAME, action)


def _count(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def add_parsers(commands: Any) -> None:
    """The `prune` command."""
    from .common import add_connection_arguments

    parser = commands.add_parser(
        "prune", help="remove old runs and give their disk space back",
        description="Remove ended runs created before --before, or beyond the newest --keep "
                    "(both: a run must be both to go), with their store rows, traces and "
                    "directories, then give the space back. A trial set goes or stays whole, "
                    "a run with its child runs too. Never removed: an active run, a run a "
                    "snapshot was made from, a run a stored test run refers to, a recording "
                    "that a resumable run replays; those are listed with the reason. "
                    + EXITS)
    parser.add_argument("--before", metavar="DATE",
                        help="an ISO date or date-time (UTC unless it has an offset), e.g. "
                             "2026-11-30 or 2026-11-30T12:00:00+01:00")
    parser.add_argument("--keep", type=_count, metavar="N",
                        help="keep the newest N ended runs (a trial set counts as one)")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would go; change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_arguments(parser)
    parser.set_defaults(func=run)
