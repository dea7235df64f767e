"""The fuzz suite (issue 13, "Keep it found"), bounded to well under a minute.

(a) Params: for every method a client may call, params generated from its schema in
    schemas/ (hypothesis-jsonschema), valid ones and mutated ones, go to one long-lived
    daemon over a real pipe (stdio). Now and then an id or a pipeline is swapped for a real
    one (a run, a trace, a snapshot, a test run the suite made first), so that the requests
    reach the handlers and not only the models.
(b) Bytes: framed requests, mutated (truncated, bits flipped, lengths huge, negative, of
    4,000 digits, garbage headers, batches), sent in both framings and in split chunks.

Both assert that the daemon lives, that every reply is well-formed JSON-RPC routed to a
request that was sent, that none is -32603, and (b) that a valid request after the garbage
is answered. Reproducible: hypothesis is derandomized (a fixed seed per test)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fuzz_support import (
    SESSION_ENDERS,
    client_methods,
    declared_lengths,
    mutated,
    neutralized,
    param_names,
    probes,
    problems,
    valid_params,
    wire_garbage,
    with_value,
)
from .runs_support import FAST, dot
from .support import WAIT, DaemonProcess, Wire, spawn_stdio, start_daemon

PER_METHOD = 20  # examples per method in (a): 32 methods, about 20 s on a busy machine
WIRE_EXAMPLES = 120  # per framing in (b)
MAX_FRAME = 65_536  # (b)'s daemon: small, so that "too large" is cheap to reach
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))
PIPELINE = """\
digraph seed {
    start [shape=Mdiamond]
    ask [prompt="Say $topic", scripted.response="said"]
    shell [shape=parallelogram, tool_command="echo hi"]
    done [shape=Msquare]
    start -> ask -> shell -> done
}
"""


class Seeds:
    """Real things the daemon knows, swapped into generated params now and then."""

    def __init__(self, run: dict[str, Any], trials: dict[str, Any], snapshot: dict[str, Any],
                 tested: dict[str, Any], pipeline_file: Path) -> None:
        self.pipeline_file = str(pipeline_file)
        self.by_field: dict[str, list[Any]] = {
            "run_id": [run["run_id"]], "a": [run["run_id"]], "b": [run["run_id"]],
            "from_run": [run["run_id"]], "trace_id": [run["trace_id"]],
            "snapshot_id": [snapshot["id"]], "snapshot_ids": [[snapshot["id"]]],
            "test_run_id": [tested["test_run_id"]],
            "trial_set_id": [trials["trial_set_id"]],
            "pipeline": [dot(PIPELINE)], "inputs": [{"topic": "fuzz"}], "name": ["fuzz"],
        }
        self.snapshot_id = snapshot["id"]

    def base(self, method: str) -> dict[str, Any]:
        """Params of `method` made of seeds alone (each field the seeds know)."""
        return {name: self.by_field[name][0] for name in param_names(method) & set(self.by_field)}

    def swap(self, method: str, params: Any, data: st.DataObject) -> Any:
        """`params` with some of the method's fields set to real ids (or the seed pipeline
        and its inputs), given or not. A snapshot id is never given to snapshot.delete: the
        seed snapshot must outlive the fuzz."""
        if not isinstance(params, dict):
            return params
        for name in param_names(method) & set(self.by_field):
            if data.draw(st.integers(0, 3), label=f"swap {name}") > 0:
                params[name] = data.draw(st.sampled_from(self.by_field[name]))
        if "id" in params and method.startswith("snapshot.") and method != "snapshot.delete" \
                and data.draw(st.integers(0, 3), label="swap id") > 0:
            params["id"] = self.snapshot_id
        return params


async def seed(wire: Wire, home: Path) -> Seeds:
    """A completed run, a trial set, a snapshot with a cassette and a test run of it."""
    pipeline = dot(PIPELINE)
    run = await wire.result("run.start", {"pipeline": pipeline, "inputs": {"topic": "x"},
                                          "settings": FAST, "wait": True})
    detail = await wire.result("run.get", {"run_id": run["run_id"]})
    trials = await wire.result("run.start", {"pipeline": pipeline, "trials": 2,
                                             "settings": FAST, "wait": True})
    snapshot = await wire.result("snapshot.create", {"run_id": run["run_id"], "name": "seed",
                                                     "tags": ["fuzz"]})
    tested = await wire.result("tests.run", {"tags": ["fuzz"], "wait": True})
    pipeline_file = home.parent / "seed.dot"
    pipeline_file.write_text(PIPELINE)
    return Seeds(detail, trials, snapshot, tested, pipeline_file)


class Session:
    """One client over the daemon's stdin/stdout; every exchange is checked."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.found: list[str] = []
        self.codes: dict[int, int] = {}

    async def call(self, method: str, params: Any) -> dict[str, Any]:
        """Send one request and check its reply (and the notifications before it)."""
        self.wire._next_id += 1
        sent = self.wire._next_id
        message = {"jsonrpc": "2.0", "id": sent, "method": method, "params": params}
        await self.wire.send_raw(self.wire.frame(json.dumps(message).encode()))
        reply = await self.wire.response()
        notes, self.wire.notifications = self.wire.notifications, []
        self.found += [f"{method}: {p}" for note in notes for p in problems(note, set())]
        self.found += [f"{method} {json.dumps(params)[:300]}: {p}"
                       for p in problems(reply, {sent})]
        if reply.get("id") != sent:
            self.found.append(f"{method}: answered with id {reply.get('id')}, sent {sent}")
        code = (reply.get("error") or {}).get("code", 0)
        self.codes[code] = self.codes.get(code, 0) + 1
        return reply

    async def wind_down(self, method: str, reply: dict[str, Any]) -> None:
        """Cancel what a request started, so that runs do not pile up."""
        result = reply.get("result")
        if not isinstance(result, dict):
            return
        if result.get("status") in ("running", "pending", "waiting") and "run_id" in result:
            await self.call("run.cancel", {"run_id": result["run_id"]})
        if method == "tests.run" and "test_run_id" in result:
            await self.call("tests.cancel", {"test_run_id": result["test_run_id"]})


