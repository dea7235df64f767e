"""Test-run benchmark: a suite of snapshots checked one after another (`concurrency` 1, how
every test run ran before snapshots ran side by side) against side by side (`concurrency`
C), inline and on worker processes.

Run it with `.venv/bin/python bench/suite.py`; options:

    .venv/bin/python bench/suite.py [--rounds 2] [--snapshots 200] [--live-snapshots 100]
        [--concurrency 8] [--workers 2] [--latency-ms 25] [--json]

One daemon subprocess per executor (`inline`, and `processes` with `--workers`), each over a
home of its own in one temporary directory (on /dev/shm when there is one), driven through
the Python client as a CI job would drive it. Each daemon makes two suites of the same
pipeline (two scripted model nodes):

* recorded: `--snapshots` snapshots, each made from a run of its own, so each has a
  cassette; `tests.run` in mode `recorded` replays them from it at zero cost. Nothing
  waits: the suite is CPU-bound.
* live: `--live-snapshots` snapshots of the pipeline alone, whose model answers after
  `--latency-ms`; `tests.run` in mode `live`. The suite waits on its model, as one against a
  real provider does.

Every round runs each suite on each executor at concurrency 1 and C, the executors' order
rotating, and times the `tests.run` (with `wait: true`) from request to answer. The summary
prints the best round's time per snapshot and the speedups: C against 1 on each executor,
and each against inline at concurrency 1 (every test run before), and what a suite of
10,000 recorded snapshots would take at the best time per snapshot measured. Run directories
stay until the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ostinato.clients.python import AsyncClient

PIPELINE = """\
digraph suite {
    start [shape=Mdiamond]
    draft [prompt="Draft the notes", scripted.response="three changes"]
    review [prompt="Review the draft", scripted.response="fine"]
    done [shape=Msquare]
    start -> draft -> review -> done
}
"""
SUITE = 10_000  # snapshots: the paper estimate's suite


@dataclass
class Timing:
    """One timed test run."""

    suite: str  # recorded or live
    executor: str
    concurrency: int
    round: int
    snapshots: int
    seconds: float

    @property
    def ms_per_snapshot(self) -> float:
        """Time per snapshot."""
        return self.seconds / self.snapshots * 1000


class Daemon:
    """One daemon subprocess and its two suites' snapshot ids."""

    def __init__(self, executor: str, client: AsyncClient) -> None:
        self.executor = executor
        self.client = client
        self.suites: dict[str, list[str]] = {}

    async def make_suites(self, args: argparse.Namespace) -> None:
        """The recorded suite's snapshots from runs, the live suite's from the pipeline."""
        pipeline = {"source": PIPELINE, "format": "dot"}
        recorded = []
        for i in range(args.snapshots):
            run = await self.client.request("run.start", {"pipeline": pipeline, "wait": True})
            made = await self.client.request("snapshot.create", {
                "name": f"recorded-{i}", "run_id": run["run_id"]})
            recorded.append(made["id"])
        slow = {"providers": {"scripted": {"type": "scripted",
                                           "latency_ms": args.latency_ms}}}
        live = []
        for i in range(args.live_snapshots):
            made = await self.client.request("snapshot.create", {
                "name": f"live-{i}", "pipeline": pipeline, "settings": slow})
            live.append(made["id"])
        self.suites = {"recorded": recorded, "live": live}

    async def test_run(self, suite: str, concurrency: int) -> float:
        """Seconds of one tests.run over a suite, which must pass."""
        started = time.perf_counter()
        result = await self.client.request("tests.run", {
            "snapshot_ids": self.suites[suite], "mode": suite, "concurrency": concurrency,
            "wait": True})
        seconds = time.perf_counter() - started
        if result["status"] != "passed":
            raise RuntimeError(f"{self.executor} {suite} c{concurrency}: {result['status']} "
                               f"{result['summary']}")
        return seconds


