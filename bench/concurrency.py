"""Concurrent runs benchmark: the cost of a single run when eight run at once, against one at
a time (issue 18: at most 1.0x).

Run it with `.venv/bin/python bench/concurrency.py`; options:

    .venv/bin/python bench/concurrency.py [--rounds 3] [--runs 400] [--concurrency 8]
        [--profile FILE] [--json] [--no-uvloop]

Each side makes `--runs` single runs of start -> n1 (box) -> exit on the scripted provider at
zero latency, two ways:

* **in-process**: `Runner.start` of the daemon's real services over a bench host and the
  real sqlite store (as bench/engine.py), timed from the first start until the last run's
  `done`: what a run costs the daemon, minus JSON-RPC;
* **daemon**: `run.start` with `wait: true` over a unix socket to a daemon process (NDJSON,
  the Python client), timed from the first request to the last answer: what a client sees.

**serial** makes a run once the one before it is done; **concurrent-K** keeps K runs in
flight. Per run = time / runs; the ratio is concurrent per run / serial per run, in the same
round, sides alternated. At zero latency nothing waits for a model, so in process
concurrency can only interleave the same work: the target says that interleaving must cost
nothing. Through the daemon, concurrency also overlaps the client's round trips.

Method: one home for the whole benchmark (its run directories stay until it ends), a warm-up
of each side first, best round of each side.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (  # bench/ is on sys.path
    INSTALLED_ENVIRONMENT,
    loop_choice,
    run_in_temporary_directory,
)
from engine import bench_services

from ostinato.clients.python import AsyncClient
from ostinato.daemon.runs.options import RunOptions
from ostinato.daemon.services import Services
from ostinato.protocol.codec import Framing
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

SOURCE = """digraph single {
    start [shape=Mdiamond]; exit [shape=Msquare]
    n1 [prompt="Say something"]
    start -> n1 -> exit
}"""


async def one_run(services: Services) -> None:
    """One run from `Runner.start` until done; it must complete."""
    active = await services.runner.start(PipelineRef(source=SOURCE, format="dot"), {}, {},
                                         RunSettings(), RunOptions())
    result = await active.done
    if result is None or result.status != "completed":
        raise RuntimeError(f"run {active.run_id}: {getattr(result, 'failure_reason', None)}")


async def side(services: Services, runs: int, concurrency: int) -> float:
    """Seconds for `runs` runs, `concurrency` in flight at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> None:
        async with gate:
            await one_run(services)

    started = time.perf_counter()
    if concurrency == 1:
        for _ in range(runs):
            await one_run(services)
    else:
        await asyncio.gather(*(gated() for _ in range(runs)))
    return time.perf_counter() - started


async def over_rpc(client: AsyncClient, runs: int, concurrency: int) -> float:
    """Seconds for `runs` run.start requests that wait, `concurrency` in flight at a time."""
    params = {"pipeline": {"source": SOURCE, "format": "dot"}, "wait": True}
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            summary = await client.request("run.start", params)
        if summary["status"] != "completed":
            raise RuntimeError(f"run {summary['run_id']}: {summary['failure_reason']}")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return time.perf_counter() - started


async def start_daemon(home: Path, socket: Path) -> asyncio.subprocess.Process:
    """A daemon on `socket`, once it says it is ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ostinato.daemon", "--socket", str(socket), "--home", str(home),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=INSTALLED_ENVIRONMENT)
    assert process.stderr is not None
    while b"daemon ready" not in await asyncio.wait_for(process.stderr.readline(), 30):
        pass
    return process


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Alternated rounds of every side."""
    (tmp / "home").mkdir()
    services = await bench_services(tmp / "home")
    daemon = await start_daemon(tmp / "daemon-home", tmp / "d.sock")
    client = await AsyncClient.connect_unix(tmp / "d.sock", Framing.NDJSON)
    await client.initialize("bench-concurrency")
    sides = {"in-process serial": lambda: side(services, args.runs, 1),
             "in-process concurrent": lambda: side(services, args.runs, args.concurrency),
             "daemon serial": lambda: over_rpc(client, args.runs, 1),
             "daemon concurrent": lambda: over_rpc(client, args.runs, args.concurrency)}
    found: dict[str, list[float]] = {name: [] for name in sides}
    profiler = cProfile.Profile() if args.profile else None
    try:
        # Warm-up: imports, the kept syntax tree, first files.
        await side(services, 20, args.concurrency)
        await over_rpc(client, 20, args.concurrency)
        for round_ in range(1, args.rounds + 1):
            names = list(sides) if round_ % 2 else list(reversed(sides))
            for name in names:
                if profiler is not None and name == "in-process concurrent":
                    profiler.enable()
                seconds = await sides[name]()
                if profiler is not None:
                    profiler.disable()
                found[name].append(seconds)
                print(f"round {round_}: {name:<22} {seconds * 1000 / args.runs:.2f} ms/run",
                      flush=True)
    finally:
        await client.close()
        daemon.terminate()
        await daemon.wait()
        await services.stop()
        if profiler is not None:
            profiler.dump_stats(args.profile)
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", help="write a cProfile of the concurrent sides here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the summary; 0 when the target is met."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    found = run_in_temporary_directory("concurrency", not args.no_uvloop,
                                       lambda tmp: measure(tmp, args))
    best = {name: min(times) * 1000 / args.runs for name, times in found.items()}
    summary: dict[str, Any] = {"loop": loop_name, "runs": args.runs,
                               "concurrency": args.concurrency,
                               "ms_per_run": {k: round(v, 3) for k, v in best.items()}}
    for where in ("in-process", "daemon"):
        summary[f"{where} ratio"] = round(best[f"{where} concurrent"] / best[f"{where} serial"],
                                          3)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"\n{loop_name}; best of {args.rounds} rounds of {args.runs} runs")
        for where in ("in-process", "daemon"):
            ratio = summary[f"{where} ratio"]
            print(f"{where}: concurrent-{args.concurrency} {best[f'{where} concurrent']:.2f} "
                  f"ms/run against serial {best[f'{where} serial']:.2f}: {ratio:.2f}x "
                  f"(target <= 1.0x) {'OK' if ratio <= 1.0 else 'MISSED'}")
    return 0 if max(summary["in-process ratio"], summary["daemon ratio"]) <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
