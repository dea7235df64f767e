"""Engine overhead benchmark: per-node cost of pipeline runs against a file-writing floor.

Run it with `.venv/bin/python bench/engine.py`; options:

    .venv/bin/python bench/engine.py [--rounds 3] [--nodes 1000] [--branches 100]
        [--max-parallel 4] [--thread-nodes 1000] [--large 10000] [--large-budget 150]
        [--atomic-floor] [--json] [--no-uvloop] [--attractor-python PATH]

Four workloads, all on the scripted provider at zero latency (the default provider), with
no step limit (settings.max_steps 0: the default, 200 node executions, is shorter than
they are):

* linear-N:  start -> n1 -> ... -> nN -> exit, N codergen (box) nodes, each request with
  codergen's default `compact` preamble (the last 20 completed nodes);
* fanout-B:  start -> par (component, max_parallel) -> b1..bB (box) -> fanin (tripleoctagon)
  -> exit. max_parallel defaults to 4, the run settings' default: what a user gets who sets
  nothing. At zero latency no branch ever waits for its model, so more concurrency would
  only interleave the same work (the store's writes are serialized on one connection);
* thread-T (`--thread-nodes`, default 1,000; 0 skips it): linear-T with
  `default_fidelity="full"` and one `thread_id` on the graph, so every node continues one
  conversation: its request carries the thread's kept turns (at most 20) and a digest of
  the dropped ones (attractor §5.4, daemon/engine/fidelity.py), and the checkpoint the
  thread. The issue's target: the cost per node at node 1,000 within 1.5x of the cost at
  node 10, i.e. compaction keeps requests, and so each node's work, bounded. A node's cost
  runs from the clock at its start (the engine: the time each StageStarted event is
  stamped with as the engine emits it, which the bench's host receives, later when the
  event waits for a commit; the floor: its loop) to the next node's, so it holds the
  node's files, store transaction and checkpoint. Compared: the mean over nodes 5-15 and
  over the last 11 nodes (990-1000), each window's least mean over the rounds;
* linear-L (`--large`, default 10,000), once, to see whether the cost per node stays flat.

engine: what `run.start` does, minus JSON-RPC. `Runner.start` (daemon/runs/runner.py)
of the daemon's real services (`services.start`) over a host (daemon/host.py:
the home, the default settings, and a publish that has no subscribers but takes the clock
at each StageStarted) and the real store (one sqlite file in WAL mode for the whole
benchmark, StoreSink + RunStore): load (parse, transform, validate), config snapshot,
manifest, run row, then the Executor with the real handlers, ProviderPool and
RunDirectory. Timed from `start()` until the run's `done` future resolves; the `load`
column is the parse/transform/validate part of it. The daemon keeps the syntax trees of the
pipelines it parsed (daemon/engine/dot.py, up to 64 MiB of syntax trees): the first round of a
workload parses its source, later rounds build the graph from the kept tree, as any rerun
in a daemon does (every round is printed, the first too); the large run, done once, is
preceded by an untimed parse of its source, so that the growth from N to 10N nodes
compares like with like.

floor: the least work that leaves the same files, in a plain loop in the same process: per
node {node}/prompt.md, {node}/response.md and {node}/status.json (same content), one
trace.jsonl line of the same shape (the request's messages included), and checkpoint.json
rewritten atomically (temp file + os.replace) after every top-level node, with the same
content as the engine's checkpoint (recent completed_nodes and logs, each log entry with
its note, the edge taken (`via`), the context, the threads, the nodes called more than
once; a journal line per node). A thread node's request carries the thread's turns and
digest, and its turn joins the thread, as the engine's. A branch of the fan-out is a node
too: after each, a line of branches.jsonl and the checkpoint rewritten with the parallel
node's progress, as the engine does. Per-node files are plain writes (`--atomic-floor`:
temp + rename, as the engine writes them). No parsing, no database, no events, no event
loop. The bytes each side wrote are printed, so that "the same files" can be checked.

attractor (`--attractor-python PATH`, default $OSTINATO_BENCH_ATTRACTOR_PYTHON; without it
the bench says "attractor: not given" and goes on): the attractor Python port
(github.com/gutelius/attractor, Python >= 3.12, not on PyPI; installed by hand from its
repository's packages into an interpreter of your own, which PATH names) runs linear-N, the
same DOT source, through its public API: bench/attractor_peer.py, in one child process of
that interpreter that stays up for the whole bench, times
`PipelineEngine(EngineConfig(logs_root=<a fresh run directory>, codergen_backend=<answers
as the scripted provider: "[scripted] " + the prompt>, max_steps=N+2)).run_dot(source)`:
parse, transforms, validation and the run, on the child's asyncio loop, after an
`os.sync()`; the child's start-up is not counted. Per codergen node it writes prompt.md,
response.md and status.json, and it rewrites checkpoint.json after every node it executes;
it keeps no trace, no journal, no store. It warms up on linear-20 with the others, and runs
in each round of linear-N, in the rounds' alternating order (floor, engine, attractor, then
reversed). Not on the other workloads (its fan-out and thread semantics differ) nor on the
large run. Attractor parses its source in every run; the engine, from its second round on,
builds the graph from the syntax tree it kept (as a daemon rerunning a pipeline does): the
summary prints the engine's load in its best round beside that of round 1, which parsed.

Method: every run gets a fresh directory and all of them stay until the benchmark ends (on
these VMs creating files is several times slower for minutes after many files were deleted
nearby), in one temporary directory removed at exit. Floor and engine runs alternate
(floor, engine, then engine, floor in the next round); `os.sync()` before every timed run
starts each with no dirty pages of the previous one. A warm-up run of each kind comes first.
Do not start it right after something deleted many files (another run of this benchmark,
the test suite): wait about five minutes, or the first workloads run on a slow file system.
Per node = run time / nodes in the graph (start and exit included). The summary takes the
best round of each side: other load, writeback and the file-system slowdown only ever add
time, so the fastest round is the least disturbed estimate of each side's own cost; every
round is printed too. The large run is done once per side; the engine's is stopped after
`--large-budget` seconds, and then its figures are lower bounds (`>`).

Targets (issue 18): engine <= 1.5x the floor per node on linear-N and <= 2x on the fan-out,
the thread's cost per node at its end <= 1.5x that near its start (nodes 990-1000 over
5-15), linear growth: time(10N) <= 10.5x time(N), and with attractor given, the engine's
per node on linear-N <= 1.0x attractor's (best round each). The last line is always the
ratios with their targets. bench/engine_parts.py says which part of the record costs what.

The run data a run writes is redacted of the values of environment variables whose names
look secret (daemon/engine/redact.py), so the environment matters: the header names them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from common import (  # bench/ is on sys.path
    loop_choice,
    run_in_temporary_directory,
)

from ostinato.daemon.engine.fidelity import DEFAULT_THREAD_TURNS
from ostinato.daemon.engine.graph import Graph
from ostinato.daemon.engine.redact import environment_secrets
from ostinato.daemon.engine.run_state import HISTORY, LOG_HISTORY, NOTE_CHARS
from ostinato.daemon.engine.threads import DIGEST_LINES
from ostinato.daemon.host import Host
from ostinato.daemon.runs.runner import Runner
from ostinato.daemon.services import Services, start
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

LINEAR_TARGET = 1.5  # the engine's per node / the floor's, linear-N
FANOUT_TARGET = 2.0  # the same, fan-out
ATTRACTOR_TARGET = 1.0  # the engine's per node / attractor's, linear-N
ATTRACTOR_ENV = "OSTINATO_BENCH_ATTRACTOR_PYTHON"  # --attractor-python's default
ATTRACTOR_DRIVER = Path(__file__).with_name("attractor_peer.py")
LINEARITY_SLACK = 1.05  # 10x the nodes may take at most 10.5x the time
THREAD_TARGET = 1.5  # cost per node at the thread's end / near its start
EARLY = (5, 15)  # the thread's nodes around node 10 whose mean cost is compared...
LATE_SPAN = 11  # ...with that of its last 11 nodes (990-1000 of 1,000)
THREAD_ID = "main"
_JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS  # as rundir.dump_json
_ECHO = "[scripted] "
_PREAMBLE_ENTRIES = 20  # codergen's compact preamble: the last 20 nodes


# -- pipelines ----------------------------------------------------------------------------


def linear_dot(nodes: int) -> str:
    """start -> n1 -> ... -> nN -> exit, as DOT source."""
    lines = [f"digraph linear_{nodes} {{", "  start [shape=Mdiamond]", "  exit [shape=Msquare]"]
    lines += [f'  n{i} [shape=box, prompt="Do step {i}"]' for i in range(1, nodes + 1)]
    chain = ["start", *(f"n{i}" for i in range(1, nodes + 1)), "exit"]
    lines += [f"  {a} -> {b}" for a, b in itertools.pairwise(chain)]
    return "\n".join([*lines, "}", ""])


def thread_dot(nodes: int) -> str:
    """linear_dot with every node on one `full` fidelity thread, as DOT source."""
    lines = linear_dot(nodes).splitlines()
    lines[0] = f"digraph thread_{nodes} {{"
    lines.insert(1, f'  graph [default_fidelity="full", thread_id="{THREAD_ID}"]')
    return "\n".join([*lines, ""])


def fanout_dot(branches: int, max_parallel: int) -> str:
    """start -> par -> b1..bB -> fanin -> exit, as DOT source."""
    lines = [f"digraph fanout_{branches} {{", "  start [shape=Mdiamond]",
             "  exit [shape=Msquare]",
             f"  par [shape=component, max_parallel={max_parallel}]",
             "  fanin [shape=tripleoctagon]", "  start -> par", "  fanin -> exit"]
    for i in range(1, branches + 1):
        lines += [f'  b{i} [shape=box, prompt="Try variant {i}"]', f"  par -> b{i}",
                  f"  b{i} -> fanin"]
    return "\n".join([*lines, "}", ""])


# -- the engine ---------------------------------------------------------------------------


class StageClock:
    """The bench host's publish: nobody is subscribed (as with a client that did not call
    run.subscribe); each StageStarted's time is kept when asked for."""

    def __init__(self) -> None:
        # When a list: the time every StageStarted was emitted at, for the cost of each node
        # (its stamp, not the clock at its publication, which may wait for a commit).
        self.stage_starts: list[str] | None = None

    def publish(self, topics: str | tuple[str, ...], method: str, params: Any) -> int:
        """Keep a StageStarted's time; nobody hears it."""
        if self.stage_starts is not None and params.get("type") == "StageStarted":
            self.stage_starts.append(params["time"])
        return 0

    def seconds(self) -> list[float]:
        """The kept times, as seconds."""
        return [datetime.fromisoformat(stamp).timestamp() for stamp in self.stage_starts or ()]