async def measure(tmp: Path, args: argparse.Namespace) -> list[Timing]:
    """Start the daemons, make their suites, then the rounds."""
    daemons: list[Daemon] = []
    timings: list[Timing] = []
    async with contextlib.AsyncExitStack() as stack:  # each daemon stopped at the end
        for executor in ("inline", "processes"):
            with open(tmp / f"{executor}.log", "wb") as log:
                client = await stack.enter_async_context(await AsyncClient.spawn(
                    tmp / executor, ["--executor", executor, "--workers", str(args.workers)],
                    stderr=log))
            await client.initialize("bench-suite")
            daemon = Daemon(executor, client)
            daemons.append(daemon)
            await daemon.make_suites(args)
            await daemon.test_run("recorded", args.concurrency)  # warm-up: workers started
        for round_no in range(1, args.rounds + 1):
            order = daemons[round_no % 2:] + daemons[:round_no % 2]
            for suite in ("recorded", "live"):
                for concurrency in (1, args.concurrency):
                    for daemon in order:
                        os.sync()
                        seconds = await daemon.test_run(suite, concurrency)
                        timing = Timing(suite, daemon.executor, concurrency, round_no,
                                        len(daemon.suites[suite]), seconds)
                        timings.append(timing)
                        print(f"{round_no:<6} {suite:<9} {daemon.executor:<10} "
                              f"{concurrency:>4} {timing.snapshots:>6} {seconds:>8.2f} "
                              f"{timing.ms_per_snapshot:>9.2f}", flush=True)
    return timings


def best(timings: list[Timing], suite: str, executor: str, concurrency: int) -> Timing:
    """The fastest round of one suite on one executor at one concurrency."""
    return min((t for t in timings if (t.suite, t.executor, t.concurrency)
                == (suite, executor, concurrency)), key=lambda t: t.seconds)


def summarize(timings: list[Timing], args: argparse.Namespace) -> dict[str, Any]:
    """The best rounds and the speedups."""
    print()
    speedups: dict[str, float] = {}
    wide = args.concurrency
    before = {suite: best(timings, suite, "inline", 1) for suite in ("recorded", "live")}
    for suite in ("recorded", "live"):
        for executor in ("inline", "processes"):
            one, side = best(timings, suite, executor, 1), best(timings, suite, executor, wide)
            speedups[f"{suite}_{executor}_c{wide}_vs_c1"] = one.seconds / side.seconds
            speedups[f"{suite}_{executor}_c{wide}_vs_inline_c1"] = (before[suite].seconds
                                                                   / side.seconds)
            print(f"best   {suite:<9} {executor:<10} c1 {one.ms_per_snapshot:8.2f} ms/snapshot, "
                  f"c{wide} {side.ms_per_snapshot:8.2f}: {one.seconds / side.seconds:.2f}x "
                  f"side by side, {before[suite].seconds / side.seconds:.2f}x inline one at "
                  "a time")
    best_recorded = min((best(timings, "recorded", e, c) for e in ("inline", "processes")
                         for c in (1, wide)), key=lambda t: t.ms_per_snapshot)
    print(f"a suite of {SUITE:,} recorded snapshots at the best of these "
          f"({best_recorded.executor} c{best_recorded.concurrency}, "
          f"{best_recorded.ms_per_snapshot:.2f} ms each): "
          f"{SUITE * best_recorded.ms_per_snapshot / 1000:.0f} s; one at a time inline: "
          f"{SUITE * before['recorded'].ms_per_snapshot / 1000:.0f} s")
    floor = args.live_snapshots / wide * 2 * args.latency_ms / 1000
    side = best(timings, "live", "processes", wide)
    print(f"live: the model's latency alone at c{wide} takes {floor:.2f} s; processes c{wide} "
          f"took {side.seconds:.2f} s ({side.seconds / floor:.2f}x)")
    summary = {"args": vars(args), "timings": [asdict(t) for t in timings],
               "speedups": speedups}
    if args.json:
        print(orjson.dumps(summary).decode())
    print("ratios: against inline one at a time, " + ", ".join(
        f"{suite} {executor} c{wide} "
        f"{speedups[f'{suite}_{executor}_c{wide}_vs_inline_c1']:.2f}x"
        for suite in ("recorded", "live") for executor in ("inline", "processes")))
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--snapshots", type=int, default=200)
    parser.add_argument("--live-snapshots", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.rounds, args.snapshots, args.live_snapshots, args.workers) < 1 \
            or args.concurrency < 2 or args.latency_ms < 0:
        parser.error("counts must be at least 1, --concurrency at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then summarize."""
    args = parse_args(argv)
    print(f"ostinato suite bench: {args.snapshots} recorded and {args.live_snapshots} live "
          f"snapshots, concurrency 1 and {args.concurrency}, inline and processes "
          f"({args.workers} workers); Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'round':<6} {'suite':<9} {'executor':<10} {'conc':>4} {'snaps':>6} "
          f"{'seconds':>8} {'ms/snap':>9}")
    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(prefix="ostinato-bench-suite-",
                                dir=shm if shm.is_dir() else None))
    try:
        timings = asyncio.run(measure(tmp, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summarize(timings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
