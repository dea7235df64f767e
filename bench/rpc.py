"""RPC overhead benchmark: the daemon against a minimal asyncio + orjson echo server.

Run it with `make bench`, which runs `.venv/bin/python bench/rpc.py`; options:

    .venv/bin/python bench/rpc.py [--rounds 3] [--sequential 3000] [--pipelined 20000]
        [--warmup 1000] [--chunk 256] [--pin same|split|none] [--json] [--no-bridged] [--no-uvloop]

Two servers are spawned with pipes on stdin/stdout, Content-Length framing both ways:

* daemon: `python -m ostinato.daemon --stdio --home TMP` (a session: `initialize`, then
  `daemon.status` calls, then `shutdown` and `exit`, which must end it with code 0);
* floor:  `python bench/floor_echo.py TMP` (asyncio + orjson on the same event loop as the
  daemon; answers `daemon.status` with a dict of the same fields, so replies are the same size);
* bridged: the same `ostinato.daemon --stdio --home TMP` started while the daemon above owns
  TMP, so it bridges its stdio to that daemon's socket: what an editor or an agent host that
  spawns its own server gets on a home with a running daemon (`--no-bridged` leaves it out).

The client is the same code for both. Requests are encoded before the clock starts and
replies are only framed while it runs (they are parsed and checked afterwards: all success
replies, exactly the ids sent), so the client adds as little as possible to what is measured.

Each round starts both servers (fresh processes), warms both up, then measures:

* sequential: N requests one at a time with blocking writes and reads (no event loop on the
  client side), alternating floor and daemon request by request (ABBA) so that both see the
  same machine state; latency = write to complete reply -> req/s (1 / mean), p50, p99.
  By default (`--pin same`) the client and both servers are pinned to one CPU for this phase:
  unpinned, whether the scheduler puts a server on the client's CPU or on the other one
  (a cross-CPU wake-up costs ~50 us on this VM) dominates the latency and flips between runs,
  which hides the servers' own cost; `--pin split` measures the cross-CPU case instead;
* pipelined (unpinned): N requests written as fast as the pipe takes them, in chunks of
  --chunk requests, while a reader (a uvloop/asyncio protocol) frames the replies -> req/s
  from the first write to the last reply. The server's CPU time over the phase (/proc
  schedstat) gives `cpu us/rq`, which is much less sensitive to a noisy machine than wall-clock
  rates; `client` is the client's CPU share over the phase (near 100% would mean the client,
  not the server, is the limit).

Which server goes first alternates between rounds. The summary takes the best round per
server and metric (highest req/s, lowest p50/p99/CPU): on a shared machine other load only
ever makes a run slower, so the best round is the least disturbed estimate of each server's
own cost; every round is printed too. The last line is always the ratios daemon/floor with
their targets (issue 18: pipelined >= 0.85, sequential p50 <= 1.2), then bridged/daemon (sequential
p50 <= 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from common import loop_choice  # bench/ is on sys.path when a bench runs

BENCH_DIR = Path(__file__).resolve().parent
FLOOR_SCRIPT = BENCH_DIR / "floor_echo.py"
METHOD = "daemon.status"
PIPELINED_TARGET = 0.85
SEQUENTIAL_P50_TARGET = 1.2
BRIDGED_P50_TARGET = 2.0  # bridged/direct, sequential p50
_HEADER_END = b"\r\n\r\n"
_HEADER_LEN = len(b"Content-Length: ")


# -- wire ---------------------------------------------------------------------------------


def frame(message: dict[str, Any]) -> bytes:
    """One Content-Length framed message."""
    body = orjson.dumps(message)
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def request_frames(first_id: int, count: int) -> list[bytes]:
    """`count` framed `daemon.status` requests with consecutive ids."""
    return [frame({"jsonrpc": "2.0", "id": i, "method": METHOD, "params": {}})
            for i in range(first_id, first_id + count)]


class FrameParser:
    """Incremental Content-Length parser; complete bodies are appended to `frames`.

    Both servers write exactly `Content-Length: N\\r\\n\\r\\n`, so the header is not parsed
    beyond its number: the client must stay cheap, or it would hide server differences.
    """

    __slots__ = ("buf", "frames")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.frames: list[bytes] = []

    def feed(self, data: bytes) -> int:
        """Consume `data`; returns how many frames it completed."""
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        frames = self.frames
        count = 0
        while True:
            header_end = buf.find(_HEADER_END, pos)
            if header_end < 0:
                break
            start = header_end + 4
            stop = start + int(buf[pos + _HEADER_LEN:header_end])
            if stop > end:
                break
            frames.append(bytes(buf[start:stop]))
            pos = stop
            count += 1
        if pos:
            del buf[:pos]
        return count


def check_replies(bodies: Sequence[bytes], first_id: int, count: int) -> None:
    """Every body is a success reply and the ids are exactly first_id..first_id+count-1."""
    ids = []
    for body in bodies:
        reply = orjson.loads(body)
        if "result" not in reply:
            raise RuntimeError(f"error reply: {body[:300]!r}")
        ids.append(reply["id"])
    check_ids(ids, first_id, count)


def check_ids(ids: list[Any], first_id: int, count: int) -> None:
    """The ids replied are exactly first_id..first_id+count-1."""
    if sorted(ids) != list(range(first_id, first_id + count)):
        raise RuntimeError(f"expected ids {first_id}..{first_id + count - 1}, got {len(ids)} "
                           "replies with other ids")


# -- one server session -------------------------------------------------------------------


@dataclass
class Result:
    """What one round measured for one server."""

    server: str
    round: int
    seq_rps: float
    seq_p50_us: float
    seq_p99_us: float
    pipe_rps: float
    pipe_cpu_us: float | None  # server CPU time per pipelined request
    client_cpu: float  # client CPU time / wall time over the pipelined phase
    reply_bytes: int


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time of a live process, all threads (Linux /proc, ns resolution); None elsewhere."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return sum(int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                   for tid in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:  # without schedstat: user + system time in clock ticks
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Parser(Protocol):
    """What `pipeline` needs of a reply parser: bytes in, complete replies in `frames`."""

    frames: list[bytes]

    def feed(self, data: bytes) -> Any:
        """Consume `data`."""


async def pipeline(rfd: int, wfd: int, pid: int, frames: Sequence[bytes], chunk: int,
                   parser: Parser) -> tuple[float, float, float | None]:
    """Write `frames`, `chunk` at a time, as fast as the pipe `wfd` takes them, while a
    reader on the loop feeds what comes back on `rfd` to `parser`, until it holds one reply
    per frame. Returns (seconds from the first write to the last reply, the client's CPU
    share meanwhile, the server `pid`'s CPU seconds meanwhile or None)."""
    count = len(frames)
    chunks = [b"".join(frames[i:i + chunk]) for i in range(0, count, chunk)]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            parser.feed(data)
            if len(parser.frames) >= count and not done.done():
                done.set_result(time.perf_counter_ns())

        def connection_lost(self, exc: Exception | None) -> None:
            if not done.done():
                done.set_exception(RuntimeError("server closed its stdout"))

    resumed = asyncio.Event()
    resumed.set()

    class Writer(asyncio.Protocol):
        def pause_writing(self) -> None:
            resumed.clear()

        def resume_writing(self) -> None:
            resumed.set()

    # Transports on duplicates: closing them leaves the session's own pipe ends open.
    rfile = os.fdopen(os.dup(rfd), "rb", buffering=0)
    wfile = os.fdopen(os.dup(wfd), "wb", buffering=0)
    reader, _ = await loop.connect_read_pipe(Reader, rfile)
    writer, _ = await loop.connect_write_pipe(Writer, wfile)
    try:
        cpu0 = process_cpu_seconds(pid)
        client0 = time.process_time()
        t0 = time.perf_counter_ns()
        for data in chunks:
            writer.write(data)
            if not resumed.is_set():
                await resumed.wait()
            else:
                await asyncio.sleep(0)
        t1 = await asyncio.wait_for(done, 300)
        elapsed = (t1 - t0) / 1e9
        client_cpu = (time.process_time() - client0) / elapsed
        cpu1 = process_cpu_seconds(pid)
    finally:
        reader.close()
        writer.close()
        await asyncio.sleep(0)
        os.set_blocking(rfd, True)  # the transports made the shared files non-blocking
        os.set_blocking(wfd, True)
    return elapsed, client_cpu, None if cpu0 is None or cpu1 is None else cpu1 - cpu0


class Session:
    """A spawned server process driven over its stdin/stdout pipes."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, bufsize=0)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.wfd = self.process.stdin.fileno()
        self.rfd = self.process.stdout.fileno()
        self.parser = FrameParser()
        self.next_id = 1

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Blocking request/reply (set-up and tear-down; not timed)."""
        self.parser.frames.clear()
        os.write(self.wfd, frame(message))
        while not self.parser.frames:
            data = os.read(self.rfd, 1 << 16)
            if not data:
                raise RuntimeError(f"{self.name} closed its stdout")
            self.parser.feed(data)
        reply = orjson.loads(self.parser.frames.pop())
        if "result" not in reply:
            raise RuntimeError(f"{self.name}: {reply}")
        return reply

    def take_ids(self, count: int) -> int:
        """Reserve `count` request ids; returns the first."""
        first = self.next_id
        self.next_id += count
        return first

    def roundtrip(self, data: bytes) -> int:
        """Write one framed request, block until its reply is framed; nanoseconds taken."""
        parser = self.parser
        expected = len(parser.frames) + 1
        t0 = time.perf_counter_ns()
        os.write(self.wfd, data)
        while len(parser.frames) < expected:
            parser.feed(os.read(self.rfd, 1 << 16))
        return time.perf_counter_ns() - t0

    async def _pipelined(self, count: int, chunk: int) -> tuple[float, float, float | None]:
        first = self.take_ids(count)
        frames = request_frames(first, count)
        parser = FrameParser()
        elapsed, client_cpu, server_cpu = await pipeline(
            self.rfd, self.wfd, self.process.pid, frames, chunk, parser)
        check_replies(parser.frames, first, count)
        return count / elapsed, client_cpu, None if server_cpu is None else server_cpu / count

    def pipelined(self, count: int, chunk: int,
                  loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
                  ) -> tuple[float, float, float | None]:
        """`count` requests written in chunks while a reader counts replies.

        Returns (requests/s, client CPU share, server CPU seconds per request or None).
        """
        if loop_factory is None:
            return asyncio.run(self._pipelined(count, chunk))
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(self._pipelined(count, chunk))

    def close(self) -> int:
        """`shutdown`, then the `exit` notification; returns the exit code."""
        try:
            self.call({"jsonrpc": "2.0", "id": self.take_ids(1), "method": "shutdown"})
            os.write(self.wfd, frame({"jsonrpc": "2.0", "method": "exit"}))
        finally:
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


# -- the benchmark ------------------------------------------------------------------------


def server_argv(name: str, home: Path, use_uvloop: bool) -> list[str]:
    """The command line of the daemon or of the floor."""
    if name in ("daemon", "bridged"):  # the same command: the home decides which it is
        argv = [sys.executable, "-m", "ostinato.daemon", "--stdio", "--home", str(home),
                "--log-level", "WARNING"]
    else:
        argv = [sys.executable, str(FLOOR_SCRIPT), str(home)]
    return argv + ([] if use_uvloop else ["--no-uvloop"])


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Move every thread of process `pid` (0: this one) to `cpus`."""
    tids = [pid]
    if pid:
        with contextlib.suppress(OSError):
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned(sessions: Sequence[Session], mode: str) -> Iterator[None]:
    """Pin the client and the servers for the sequential phase, then undo it.

    "same": everything on one CPU, a round trip costs two context switches and no
    cross-CPU wake-up; "split": the client on one CPU, the servers on another; "none": the
    scheduler decides, and where it happens to put each process dominates the latency.
    """
    if mode == "none" or not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    cpus = sorted(allowed)
    client_cpu = {cpus[0]}
    server_cpu = {cpus[-1]} if mode == "split" else client_cpu
    set_affinity(0, client_cpu)
    for session in sessions:
        set_affinity(session.process.pid, server_cpu)
    try:
        yield
    finally:
        set_affinity(0, allowed)
        for session in sessions:
            set_affinity(session.process.pid, allowed)


def sequential(sessions: Sequence[Session], count: int) -> list[list[float]]:
    """`count` requests to each session one at a time, alternating between the sessions
    request by request (ABBA), so that all see the same machine state; per session, the
    sorted latencies in seconds."""
    plans = []
    for session in sessions:
        first = session.take_ids(count)
        plans.append((first, request_frames(first, count)))
        session.parser.frames.clear()
    latencies: list[list[int]] = [[] for _ in sessions]
    forward = list(range(len(sessions)))
    backward = forward[::-1]
    for i in range(count):
        for k in forward if i % 2 == 0 else backward:
            latencies[k].append(sessions[k].roundtrip(plans[k][1][i]))
    for session, (first, _) in zip(sessions, plans, strict=True):
        check_replies(session.parser.frames, first, count)
        session.parser.frames.clear()
    return [sorted(ns / 1e9 for ns in values) for values in latencies]


def run_round(round_no: int, order: Sequence[str], home: Path, args: argparse.Namespace,
              loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> list[Result]:
    """One round: both servers up, warm-up, interleaved sequential, pipelined one after the
    other in `order`, clean exits."""
    sessions: list[Session] = []
    try:
        for name in order:
            session = Session(name, server_argv(name, home, not args.no_uvloop))
            sessions.append(session)
            session.call({"jsonrpc": "2.0", "id": session.take_ids(1),
                          "method": "initialize", "params": {}})
        reply_bytes = [
            len(frame(s.call({"jsonrpc": "2.0", "id": s.take_ids(1), "method": METHOD})))
            for s in sessions]
        for session in sessions:
            session.pipelined(args.warmup * 4, args.chunk, loop_factory)
        with pinned(sessions, args.pin):
            sequential(sessions, args.warmup)
            latencies = sequential(sessions, args.sequential)
        pipelined = [s.pipelined(args.pipelined, args.chunk, loop_factory) for s in sessions]
    except BaseException:
        for session in sessions:
            session.process.kill()
            session.process.wait()
        raise
    # The bridged session closes before the daemon it is bridged to.
    codes = {session.name: session.close()
             for session in sorted(sessions, key=lambda s: s.name != "bridged")}
    if any(codes.values()):
        raise RuntimeError(f"a server did not exit cleanly: exit codes {codes}")
    return [
        Result(
            server=session.name, round=round_no,
            seq_rps=len(lat) / sum(lat),
            seq_p50_us=percentile(lat, 0.50) * 1e6,
            seq_p99_us=percentile(lat, 0.99) * 1e6,
            pipe_rps=pipe_rps,
            pipe_cpu_us=None if server_cpu is None else server_cpu * 1e6,
            client_cpu=client_cpu,
            reply_bytes=size,
        )
        for session, lat, (pipe_rps, client_cpu, server_cpu), size
        in zip(sessions, latencies, pipelined, reply_bytes, strict=True)
    ]


def best(results: Sequence[Result]) -> Result:
    """Best of the rounds, metric by metric (max rates, min latencies and CPU); the client
    share is the one of the fastest pipelined run."""
    cpus = [r.pipe_cpu_us for r in results if r.pipe_cpu_us is not None]
    return Result(
        server=results[0].server, round=0,
        seq_rps=max(r.seq_rps for r in results),
        seq_p50_us=min(r.seq_p50_us for r in results),
        seq_p99_us=min(r.seq_p99_us for r in results),
        pipe_rps=max(r.pipe_rps for r in results),
        pipe_cpu_us=min(cpus) if cpus else None,
        client_cpu=max(results, key=lambda r: r.pipe_rps).client_cpu,  # of the fastest run
        reply_bytes=results[0].reply_bytes,
    )


def format_row(label: str, r: Result) -> str:
    """One table row."""
    cpu = "-" if r.pipe_cpu_us is None else f"{r.pipe_cpu_us:.1f}"
    return (f"{label:<8} {r.server:<7} {r.seq_rps:>9,.0f} {r.seq_p50_us:>8.1f} "
            f"{r.seq_p99_us:>8.1f} {r.pipe_rps:>10,.0f} {cpu:>9} {r.client_cpu:>7.0%} "
            f"{r.reply_bytes:>6}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each runs both servers (default 3)")
    parser.add_argument("--sequential", type=int, default=3000, metavar="N",
                        help="sequential requests per round (default 3000)")
    parser.add_argument("--pipelined", type=int, default=20000, metavar="N",
                        help="pipelined requests per round (default 20000)")
    parser.add_argument("--warmup", type=int, default=1000, metavar="N",
                        help="warm-up: 4N pipelined, then N sequential requests (default 1000)")
    parser.add_argument("--chunk", type=int, default=256, metavar="N",
                        help="pipelined requests per write (default 256)")
    parser.add_argument("--pin", choices=["same", "split", "none"], default="same",
                        help="CPU pinning during the sequential phase (default same: client "
                             "and servers share one CPU; see pinned())")
    parser.add_argument("--json", action="store_true",
                        help="also print a JSON summary line (before the ratios line)")
    parser.add_argument("--no-bridged", action="store_true",
                        help="leave out the bridged path (stdio -> bridge -> home daemon)")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="run both servers and the client on asyncio's own loop")
    args = parser.parse_args(argv)
    if min(args.rounds, args.sequential, args.pipelined, args.warmup, args.chunk) < 1:
        parser.error("every count must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds, print the table, the optional JSON line and the ratios line."""
    args = parse_args(argv)
    loop_name, loop_factory = loop_choice(not args.no_uvloop)
    home = Path(tempfile.mkdtemp(prefix="ostinato-bench-"))
    print(f"ostinato rpc bench: {METHOD} over stdio pipes, Content-Length framing; "
          f"loop {loop_name}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    print(f"{args.rounds} rounds (fresh processes, order alternating), warm-up {args.warmup * 4} "
          f"pipelined + {args.warmup} seq; sequential {args.sequential} per server "
          f"(interleaved request by request, pin {args.pin}); pipelined {args.pipelined} "
          f"in chunks of {args.chunk}")
    print()
    header = (f"{'round':<8} {'server':<7} {'seq req/s':>9} {'p50 us':>8} {'p99 us':>8} "
              f"{'pipe req/s':>10} {'cpu us/rq':>9} {'client':>7} {'reply':>6}")
    print(header)
    print("-" * len(header))
    results: dict[str, list[Result]] = {"floor": [], "daemon": [], "bridged": []}
    try:
        for round_no in range(1, args.rounds + 1):
            # The bridged server needs the daemon up first: it is started after it.
            order = ("floor", "daemon", "bridged") if round_no % 2 else (
                "daemon", "bridged", "floor")
            if args.no_bridged:
                order = tuple(name for name in order if name != "bridged")
            for result in run_round(round_no, order, home, args, loop_factory):
                results[result.server].append(result)
                print(format_row(str(round_no), result), flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    floor, daemon = best(results["floor"]), best(results["daemon"])
    print("-" * len(header))
    print(format_row("best", floor))
    print(format_row("best", daemon))
    bridged = best(results["bridged"]) if results["bridged"] else None
    if bridged is not None:
        print(format_row("best", bridged))
    print()
    print("best: per metric over the rounds (max req/s, min latency and CPU); other load")
    print("  only slows a run down, so the best round is the least disturbed estimate.")
    print("seq: one request at a time, floor/daemon interleaved; req/s = 1 / mean latency.")
    print("cpu us/rq: server CPU time per pipelined request (/proc schedstat).")
    print("client: client CPU / wall time while pipelining (near 100%: client-bound).")
    pipelined_ratio = daemon.pipe_rps / floor.pipe_rps
    p50_ratio = daemon.seq_p50_us / floor.seq_p50_us
    if args.json:
        print(orjson.dumps({
            "loop": loop_name, "rounds": args.rounds, "sequential": args.sequential,
            "pipelined": args.pipelined, "chunk": args.chunk, "pin": args.pin,
            "summary": "best",
            "floor": asdict(floor), "daemon": asdict(daemon),
            "bridged": asdict(bridged) if bridged else None,
            "all": {k: [asdict(r) for r in v] for k, v in results.items()},
            "ratios": {"pipelined": round(pipelined_ratio, 3),
                       "sequential_p50": round(p50_ratio, 3),
                       "bridged_sequential_p50": round(bridged.seq_p50_us / daemon.seq_p50_us,
                                                       3) if bridged else None},
        }).decode())
    print(f"ratios daemon/floor: pipelined {pipelined_ratio:.2f} (target >= "
          f"{PIPELINED_TARGET}), sequential p50 {p50_ratio:.2f} (target <= "
          f"{SEQUENTIAL_P50_TARGET})")
    if bridged is not None:
        print(f"ratio bridged/daemon: sequential p50 {bridged.seq_p50_us / daemon.seq_p50_us:.2f}"
              f" (target <= {BRIDGED_P50_TARGET}), pipelined "
              f"{bridged.pipe_rps / daemon.pipe_rps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
