"""Resource limits: what one client can make the daemon hold stays bounded, and a client that
goes over a limit gets a documented error (docs/protocol.md, docs/security.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .support import DaemonProcess

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
