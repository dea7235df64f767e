"""Cancel means cancel: Ctrl-C (SIGINT to the CLI) on `ostinato run` cancels the run it
started, on `ostinato run --trials` the trial set, on `ostinato test` the test run;
`--detach` leaves the run going; `$/cancelRequest` on a waiting run.start cancels the run
only with `cancel_with_request`. Without a terminal the CLI prints plain progress lines
while the work runs. A real daemon, the CLI as a subprocess on its socket."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from .runs_support import (
    blocking,
    dot,
    make_fifo,
    next_event,
    of_type,
    process_gone,
    read_fifo,
    response_to,
    send_request,
)
from .support import WAIT, DaemonProcess

CLI = [sys.executable, "-m", "ostinato.clients.cli"]
REQUEST_CANCELLED = -32800


def slow_then_model(fifo: Path) -> str:
    """A pipeline whose tool node announces its pid in `fifo` and blocks, with a model node
    after it that a cancelled run must never reach."""
    return f"""\
digraph slow {{
    start [shape=Mdiamond]
    work [shape=parallelogram, tool_command="echo $$ > {fifo}; exec sleep 30"]
    after [prompt="Summarize the work"]
    done [shape=Msquare]
    start -> work -> after -> done
}}
"""


SLEEPY = """\
digraph sleepy {
    start [shape=Mdiamond]
    work [shape=parallelogram, tool_command="exec sleep 30"]
    done [shape=Msquare]
    start -> work -> done
}
"""


async def cli(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    """`ostinato ARGS` started with its output on pipes (not a terminal)."""
    return await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def line_starting(process: asyncio.subprocess.Process, prefix: str) -> str:
    """The first line of the process's stdout that starts with `prefix` (lines before it
    are read and dropped)."""
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
        assert line, f"stdout ended before a line starting with {prefix!r}"
        if line.startswith(prefix):
            return line.rstrip("\n")


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ctrl_c_on_run_cancels_the_run(daemon: DaemonProcess, tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "pid")
    pipeline = tmp_path / "slow.dot"
    pipeline.write_text(slow_then_model(fifo))
    process = await cli("run", str(pipeline), "--socket", daemon.socket, cwd=tmp_path)
    run_id = (await line_starting(process, "run ")).split()[1]
    pid = int(await read_fifo(fifo))
    # Without a terminal, a plain line says what runs while nothing else is printed.
    heartbeat = await line_starting(process, "  … running work (")
    assert "1 done" in heartbeat and " elapsed" in heartbeat

    process.send_signal(signal.SIGINT)
    code, _, err = await finish(process)
    assert code == 130, err
    assert f"ostinato run: cancelled run {run_id}" in err
    assert "--detach" in err  # how to leave it running instead

    wire = await daemon.connect()
    detail = await wire.result("run.get", {"run_id": run_id})
    assert detail["status"] == "cancelled"
    assert "after" not in [stage["node_id"] for stage in detail["stages"]]  # no model call
    trace = await wire.result("trace.get", {"trace_id": detail["trace_id"]})
    assert trace["totals"]["model_calls"] == 0, trace
    assert process_gone(pid)


async def test_detach_leaves_the_run_running(daemon: DaemonProcess, tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "pid")
    pipeline = tmp_path / "slow.dot"
    pipeline.write_text(slow_then_model(fifo))
    process = await cli("run", str(pipeline), "--detach", "--socket", daemon.socket,
                        cwd=tmp_path)
    code, out, err = await finish(process)  # at once: the run blocks for 30 s
    assert code == 0, err
    first, follow, cancel = out.splitlines()
    run_id = first.split()[1]
    assert first == f"run {run_id} started (detached: it goes on without this command)"
    assert follow == f"  follow it: ostinato runs watch {run_id} --socket {daemon.socket}"
    assert cancel == f"  cancel it: ostinato runs cancel {run_id} --socket {daemon.socket}"

    await read_fifo(fifo)  # the run reached its slow node after the CLI had gone
    wire = await daemon.connect()
    assert (await wire.result("run.get", {"run_id": run_id}))["status"] == "running"
    assert (await wire.result("run.cancel", {"run_id": run_id}))["status"] == "cancelled"


async def test_ctrl_c_on_a_trial_set_cancels_it_and_plain_lines_show_progress(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    pipeline = tmp_path / "sleepy.dot"
    pipeline.write_text(SLEEPY)
    process = await cli("run", str(pipeline), "--trials", "3", "--concurrency", "2",
                        "--socket", daemon.socket, cwd=tmp_path)
    set_id = (await line_starting(process, "trial set ")).split()[2]
    # Not a terminal: a status line now and then while the set runs (none has finished).
    await line_starting(process, "  0/3 finished · 0 passed · 0 failed · 2 running")

    process.send_signal(signal.SIGINT)
    code, _, err = await finish(process)
    assert code == 130, err
    assert f"ostinato run: cancelled trial set {set_id}" in err
    wire = await daemon.connect()
    trial_set = await wire.result("trials.get", {"trial_set_id": set_id})
    assert trial_set["status"] == "cancelled"
    assert [t["status"] for t in trial_set["trial_runs"]] == ["cancelled", "cancelled",
                                                              "skipped"]


async def test_cancel_request_cancels_the_run_only_when_asked(daemon: DaemonProcess,
                                                              tmp_path: Path) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    seen: set[str] = set()
    for cancel_with_request, left in ((False, "running"), (True, "cancelled")):
        fifo = make_fifo(tmp_path / f"pid-{cancel_with_request}")
        request_id = await send_request(wire, "run.start", {
            "pipeline": blocking(fifo), "wait": True,
            "cancel_with_request": cancel_with_request})
        await read_fifo(fifo)
        await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest",
                         "params": {"id": request_id}})
        reply = await response_to(wire, request_id)
        assert reply["error"]["code"] == REQUEST_CANCELLED
        # The events carry the run's id: the reply to a cancelled request does not.
        [run_id] = {m["params"]["run_id"] for m in wire.notifications
                    if m.get("method") == "run/event"} - seen
        seen.add(run_id)
        run = await wire.result("run.get", {"run_id": run_id})
        assert run["status"] == left, run
        if left == "running":
            await wire.result("run.cancel", {"run_id": run_id})


async def test_cancel_request_cancels_a_trial_set_when_asked(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    request_id = await send_request(wire, "run.start", {
        "pipeline": dot(SLEEPY), "trials": 2, "wait": True, "cancel_with_request": True})
    await next_event(wire, of_type("StageStarted", name="work"))
    await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest",
                     "params": {"id": request_id}})
    reply = await response_to(wire, request_id)
    assert reply["error"]["code"] == REQUEST_CANCELLED
    runs = (await wire.result("run.list", {}))["runs"]
    assert runs and {run["status"] for run in runs} == {"cancelled"}, runs

    refused = await wire.request("run.start", {"pipeline": dot(SLEEPY),
                                               "cancel_with_request": True})
    assert refused["error"]["code"] == -32602
    assert "wait" in json.dumps(refused["error"]["data"])


async def test_ctrl_c_on_test_cancels_the_test_run(daemon: DaemonProcess,
                                                   tmp_path: Path) -> None:
    wire = await daemon.connect()
    fifo = make_fifo(tmp_path / "pid")
    await wire.result("snapshot.create", {
        "name": "slow", "pipeline": blocking(fifo), "tags": ["slow"],
        "invariants": [{"type": "run_status", "value": "completed"}]})
    process = await cli("test", "--tags", "slow", "--mode", "live", "--socket", daemon.socket,
                        cwd=tmp_path)
    test_run_id = (await line_starting(process, "test run ")).split()[2].rstrip(":")
    await read_fifo(fifo)  # its replay is in the slow node
    await line_starting(process, "  … 0/1 snapshots done; running slow v1")

    process.send_signal(signal.SIGINT)
    code, _, err = await finish(process)
    assert code == 130, err
    assert f"ostinato test: cancelled test run {test_run_id}" in err
    test_run = await wire.result("tests.get", {"test_run_id": test_run_id})
    assert test_run["status"] == "cancelled"


async def test_provider_retries_are_shown(daemon: DaemonProcess, tmp_path: Path) -> None:
    # Most calls fail (seeded), and the pool retries them at once until one gets through.
    settings = {"default_provider": "flaky", "retry": {"delay_scale": 0},
                "providers": {"flaky": {"type": "scripted", "fail_rate": 0.7, "seed": 5,
                                        "retry": {"max_attempts": 30,
                                                  "initial_delay_ms": 0}}}}
    pipeline = tmp_path / "one.dot"
    pipeline.write_text('digraph one { start [shape=Mdiamond]; ask [prompt="Hi"]; '
                        'done [shape=Msquare]; start -> ask -> done }')
    process = await cli("run", str(pipeline), "--settings", json.dumps(settings),
                        "--socket", daemon.socket, cwd=tmp_path)
    code, out, err = await finish(process)
    assert code == 0, err
    retries = [line for line in out.splitlines() if line.startswith("  ↻ ask ")]
    assert retries and all(" failed" in line and "retrying in 0.0 ms" in line
                           for line in retries), out
    assert retries[0].split()[2:5] == ["provider", "try", "1"], out