async def bench_services(home: Path, clock: StageClock | None = None) -> Services:
    """The daemon's services over `home` (its store in home/ostinato.db), with the default
    settings and no clients; StageStarted events go to `clock` when given."""
    return await start(Host(home) if clock is None else Host(home, clock.publish))


class LoadTimer:
    """Times the runner's `load` (parse, transform, validate): the runner calls its own
    `load`, which this replaces on the instance."""

    def __init__(self, runner: Runner) -> None:
        self._load = runner.load
        runner.load = self.load  # type: ignore[method-assign]
        self.last_load_s = 0.0

    async def load(self, ref: PipelineRef, variables: dict[str, str]) -> Graph:
        """Parse, transform and validate, timed."""
        started = time.perf_counter()
        try:
            return await self._load(ref, variables)
        finally:
            self.last_load_s = time.perf_counter() - started


@dataclass
class Timing:
    """One run of one side."""

    workload: str
    side: str
    round: int | str  # "best" in the summary
    nodes: int  # in the graph, start and exit included
    seconds: float
    cpu_seconds: float  # the process that ran it, all threads (the engine's: the store's too)
    load_seconds: float | None = None
    done_nodes: int | None = None  # engine: completed top-level nodes, when stopped early
    stopped: bool = False  # stopped at the time budget: seconds is a lower bound
    early_ms: float | None = None  # thread: mean ms per node over nodes EARLY
    late_ms: float | None = None  # thread: mean ms per node over its last LATE_SPAN nodes

    @property
    def ms_per_node(self) -> float:
        """Run time divided by the nodes of the graph."""
        return self.seconds / self.nodes * 1000

    @property
    def cpu_ms_per_node(self) -> float:
        """CPU time divided by the nodes of the graph."""
        return self.cpu_seconds / self.nodes * 1000


