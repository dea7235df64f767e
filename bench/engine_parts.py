"""Where the engine's time per node goes: linear-N with parts of its record switched off.

Run it with `.venv/bin/python bench/engine_parts.py`; options:

    .venv/bin/python bench/engine_parts.py [--rounds 4] [--nodes 1000] [--trials 0]
        [--attractor-python PATH] [--json] [--no-uvloop]

A diagnostic beside bench/engine.py, not a benchmark with targets: it says which part of
the record a run writes costs what, so that a target the engine misses can be traced to a
part. Each variant runs linear-N (bench/engine.py's pipeline and setup: `Runner.start` of
the daemon's real services and store, the scripted provider at zero latency) with:

* full: everything, as `run.start` does;
* no-store: the store's per-stage transaction left out (`RunStore.record` writes only the
  rows that change the run's status: its start and end), everything else as in full;
* no-checkpoint: checkpoint.json not rewritten after each node (the final one still is);
* neither: both left out.

The parts are switched off by replacing those two methods for the variant's run: this
script measures, it never ships. Variants alternate within each round (the order reversed
every other round), every run directory stays until the end, `os.sync()` before each run;
the summary takes each variant's best round. With `--attractor-python` (as bench/engine.py)
attractor runs linear-N in the same rounds, and each variant's ratio to it is printed. With
`--trials T`, each variant also runs bench/trials.py's zero-latency trial set (T single-node
trials, 8 at a time) in every round, and its ms per trial is printed the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from common import loop_choice, run_in_temporary_directory
from engine import ATTRACTOR_ENV, AttractorPeer, Engine, StageClock, bench_services, linear_dot
from trials import Ostinato, single_node_dot

from ostinato.daemon.engine.executor import Executor
from ostinato.daemon.store.runs import RunStore
from ostinato.protocol.runs import RunSettings

VARIANTS = ("full", "no-store", "no-checkpoint", "neither")


@asynccontextmanager
async def without(parts: set[str]) -> AsyncIterator[None]:
    """The store's per-stage writes and/or the per-node checkpoint left out, meanwhile."""
    record, save = RunStore.record, Executor.save_checkpoint

    async def status_only(self: RunStore, run_id: str, *, stages: Any, events: Any, calls: Any,
                          run_fields: dict[str, Any] | None = None,
                          concurrent: bool = False) -> None:
        if run_fields and "status" in run_fields:  # the run's end: its row stays true
            await record(self, run_id, stages=(), events=[], calls=[],
                         run_fields=run_fields, concurrent=concurrent)

    async def no_checkpoint(self: Executor, node: Any, finished: bool) -> None:
        return None

    if "store" in parts:
        RunStore.record = status_only  # type: ignore[method-assign,assignment]
    if "checkpoint" in parts:
        Executor.save_checkpoint = no_checkpoint  # type: ignore[method-assign]
    try:
        yield
    finally:
        RunStore.record, Executor.save_checkpoint = record, save  # type: ignore[method-assign]


PARTS: dict[str, set[str]] = {"full": set(), "no-store": {"store"},
                              "no-checkpoint": {"checkpoint"},
                              "neither": {"store", "checkpoint"}}


async def measure(tmp: Path, args: argparse.Namespace,
                  attractor: AttractorPeer | None) -> dict[str, list[float]]:
    """ms per node of every variant (and attractor) in every round."""
    home = tmp / "home"
    home.mkdir()
    clock = StageClock()
    services = await bench_services(home, clock)
    engine, trials = Engine(services, clock), Ostinato(services)
    source, nodes = linear_dot(args.nodes), args.nodes + 2
    sides: list[str] = [*VARIANTS, *(["attractor"] if attractor else []),
                        *(f"{v} trials" for v in VARIANTS if args.trials)]
    found: dict[str, list[float]] = {side: [] for side in sides}
    count = 0

    async def one(side: str) -> float:
        """ms per node (per trial for a trials side) of one run of `side`."""
        nonlocal count
        os.sync()
        if side == "attractor":
            assert attractor is not None
            count += 1
            seconds, _ = attractor.run(source, tmp / "attractor" / f"run{count:04d}", nodes)
            return seconds / nodes * 1000
        variant, _, unit = side.partition(" ")
        async with without(PARTS[variant]):
            if unit:
                seconds = await trials.trial_set(single_node_dot(), RunSettings(),
                                                 args.trials, 8)
                return seconds / args.trials * 1000
            seconds, *_ = await engine.run(source, nodes)
        return seconds / nodes * 1000

    try:
        for side in sides:  # warm-up, and the first parse, untimed
            await one(side)
        for round_no in range(1, args.rounds + 1):
            for side in sides if round_no % 2 else sides[::-1]:
                ms = await one(side)
                found[side].append(ms)
                print(f"{round_no:<6} {side:<20} {ms:8.3f} ms/{_unit(side)}", flush=True)
    finally:
        await services.stop()
    return found


def _unit(side: str) -> str:
    return "trial" if side.endswith(" trials") else "node"


def summarize(found: dict[str, list[float]], json_out: bool) -> None:
    """Each side's best round, what each part costs, and the ratios to attractor."""
    best = {side: min(values) for side, values in found.items()}
    print()
    for side, ms in best.items():
        print(f"best   {side:<20} {ms:8.3f} ms/{_unit(side)}")
    parts = {}
    for suffix in ("", " trials"):
        if f"full{suffix}" not in best:
            continue
        full, unit = best[f"full{suffix}"], _unit(f"full{suffix}")
        store = parts[f"store{suffix}"] = full - best[f"no-store{suffix}"]
        checkpoint = parts[f"checkpoint{suffix}"] = full - best[f"no-checkpoint{suffix}"]
        print(f"{'a trial' if suffix else 'linear'}: the store's per-stage transactions "
              f"{store:.3f} ms/{unit} ({store / full:.0%} of full); the checkpoint rewrites "
              f"{checkpoint:.3f} ms/{unit} ({checkpoint / full:.0%})")
    ratios = {}
    if "attractor" in best:
        ratios = {side: best[side] / best["attractor"] for side in VARIANTS}
        print("per node / attractor's: " + ", ".join(f"{side} {ratio:.2f}"
                                                     for side, ratio in ratios.items()))
    if json_out:
        print(orjson.dumps({"rounds": found, "best": best, "parts": parts,
                            "vs_attractor": ratios or None}).decode())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=1000, metavar="N")
    parser.add_argument("--trials", type=int, default=0, metavar="T",
                        help="also a trial set of T single-node trials per variant")
    parser.add_argument("--attractor-python", metavar="PATH",
                        default=os.environ.get(ATTRACTOR_ENV) or None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if min(args.rounds, args.nodes) < 1 or args.trials < 0:
        parser.error("counts must be at least 1 (--trials: 0 to skip)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then summarize."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    print(f"ostinato engine parts: linear-{args.nodes}, {args.rounds} rounds, loop {loop_name}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    attractor = None if args.attractor_python is None else AttractorPeer(args.attractor_python)
    try:
        found = run_in_temporary_directory("parts", not args.no_uvloop,
                                           lambda tmp: measure(tmp, args, attractor))
    finally:
        if attractor is not None:
            attractor.close()
    summarize(found, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
