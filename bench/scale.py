"""Scale-out benchmark: runs on worker processes (`--executor processes`) and on a local Ray
cluster (`--executor ray`) against inline.

Run it with `.venv/bin/python bench/scale.py`; options:

    .venv/bin/python bench/scale.py [--rounds 3] [--trials 1000] [--concurrency 8]
        [--workers 2] [--latency-ms 100] [--latency-concurrency 100] [--nodes 1000]
        [--attractor-python PATH] [--no-ray] [--pinned] [--json] [--no-uvloop]

Daemons' services in this process, on one event loop, each over its own home and sqlite
store: one executes its runs inline, one on a pool of `--workers` worker processes, and,
when Ray is installed (the `ray` extra) and not `--no-ray`, one on `--workers` actors of a
local Ray cluster that its services start with `--workers` CPUs (decision 0007). Workloads,
every round rotating which executor goes first:

* trials: a trial set (bench/trials.py's single-node pipeline, scripted at zero latency)
  of `--trials` runs, `--concurrency` at a time. Throughput processes / inline; target
  >= 1.6x with 2 workers.
* latency: the same set with the model answering after `--latency-ms`,
  `--latency-concurrency` trials at a time. Its time against max(ideal, trials x CPU per
  trial / cores), where ideal = ceil(trials / concurrency) x latency and the CPU per trial
  is that executor's (this process's and its workers') in the zero-latency set; cores is 1
  for inline (one event loop); target <= 1.2x. The daemon's own CPU during the set is
  printed beside it: near the set's time, the coordinator is what bounds it.
* linear-N: one run of bench/engine.py's linear pipeline of `--nodes` codergen nodes: ms
  per node, processes / inline, and, with `--attractor-python` (as bench/engine.py), the
  attractor Python port's per node in the same rounds (issue 18: <= 1.0x).

`--pinned` adds a fourth executor, `pinned`: processes, with this process's threads (the
daemon: its loop and its store's thread) on CPU 0 and its workers on the other CPUs while
its sets and runs are timed. The coordinator then has a core of its own, as it would on a
machine with a core to spare, and its CPU per trial is what bounds its throughput: the
summary prints that bound (inline's time per trial over the daemon's CPU per trial).

Ray's per-run overhead: its zero-latency trial set's time per trial against processes';
target <= 1.5x. Its workers' CPU is their processes' (/proc), without the cluster's own
(raylet, GCS).

The coordinator estimate: the daemon's CPU per trial on processes (this process) against
its workers' (their /proc stat), hence how many worker cores one daemon can keep busy, and
what that means for a suite of 10,000 snapshots of 3 trials each. The bound: the
throughput those CPU times allow on this machine at best, inline's time per trial against
max((daemon + workers) / cores, daemon, workers / worker count).

Method as bench/trials.py: run directories stay until the end (one temporary directory),
`os.sync()` before each timed set or run, a warm-up of each kind first, the best round of
each workload in the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from common import loop_choice, run_in_temporary_directory
from engine import ATTRACTOR_ENV, AttractorPeer, linear_dot
from trials import Ostinato, latency_settings, single_node_dot

from ostinato.daemon.host import Host, Settings
from ostinato.daemon.runs.options import RunOptions
from ostinato.daemon.services import Services, start
from ostinato.protocol.runs import RunSettings

THROUGHPUT_TARGET = 1.6  # processes (2 workers) / inline, zero-latency trials
LATENCY_TARGET = 1.2  # latency set / max(ideal, CPU-bound time)
RAY_TARGET = 1.5  # ray per trial / processes', zero-latency trials
ATTRACTOR_TARGET = 1.0  # processes per node / attractor's, linear-N
SUITE = (10_000, 3)  # snapshots, trials each: the paper estimate's suite


@dataclass
class Timing:
    """One timed set or run."""

    workload: str
    executor: str
    round: int
    units: int  # trials or nodes
    seconds: float
    cpu_seconds: float  # this process and its workers

    @property
    def ms_per_unit(self) -> float:
        """Time per trial or node."""
        return self.seconds / self.units * 1000


def worker_cpu(services: Services) -> float:
    """CPU seconds the executor's live worker processes have used so far."""
    pool = services.runner.workers
    if pool is None:
        return 0.0
    total = 0
    for worker in pool.workers:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def can_pin() -> bool:
    """Whether `pin` can work here: two CPUs or more, and sched_setaffinity (Linux)."""
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")