def params_fuzzer(runner: asyncio.Runner, process: asyncio.subprocess.Process,
                  session: Session, seeds: Seeds, method: str) -> Callable[[], None]:
    """The hypothesis test of one method's params."""

    @settings(FUZZ, max_examples=PER_METHOD)
    @given(st.data())
    def exchange(data: st.DataObject) -> None:
        known = len(session.found)  # this example's problems only: shrinking reruns it
        params = seeds.swap(method, data.draw(valid_params(method)), data)
        if data.draw(st.integers(0, 3), label="mutate") > 0:
            params = data.draw(mutated(params))
        params = neutralized(method, params, seeds.pipeline_file)
        reply = runner.run(session.call(method, params))
        runner.run(session.wind_down(method, reply))
        assert process.returncode is None, "the daemon died"
        assert not session.found[known:], "\n".join(session.found[known:])

    return exchange


def test_generated_params_never_get_an_internal_error(short_tmp: Path) -> None:
    methods = [m for m in client_methods() if m not in SESSION_ENDERS]
    with asyncio.Runner() as runner:
        process, wire = runner.run(spawn_stdio(short_tmp / "home"))
        try:
            runner.run(wire.initialize())
            seeds = runner.run(seed(wire, short_tmp / "home"))
            session = Session(wire)
            for method in methods:  # each bound, probed on params the seeds make valid
                for path, value in probes(method):
                    params = neutralized(method, with_value(seeds.base(method), path, value),
                                         seeds.pipeline_file)
                    runner.run(session.wind_down(method, runner.run(session.call(method,
                                                                                 params))))
            assert not session.found, "\n".join(session.found)
            for method in methods:
                params_fuzzer(runner, process, session, seeds, method)()
            assert runner.run(session.call("daemon.status", {}))["result"]["pid"] == process.pid
            # The session enders, once, at the end: a clean goodbye.
            assert "result" in runner.run(session.call("shutdown", {}))
            runner.run(wire.send({"jsonrpc": "2.0", "method": "exit"}))
            assert runner.run(asyncio.wait_for(process.wait(), WAIT)) == 0
            print(f"replies by error code (0: a result): {sorted(session.codes.items())}")
        finally:
            if process.returncode is None:
                process.kill()
                runner.run(process.wait())


