"""Trial-set and replay benchmark: per-trial overhead, concurrency against the ideal time,
and a recorded replay against a scripted run of the same pipeline.

Run it with `.venv/bin/python bench/trials.py`; options:

    .venv/bin/python bench/trials.py [--rounds 3] [--trials 1000] [--concurrency 1,8]
        [--latency-ms 100] [--latency-concurrency 100] [--replay-nodes 1000] [--replay-pairs 3]
        [--inspect-samples N] [--no-inspect] [--promptfoo-tests N] [--promptfoo-small N]
        [--no-promptfoo] [--promptfoo-dir DIR] [--profile K [--profile-out FILE]] [--quick]
        [--json] [--no-uvloop]

Workloads, all through `Runner.start` of the daemon's real services over a bench host
and the real sqlite store, as bench/engine.py sets them up (one sqlite file in WAL mode for
the whole benchmark):

* trials-cK: a trial set (`TrialSets.start`, daemon/runs/trial_sets.py) of `--trials` runs
  (default 1,000) of the single-node pipeline start -> n1 (box) -> exit, `K` at a time
  (`--concurrency`, default 1 and 8), record "full" (the default), scripted provider at zero
  latency. Timed from `TrialSets.start` until the set's `done` resolves: every trial's run
  (load is done once per set), its store rows and files, the set's own row after each
  trial and its manifest (at most every 50 ms, and at the end). Per trial = set time /
  trials: the per-trial overhead. At zero latency no trial ever waits for its model, so
  concurrency only interleaves the same work.
* latency-cC: the same set with the scripted provider answering after `--latency-ms`
  (default 100 ms) and `--latency-concurrency` (default 100) trials at a time; the
  provider's concurrency limit is set to the same number (the trials of a set share one
  provider pool, so the limit holds across the set). Ideal = ceil(trials / C) x latency;
  the ratio is set time / ideal. The summary also gives the set's CPU against the ideal (one
  event loop cannot end the set before it has spent that CPU), how long a trial lasted
  against the model's latency (the rest is waiting for the loop), and, for information, the
  set against max(ideal, trials x the zero-latency time per trial): what one event loop
  can do at best.
* linear-N scripted / replay: one run of start -> n1 ... nN -> exit (N model calls, default
  1,000) on the scripted provider is recorded once, untimed; then, in every round,
  `--replay-pairs` (default 3) pairs of a fresh scripted run of the same pipeline and a run
  with
  `RunOptions(replay_of=<recorded run>, replay_mode="recorded")`, whose every call is served
  from the recording (a call the recording lacks would stop it: it must complete). Timed
  from `Runner.start` until `done`; the replay's time includes reading the recorded calls
  from the store and indexing them.
* inspect_ai (when installed, `pip install -e '.[bench]'`): per-sample overhead of
  `inspect_ai.eval` of a Task of `--inspect-samples` samples (default: as many as trials),
  solver `generate()`, scorer `match()`, model `mockllm/model` with `custom_outputs` (a
  callable) giving each sample a ModelOutput with `usage` filled in (without usage mockllm
  counts tokens with a tokenizer it downloads), log to a temporary directory, display
  "none", everything else default. It runs in a child process once per round, between the
  trial sets (its own event loop, and its ~1 s of imports do not weigh on this process's
  garbage collector), after an untimed 20-sample warm-up eval in that child. Without
  inspect_ai the bench says so and uses the reference of 9.5 ms per sample measured on these
  machines.
* promptfoo (when installed in bench/promptfoo by `make bench-promptfoo`, from its lockfile,
  with a node its engines accept: bench/promptfoo's own node 22 from the npm registry, else
  the node on PATH): its marginal cost per test. Each round runs two `promptfoo eval`s, of
  `--promptfoo-small` (default 20) and `--promptfoo-tests` (default: as many as trials, at
  least 5x the small one) tests, the small one first in odd rounds; marginal per test =
  (big - small) / (the tests' difference), so node's start-up and promptfoo's fixed costs
  cancel out. Each eval is a node process running promptfoo's CLI in a fresh directory:
  one prompt "Do step {{i}}", the `echo` provider (it answers with the prompt), one
  `equals` assertion per test, `-o output.json` (which the bench reads to check that every
  test passed), `--no-cache --no-share --no-table --no-progress-bar`, telemetry, update
  check, sharing and remote generation disabled by environment, everything else default
  (4 tests at a time, results written to promptfoo's own sqlite store, as a user's eval
  is). That store
  (PROMPTFOO_CONFIG_DIR) is one per benchmark, created by an untimed 20-test warm-up eval.
  Timed from spawn to exit; CPU is the child's (user + system). Without promptfoo the bench
  says so and uses the reference of 3.5 ms per test.

Method: as bench/engine.py: every run directory stays until the benchmark ends (one
temporary directory, removed at exit; creating files on these VMs is several times slower
for minutes after many files were deleted nearby), `os.sync()` before every timed set or
run, a warm-up of each kind first, and the summary takes the best round of each workload
(other load and writeback only ever add time). Do not start it right after something
deleted many files (the test suite, another benchmark).

Targets: per-trial overhead at most 0.1x inspect_ai's per-sample overhead (issue 18; the
trials issue asked 0.3x) and at most 0.3x promptfoo's marginal per test; concurrency within
1.2x of ideal; replay at most 1.2x the scripted run.
The last line is always the ratios with their targets.

`--profile K` runs one more zero-latency trial set (at the first `--concurrency`) under
cProfile, after the timed rounds, and prints the K functions with the most own time and the
K with the most cumulative time, in microseconds per trial (`--profile-out` saves the raw
stats). cProfile sees this thread only: the store's reads on aiosqlite's thread show as
waiting (its writes run on the loop's thread and are counted); and the profiler inflates
Python code 2x or more, system calls much less.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import math
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from common import loop_choice  # bench/ is on sys.path when a bench runs
from engine import bench_services, linear_dot

from ostinato.daemon.engine.redact import environment_secrets
from ostinato.daemon.runs.options import RunOptions
from ostinato.daemon.services import Services
from ostinato.daemon.store.traces import TraceStore
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

INSPECT_REFERENCE_MS = 9.5  # inspect_ai mockllm, per sample, on these machines
PROMPTFOO_REFERENCE_MS = 3.5  # promptfoo echo provider, per test, when it is not installed
INSPECT_TARGET = 0.1  # per-trial overhead <= 0.1x inspect_ai's per sample (issue 18)
CONCURRENCY_TARGET = 1.2  # latency set <= 1.2x ideal
REPLAY_TARGET = 1.2  # replay <= 1.2x the scripted run
INSPECT_WARMUP = 20
PROMPTFOO_TARGET = 0.3  # per-trial overhead <= 0.3x promptfoo's marginal per test
PROMPTFOO_WARMUP = 20
PROMPTFOO_DIR = Path(__file__).resolve().parent / "promptfoo"  # make bench-promptfoo


def single_node_dot() -> str:
    """start -> n1 (box) -> exit."""
    return linear_dot(1)


@dataclass
class Timing:
    """One timed trial set, run or inspect eval."""

    workload: str
    round: int | str  # "best" in the summary
    units: int  # trials, samples or model calls
    unit: str
    seconds: float
    cpu_seconds: float  # of the process that did the work (this one, or inspect's child)
    ideal_seconds: float | None = None  # latency sets: ceil(trials / C) x latency
    trial_ms: dict[str, float] | None = None  # trial sets: how long a trial lasted (p50, p95)

    @property
    def ms_per_unit(self) -> float:
        """Time divided by the trials, samples or calls."""
        return self.seconds / self.units * 1000

    @property
    def cpu_ms_per_unit(self) -> float:
        """CPU time divided by the trials, samples or calls."""
        return self.cpu_seconds / self.units * 1000


def format_row(t: Timing) -> str:
    """One table row."""
    ideal = "-" if t.ideal_seconds is None else f"{t.seconds / t.ideal_seconds:.2f}x"
    return (f"{t.round!s:<6} {t.workload:<20} {t.units:>7,} {t.unit:<7} {t.seconds:>9.2f} "
            f"{t.ms_per_unit:>9.3f} {t.cpu_ms_per_unit:>9.3f} {ideal:>9}")


HEADER = (f"{'round':<6} {'workload':<20} {'units':>7} {'':<7} {'seconds':>9} "
          f"{'ms/unit':>9} {'cpu ms':>9} {'vs ideal':>9}")


# -- ostinato -----------------------------------------------------------------------------


class Ostinato:
    """Trial sets and runs through the daemon's runner, on one store."""

    def __init__(self, services: Services) -> None:
        self.runner = services.runner
        self.sets = services.trials
        self.last_summary: dict[str, Any] = {}  # of the last trial set

    async def trial_set(self, source: str, settings: RunSettings, trials: int,
                        concurrency: int) -> float:
        """Seconds from `TrialSets.start` until the set is done; every trial must pass."""
        started = time.perf_counter()
        trial_set = await self.sets.start(
            PipelineRef(source=source, format="dot"), {}, {}, settings, RunOptions(),
            trials=trials, concurrency=concurrency, early_stop=False, pass_threshold=1.0)
        await trial_set.done
        seconds = time.perf_counter() - started
        summary = self.last_summary = trial_set.summary()
        if trial_set.status != "completed" or summary["passed"] != trials:
            raise RuntimeError(f"trial set {trial_set.id} ended {trial_set.status}: "
                               f"{summary['passed']} of {trials} trials passed")
        return seconds

    async def run(self, source: str, options: RunOptions, calls: int) -> tuple[float, str]:
        """(seconds, run id) of one run from `Runner.start` until done; it must complete
        with `calls` model calls recorded."""
        started = time.perf_counter()
        active = await self.runner.start(PipelineRef(source=source, format="dot"), {}, {},
                                         RunSettings(max_steps=0), options)
        result = await active.done
        seconds = time.perf_counter() - started
        if result is None or result.status != "completed":
            raise RuntimeError(f"run {active.run_id} ended {getattr(result, 'status', None)}: "
                               f"{getattr(result, 'failure_reason', '')}")
        run = await self.runner.store.get_run(active.run_id)
        made = len(await TraceStore(self.runner.store.db).run_calls(active.run_id))
        if made != calls or run is None or run.status != "completed":
            raise RuntimeError(f"run {active.run_id}: {made} calls recorded, {calls} expected")
        return seconds, active.run_id