class Engine:
    """Runs pipelines through `Runner.start` on one store, as the daemon does."""

    def __init__(self, services: Services, clock: StageClock) -> None:
        self.clock = clock
        self.runner = services.runner
        self.loads = LoadTimer(self.runner)
        # Scripted provider, latency 0, max_parallel 4; no step limit: the default (200 node
        # executions) guards against endless loops, and these pipelines are longer.
        self.settings = RunSettings(max_steps=0)
        self.stage_starts: list[float] = []  # of the last run

    async def run(self, source: str, expected_nodes: int,
                  budget_s: float | None = None) -> tuple[float, float, int, bool, Path]:
        """(seconds, load seconds, completed nodes, stopped, run dir) of one run; its
        StageStarted clocks are left in `stage_starts`."""
        self.clock.stage_starts = []
        started = time.perf_counter()
        active = await self.runner.start(PipelineRef(source=source, format="dot"), {}, {},
                                         self.settings)
        stopped = False
        if budget_s is None:
            result = await active.done
        else:
            left = max(0.0, budget_s - (time.perf_counter() - started))
            try:
                result = await asyncio.wait_for(asyncio.shield(active.done), left)
            except TimeoutError:
                stopped = True
                result = None
        seconds = time.perf_counter() - started
        self.stage_starts = self.clock.seconds()
        done = len(active.executor.state.completed_nodes)
        if stopped:
            await self.runner.cancel(active.run_id)
        elif result is None or result.status != "completed" or done != expected_nodes:
            raise RuntimeError(f"engine run ended {getattr(result, 'status', None)} after "
                               f"{done} of {expected_nodes} nodes: "
                               f"{getattr(result, 'failure_reason', '')}")
        return seconds, self.loads.last_load_s, done, stopped, active.executor.run_dir.root


# -- attractor ----------------------------------------------------------------------------


