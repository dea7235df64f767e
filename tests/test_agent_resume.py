"""An agent node whose daemon is killed with -9 during a tool call: the next daemon kills
the tool process the dead one left, and the resumed run does not repeat the model turn and
the tool call that had finished; only the call in flight runs again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from .runs_support import FAST, dot, make_fifo, process_gone, read_fifo, run_file, trace
from .support import start_daemon

PRICED = {**FAST, "pricing": {"models": {"scripted/*": {"input_per_mtok": 3.0,
                                                       "output_per_mtok": 15.0}}}}


def pipeline(go: Path, fifo: Path) -> dict[str, str]:
    """`first` counts its runs; `second` counts its runs and, until `go` exists, announces
    its pid in `fifo` and blocks. One tool at a time: `first` has finished when `second`
    announces itself."""
    first = json.dumps(["sh", "-c", "echo x >> first.count"])
    second = json.dumps(["sh", "-c", f'echo x >> second.count; test -e {go} && exit 0; '
                                     f'echo $$ > {fifo}; exec sleep 30'])
    turns = json.dumps([{"tools": [{"name": "first"}, {"name": "second"}]}])
    return dot(f"""\
        digraph crash {{
            graph [tool.first.argv={json.dumps(first)}, tool.second.argv={json.dumps(second)}]
            start [shape=Mdiamond]; exit [shape=Msquare]
            work [prompt="Work", tools="first,second", tool_concurrency=1,
                  scripted.turns={json.dumps(turns)}, scripted.response="done"]
            start -> work -> exit
        }}""")


async def test_a_finished_tool_call_is_not_repeated_after_kill_9_and_resume(
        short_tmp: Path) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    first = await start_daemon(home, "--socket", socket)
    wire = await first.connect()
    started = await wire.result("run.start", {"pipeline": pipeline(go, fifo),
                                              "settings": PRICED})
    pid = int(await read_fifo(fifo))  # `first` is done, `second` blocks
    first.process.kill()
    assert await first.stop() == -signal.SIGKILL
    assert not process_gone(pid)  # its own process group outlived the daemon

    second = await start_daemon(home, "--socket", socket)
    try:
        assert process_gone(pid)  # the next daemon killed what the dead one left
        wire = await second.connect()
        run_id = started["run_id"]
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert (resumed["status"], resumed["outcome"]) == ("completed", "success"), \
            resumed["failure_reason"]
        detail = await wire.result("run.get", {"run_id": run_id})
        workspace = run_file(detail, "workspace")
        # The finished call ran once; the one in flight at the kill ran again.
        assert (workspace / "first.count").read_text() == "x\n"
        assert (workspace / "second.count").read_text() == "x\nx\n"
        # The store holds each call once, the turn served again at its price.
        calls = (await wire.result("trace.get", {"trace_id": detail["trace_id"]}))["calls"]
        kinds = [(c["kind"], (c["request"] or {}).get("tool")) for c in calls]
        assert kinds == [("model", None), ("tool", "first"), ("tool", "second"),
                         ("model", None)]
        assert calls[0]["cost_usd"] > 0
        assert detail["cost_usd"] == sum(c["cost_usd"] for c in calls)
        # The trace says what happened: the two finished calls, then the resumed node's.
        assert [(c["seq"], c["kind"]) for c in trace(detail)] == [
            (1, "model"), (2, "tool"), (1, "model"), (2, "tool"), (3, "tool"), (4, "model")]
    finally:
        await second.stop()


async def test_a_cancelled_agent_resumes_without_counting_a_turn_twice(
        short_tmp: Path) -> None:
    # A cancel writes the node's finished calls to the store; the resume serves them again
    # under the same numbers: each is kept once, and paid once.
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    daemon = await start_daemon(home, "--socket", socket)
    try:
        wire = await daemon.connect()
        started = await wire.result("run.start", {"pipeline": pipeline(go, fifo),
                                                  "settings": PRICED})
        await read_fifo(fifo)
        run_id = started["run_id"]
        await wire.result("run.cancel", {"run_id": run_id})
        cancelled = await wire.result("run.get", {"run_id": run_id})
        assert cancelled["status"] == "cancelled" and cancelled["cost_usd"] > 0
        go.touch()
        resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
        assert resumed["status"] == "completed", resumed["failure_reason"]
        detail = await wire.result("run.get", {"run_id": run_id})
        calls = (await wire.result("trace.get", {"trace_id": detail["trace_id"]}))["calls"]
        assert [(c["seq"], c["kind"]) for c in calls] == [
            (1, "model"), (2, "tool"), (3, "tool"), (4, "model")]
        assert detail["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls))
        assert calls[0]["cost_usd"] == cancelled["cost_usd"]  # the first turn, once
        assert (run_file(detail, "workspace") / "first.count").read_text() == "x\n"
    finally:
        await daemon.stop()