def latency_settings(latency_ms: float, concurrency: int) -> RunSettings:
    """The scripted provider answering after `latency_ms`, `concurrency` calls at a time."""
    return RunSettings(providers={"scripted": {"type": "scripted", "latency_ms": latency_ms,
                                               "concurrency": concurrency}})


# -- inspect_ai ---------------------------------------------------------------------------


def inspect_version() -> str | None:
    """inspect_ai's version when it is installed, else None."""
    if importlib.util.find_spec("inspect_ai") is None:
        return None
    return version("inspect_ai")


def inspect_child(samples: int) -> int:
    """In the child process: a warm-up eval, then the timed one; prints one JSON line."""
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    def output(*_: Any) -> ModelOutput:
        out = ModelOutput.from_content(model="mockllm/model", content="ok")
        out.usage = ModelUsage(input_tokens=10, output_tokens=5, total_tokens=15)
        return out

    model = get_model("mockllm/model", custom_outputs=output)
    tmp = Path(tempfile.mkdtemp(prefix="ostinato-bench-inspect-"))
    try:
        result: dict[str, Any] = {}
        for n, label in ((INSPECT_WARMUP, "warm-up"), (samples, "timed")):
            task = Task(dataset=[Sample(input=f"Do step {i}", target="ok") for i in range(n)],
                        solver=generate(), scorer=match())
            os.sync()
            cpu = time.process_time()
            started = time.perf_counter()
            logs = inspect_eval(task, model=model, log_dir=str(tmp / label), display="none")
            seconds = time.perf_counter() - started
            done = len(logs[0].samples or [])
            if logs[0].status != "success" or done != n:
                raise RuntimeError(f"inspect eval ended {logs[0].status} with {done} of {n} "
                                   "samples")
            result = {"seconds": seconds, "cpu_seconds": time.process_time() - cpu,
                      "samples": n}
        print(orjson.dumps(result).decode(), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def inspect_round(samples: int, round_no: int) -> Timing:
    """One inspect eval, in a child process."""
    done = subprocess.run([sys.executable, __file__, "--inspect-child", str(samples)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"inspect_ai child failed ({done.returncode}):\n{done.stderr}")
    data = orjson.loads(done.stdout.strip().splitlines()[-1])
    return Timing("inspect_ai mockllm", round_no, data["samples"], "sample", data["seconds"],
                  data["cpu_seconds"])


# -- promptfoo ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Promptfoo:
    """promptfoo installed under bench/promptfoo, and a node its engines accept."""

    version: str
    entry: Path  # its CLI's script (package.json "bin"), run by `node`
    node: str
    node_version: str


def find_promptfoo(directory: Path) -> Promptfoo | str:
    """The promptfoo `make bench-promptfoo` installed in `directory`, or why there is none."""
    manifest = directory / "node_modules" / "promptfoo" / "package.json"
    if not manifest.exists():
        return f"not installed in {directory} (make bench-promptfoo)"
    package = orjson.loads(manifest.read_bytes())
    required = package.get("engines", {}).get("node", "")
    entry = manifest.parent / package["bin"]["promptfoo"]
    for node in node_candidates(directory):
        found = node_version(node)
        if found is not None and version_meets(found, required):
            return Promptfoo(package["version"], entry, node, found)
    return (f"{package['version']} installed, but no node {required} (neither "
            f"{directory}/node_modules/.bin/node nor node on PATH)")


def node_candidates(directory: Path) -> list[str]:
    """bench/promptfoo's own node (node-linux-*, node 22 from the npm registry: Debian's is
    20), then the node on PATH."""
    own = directory / "node_modules" / ".bin" / "node"
    on_path = shutil.which("node")
    return [str(own)] * own.exists() + [on_path] * (on_path is not None)


def node_version(node: str) -> str | None:
    """`node --version` without its "v", or None when it does not run."""
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except OSError:
        return None
    return done.stdout.strip().lstrip("v") if done.returncode == 0 else None


def version_meets(found: str, required: str) -> bool:
    """Whether a version satisfies an engines range of the form ">=X.Y.Z" (the only form
    promptfoo uses; anything else is not checked here, node will say)."""
    if not required.startswith(">="):
        return True

    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("-")[0].split(".") if p.isdigit())

    return parts(found) >= parts(required[2:].strip())


PROMPTFOO_ENV = {  # no telemetry, update check, sharing, remote generation or cache
    "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
    "PROMPTFOO_DISABLE_SHARING": "1", "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
    "PROMPTFOO_CACHE_ENABLED": "false",
}


def promptfoo_config(tests: int) -> dict[str, Any]:
    """An eval of `tests` tests: prompt "Do step {{i}}", the echo provider (it answers the
    prompt itself), one `equals` assertion per test."""
    return {"description": "ostinato trials bench", "prompts": ["Do step {{i}}"],
            "providers": ["echo"],
            "tests": [{"vars": {"i": i}, "assert": [{"type": "equals", "value": f"Do step {i}"}]}
                      for i in range(tests)]}


def promptfoo_eval(promptfoo: Promptfoo, tests: int, work: Path, home: Path) -> tuple[float,
                                                                                       float]:
    """(seconds, CPU seconds) of one `promptfoo eval` of `tests` tests in a fresh directory
    `work`, from spawn to exit; promptfoo's own store is `home` (PROMPTFOO_CONFIG_DIR)."""
    work.mkdir(parents=True)
    (work / "promptfooconfig.json").write_bytes(orjson.dumps(promptfoo_config(tests)))
    command = [promptfoo.node, str(promptfoo.entry), "eval", "-c", "promptfooconfig.json",
               "-o", "output.json", "--no-cache", "--no-share", "--no-table",
               "--no-progress-bar"]
    env = {**os.environ, **PROMPTFOO_ENV, "PROMPTFOO_CONFIG_DIR": str(home)}
    os.sync()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    check_promptfoo(done, work / "output.json", tests)
    return seconds, (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)


def check_promptfoo(done: subprocess.CompletedProcess[str], output: Path, tests: int) -> None:
    """Every test must have passed, by promptfoo's own output file."""
    if done.returncode != 0 or not output.exists():
        raise RuntimeError(f"promptfoo eval failed ({done.returncode}):\n{done.stdout[-2000:]}"
                           f"\n{done.stderr[-2000:]}")
    stats = orjson.loads(output.read_bytes())["results"]["stats"]
    if (stats["successes"], stats["failures"], stats["errors"]) != (tests, 0, 0):
        raise RuntimeError(f"promptfoo eval of {tests} tests: {stats['successes']} passed, "
                           f"{stats['failures']} failed, {stats['errors']} errors")


def promptfoo_name(tests: int) -> str:
    """The workload name of a promptfoo eval of `tests` tests."""
    return f"promptfoo echo-{tests}"


def promptfoo_marginal(big: Timing, small: Timing) -> float | None:
    """ms per test between two evals of different sizes (node's start-up and promptfoo's
    fixed costs cancel out), or None when noise ate the difference."""
    seconds = big.seconds - small.seconds
    return seconds / (big.units - small.units) * 1000 if seconds > 0 else None


# -- the benchmark ------------------------------------------------------------------------


class Bench:
    """The workloads, interleaved over the rounds; keeps every timing."""

    def __init__(self, ostinato: Ostinato, args: argparse.Namespace) -> None:
        self.ostinato = ostinato
        self.args = args
        self.timings: list[Timing] = []
        self.recorded: str | None = None  # the run the replays replay

    def add(self, timing: Timing) -> None:
        """Keep and print a timing."""
        self.timings.append(timing)
        print(format_row(timing), flush=True)

    async def zero_latency(self, concurrency: int, round_no: int) -> None:
        """One trial set at zero latency."""
        os.sync()
        cpu = time.process_time()
        seconds = await self.ostinato.trial_set(single_node_dot(), RunSettings(),
                                                self.args.trials, concurrency)
        self.add(Timing(f"trials-c{concurrency}", round_no, self.args.trials, "trial", seconds,
                        time.process_time() - cpu))

    def promptfoo(self, promptfoo: Promptfoo, work: Path, round_no: int) -> None:
        """promptfoo's two evals (small and big), the small one first in odd rounds; each in
        its own directory under `work`, kept until the benchmark ends."""
        sizes = [self.args.promptfoo_small, self.args.promptfoo_tests]
        for tests in sizes if round_no % 2 else sizes[::-1]:
            seconds, cpu = promptfoo_eval(promptfoo, tests, work / f"round{round_no}-{tests}",
                                          work / "home")
            self.add(Timing(promptfoo_name(tests), round_no, tests, "test", seconds, cpu))

    async def latency(self, round_no: int) -> None:
        """One trial set with model latency, against the ideal time."""
        args = self.args
        os.sync()
        cpu = time.process_time()
        seconds = await self.ostinato.trial_set(
            single_node_dot(), latency_settings(args.latency_ms, args.latency_concurrency),
            args.trials, args.latency_concurrency)
        ideal = math.ceil(args.trials / args.latency_concurrency) * args.latency_ms / 1000
        lasted = self.ostinato.last_summary["latency_ms"]
        self.add(Timing(f"latency-c{args.latency_concurrency}", round_no, args.trials,
                        "trial", seconds, time.process_time() - cpu, ideal,
                        {"p50": lasted["p50"], "p95": lasted["p95"]}))

    async def record(self) -> None:
        """The recording the replays use (untimed)."""
        nodes = self.args.replay_nodes
        _, self.recorded = await self.ostinato.run(linear_dot(nodes), RunOptions(), nodes)

    async def replay_pairs(self, round_no: int) -> None:
        """`--replay-pairs` pairs of a scripted run and a recorded replay of the same
        pipeline, which goes first alternating."""
        nodes = self.args.replay_nodes
        source = linear_dot(nodes)
        sides = [side for pair in range(self.args.replay_pairs)
                 for side in (("scripted", "replay") if (round_no + pair) % 2
                              else ("replay", "scripted"))]
        for side in sides:
            options = RunOptions() if side == "scripted" else RunOptions(
                replay_of=self.recorded, replay_mode="recorded")
            os.sync()
            cpu = time.process_time()
            seconds, _ = await self.ostinato.run(source, options, nodes)
            self.add(Timing(f"linear-{nodes} {side}", round_no, nodes, "call", seconds,
                            time.process_time() - cpu))

    def best(self, workload: str) -> Timing | None:
        """The fastest round of a workload."""
        found = [t for t in self.timings if t.workload == workload]
        return min(found, key=lambda t: t.seconds) if found else None


async def warm_up(bench: Bench) -> None:
    """One small run of each kind, untimed, and the recording the replays use."""
    ostinato, args = bench.ostinato, bench.args
    for concurrency in args.concurrency:
        await ostinato.trial_set(single_node_dot(), RunSettings(), 20, concurrency)
    await ostinato.trial_set(single_node_dot(), latency_settings(args.latency_ms, 10), 20, 10)
    _, recorded = await ostinato.run(linear_dot(20), RunOptions(), 20)
    await ostinato.run(linear_dot(20), RunOptions(replay_of=recorded, replay_mode="recorded"),
                       20)
    await bench.record()


def measure(tmp: Path, args: argparse.Namespace, loop: asyncio.Runner, inspect: str | None,
            promptfoo: Promptfoo | None) -> tuple[Bench, pstats.Stats | None]:
    """Warm up, then the rounds: zero-latency sets, inspect_ai, promptfoo, the latency set
    and a replay pair in each, the sets' order alternating."""
    home = tmp / "home"
    home.mkdir()
    services = loop.run(bench_services(home))
    profile = None
    try:
        bench = Bench(Ostinato(services), args)
        loop.run(warm_up(bench))
        if promptfoo is not None:  # untimed: creates promptfoo's store, warms its files
            promptfoo_eval(promptfoo, PROMPTFOO_WARMUP, tmp / "promptfoo" / "warm-up",
                           tmp / "promptfoo" / "home")
        for round_no in range(1, args.rounds + 1):
            order = args.concurrency if round_no % 2 else args.concurrency[::-1]
            for concurrency in order:
                loop.run(bench.zero_latency(concurrency, round_no))
            if inspect is not None:
                bench.add(inspect_round(args.inspect_samples, round_no))
            if promptfoo is not None:
                bench.promptfoo(promptfoo, tmp / "promptfoo", round_no)
            loop.run(bench.latency(round_no))
            loop.run(bench.replay_pairs(round_no))
        if args.profile:
            profile = loop.run(profiled_set(bench, args))
        return bench, profile
    finally:
        loop.run(services.stop())


async def profiled_set(bench: Bench, args: argparse.Namespace) -> pstats.Stats:
    """One more zero-latency trial set, under cProfile (this thread only)."""
    profiler = cProfile.Profile()
    os.sync()
    profiler.enable()
    try:
        await bench.ostinato.trial_set(single_node_dot(), RunSettings(), args.trials,
                                       args.concurrency[0])
    finally:
        profiler.disable()
    return pstats.Stats(profiler, stream=io.StringIO())


def print_profile(stats: pstats.Stats, trials: int, concurrency: int, top: int) -> None:
    """The functions with the most own and cumulative time, in µs per trial."""
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in \
            stats.stats.items():  # type: ignore[attr-defined]
        where = filename
        for marker in ("/daemon/", "/site-packages/", "/lib/python3"):
            if marker in filename:
                where = filename[filename.index(marker) + 1:]
                break
        rows.append((own, cumulative, calls, f"{where}:{line}({name})"))
    total = sum(row[0] for row in rows)
    print(f"cProfile of one trials-c{concurrency} set of {trials:,} trials: "
          f"{total / trials * 1e6:,.0f} µs/trial profiled (the profiler inflates Python code "
          "2x or more)")
    for title, key in (("own time", 0), ("cumulative time", 1)):
        print(f"  top {top} by {title}: µs/trial own, cumulative, calls/trial, function")
        for own, cumulative, calls, where in sorted(rows, key=lambda r: r[key],
                                                    reverse=True)[:top]:
            print(f"  {own / trials * 1e6:9.1f} {cumulative / trials * 1e6:9.1f} "
                  f"{calls / trials:8.1f}  {where}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--trials", type=int, default=1000,
                        help="trials per trial set (default 1000)")
    parser.add_argument("--concurrency", default="1,8",
                        help="concurrencies of the zero-latency sets, comma-separated "
                             "(default 1,8)")
    parser.add_argument("--latency-ms", type=float, default=100.0,
                        help="the scripted provider's latency in the latency set (default 100)")
    parser.add_argument("--latency-concurrency", type=int, default=100,
                        help="concurrency of the latency set (default 100)")
    parser.add_argument("--replay-nodes", type=int, default=1000,
                        help="model calls of the replayed pipeline (default 1000)")
    parser.add_argument("--replay-pairs", type=int, default=3,
                        help="scripted/replay pairs per round (default 3)")
    parser.add_argument("--inspect-samples", type=int, default=None,
                        help="samples of the inspect_ai eval (default: --trials)")
    parser.add_argument("--no-inspect", action="store_true",
                        help="do not run inspect_ai even if it is installed")
    parser.add_argument("--promptfoo-tests", type=int, default=None,
                        help="tests of promptfoo's big eval (default: --trials, at least 5x "
                             "--promptfoo-small)")
    parser.add_argument("--promptfoo-small", type=int, default=20,
                        help="tests of promptfoo's small eval (default 20)")
    parser.add_argument("--no-promptfoo", action="store_true",
                        help="do not run promptfoo even if it is installed")
    parser.add_argument("--promptfoo-dir", type=Path, default=PROMPTFOO_DIR,
                        help="where promptfoo is installed (default bench/promptfoo)")
    parser.add_argument("--profile", type=int, default=0, metavar="K",
                        help="profile one more zero-latency set and print the top K functions")
    parser.add_argument("--profile-out", type=Path, default=None, metavar="FILE",
                        help="with --profile: also save the raw cProfile stats (pstats) there")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round, 100 trials, 100 replayed calls")
    parser.add_argument("--json", action="store_true",
                        help="also print a JSON summary line (before the ratios line)")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    parser.add_argument("--inspect-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.trials, args.replay_nodes, args.replay_pairs = 1, 100, 100, 1
    try:
        args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency: comma-separated integers")
    if args.inspect_samples is None:
        args.inspect_samples = args.trials
    if args.promptfoo_tests is None:
        args.promptfoo_tests = max(args.trials, 5 * args.promptfoo_small)
    if not 1 <= args.promptfoo_small < args.promptfoo_tests:
        parser.error("--promptfoo-small: at least 1 and below --promptfoo-tests")
    if not args.concurrency or min(args.rounds, args.trials, args.latency_concurrency,
                                   args.replay_nodes, args.replay_pairs, args.inspect_samples,
                                   *args.concurrency) < 1 or args.latency_ms <= 0:
        parser.error("counts must be at least 1, --latency-ms above 0")
    return args


def promptfoo_choice(args: argparse.Namespace) -> Promptfoo | None:
    """The promptfoo to measure, if any; prints which, or why none and the reference."""
    found = "not run (--no-promptfoo)" if args.no_promptfoo else find_promptfoo(
        args.promptfoo_dir)
    if isinstance(found, Promptfoo):
        print(f"promptfoo {found.version} on node {found.node_version}: echo provider, one "
              f"equals assertion per test, evals of {args.promptfoo_small:,} and "
              f"{args.promptfoo_tests:,} tests per round (marginal per test = the difference "
              "/ the tests' difference), each a node process")
        return found
    print(f"promptfoo: {found}; using its reference of {PROMPTFOO_REFERENCE_MS:g} ms per test")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything, print the table, the summary and the ratios line."""
    args = parse_args(argv)
    if args.inspect_child is not None:
        return inspect_child(args.inspect_child)
    loop_name, factory = loop_choice(not args.no_uvloop)
    inspect = None if args.no_inspect else inspect_version()
    print(f"ostinato trials bench: TrialSets.start / Runner.start + sqlite store, scripted "
          f"provider, record full; loop {loop_name}; Python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start")
    print(f"{args.rounds} rounds: {args.trials:,} single-node trials at zero latency, "
          f"concurrency {', '.join(map(str, args.concurrency))}; the same at "
          f"{args.latency_ms:g} ms latency, concurrency {args.latency_concurrency}; "
          f"linear-{args.replay_nodes} scripted vs recorded replay")
    if inspect is not None:
        print(f"inspect_ai {inspect}: mockllm/model with usage, {args.inspect_samples:,} "
              "samples per round, in a child process")
    else:
        print("inspect_ai: " + ("not run (--no-inspect)" if args.no_inspect else
                                "not installed (pip install -e '.[bench]')")
              + f"; using its reference of {INSPECT_REFERENCE_MS:g} ms per sample")
    promptfoo = promptfoo_choice(args)
    secrets = set(environment_secrets(dict(os.environ)))
    secret_names = sorted(name for name, value in os.environ.items() if value in secrets)
    print("environment variables redacted from run data: "
          + (", ".join(secret_names) if secret_names else "none"))
    print()
    print(HEADER)
    print("-" * len(HEADER))
    tmp = Path(tempfile.mkdtemp(prefix="ostinato-bench-trials-"))
    try:
        with asyncio.Runner(loop_factory=factory) as loop:
            bench, profile = measure(tmp, args, loop, inspect, promptfoo)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("-" * len(HEADER))
    summarize(bench, args, loop_name, inspect, promptfoo)
    if profile is not None:
        print()
        print_profile(profile, args.trials, args.concurrency[0], args.profile)
        if args.profile_out is not None:
            profile.dump_stats(args.profile_out)
            print(f"raw stats: {args.profile_out} (python -m pstats)")
    return 0


def promptfoo_summary(bench: Bench, args: argparse.Namespace) -> float | None:
    """promptfoo's marginal ms per test between the best rounds of its two evals (printed
    with the per-round spread), or None when noise ate the difference."""
    small_name, big_name = (promptfoo_name(args.promptfoo_small),
                            promptfoo_name(args.promptfoo_tests))
    small, big = bench.best(small_name), bench.best(big_name)
    assert small is not None and big is not None
    marginal = promptfoo_marginal(big, small)
    rounds = [promptfoo_marginal(b, s) for b, s in zip(
        (t for t in bench.timings if t.workload == big_name),
        (t for t in bench.timings if t.workload == small_name), strict=True)]
    spread = ", ".join("-" if m is None else f"{m:.3f}" for m in rounds)
    # node does part of the work on other threads (V8's garbage collector and compiler,
    # libuv's pool): on two cores promptfoo's CPU per test exceeds its time per test.
    cpu = (big.cpu_seconds - small.cpu_seconds) / (big.units - small.units) * 1000
    print(f"promptfoo marginal per test: (best {big_name} {big.seconds:.2f} s - best "
          f"{small_name} {small.seconds:.2f} s) / {big.units - small.units:,} tests = "
          + ("not measurable (the big eval was not slower)" if marginal is None
             else f"{marginal:.3f} ms")
          + f"; per round {spread} ms (node's start-up is in both evals and cancels out); "
          f"CPU {cpu:.3f} ms per test, in the same two evals")
    return marginal


def summarize(bench: Bench, args: argparse.Namespace, loop_name: str,
              inspect: str | None, promptfoo: Promptfoo | None) -> None:
    """The best rows, the spread, and the ratios line."""
    names = [f"trials-c{c}" for c in args.concurrency]
    if inspect is not None:
        names.append("inspect_ai mockllm")
    if promptfoo is not None:
        names += [promptfoo_name(args.promptfoo_small), promptfoo_name(args.promptfoo_tests)]
    latency_name = f"latency-c{args.latency_concurrency}"
    scripted_name, replay_name = (f"linear-{args.replay_nodes} scripted",
                                  f"linear-{args.replay_nodes} replay")
    names += [latency_name, scripted_name, replay_name]
    best: dict[str, Timing] = {}
    for name in names:
        timing = bench.best(name)
        assert timing is not None
        best[name] = timing
        print(format_row(replace(timing, round="best")))
    print()
    for name in names:
        values = sorted(t.ms_per_unit for t in bench.timings if t.workload == name)
        print(f"{name}: ms/{best[name].unit} over the rounds {values[0]:.3f}..{values[-1]:.3f} "
              f"(median {values[len(values) // 2]:.3f})")
    print("best: the fastest round per workload (other load only slows a run down); cpu: CPU "
          "time of the process\n  that did the work (all its threads), per unit.")
    per_trial_name = min(names[:len(args.concurrency)], key=lambda n: best[n].seconds)
    per_trial = best[per_trial_name].ms_per_unit
    inspect_ms = (best["inspect_ai mockllm"].ms_per_unit if inspect is not None
                  else INSPECT_REFERENCE_MS)
    latency = best[latency_name]
    assert latency.ideal_seconds is not None
    concurrency_ratio = latency.seconds / latency.ideal_seconds
    replay_ratio = best[replay_name].seconds / best[scripted_name].seconds
    promptfoo_ms = (promptfoo_summary(bench, args) if promptfoo is not None
                    else PROMPTFOO_REFERENCE_MS)
    promptfoo_ratio = None if promptfoo_ms is None else per_trial / promptfoo_ms
    print(f"per trial: the best of {', '.join(names[:len(args.concurrency)])} "
          f"({per_trial_name}); inspect_ai: "
          + ("measured above" if inspect is not None else "reference, not measured")
          + "; promptfoo: " + ("measured above" if promptfoo is not None
                               else "reference, not measured")
          + f"; ideal of {latency_name}: ceil({args.trials}/{args.latency_concurrency}) x "
          f"{args.latency_ms:g} ms = {latency.ideal_seconds:g} s")
    # The set runs on one event loop: it cannot end before that loop has spent its CPU, and
    # a trial that lasts longer than its model's latency waited for the loop.
    assert latency.trial_ms is not None
    print(f"{latency_name}, best round: the set's CPU alone {latency.cpu_seconds:.2f} s = "
          f"{latency.cpu_seconds / latency.ideal_seconds:.2f}x ideal; a trial lasted p50 "
          f"{latency.trial_ms['p50']:.0f} ms, p95 {latency.trial_ms['p95']:.0f} ms for "
          f"{args.latency_ms:g} ms of model latency")
    # What one event loop can do at best: wait for the models, or do the trials' work at
    # the per-trial cost measured above, whichever takes longer.
    reachable = max(latency.ideal_seconds, args.trials * per_trial / 1000)
    print(f"{latency_name} against what one event loop can do, max(ideal, {args.trials:,} x "
          f"{per_trial:.2f} ms per trial) = {reachable:.2f} s: "
          f"{latency.seconds / reachable:.2f}x (for information; the target is against the "
          "ideal)")
    if args.json:
        print(orjson.dumps({
            "loop": loop_name, "args": vars(args), "summary": "best", "inspect_ai": inspect,
            "timings": [{**asdict(t), "ms_per_unit": round(t.ms_per_unit, 4)}
                        for t in bench.timings],
            "per_trial_ms": round(per_trial, 4), "inspect_ms_per_sample": round(inspect_ms, 4),
            "inspect_measured": inspect is not None,
            "promptfoo": None if promptfoo is None else promptfoo.version,
            "promptfoo_node": None if promptfoo is None else promptfoo.node_version,
            "promptfoo_ms_per_test": None if promptfoo_ms is None else round(promptfoo_ms, 4),
            "promptfoo_measured": promptfoo is not None,
            "ratios": {"per_trial_vs_inspect": round(per_trial / inspect_ms, 4),
                       "per_trial_vs_promptfoo": (None if promptfoo_ratio is None
                                                  else round(promptfoo_ratio, 4)),
                       "concurrency_vs_ideal": round(concurrency_ratio, 4),
                       "replay_vs_scripted": round(replay_ratio, 4)},
        }, default=str).decode())
    print(f"ratios: per-trial {per_trial:.2f} ms = {per_trial / inspect_ms:.2f}x inspect_ai "
          f"{inspect_ms:.2f} ms{'' if inspect is not None else ' (reference)'} "
          f"(target <= {INSPECT_TARGET:g}x) and "
          + ("promptfoo's marginal per test not measurable" if promptfoo_ms is None or
             promptfoo_ratio is None else
             f"{promptfoo_ratio:.2f}x promptfoo {promptfoo_ms:.2f} ms marginal per test"
             + ("" if promptfoo is not None else " (reference)"))
          + f" (target <= {PROMPTFOO_TARGET:g}x); "
          f"concurrency {concurrency_ratio:.2f}x ideal (target <= {CONCURRENCY_TARGET:g}); "
          f"replay {replay_ratio:.2f}x scripted (target <= {REPLAY_TARGET:g})")


if __name__ == "__main__":
    sys.exit(main())
