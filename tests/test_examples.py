"""Every example pipeline (the ones docs/pipelines.md shows) is valid and runs to success."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import REPO, DaemonProcess

EXAMPLES = sorted([*(REPO / "examples" / "pipelines").glob("*.dot"),
                   *(REPO / "examples" / "recipes").glob("*.yaml")])
OFFLINE = {"human": {"auto_approve": True}, "retry": {"delay_scale": 0}}


def test_there_are_examples_of_both_formats() -> None:
    assert {p.suffix for p in EXAMPLES} == {".dot", ".yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_validates_and_runs(daemon: DaemonProcess, path: Path) -> None:
    wire = await daemon.connect()
    checked = await wire.result("pipeline.validate", {"pipeline": {"path": str(path)}})
    assert checked["valid"], checked["diagnostics"]
    assert not [d for d in checked["diagnostics"] if d["severity"] == "error"]
    run = await wire.result("run.start", {"pipeline": {"path": str(path)}, "wait": True,
                                          "settings": OFFLINE})
    assert (run["status"], run["outcome"]) == ("completed", "success"), run
