"""What a run's own files cost the coordinator: trial sets on worker processes with and
without the daemon writing them.

Run it with `.venv/bin/python bench/coordinator_files.py`; options:

    .venv/bin/python bench/coordinator_files.py [--rounds 4] [--trials 1000]
        [--concurrency 8] [--workers 2] [--json] [--no-uvloop]

A diagnostic beside bench/scale.py, not a benchmark with targets. On the processes
executor the daemon still writes, for every run its workers execute, the run's config/
files (runs/files.py::write_config), its manifest.json as it starts and as it ends, and
each checkpoint.json its worker hands back (decision 0007). Moving them to the workers is
the structural step that would take CPU off the coordinator, whose CPU per trial bounds a
pool's throughput however many cores the workers have (bench/scale.py --pinned). This
says how much, before anyone builds it:

* full: a zero-latency trial set (bench/trials.py's single-node pipeline) of `--trials`
  runs, `--concurrency` at a time, on `--workers` worker processes, as `trials.start` does;
* no-run-files: the same with those files left unwritten by the daemon (write_config and
  the manifest and checkpoint writes replaced for the variant's set: this script measures,
  it never ships). The workers write their files as always.

Both run with this process's threads (the daemon: its loop, its store's thread) on CPU 0
and the workers on the other CPUs (bench/scale.py's `pin`), so that the daemon's CPU is
its own. Variants alternate within each round (the order reversed every other round), the
run directories stay until the end, `os.sync()` before each set; the summary takes each
variant's best round of the daemon's CPU per trial and prints the difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import orjson
from common import loop_choice, run_in_temporary_directory
from scale import can_pin, pin, worker_cpu
from trials import Ostinato, single_node_dot

from ostinato.daemon.engine.rundir import RunDirectory
from ostinato.daemon.host import Host, Settings
from ostinato.daemon.runs import runner
from ostinato.daemon.services import start
from ostinato.protocol.runs import RunSettings

VARIANTS = ("full", "no-run-files")
RUN_FILES = ("manifest.json", "checkpoint.json")  # with config/ (write_config)


@contextmanager
def without_run_files() -> Iterator[None]:
    """The daemon writes no config/ files, manifests or checkpoints, meanwhile."""
    # Replacing a name the runner no longer calls would measure nothing: the import fails.
    write_config, write_dumped = runner.write_config, RunDirectory.write_dumped

    def dumped(self: RunDirectory, *parts: str, data: bytes, fresh: bool = False) -> None:
        if parts[-1] not in RUN_FILES:
            write_dumped(self, *parts, data=data, fresh=fresh)

    runner.write_config = lambda *args: None  # type: ignore[assignment]
    RunDirectory.write_dumped = dumped  # type: ignore[method-assign]
    try:
        yield
    finally:
        runner.write_config = write_config
        RunDirectory.write_dumped = write_dumped  # type: ignore[method-assign]


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Per variant and round: ms per trial, the daemon's and the workers' CPU ms per
    trial."""
    home = tmp / "home"
    home.mkdir()
    services = await start(Host(home, settings=Settings(executor="processes",
                                                        workers=args.workers)))
    trials = Ostinato(services)
    found: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}

    async def one(variant: str, count: int) -> dict[str, float]:
        os.sync()
        pin(services, True)
        try:
            cpu, workers = time.process_time(), worker_cpu(services)
            with without_run_files() if variant == "no-run-files" else nullcontext():
                seconds = await trials.trial_set(single_node_dot(), RunSettings(), count,
                                                 args.concurrency)
            return {"ms": seconds / count * 1000,
                    "daemon_ms": (time.process_time() - cpu) / count * 1000,
                    "workers_ms": (worker_cpu(services) - workers) / count * 1000}
        finally:
            pin(services, False)

    try:
        for variant in VARIANTS:  # warm-up: workers started, modules imported
            await one(variant, 50)
        for round_no in range(1, args.rounds + 1):
            for variant in VARIANTS if round_no % 2 else VARIANTS[::-1]:
                timing = await one(variant, args.trials)
                found[variant].append(timing)
                print(f"{round_no:<6} {variant:<13} {timing['ms']:8.3f} ms/trial, daemon CPU "
                      f"{timing['daemon_ms']:.3f} ms, workers' {timing['workers_ms']:.3f} ms",
                      flush=True)
    finally:
        await services.stop()
    return found


def summarize(found: dict[str, list[dict[str, float]]], json_out: bool) -> None:
    """Each variant's best round of the daemon's CPU per trial, and the difference."""
    best = {variant: min(rounds, key=lambda t: t["daemon_ms"])
            for variant, rounds in found.items()}
    print()
    for variant, timing in best.items():
        print(f"best   {variant:<13} daemon CPU {timing['daemon_ms']:.3f} ms/trial "
              f"({timing['ms']:.3f} ms/trial, workers' CPU {timing['workers_ms']:.3f} ms)")
    full, bare = best["full"]["daemon_ms"], best["no-run-files"]["daemon_ms"]
    print(f"the run's own files cost the daemon {full - bare:.3f} ms of CPU per trial "
          f"({(full - bare) / full:.0%} of its {full:.3f} ms)")
    if json_out:
        print(orjson.dumps({"rounds": found, "best": best,
                            "files_daemon_ms": full - bare}).decode())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if min(args.rounds, args.trials, args.concurrency, args.workers) < 1:
        parser.error("counts must be at least 1")
    if not can_pin():
        parser.error("needs two CPUs or more and sched_setaffinity (Linux)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then summarize."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    print(f"ostinato coordinator files: trial sets of {args.trials:,} on {args.workers} worker "
          f"processes, the daemon on CPU 0, {args.rounds} rounds, loop {loop_name}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    found = run_in_temporary_directory("coordinator", not args.no_uvloop,
                                       lambda tmp: measure(tmp, args))
    summarize(found, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