def pin(services: Services, pinned: bool) -> None:
    """`pinned`: this process's threads on CPU 0 and `services`' workers on the other CPUs;
    else all of them back on every CPU."""
    every = set(range(os.cpu_count() or 1))
    pool = services.runner.workers
    workers = [] if pool is None else [worker.pid for worker in pool.workers]
    for pid, cpus in ((os.getpid(), {0} if pinned else every),
                      *((worker, every - {0} if pinned else every) for worker in workers)):
        with contextlib.suppress(OSError):  # a worker gone meanwhile
            for thread in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    os.sched_setaffinity(int(thread), cpus)


class Side:
    """One executor's services and what the bench asks of them."""

    def __init__(self, executor: str, services: Services) -> None:
        self.executor = executor
        self.services = services
        self.ostinato = Ostinato(services)

    async def timed(self, work: Any) -> tuple[float, float, float]:
        """(seconds, CPU seconds of this process, of the workers) of awaiting `work`."""
        os.sync()
        if self.executor == "pinned":
            pin(self.services, True)
        try:
            cpu, workers = time.process_time(), worker_cpu(self.services)
            started = time.perf_counter()
            await work
            return (time.perf_counter() - started, time.process_time() - cpu,
                    worker_cpu(self.services) - workers)
        finally:
            if self.executor == "pinned":
                pin(self.services, False)


class Bench:
    """Every workload on every executor, rotating; keeps every timing."""

    def __init__(self, sides: dict[str, Side], args: argparse.Namespace,
                 attractor: AttractorPeer | None, tmp: Path) -> None:
        self.sides = sides
        self.args = args
        self.attractor = attractor
        self.tmp = tmp
        self.timings: list[Timing] = []
        self.daemon_cpu: dict[str, float] = {}  # executor -> daemon CPU s per zero-latency trial
        self.worker_cpu: dict[str, float] = {}  # executor -> workers' CPU s per trial
        self.latency_daemon_cpu: dict[str, float] = {}  # executor -> daemon CPU s, best set

    def add(self, timing: Timing) -> None:
        """Keep and print a timing."""
        self.timings.append(timing)
        print(f"{timing.round:<6} {timing.workload:<12} {timing.executor:<10} {timing.units:>6,}"
              f" {timing.seconds:>8.2f} {timing.ms_per_unit:>9.3f} "
              f"{timing.cpu_seconds / timing.units * 1000:>9.3f}", flush=True)

    async def trials(self, side: Side, round_no: int) -> None:
        """A zero-latency trial set."""
        args = self.args
        seconds, daemon, workers = await side.timed(side.ostinato.trial_set(
            single_node_dot(), RunSettings(), args.trials, args.concurrency))
        best = self.best("trials", side.executor)
        if best is None or seconds < best.seconds:
            self.daemon_cpu[side.executor] = daemon / args.trials
            self.worker_cpu[side.executor] = workers / args.trials
        self.add(Timing("trials", side.executor, round_no, args.trials, seconds,
                        daemon + workers))

    async def latency(self, side: Side, round_no: int) -> None:
        """A trial set whose model answers after --latency-ms."""
        args = self.args
        seconds, daemon, workers = await side.timed(side.ostinato.trial_set(
            single_node_dot(), latency_settings(args.latency_ms, args.latency_concurrency),
            args.trials, args.latency_concurrency))
        best = self.best("latency", side.executor)
        if best is None or seconds < best.seconds:
            self.latency_daemon_cpu[side.executor] = daemon
        self.add(Timing("latency", side.executor, round_no, args.trials, seconds,
                        daemon + workers))

    async def linear(self, side: Side, round_no: int) -> None:
        """One linear-N run."""
        nodes = self.args.nodes
        seconds, daemon, workers = await side.timed(side.ostinato.run(
            linear_dot(nodes), RunOptions(), nodes))
        self.add(Timing(f"linear-{nodes}", side.executor, round_no, nodes + 2, seconds,
                        daemon + workers))

    def linear_attractor(self, round_no: int) -> None:
        """attractor on the same linear pipeline."""
        assert self.attractor is not None
        nodes = self.args.nodes
        root = self.tmp / "attractor" / f"round{round_no}"
        seconds, cpu = self.attractor.run(linear_dot(nodes), root, nodes + 2)
        self.add(Timing(f"linear-{nodes}", "attractor", round_no, nodes + 2, seconds, cpu))

    def best(self, workload: str, executor: str) -> Timing | None:
        """The fastest round of one workload on one executor."""
        found = [t for t in self.timings if t.workload == workload and t.executor == executor]
        return min(found, key=lambda t: t.seconds) if found else None