class AttractorPeer:
    """The attractor Python port, run by bench/attractor_peer.py in a child process of the
    given interpreter: one JSON line per run each way, the clock taken in the child."""

    def __init__(self, python: str) -> None:
        self.python = python
        try:
            # stderr is inherited: whatever attractor complains about shows.
            self.process = subprocess.Popen([python, str(ATTRACTOR_DRIVER)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True)
        except OSError as error:
            raise SystemExit(f"attractor: cannot start {python}: {error}") from error
        hello = self._read()
        self.python_version: str = hello["python"]
        self.version: str = hello["attractor"]

    def _read(self) -> dict[str, Any]:
        """The child's next line; its exit is an error (its traceback is on stderr)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"attractor child ({self.python}) exited {code}; see stderr")
        return orjson.loads(line)

    def run(self, source: str, root: Path, nodes: int) -> tuple[float, float]:
        """(seconds, CPU seconds) of one run of `source` into `root`."""
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"source": source, "root": str(root),
                                               "nodes": nodes}).decode() + "\n")
        self.process.stdin.flush()
        data = self._read()
        return data["seconds"], data["cpu_seconds"]

    def close(self) -> None:
        """End the child: it stops when its stdin closes."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


# -- the floor ----------------------------------------------------------------------------


def _now() -> str:
    """UTC ISO 8601 with microseconds and a Z, as the engine's timestamps."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _dump(data: Any) -> bytes:
    """JSON as rundir.dump_json writes it (indented)."""
    return orjson.dumps(data, option=_JSON_OPTIONS) + b"\n"


def _write_plain(path: Path, data: bytes) -> None:
    """Create and write a file."""
    with open(path, "wb") as handle:
        handle.write(data)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file and rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class Floor:
    """Writes what a run leaves per node, with nothing else: the cost no engine avoids."""

    def __init__(self, root: Path, name: str, atomic_files: bool,
                 context: dict[str, Any] | None = None) -> None:
        self.root = root
        self.name = name
        self.write = _write_atomic if atomic_files else _write_plain
        self.run_id = "0" * 36
        self.seq = 0  # calls
        self.stages = 0
        self.completed: list[str] = []
        self.outcomes: dict[str, str] = {}
        self.context: dict[str, Any] = dict(context or {})  # the graph's attributes
        self.logs: list[dict[str, Any]] = []
        self.recent: deque[str] = deque(maxlen=_PREAMBLE_ENTRIES)
        self.via: int | None = None  # the index of the edge taken to the next node
        self.threads: dict[str, dict[str, Any]] = {}
        self.last_thread: str | None = None
        self.calls: dict[str, int] = {}  # top-level nodes' attempts
        self.repeated: dict[str, int] = {}  # those over 1: what the checkpoint keeps
        self.starts: list[float] = []  # the clock as each top-level node starts
        root.mkdir(parents=True)
        self.trace = open(root / "trace.jsonl", "ab", buffering=0)  # noqa: SIM115
        self.journal = open(root / "journal.jsonl", "ab", buffering=0)  # noqa: SIM115

    def begin(self, node_id: str) -> None:
        """A top-level node starts: the clock, and its call counted."""
        self.starts.append(time.perf_counter())
        count = self.calls[node_id] = self.calls.get(node_id, 0) + 1
        if count > 1:
            self.repeated[node_id] = count

    def codergen(self, node_id: str, prompt: str, system: str,
                 history: Sequence[dict[str, str]] = ()) -> tuple[dict[str, Any], str]:
        """prompt.md, a trace line, response.md, status.json; returns the context updates
        and the answer."""
        node_dir = self.root / node_id
        node_dir.mkdir()
        self.write(node_dir / "prompt.md", prompt.encode())
        text = _ECHO + prompt
        self.seq += 1
        messages = [*([{"role": "system", "content": system}] if system else []), *history,
                    {"role": "user", "content": prompt}]
        # The scripted provider's estimate: a token per 4 characters of the joined messages.
        input_tokens = -(-(sum(len(m["content"]) for m in messages) + len(messages) - 1) // 4)
        output_tokens = -(-len(text) // 4)
        call = {"id": self.run_id, "run_id": self.run_id, "trace_id": self.run_id,
                "seq": self.seq, "node_id": node_id, "attempt": 1, "kind": "model",
                "request": {"provider": "scripted", "model": "", "messages": messages, "params": {},
                            "node_id": node_id, "attempt": 1, "metadata": {"call": 1},
                            "provider_attempt": 1},
                "response": {"text": text,
                             "usage": {"input_tokens": input_tokens,
                                       "output_tokens": output_tokens,
                                       "total": input_tokens + output_tokens},
                             "cost_usd": 0.0, "cost_known": True, "latency_ms": 0.0,
                             "finish_reason": "stop", "model": "scripted",
                             "provider": "scripted", "raw_id": "scripted-0123456789abcdef",
                             "attempts": 1, "status": None, "preferred_label": None,
                             "context_updates": {}},
                "error": None, "input_tokens": input_tokens, "output_tokens": output_tokens,
                "cost_usd": 0.0, "latency_ms": 0.0, "finish_reason": "stop",
                "created_at": _now()}
        self.trace.write(orjson.dumps(call) + b"\n")
        self.write(node_dir / "response.md", text.encode())
        updates = {"last_stage": node_id, "last_response": text[:200]}
        self.status(node_dir, updates, "Stage completed")
        return updates, text

    def status(self, node_dir: Path, updates: dict[str, Any], notes: str) -> None:
        """{node}/status.json."""
        self.stages += 1
        self.write(node_dir / "status.json", _dump({
            "outcome": "success", "preferred_label": "", "suggested_next_ids": [],
            "context_updates": updates, "notes": notes}))

    def plain_node(self, node_id: str, updates: dict[str, Any], notes: str) -> None:
        """A node that writes only its status.json (start, exit, parallel, fan-in)."""
        node_dir = self.root / node_id
        node_dir.mkdir()
        self.status(node_dir, updates, notes)

    def turn(self, key: str, node_id: str, prompt: str, answer: str) -> None:
        """A `full` node's turn joins its thread; the oldest beyond the kept turns leaves a
        digest line (these turns are far under the thread's token budget)."""
        thread = self.threads.get(key)
        if thread is None:
            thread = self.threads[key] = {"turns": [], "chars": 0, "dropped": 0, "digest": []}
        turns = thread["turns"]
        turns.append({"node": node_id, "status": "success", "user": prompt,
                      "assistant": answer})
        thread["chars"] += len(prompt) + len(answer)
        if len(turns) > DEFAULT_THREAD_TURNS:
            oldest = turns.pop(0)
            thread["chars"] -= len(oldest["user"]) + len(oldest["assistant"])
            thread["dropped"] += 1
            line = f"- {oldest['node']}: success: {' '.join(oldest['assistant'].split())[:120]}"
            thread["digest"] = [*thread["digest"], line][-DIGEST_LINES:]
        self.last_thread = key

    def done(self, node_id: str, updates: dict[str, Any], next_node: str | None,
             via: int | None, note: str, result: dict[str, Any] | None = None) -> None:
        """Record a top-level node and rewrite checkpoint.json atomically."""
        self.completed.append(node_id)
        self.outcomes[node_id] = "success"
        self.context.update(updates)
        self.context["outcome"] = "success"
        self.context["current_node"] = node_id
        self.context["preferred_label"] = ""
        entry = {"node": node_id, "outcome": "success", "timestamp": _now()}
        if note:
            entry["note"] = note[:NOTE_CHARS]
        self.logs.append(entry)
        self.journal.write(orjson.dumps({"n": len(self.completed), **entry}) + b"\n")
        self.recent.append(node_id)
        self.via = via
        self.checkpoint(node_id, next_node, result)

    def checkpoint(self, node_id: str, next_node: str | None,
                   result: dict[str, Any] | None = None,
                   parallel: dict[str, Any] | None = None) -> None:
        """checkpoint.json, as the engine's (attractor §5.3 plus next_node and counters)."""
        data = {"pipeline_name": self.name, "run_id": self.run_id, "timestamp": _now(),
                "current_node": node_id, "next_node": next_node,
                "finished": next_node is None, "completed_count": len(self.completed),
                "completed_nodes": self.completed[-HISTORY:], "journal": "journal.jsonl",
                "node_outcomes": {}, "node_retries": {}, "stage_seq": self.stages,
                "call_seq": self.seq, "open_calls": [], "via": self.via,
                "context": self.context, "logs": self.logs[-LOG_HISTORY:],
                "threads": self.threads, "last_thread": self.last_thread,
                "calls": self.repeated}
        if result is not None:
            data["result"] = result
        if parallel is not None:
            data["parallel"] = parallel
        _write_atomic(self.root / "checkpoint.json", _dump(data))

    def start(self, next_node: str) -> None:
        """The start node (its edge is the graph's first)."""
        self.begin("start")
        self.plain_node("start", {}, "")
        self.done("start", {}, next_node, 0, "")

    def finish(self) -> None:
        """The exit node, whose checkpoint is the final one."""
        self.begin("exit")
        self.plain_node("exit", {}, "Pipeline completed")
        self.done("exit", {}, None, None, "Pipeline completed",
                  {"outcome": "success", "failure_reason": ""})
        self.trace.close()
        self.journal.close()


def floor_linear(root: Path, nodes: int, atomic_files: bool) -> Floor:
    """The floor of linear-N: each node's request carries the compact preamble."""
    floor = Floor(root, f"linear_{nodes}", atomic_files)
    floor.start("n1")
    for i in range(1, nodes + 1):
        node_id = f"n{i}"
        floor.begin(node_id)
        system = "\n".join(f"- {node}: success" for node in floor.recent)
        updates, text = floor.codergen(node_id, f"Do step {i}", system)
        floor.done(node_id, updates, f"n{i + 1}" if i < nodes else "exit", i, text)
    floor.finish()
    return floor


def floor_thread(root: Path, nodes: int, atomic_files: bool) -> Floor:
    """The floor of thread-N: each node's request carries the thread's kept turns and the
    digest of the dropped ones, and its turn joins the thread."""
    floor = Floor(root, f"thread_{nodes}", atomic_files,
                  {"graph.default_fidelity": "full", "graph.thread_id": THREAD_ID})
    floor.start("n1")
    for i in range(1, nodes + 1):
        node_id, prompt = f"n{i}", f"Do step {i}"
        floor.begin(node_id)
        thread = floor.threads.get(THREAD_ID)
        system, history = "", []
        if thread is not None:
            if thread["dropped"]:
                system = "\n".join([f"Earlier in this conversation, {thread['dropped']} turns "
                                    "were compacted (the most recent last):",
                                    *thread["digest"]])
            for turn in thread["turns"]:
                history += [{"role": "user", "content": turn["user"]},
                            {"role": "assistant", "content": turn["assistant"]}]
        updates, text = floor.codergen(node_id, prompt, system, history)
        floor.turn(THREAD_ID, node_id, prompt, text)
        floor.done(node_id, updates, f"n{i + 1}" if i < nodes else "exit", i, text)
    floor.finish()
    return floor


def floor_fanout(root: Path, branches: int, atomic_files: bool) -> Floor:
    """The floor of fanout-B: per branch its files, a branches.jsonl line and the checkpoint
    rewritten with the parallel node's progress."""
    floor = Floor(root, f"fanout_{branches}", atomic_files)
    floor.start("par")
    floor.begin("par")
    results = []
    with open(root / "branches.jsonl", "ab", buffering=0) as journal:
        for i in range(1, branches + 1):
            node_id = f"b{i}"
            updates, text = floor.codergen(node_id, f"Try variant {i}", "- start: success")
            result = {"id": node_id, "status": "success", "stopped_at": "fanin",
                      "notes": "Stage completed", "failure_reason": "",
                      "score": None, "context_updates": updates, "answer": text}
            results.append(result)
            journal.write(orjson.dumps({"visit": 1, "node": "par", "within": None,
                                        "branch": node_id, "result": result}) + b"\n")
            floor.checkpoint("start", "par", parallel={
                "node": "par", "branches_done": i, "branches": branches,
                "journal": "branches.jsonl"})
    updates = {"parallel.results": results}
    notes = f"{branches} of {branches} branches succeeded"
    floor.plain_node("par", updates, notes)
    floor.done("par", updates, "fanin", None, notes)  # a jump to the fan-in: no edge
    floor.begin("fanin")
    updates = {"parallel.fan_in.best_id": "b1", "parallel.fan_in.best_outcome": "success"}
    notes = "Selected best candidate: b1"
    floor.plain_node("fanin", updates, notes)
    floor.done("fanin", updates, "exit", 1, notes)  # fanin -> exit, the graph's second edge
    floor.finish()
    return floor


# -- the benchmark ------------------------------------------------------------------------

SIDES = ("floor", "engine", "attractor")
ATTRACTOR_FILES = (
    "attractor writes per codergen node prompt.md, response.md, status.json, and rewrites "
    "checkpoint.json\n  (plain writes, json indent 2, every completed node listed) after "
    "every executed node;\n  it writes no trace.jsonl, no journal.jsonl, no status.json for "
    "start and exit, and no store rows.")


@dataclass
class Workload:
    """One pipeline, and how to run its floor."""

    name: str
    source: str
    nodes: int  # in the graph
    top_level: int  # nodes the traversal itself completes (branches run inside `par`)
    floor: Callable[[Path], Floor]
    windows: bool = False  # a chain: the mean cost of its early and its last nodes
    attractor: bool = False  # attractor runs it too, when given


def windows(starts: Sequence[float], nodes: int) -> tuple[float, float]:
    """Mean ms per node over the chain's nodes EARLY and over its last LATE_SPAN nodes,
    from the clock at each node's start (start, n1..nN, exit): a node's cost runs from its
    start to the next one's, so it holds its records, checkpoint and store writes."""
    if len(starts) != nodes:
        raise RuntimeError(f"{len(starts)} node starts timed, {nodes} expected")
    chain = nodes - 2  # n1..nN; starts[k] is nk's

    def mean_ms(first: int, last: int) -> float:
        return (starts[last + 1] - starts[first]) / (last - first + 1) * 1000

    return mean_ms(*EARLY), mean_ms(chain - LATE_SPAN + 1, chain)


def late_window(nodes: int) -> str:
    """The thread's last LATE_SPAN codergen nodes, as `990-1000`."""
    return f"{nodes - LATE_SPAN + 1}-{nodes}"


def files_and_bytes(root: Path) -> tuple[int, int]:
    """Files and bytes a run left, leaving out what only the engine writes once per run
    (config/, manifest.json)."""
    files = size = 0
    for path in root.rglob("*"):
        if path.is_file() and path.name != "manifest.json" and "config" not in \
                path.relative_to(root).parts:
            files += 1
            size += path.stat().st_size
    return files, size


class Bench:
    """Runs the workloads, floor, engine (and attractor) interleaved, and keeps every
    timing."""

    def __init__(self, tmp: Path, engine: Engine, args: argparse.Namespace,
                 attractor: AttractorPeer | None = None) -> None:
        self.tmp = tmp
        self.engine = engine
        self.attractor = attractor
        self.args = args
        self.timings: list[Timing] = []
        self.sizes: dict[tuple[str, str], tuple[int, int]] = {}
        self.count = 0

    def _run_dir(self, side: str) -> Path:
        """A new directory for a floor or attractor run (the engine makes its own)."""
        self.count += 1
        return self.tmp / side / f"run{self.count:04d}"

    def sides(self, workload: Workload) -> tuple[str, ...]:
        """The sides that run `workload`."""
        if workload.attractor and self.attractor is not None:
            return ("floor", "engine", "attractor")
        return ("floor", "engine")

    async def one(self, workload: Workload, side: str, round_no: int,
                  budget_s: float | None = None, quiet: bool = False) -> Timing:
        """One timed run of one side."""
        os.sync()
        cpu = time.process_time()
        if side == "floor":
            root = self._run_dir(side)
            started = time.perf_counter()
            starts = workload.floor(root).starts
            timing = Timing(workload.name, side, round_no, workload.nodes,
                            time.perf_counter() - started, time.process_time() - cpu)
        elif side == "attractor":
            assert self.attractor is not None
            root = self._run_dir(side)
            starts = []
            seconds, cpu_seconds = self.attractor.run(workload.source, root, workload.nodes)
            timing = Timing(workload.name, side, round_no, workload.nodes, seconds,
                            cpu_seconds)
        else:
            seconds, load_s, done, stopped, root = await self.engine.run(
                workload.source, workload.top_level, budget_s)
            starts = self.engine.stage_starts
            timing = Timing(workload.name, side, round_no, workload.nodes, seconds,
                            time.process_time() - cpu, load_s, done if stopped else None,
                            stopped)
        if workload.windows:
            timing.early_ms, timing.late_ms = windows(starts, workload.nodes)
        if not quiet:
            self.timings.append(timing)
            if (workload.name, side) not in self.sizes and not timing.stopped:
                self.sizes[workload.name, side] = files_and_bytes(root)
            print(format_row(timing), flush=True)
        return timing

    async def rounds(self, workload: Workload, rounds: int,
                     budget_s: float | None = None) -> None:
        """`rounds` rounds of floor and engine (and attractor), the order reversed every
        other round."""
        sides = self.sides(workload)
        for round_no in range(1, rounds + 1):
            order = sides if round_no % 2 else sides[::-1]
            for side in order:
                await self.one(workload, side, round_no, budget_s)

    def best(self, workload: str, side: str) -> Timing | None:
        """The fastest round of one side of one workload."""
        found = [t for t in self.timings if t.workload == workload and t.side == side]
        return min(found, key=lambda t: t.seconds) if found else None


def format_row(t: Timing) -> str:
    """One table row."""
    load = "-" if t.load_seconds is None else f"{t.load_seconds / t.nodes * 1000:.3f}"
    mark = ">" if t.stopped else ""
    note = f"  stopped after {t.done_nodes:,} of {t.nodes:,} nodes" if t.stopped else ""
    if t.early_ms is not None and t.late_ms is not None:
        note += (f"  nodes {EARLY[0]}-{EARLY[1]} {t.early_ms:.3f}, "
                 f"{late_window(t.nodes - 2)} {t.late_ms:.3f} ms/node")
    ms_per_node = f"{mark}{t.ms_per_node:.3f}"
    return (f"{t.round!s:<6} {t.workload:<13} {t.side:<9} {t.nodes:>7,} {t.seconds:>9.2f} "
            f"{ms_per_node:>9} {t.cpu_ms_per_node:>9.3f} {load:>9}{note}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the linear and fan-out workloads (default 3)")
    parser.add_argument("--nodes", type=int, default=1000, metavar="N",
                        help="codergen nodes of the linear pipeline (default 1000)")
    parser.add_argument("--branches", type=int, default=100, metavar="B",
                        help="branches of the fan-out (default 100)")
    parser.add_argument("--max-parallel", type=int, default=4, metavar="K",
                        help="max_parallel of the fan-out node (default 4, the settings' "
                             "default)")
    parser.add_argument("--thread-nodes", type=int, default=1000, metavar="T",
                        help="codergen nodes of the `full` thread pipeline (default 1000; "
                             f"at least {EARLY[1] + LATE_SPAN}, 0 skips it)")
    parser.add_argument("--large", type=int, default=10000, metavar="N",
                        help="nodes of the large linear pipeline, run once per side; "
                             "0 skips it (default 10000)")
    parser.add_argument("--large-budget", type=float, default=150.0, metavar="S",
                        help="stop the engine's large run after S seconds (default 150)")
    parser.add_argument("--atomic-floor", action="store_true",
                        help="the floor writes per-node files via temp + rename too")
    parser.add_argument("--json", action="store_true",
                        help="also print a JSON summary line (before the ratios line)")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    parser.add_argument("--attractor-python", metavar="PATH",
                        default=os.environ.get(ATTRACTOR_ENV) or None,
                        help="a Python (>= 3.12) with attractor installed: attractor runs "
                             f"linear-N too (default: ${ATTRACTOR_ENV}, else not run)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.nodes, args.branches, args.max_parallel) < 1 or args.large < 0:
        parser.error("counts must be at least 1 (--large: 0 to skip)")
    if args.thread_nodes and args.thread_nodes < EARLY[1] + LATE_SPAN:
        # The late window must not overlap the early one.
        parser.error(f"--thread-nodes must be 0 or at least {EARLY[1] + LATE_SPAN}")
    return args


def thread_workload(nodes: int, atomic: bool, name: str | None = None) -> Workload:
    """thread-T: T codergen nodes on one `full` thread."""
    return Workload(name or f"thread-{nodes}", thread_dot(nodes), nodes + 2, nodes + 2,
                    lambda root: floor_thread(root, nodes, atomic), windows=True)


def workloads(args: argparse.Namespace
              ) -> tuple[Workload, Workload, Workload | None, Workload | None]:
    """linear-N, fanout-B, thread-T and linear-large."""
    atomic = args.atomic_floor
    linear = Workload(f"linear-{args.nodes}", linear_dot(args.nodes), args.nodes + 2,
                      args.nodes + 2, lambda root: floor_linear(root, args.nodes, atomic),
                      attractor=True)
    fanout = Workload(f"fanout-{args.branches}", fanout_dot(args.branches, args.max_parallel),
                      args.branches + 4, 4, lambda root: floor_fanout(root, args.branches, atomic))
    thread = thread_workload(args.thread_nodes, atomic) if args.thread_nodes else None
    large = None
    if args.large:
        large = Workload(f"linear-{args.large}", linear_dot(args.large), args.large + 2,
                         args.large + 2, lambda root: floor_linear(root, args.large, atomic))
    return linear, fanout, thread, large


async def measure(tmp: Path, args: argparse.Namespace,
                  attractor: AttractorPeer | None) -> Bench:
    """Warm up, then every workload, floor and engine (and attractor) interleaved."""
    home = tmp / "home"
    home.mkdir()
    clock = StageClock()
    services = await bench_services(home, clock)
    try:
        bench = Bench(tmp, Engine(services, clock), args, attractor)
        linear, fanout, thread, large = workloads(args)
        for warm in (Workload("warm-up", linear_dot(20), 22, 22,
                              lambda root: floor_linear(root, 20, args.atomic_floor),
                              attractor=True),
                     Workload("warm-up", fanout_dot(4, args.max_parallel), 8, 4,
                              lambda root: floor_fanout(root, 4, args.atomic_floor)),
                     thread_workload(EARLY[1] + LATE_SPAN, args.atomic_floor, "warm-up")):
            for side in bench.sides(warm):
                await bench.one(warm, side, 0, quiet=True)
        await bench.rounds(linear, args.rounds)
        await bench.rounds(fanout, args.rounds)
        if thread is not None:  # before the large run, which leaves many files behind
            await bench.rounds(thread, args.rounds)
        if large is not None:
            untimed = PipelineRef(source=large.source, format="dot")
            await bench.engine.runner.load(untimed, {})
            await bench.one(large, "floor", 1)
            await bench.one(large, "engine", 1, budget_s=args.large_budget)
        return bench
    finally:
        await services.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything, print the table, the summary and the ratios line."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    print(f"ostinato engine bench: scripted provider (latency 0), Runner.start + sqlite store "
          f"vs a file-writing floor; loop {loop_name}; Python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs")
    print(f"{args.rounds} rounds of linear-{args.nodes}, fanout-{args.branches} "
          f"(max_parallel {args.max_parallel})"
          + (f" and thread-{args.thread_nodes} (one `full` thread)" if args.thread_nodes
             else "")
          + ", floor and engine alternating"
          + (" (attractor too, on linear)" if args.attractor_python else "")
          + (f"; linear-{args.large} once per side (engine budget {args.large_budget:g} s)"
             if args.large else "")
          + ("; floor per-node files atomic" if args.atomic_floor else ""))
    secrets = set(environment_secrets(dict(os.environ)))
    secret_names = sorted(name for name, value in os.environ.items() if value in secrets)
    print("environment variables redacted from run data: "
          + (", ".join(secret_names) if secret_names else "none"))
    attractor = None if args.attractor_python is None else AttractorPeer(args.attractor_python)
    try:
        print(attractor_line(attractor, args.nodes))
        print()
        header = (f"{'round':<6} {'workload':<13} {'side':<9} {'nodes':>7} {'seconds':>9} "
                  f"{'ms/node':>9} {'cpu ms':>9} {'load ms':>9}")
        print(header)
        print("-" * len(header))
        bench = run_in_temporary_directory("engine", not args.no_uvloop,
                                           lambda tmp: measure(tmp, args, attractor))
    finally:
        if attractor is not None:
            attractor.close()
    print("-" * len(header))
    summarize(bench, args, loop_name)
    return 0


def attractor_line(attractor: AttractorPeer | None, nodes: int) -> str:
    """What the header says of attractor: which one runs, or that none was given."""
    if attractor is None:
        return "attractor: not given (--attractor-python)"
    return (f"attractor {attractor.version} (Python {attractor.python_version}, "
            f"{attractor.python}): runs linear-{nodes} via PipelineEngine.run_dot in a child "
            "process (asyncio loop), timed in the child, alternating with floor and engine")


def summarize(bench: Bench, args: argparse.Namespace, loop_name: str) -> None:
    """The best rows, the file check, the spread, the growth, and the ratios line."""
    linear, fanout, thread, large = workloads(args)
    rounded = [linear.name, fanout.name] + ([thread.name] if thread else [])
    names = rounded + ([large.name] if large else [])
    best: dict[tuple[str, str], Timing] = {}
    for name in names:
        for side in SIDES:
            timing = bench.best(name, side)
            if timing is not None:  # attractor runs linear-N only, when given
                best[name, side] = timing
                print(format_row(replace(timing, round="best")))
    print()
    for name in names:
        print_sizes(bench, name)
    if bench.attractor is not None:
        print(ATTRACTOR_FILES)
    for name in rounded:
        spread = []
        for side in SIDES:
            values = [t.ms_per_node for t in bench.timings
                      if t.workload == name and t.side == side]
            if not values:
                continue
            spread.append(f"{side} {min(values):.3f}..{max(values):.3f} "
                          f"(median {statistics.median(values):.3f})")
        print(f"{name}: ms/node over the rounds: {', '.join(spread)}")
    growth: dict[str, float] = {}
    if thread is not None:
        # Each window's least mean over the rounds, as the best round elsewhere: other load
        # only adds time.
        figures = []
        for side in ("floor", "engine"):
            found = [t for t in bench.timings if t.workload == thread.name and t.side == side]
            early = min(t.early_ms for t in found if t.early_ms is not None)
            late = min(t.late_ms for t in found if t.late_ms is not None)
            growth[side] = late / early
            figures.append(f"{side} {early:.3f} -> {late:.3f} ({growth[side]:.2f}x)")
        print(f"{thread.name}: ms/node at nodes {EARLY[0]}-{EARLY[1]} -> "
              f"{late_window(args.thread_nodes)} (least mean over the rounds): "
              f"{', '.join(figures)}")
    print("best: the fastest round per side (other load only slows a run down).")
    print("cpu: CPU time of the process that ran it, all threads; load: parse + transform +")
    print("  validate, part of the engine's time (attractor's parse is in its time, unsplit).")
    ratios = {name: best[name, "engine"].seconds / best[name, "floor"].seconds
              for name in names}
    versus_attractor = None
    if (linear.name, "attractor") in best:
        engine_ms = best[linear.name, "engine"].ms_per_node
        attractor_ms = best[linear.name, "attractor"].ms_per_node
        versus_attractor = engine_ms / attractor_ms
        print(f"{linear.name} per node (best rounds): engine {engine_ms:.3f} ms, attractor "
              f"{attractor_ms:.3f} ms, floor {best[linear.name, 'floor'].ms_per_node:.3f} ms")
        print(f"  {engine_load_note(bench, best[linear.name, 'engine'])}; attractor parses "
              "its source in every run.")
    else:
        print(attractor_line(None, args.nodes))
    linearity = floor_linearity = None
    stopped = False
    factor = args.large / args.nodes
    if large is not None:
        linearity = best[large.name, "engine"].seconds / best[linear.name, "engine"].seconds
        floor_linearity = best[large.name, "floor"].seconds / best[linear.name, "floor"].seconds
        stopped = best[large.name, "engine"].stopped
        print(f"growth time({large.name})/time({linear.name}) for {factor:g}x nodes: floor "
              f"{floor_linearity:.1f}x, engine {'>' if stopped else ''}{linearity:.1f}x")
    if args.json:
        print(orjson.dumps({
            "loop": loop_name, "args": vars(args), "summary": "best",
            "attractor": None if bench.attractor is None else {
                "version": bench.attractor.version,
                "python": bench.attractor.python_version},
            "timings": [asdict(t) for t in bench.timings],
            "sizes": {f"{k[0]}/{k[1]}": v for k, v in bench.sizes.items()},
            "ratios": {**{name: round(ratio, 3) for name, ratio in ratios.items()},
                       "linearity": None if linearity is None else round(linearity, 3),
                       "linearity_is_lower_bound": stopped,
                       "floor_linearity": None if floor_linearity is None
                       else round(floor_linearity, 3),
                       "thread_growth": round(growth["engine"], 3) if growth else None,
                       "floor_thread_growth": round(growth["floor"], 3) if growth else None,
                       "linear_vs_attractor": None if versus_attractor is None
                       else round(versus_attractor, 3)},
        }).decode())
    line = (f"ratios: linear {ratios[linear.name]:.2f}x floor (target <= {LINEAR_TARGET:g}), "
            f"fanout {ratios[fanout.name]:.2f}x (target <= {FANOUT_TARGET:g})")
    if growth:
        line += (f", thread node {late_window(args.thread_nodes)} / node {EARLY[0]}-{EARLY[1]} "
                 f"{growth['engine']:.2f}x (target <= {THREAD_TARGET:g})")
    if linearity is not None:
        line += (f", linearity {'>' if stopped else ''}{linearity:.1f}x for {factor:g}x nodes "
                 f"(target <= {factor * LINEARITY_SLACK:g})")
    if versus_attractor is not None:
        line += (f", {linear.name} engine/attractor per node {versus_attractor:.2f} "
                 f"(target <= {ATTRACTOR_TARGET:g})")
    print(line)


def engine_load_note(bench: Bench, timing: Timing) -> str:
    """The engine's load per node in `timing` and in the first round of its workload, which
    parsed the source (later rounds build the graph from the kept syntax tree)."""
    first = next(t for t in bench.timings
                 if t.workload == timing.workload and t.side == "engine" and t.round == 1)
    return (f"engine load {(timing.load_seconds or 0) / timing.nodes * 1000:.3f} ms/node "
            f"of it (round 1, which parsed: {(first.load_seconds or 0) / first.nodes * 1000:.3f})")


def print_sizes(bench: Bench, name: str) -> None:
    """The files and bytes each side's run of `name` left (its first complete run)."""
    sizes = {side: bench.sizes[name, side] for side in SIDES if (name, side) in bench.sizes}
    if "engine" not in sizes:
        return
    files = " ".join(f"{side} {count:,}" for side, (count, _) in sizes.items())
    size = " ".join(f"{side} {count:,}" for side, (_, count) in sizes.items())
    print(f"{name}: files {files}; bytes {size} (config/ and manifest.json aside)")


if __name__ == "__main__":
    sys.exit(main())