async def exchange_garbage(daemon: DaemonProcess, framing: str, garbage: bytes,
                           chunks: list[int]) -> list[str]:
    """Send `garbage` (in pieces cut at `chunks`) between two valid requests on one
    connection; what went wrong."""
    wire = await daemon.connect(framing)
    found: list[str] = []
    before = await wire.request("daemon.status")
    found += problems(before, {wire._next_id})
    cuts = sorted({0, len(garbage), *(c % (len(garbage) + 1) for c in chunks)})
    for start, end in itertools.pairwise(cuts):
        await wire.send_raw(garbage[start:end])
    longest = max(declared_lengths(garbage), default=0)
    if framing == "content-length" and longest > 2 * MAX_FRAME:
        # A length this large holds the connection until that many bytes came (or the
        # client goes): whatever the framing, only a new connection can go on.
        await wire.close()
        wire = await daemon.connect(framing)
    elif framing == "content-length":
        # Ends any header block, then feeds a pending body (or one to discard) its bytes.
        await wire.send_raw(b"\r\n\r\n" + b" " * longest + b"\r\n\r\n")
    else:
        await wire.send_raw(b"\n")
    after = 10**9
    await wire.send({"jsonrpc": "2.0", "id": after, "method": "daemon.status"})
    sent_ids = {wire._next_id, after}
    while True:
        reply = await wire.recv()
        ids = {r.get("id") for r in (reply if isinstance(reply, list) else [reply])
               if isinstance(r, dict)}
        # A flipped bit may change an id: any id spelled out in the garbage was sent.
        allowed = sent_ids | {i for i in ids if json.dumps(i).encode() in garbage}
        found += problems(reply, allowed)
        if after in ids:
            break
    await wire.close()
    return found


def wire_fuzzer(runner: asyncio.Runner, daemon: DaemonProcess, framing: str,
                frames: list[bytes]) -> Callable[[], None]:
    """The hypothesis test of one framing's mutated bytes."""

    @settings(FUZZ, max_examples=WIRE_EXAMPLES)
    @given(wire_garbage(framing, frames), st.lists(st.integers(0, 10**6), max_size=4))
    def exchange(garbage: bytes, chunks: list[int]) -> None:
        found = runner.run(exchange_garbage(daemon, framing, garbage, chunks))
        assert daemon.process.returncode is None, "".join(daemon.log[-20:])
        assert not found, "\n".join(found)

    return exchange


def test_mutated_frames_in_both_framings_never_stop_the_daemon(short_tmp: Path) -> None:
    frames_of = {
        framing: [frame(framing, message) for message in (
            {"jsonrpc": "2.0", "id": 5, "method": "daemon.status"},
            {"jsonrpc": "2.0", "id": "s", "method": "run.list", "params": {"limit": 3}},
            {"jsonrpc": "2.0", "method": "initialized"},
            [{"jsonrpc": "2.0", "id": 7, "method": "daemon.status"},
             {"jsonrpc": "2.0", "id": 7, "method": "rpc.discover"}, 1, []],
            [{"jsonrpc": "2.0", "id": n, "method": "daemon.status"} for n in range(200)],
            {"jsonrpc": "2.0", "id": 9, "method": "run.get", "params": {"run_id": "x" * 500}},
        )] + [b"[" * 2000 + b"]" * 2000 + (b"\n" if framing == "ndjson" else b"")]
        for framing in ("content-length", "ndjson")}
    with asyncio.Runner() as runner:
        daemon = runner.run(start_daemon(short_tmp / "home", "--socket",
                                         str(short_tmp / "d.sock"),
                                         "--max-frame-bytes", str(MAX_FRAME)))
        try:
            for framing, frames in frames_of.items():
                wire_fuzzer(runner, daemon, framing, frames)()
        finally:
            assert runner.run(daemon.stop()) == 0, "".join(daemon.log[-20:])


def frame(framing: str, message: Any) -> bytes:
    """`message` framed as a client would."""
    body = json.dumps(message).encode()
    if framing == "ndjson":
        return body + b"\n"
    return b"Content-Length: %d\r\n\r\n" % len(body) + body