async def measure(tmp: Path, args: argparse.Namespace,
                  attractor: AttractorPeer | None) -> Bench:
    """Warm up every executor, then the rounds."""
    sides: dict[str, Side] = {}
    for executor in args.executors:
        home = tmp / executor
        home.mkdir()
        settings = Settings(executor="processes" if executor == "pinned" else executor,
                            workers=args.workers)  # ray: a local cluster
        sides[executor] = Side(executor, await start(Host(home, settings=settings)))
    bench = Bench(sides, args, attractor, tmp)
    try:
        for side in sides.values():  # warm-up: workers started, modules imported
            await side.ostinato.trial_set(single_node_dot(), RunSettings(), 50,
                                          args.concurrency)
            await side.ostinato.run(linear_dot(20), RunOptions(), 20)
        for round_no in range(1, args.rounds + 1):
            shift = round_no % len(sides)
            order = list(sides.values())[shift:] + list(sides.values())[:shift]
            for side in order:
                await bench.trials(side, round_no)
            for side in order:
                await bench.linear(side, round_no)
            if attractor is not None:
                bench.linear_attractor(round_no)
            if args.latency_ms:
                for side in order:
                    await bench.latency(side, round_no)
        return bench
    finally:
        for side in sides.values():
            await side.services.stop()


