"""Resource limits: what one client can make the daemon hold stays bounded, and a client that
goes over a limit gets a documented error (docs/protocol.md, docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from .support import WAIT, DaemonProcess, start_daemon

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the daemon's memory from /proc")


def resident_mib(pid: int) -> float:
    """The process's resident memory, as `ps` shows it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wide_pipeline(nodes: int) -> str:
    """A 17 KB DOT pipeline whose every node's prompt repeats the variable `goal` three times."""
    lines = ["digraph wide {", "  start [shape=Mdiamond]", "  exit [shape=Msquare]"]
    for i in range(nodes):
        lines += [f'  n{i} [prompt="Do $goal, step {i}, for $goal and $goal"]',
                  f"  start -> n{i} -> exit"]
    return "\n".join([*lines, "}"])


@linux_only
async def test_validating_with_ever_new_variables_keeps_memory_bounded(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    source = wide_pipeline(250)
    assert 17_000 < len(source) < 25_000
    pipeline = {"source": source, "format": "dot"}
    first = await wire.result("pipeline.validate", {"pipeline": pipeline,
                                                    "variables": {"goal": "x"}})
    assert first["valid"], first
    before = resident_mib(daemon.process.pid)
    for i in range(60):  # each expands to about 6 MB: 360 MB if every load were kept
        goal = f"{i:04d}" + "x" * 8000
        checked = await wire.result("pipeline.validate", {"pipeline": pipeline,
                                                          "variables": {"goal": goal}})
        assert checked["valid"]
    grown = resident_mib(daemon.process.pid) - before
    assert grown < 200, f"the daemon kept {grown:.0f} MiB more after 60 validations"


def padded_validate(request_id: int, size: int) -> bytes:
    """A pipeline.validate request of about `size` bytes (a valid pipeline, padded)."""
    source = "digraph p {\n  start [shape=Mdiamond]  exit [shape=Msquare]\n  start -> exit\n}\n"
    source += "// " + "x" * size + "\n"
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "pipeline.validate",
                       "params": {"pipeline": {"source": source, "format": "dot"}}}).encode()


async def test_the_client_that_passes_the_buffered_input_budget_is_refused_and_closed(
        short_tmp: Path) -> None:
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--max-buffered-bytes", "100000")
    try:
        bystander = await daemon.connect()
        first, second = await daemon.connect(), await daemon.connect()
        bodies = {first: padded_validate(1, 70_000), second: padded_validate(1, 70_000)}
        for wire, body in bodies.items():  # 60 KB each of 70 KB frames: 120 KB held
            await wire.send_raw(wire.frame(body)[:60_000])
        replies = {asyncio.ensure_future(wire.recv()): wire for wire in bodies}
        done, waiting = await asyncio.wait(replies, timeout=WAIT,
                                           return_when=asyncio.FIRST_COMPLETED)
        [refusal] = done  # the one whose bytes came second; the other is waited for
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        refused, kept = replies[refusal], replies[next(iter(waiting))]
        error = refusal.result()
        assert error["id"] is None and error["error"]["code"] == -32007
        assert error["error"]["message"] == "Server busy: buffered input budget exceeded"
        assert await refused.reader.read() == b""  # and closed
        await kept.send_raw(kept.frame(bodies[kept])[60_000:])  # the other finishes its frame
        assert (await kept.response())["result"]["valid"] is True
        again = await daemon.connect()  # the budget is free again
        await again.send_raw(again.frame(padded_validate(5, 90_000)))
        assert (await again.response())["result"]["valid"] is True
        assert (await bystander.result("daemon.status"))["pid"] == daemon.process.pid
    finally:
        assert await daemon.stop() == 0


async def test_a_socket_connection_stalled_inside_a_frame_is_closed(short_tmp: Path) -> None:
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--frame-timeout", "0.5")
    try:
        idle = await daemon.connect()  # no unfinished frame: it may stay idle
        stalled = await daemon.connect()
        await stalled.send_raw(stalled.frame(padded_validate(1, 1000))[:500])
        reply = await stalled.recv()  # within the timeout, plus the time to notice it
        assert reply["id"] is None and reply["error"]["code"] == -32600
        assert "no bytes for 0.5 s" in reply["error"]["message"]
        assert await stalled.reader.read() == b""
        assert (await idle.result("daemon.status"))["pid"] == daemon.process.pid
    finally:
        assert await daemon.stop() == 0
    assert any("no bytes of its unfinished frame" in line for line in daemon.log)
