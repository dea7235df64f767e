"""MCP servers made with the official MCP Python SDK against the daemon, same client, same run.

The measurement behind decision 0005 (docs/decisions/0005-mcp-in-the-daemon.md). Run it from
the repository, with the test extras installed (`make lint` or `make test` makes that venv):

    .venv/bin/python bench/mcp_sdk.py [--rounds 3] [--sequential 2000] [--pipelined 5000]
        [--warmup 500] [--chunk 256] [--cold 10] [--pin same|split|none]

Four servers are spawned with pipes on stdin/stdout, newline-delimited JSON both ways (the
only framing the SDK's stdio transport speaks), each in a fresh process every round:

* daemon:   `python -m ostinato.daemon --stdio --home H`, answering `daemon.status`;
* sdk-high: bench/mcp_sdk_server.py high, the SDK's recommended `MCPServer` API, a read-only
            `tools/call status` whose result has the fields of `daemon.status`;
* sdk-low:  bench/mcp_sdk_server.py low, the SDK's lowlevel `Server`, the same tool by hand;
* proxy:    bench/mcp_sdk_server.py proxy H, the lowlevel server forwarding the call to the
            daemon above over H's socket (an MCP server as a process in front of the daemon).

The SDK servers are opened with MCP's `initialize` (revision 2025-11-25). The method is the
one of bench/rpc.py, whose helpers it imports: requests are encoded before the clock starts,
replies are only split on newlines while it runs and checked afterwards (all successes, no
`isError`, exactly the ids sent). Sequential: N requests one at a time, one block per server,
client and servers pinned to one CPU (`--pin`); pipelined: N requests in chunks of --chunk,
unpinned, read by a uvloop protocol; cpu us/rq is the server process's CPU per pipelined
request. Best round per metric. Cold start: spawn to the first `initialize` reply, median and
minimum of --cold spawns (0 leaves it out). Temporary homes are made under $TMPDIR and removed
when the bench ends.

It prints every round, the best of the rounds, the cold starts, and as its last line each SDK
server's ratios to the daemon measured in the same run, with the targets of issue 16
(tools/call p50 <= 1.3x the JSON-RPC p50, pipelined >= 0.7x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from common import loop_choice  # bench/ is on sys.path when a bench runs
from rpc import check_ids, percentile, pinned, pipeline

BENCH_DIR = Path(__file__).resolve().parent
SDK_SERVER = BENCH_DIR / "mcp_sdk_server.py"
SERVERS = ("daemon", "sdk-high", "sdk-low", "proxy")
# The daemon's own MCP face: bench/mcp.py measures it against the daemon's JSON-RPC.
DAEMON_MCP = "daemon-mcp"
MCP_REVISION = "2025-11-25"
P50_TARGET = 1.3
PIPELINED_TARGET = 0.7
LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None


def server_argv(name: str, home: Path) -> list[str]:
    """The command line of one server."""
    if name in ("daemon", DAEMON_MCP):  # each on a home of its own: two daemons, not one
        home = home if name == "daemon" else home.with_name(home.name + "-mcp")
        return [sys.executable, "-m", "ostinato.daemon", "--stdio", "--home", str(home),
                "--log-level", "WARNING"]
    mode = {"sdk-high": "high", "sdk-low": "low", "proxy": "proxy"}[name]
    return [sys.executable, str(SDK_SERVER), mode, str(home)]


def line(message: dict[str, Any]) -> bytes:
    """One NDJSON message."""
    return orjson.dumps(message) + b"\n"


# The measured call, by probe: `status` (daemon.status, the tool `status`) answers from
# memory; `run` (run.get of a finished run, the tool `inspect` action `run`) reads the store
# and the run directory, as most of an agent's reads do. The SDK's servers have `status`.
PROBES = ("status", "run")
RUN_SOURCE = 'digraph probe { start [shape=Mdiamond] exit [shape=Msquare] start -> exit }'


def request(name: str, request_id: int, probe: str = "status", run_id: str = "") -> bytes:
    """The measured request: the method for the daemon, its tool for the MCP servers."""
    if probe == "run":
        method, params = "run.get", {"run_id": run_id}
        tool, arguments = "inspect", {"action": "run", "run_id": run_id}
    else:
        method, params, tool, arguments = "daemon.status", {}, "status", {}
    if name == "daemon":
        return line({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    return line({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                 "params": {"name": tool, "arguments": arguments}})


class Lines:
    """Incremental newline splitter; complete lines are appended to `frames`."""

    __slots__ = ("buf", "frames")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.frames: list[bytes] = []

    def feed(self, data: bytes) -> None:
        """Consume `data`."""
        buf = self.buf
        buf += data
        pos = 0
        while (end := buf.find(b"\n", pos)) >= 0:
            self.frames.append(bytes(buf[pos:end]))
            pos = end + 1
        if pos:
            del buf[:pos]


def check_replies(lines: Sequence[bytes], first_id: int, count: int) -> None:
    """Every reply is a success (and not a tool error); the ids are exactly the ones sent."""
    ids = []
    for raw in lines:
        reply = orjson.loads(raw)
        if "id" not in reply:  # a notification
            continue
        result = reply.get("result")
        if not isinstance(result, dict) or result.get("isError"):
            raise RuntimeError(f"not a success: {raw[:300]!r}")
        ids.append(reply["id"])
    check_ids(ids, first_id, count)


@dataclass
class Result:
    """What one round (or the best of the rounds) measured for one server."""

    server: str
    p50_us: float
    p99_us: float
    seq_rps: float
    pipe_rps: float
    cpu_us: float | None
    reply_bytes: int


class Session:
    """A spawned server driven over its stdin/stdout pipes."""

    def __init__(self, name: str, home: Path, probe: str = "status") -> None:
        self.name = name
        self.probe = probe
        self.run_id = ""  # the run the `run` probe reads
        self.spawned = time.perf_counter_ns()
        self.process = subprocess.Popen(server_argv(name, home), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        bufsize=0)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.wfd = self.process.stdin.fileno()
        self.rfd = self.process.stdout.fileno()
        self.parser = Lines()
        self.next_id = 1

    def take_ids(self, count: int) -> int:
        """Reserve `count` request ids; returns the first."""
        first = self.next_id
        self.next_id += count
        return first

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Blocking request/reply (set-up and tear-down; not timed)."""
        parser = self.parser
        parser.frames.clear()
        os.write(self.wfd, line(message))
        while True:
            for raw in parser.frames:
                reply = orjson.loads(raw)
                if reply.get("id") == message["id"]:
                    parser.frames.clear()
                    if "result" not in reply:
                        raise RuntimeError(f"{self.name}: {reply}")
                    return reply
            parser.frames.clear()
            data = os.read(self.rfd, 1 << 16)
            if not data:
                raise RuntimeError(f"{self.name} closed its stdout")
            parser.feed(data)

    def start(self) -> float:
        """Open the session (`initialize`, and MCP's `notifications/initialized`); returns
        milliseconds from spawn to the `initialize` reply."""
        params: dict[str, Any] = {"clientInfo": {"name": "bench", "version": "1"}}
        if self.name != "daemon":
            params |= {"protocolVersion": MCP_REVISION, "capabilities": {}}
        self.call({"jsonrpc": "2.0", "id": self.take_ids(1), "method": "initialize",
                   "params": params})
        elapsed = (time.perf_counter_ns() - self.spawned) / 1e6
        if self.name != "daemon":
            os.write(self.wfd, line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        if self.probe == "run":  # a finished run to read (an MCP session takes run.start too)
            started = self.call({"jsonrpc": "2.0", "id": self.take_ids(1), "method": "run.start",
                                 "params": {"pipeline": {"source": RUN_SOURCE, "format": "dot"},
                                            "wait": True}})
            self.run_id = started["result"]["run_id"]
        return elapsed

    def request(self, request_id: int) -> bytes:
        """This server's measured request."""
        return request(self.name, request_id, self.probe, self.run_id)

    def reply_bytes(self) -> int:
        """Size of one measured reply, newline included."""
        request_id = self.take_ids(1)
        return len(line(self.call(orjson.loads(self.request(request_id)))))

    def roundtrip(self, data: bytes) -> int:
        """Write one request, block until one more line arrives; nanoseconds taken."""
        parser = self.parser
        expected = len(parser.frames) + 1
        t0 = time.perf_counter_ns()
        os.write(self.wfd, data)
        while len(parser.frames) < expected:
            parser.feed(os.read(self.rfd, 1 << 16))
        return time.perf_counter_ns() - t0

    def sequential(self, count: int) -> list[float]:
        """`count` requests one at a time; sorted latencies in microseconds."""
        first = self.take_ids(count)
        data = [self.request(i) for i in range(first, first + count)]
        self.parser.frames.clear()
        latencies = sorted(self.roundtrip(d) / 1e3 for d in data)
        check_replies(self.parser.frames, first, count)
        self.parser.frames.clear()
        return latencies

    async def _pipelined(self, count: int, chunk: int) -> tuple[float, float | None]:
        first = self.take_ids(count)
        frames = [self.request(i) for i in range(first, first + count)]
        parser = Lines()
        elapsed, _, cpu = await pipeline(self.rfd, self.wfd, self.process.pid, frames, chunk,
                                         parser)
        check_replies(parser.frames, first, count)
        return count / elapsed, None if cpu is None else cpu / count * 1e6

    def pipelined(self, count: int, chunk: int, factory: LoopFactory) -> tuple[float,
                                                                                 float | None]:
        """`count` requests as fast as the pipe takes them -> (req/s, server CPU us/req)."""
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(self._pipelined(count, chunk))

    def close(self) -> int:
        """End the session (the daemon with `shutdown` and `exit`), close stdin; exit code."""
        if self.name == "daemon":
            with contextlib.suppress(OSError, RuntimeError):
                self.call({"jsonrpc": "2.0", "id": self.take_ids(1), "method": "shutdown"})
                os.write(self.wfd, line({"jsonrpc": "2.0", "method": "exit"}))
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def run_round(order: Sequence[str], home: Path, args: argparse.Namespace,
              factory: LoopFactory) -> list[Result]:
    """One round: every server up, warm-up, sequential one server after the other (pinned),
    pipelined one after the other; the proxy closes before the daemon it forwards to."""
    sessions: list[Session] = []
    try:
        for name in order:
            sessions.append(Session(name, home, args.probe))
            sessions[-1].start()
        sizes = [s.reply_bytes() for s in sessions]
        for session in sessions:
            session.pipelined(args.warmup * 4, args.chunk, factory)
        latencies = []
        with pinned(sessions, args.pin):  # rpc.pinned only needs `.process`
            for session in sessions:
                session.sequential(args.warmup)
                latencies.append(session.sequential(args.sequential))
        pipes = [s.pipelined(args.pipelined, args.chunk, factory) for s in sessions]
    finally:
        for session in sorted(sessions, key=lambda s: s.name == "daemon"):
            session.close()
    return [Result(s.name, percentile(lat, 0.5), percentile(lat, 0.99),
                   len(lat) / sum(lat) * 1e6, rps, cpu, size)
            for s, lat, (rps, cpu), size in zip(sessions, latencies, pipes, sizes, strict=True)]


def best(rows: Sequence[Result]) -> Result:
    """Best of the rounds, metric by metric: other load only ever slows a run down."""
    cpus = [r.cpu_us for r in rows if r.cpu_us is not None]
    return Result(rows[0].server, min(r.p50_us for r in rows), min(r.p99_us for r in rows),
                  max(r.seq_rps for r in rows), max(r.pipe_rps for r in rows),
                  min(cpus) if cpus else None, rows[0].reply_bytes)


def format_row(label: str, r: Result) -> str:
    """One table row."""
    cpu = "-" if r.cpu_us is None else f"{r.cpu_us:.1f}"
    return (f"{label:<6}{r.server:<12}{r.p50_us:>9.1f}{r.p99_us:>9.1f}{r.seq_rps:>11,.0f}"
            f"{r.pipe_rps:>12,.0f}{cpu:>10}{r.reply_bytes:>8}")


def cold_start(name: str, home: Path, count: int) -> tuple[float, float]:
    """Median and minimum milliseconds from spawn to the `initialize` reply."""
    times = []
    for _ in range(count):
        session = Session(name, home)
        try:
            times.append(session.start())
        finally:
            session.close()
    return statistics.median(times), min(times)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--sequential", type=int, default=2000, metavar="N",
                        help="sequential requests per server and round (default 2000)")
    parser.add_argument("--pipelined", type=int, default=5000, metavar="N",
                        help="pipelined requests per server and round (default 5000)")
    parser.add_argument("--warmup", type=int, default=500, metavar="N",
                        help="warm-up: 4N pipelined, then N sequential requests (default 500)")
    parser.add_argument("--chunk", type=int, default=256, metavar="N",
                        help="pipelined requests per write (default 256)")
    parser.add_argument("--cold", type=int, default=10, metavar="N",
                        help="cold-start spawns per server, 0 for none (default 10)")
    parser.add_argument("--probe", choices=PROBES, default="status",
                        help="the measured call: `status` (from memory) or `run` (run.get of "
                             "a finished run; the daemon's servers only)")
    parser.add_argument("--pin", choices=["same", "split", "none"], default="same",
                        help="CPU pinning during the sequential phase (see bench/rpc.py)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.sequential, args.pipelined, args.warmup, args.chunk) < 1:
        parser.error("every count but --cold must be at least 1")
    return args


def round_order(servers: Sequence[str], round_no: int) -> list[str]:
    """The servers in the order of round `round_no`: reversed every other round, and the
    proxy right after the daemon that owns the home it forwards to."""
    order = list(servers) if round_no % 2 else list(reversed(servers))
    if "proxy" in order:
        order.remove("proxy")
        order.insert(order.index("daemon") + 1, "proxy")
    return order


def main(argv: Sequence[str] | None = None, servers: Sequence[str] = SERVERS,
         name: str = "mcp_sdk") -> int:
    """Run the rounds; print them, the best, the cold starts and the ratios line."""
    args = parse_args(argv)
    loop_name, factory = loop_choice(True)
    print(f"ostinato {name} bench, probe {args.probe}: NDJSON over stdio pipes; client loop "
          f"{loop_name}; "
          f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; {args.rounds} rounds; "
          f"sequential {args.sequential} (one block per server, pin {args.pin}); pipelined "
          f"{args.pipelined} in chunks of {args.chunk}")
    header = (f"{'round':<6}{'server':<12}{'p50 us':>9}{'p99 us':>9}{'seq req/s':>11}"
              f"{'pipe req/s':>12}{'cpu us/rq':>10}{'reply B':>8}")
    print(header)
    print("-" * len(header))
    results: dict[str, list[Result]] = {server: [] for server in servers}
    with tempfile.TemporaryDirectory(prefix="ostinato-mcp-bench-") as tmp:
        home = Path(tmp) / "home"
        for round_no in range(1, args.rounds + 1):
            for result in run_round(round_order(servers, round_no), home, args, factory):
                results[result.server].append(result)
                print(format_row(str(round_no), result), flush=True)
        print("-" * len(header))
        summary = {name: best(rows) for name, rows in results.items()}
        for result in summary.values():
            print(format_row("best", result))
        if args.cold:
            print(f"\ncold start, spawn -> initialize answered, {args.cold} spawns each "
                  "(median / min ms):")
            for server in servers:
                if server == "proxy":  # its own start is sdk-low's; it needs a running daemon
                    continue
                cold_home = Path(tmp) / f"cold-{server}"  # a home no daemon owns
                median, least = cold_start(server, cold_home, args.cold)
                print(f"  {server:<12}{median:8.1f} / {least:7.1f}")
    daemon = summary["daemon"]
    ratios = ", ".join(
        f"{r.server} p50 {r.p50_us / daemon.p50_us:.1f}x pipelined "
        f"{r.pipe_rps / daemon.pipe_rps:.3f}x"
        for r in summary.values() if r.server != "daemon")
    print(f"\nratios to the daemon (targets: p50 <= {P50_TARGET}x, pipelined >= "
          f"{PIPELINED_TARGET}x): {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