def summarize(bench: Bench, args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    """The best rounds, the ratios with their targets, and the coordinator estimate."""
    print()
    ratios: dict[str, float | None] = {}
    inline, processes, ray = (bench.best("trials", e) for e in ("inline", "processes", "ray"))
    assert inline is not None and processes is not None
    ratios["throughput"] = inline.seconds / processes.seconds
    ratios["ray_vs_processes"] = None if ray is None else ray.seconds / processes.seconds
    linear = f"linear-{args.nodes}"
    line_in, line_pr = (bench.best(linear, e) for e in ("inline", "processes"))
    assert line_in is not None and line_pr is not None
    ratios["linear_vs_inline"] = line_pr.seconds / line_in.seconds
    peer = bench.best(linear, "attractor")
    ratios["linear_vs_attractor"] = None if peer is None else line_pr.seconds / peer.seconds
    for executor in args.executors:
        for name in ("trials", linear, "latency"):
            timing = bench.best(name, executor)
            if timing is not None:
                print(f"best   {name:<12} {executor:<10} {timing.ms_per_unit:9.3f} ms/unit")
    if peer is not None:
        print(f"best   {linear:<12} attractor  {peer.ms_per_unit:9.3f} ms/unit")
    cores = os.cpu_count() or 1
    for executor in args.executors:
        timing = bench.best("latency", executor)
        if timing is None:
            continue
        ideal = math.ceil(args.trials / args.latency_concurrency) * args.latency_ms / 1000
        per_trial = bench.daemon_cpu[executor] + bench.worker_cpu[executor]
        usable = 1 if executor == "inline" else cores  # inline: one event loop, one core
        bound = max(ideal, args.trials * per_trial / usable)
        ratios[f"latency_{executor}"] = timing.seconds / bound
        daemon = bench.latency_daemon_cpu[executor]
        print(f"latency {executor}: {timing.seconds:.2f} s against max(ideal {ideal:.2f} s, "
              f"{args.trials} x {per_trial * 1000:.3f} ms CPU / {usable} core(s) = "
              f"{args.trials * per_trial / usable:.2f} s): {ratios[f'latency_{executor}']:.2f}x; "
              f"the daemon's CPU in the set {daemon:.2f} s, {daemon / timing.seconds:.0%} of it")
    daemon, workers = bench.daemon_cpu["processes"], bench.worker_cpu["processes"]
    feeds = workers / daemon if daemon else float("inf")
    snapshots, trials = SUITE
    suite_s = snapshots * trials * daemon
    print(f"coordinator: the daemon's CPU per trial on processes {daemon * 1000:.3f} ms, its "
          f"workers' {workers * 1000:.3f} ms: one daemon core keeps {feeds:.1f} worker cores "
          f"busy; a suite of {snapshots:,} snapshots x {trials} trials needs at least "
          f"{suite_s:.0f} s of daemon time, whatever the workers ({suite_s / 60:.1f} min)")
    # What the CPU measured allows on this machine: the cores shared by the daemon and the
    # workers, the daemon's one loop, and the workers each on a core at best.
    per_trial = max((daemon + workers) / cores, daemon, workers / args.workers)
    ratios["throughput_bound"] = inline.seconds / inline.units / per_trial
    print(f"bound: on {cores} core(s) a trial on processes takes at least max((daemon + "
          f"workers) / {cores}, daemon, workers / {args.workers}) = {per_trial * 1000:.3f} ms: "
          f"at most {ratios['throughput_bound']:.2f}x inline's throughput "
          f"(target >= {THROUGHPUT_TARGET:g})")
    if ray is None:
        print("ray: not measured (Ray is not installed, or --no-ray)")
    pinned = bench.best("trials", "pinned")
    if pinned is not None:
        ratios["throughput_pinned"] = inline.seconds / pinned.seconds
        alone = bench.daemon_cpu["pinned"]
        print(f"pinned: the daemon on CPU 0, its workers on the other {cores - 1}: "
              f"{pinned.ms_per_unit:.3f} ms per trial, {ratios['throughput_pinned']:.2f}x "
              f"inline's throughput; the daemon's CPU per trial {alone * 1000:.3f} ms bounds it "
              f"at {inline.ms_per_unit:.3f} / {alone * 1000:.3f} = "
              f"{inline.ms_per_unit / (alone * 1000):.2f}x, whatever the workers")
    line = (f"ratios: trials throughput processes/inline {ratios['throughput']:.2f}x "
            f"(target >= {THROUGHPUT_TARGET:g}, {args.workers} workers), {linear} per node "
            f"processes/inline {ratios['linear_vs_inline']:.2f}")
    if ratios["linear_vs_attractor"] is not None:
        line += (f", processes/attractor {ratios['linear_vs_attractor']:.2f} "
                 f"(target <= {ATTRACTOR_TARGET:g})")
    if ratios["ray_vs_processes"] is not None:
        line += (f", trials ray/processes per trial {ratios['ray_vs_processes']:.2f}x "
                 f"(target <= {RAY_TARGET:g})")
    if "throughput_pinned" in ratios:
        line += f", throughput pinned/inline {ratios['throughput_pinned']:.2f}x"
    for executor in args.executors:
        if f"latency_{executor}" in ratios:
            line += (f", latency {executor} {ratios[f'latency_{executor}']:.2f}x "
                     f"(target <= {LATENCY_TARGET:g})")
    summary = {"loop": loop_name, "args": vars(args),
               "timings": [asdict(t) for t in bench.timings], "ratios": ratios,
               "coordinator": {"daemon_cpu_ms": daemon * 1000, "worker_cpu_ms": workers * 1000,
                               "worker_cores_fed": feeds}}
    if args.json:
        print(orjson.dumps(summary).decode())
    print(line)
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=100.0,
                        help="model latency of the latency set (0 skips it)")
    parser.add_argument("--latency-concurrency", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--attractor-python", metavar="PATH",
                        default=os.environ.get(ATTRACTOR_ENV) or None)
    parser.add_argument("--no-ray", action="store_true",
                        help="leave Ray out even when it is installed")
    parser.add_argument("--pinned", action="store_true",
                        help="also processes with the daemon on CPU 0, its workers on the rest")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    with_ray = not args.no_ray and importlib.util.find_spec("ray") is not None
    args.executors = ["inline", "processes", *(["ray"] if with_ray else []),
                      *(["pinned"] if args.pinned else [])]
    if args.pinned and not can_pin():
        parser.error("--pinned: needs two CPUs or more and sched_setaffinity (Linux)")
    if min(args.rounds, args.trials, args.concurrency, args.workers, args.nodes,
           args.latency_concurrency) < 1 or args.latency_ms < 0:
        parser.error("counts must be at least 1 (--latency-ms: 0 to skip)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then summarize."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    print(f"ostinato scale bench: inline against {' and '.join(args.executors[1:])} "
          f"({args.workers} workers); "
          f"loop {loop_name}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'round':<6} {'workload':<12} {'executor':<10} {'units':>6} {'seconds':>8} "
          f"{'ms/unit':>9} {'cpu ms':>9}")
    attractor = None if args.attractor_python is None else AttractorPeer(args.attractor_python)
    try:
        bench = run_in_temporary_directory("scale", not args.no_uvloop,
                                           lambda tmp: measure(tmp, args, attractor))
    finally:
        if attractor is not None:
            attractor.close()
    summarize(bench, args, loop_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
