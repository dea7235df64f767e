"""Every example pipeline (the ones docs/pipelines.md shows) is valid, runs to success, and a
recorded replay of it reproduces it exactly at zero cost; the real-model example runs
offline with its scripted twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import visits
from .support import REPO, Wire

pytestmark = pytest.mark.in_process

EXAMPLES = sorted([*(REPO / "examples" / "pipelines").glob("*.dot"),
                   *(REPO / "examples" / "recipes").glob("*.yaml")])
OFFLINE = {"human": {"auto_approve": True}, "retry": {"delay_scale": 0}}
REAL_MODEL = REPO / "examples" / "real_model"


def test_there_are_examples_of_both_formats() -> None:
    assert {p.suffix for p in EXAMPLES} == {".dot", ".yaml"}


async def replays_exactly(wire: Wire, run: dict[str, Any]) -> None:
    """A recorded replay of `run` ends as it did, calls nothing, costs nothing, and
    run.diff finds no divergence."""
    replay = await wire.result("run.start", {"replay": {"from_run": run["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    assert (replay["status"], replay["outcome"]) == (run["status"], run["outcome"]), replay
    assert replay["cost_usd"] == 0.0
    diff = await wire.result("run.diff", {"a": run["run_id"], "b": replay["run_id"]})
    assert diff["identical"] is True, diff["first_divergence"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_validates_runs_and_replays(daemon: InProcessDaemon, path: Path) -> None:
    wire = await daemon.connect()
    checked = await wire.result("pipeline.validate", {"pipeline": {"path": str(path)}})
    assert checked["valid"], checked["diagnostics"]
    assert not [d for d in checked["diagnostics"] if d["severity"] == "error"]
    run = await wire.result("run.start", {"pipeline": {"path": str(path)}, "wait": True,
                                          "settings": OFFLINE})
    assert (run["status"], run["outcome"]) == ("completed", "success"), run
    await replays_exactly(wire, run)


async def test_the_real_model_example_runs_offline_with_its_scripted_twin(
        daemon: InProcessDaemon) -> None:
    pipeline = {"path": str(REAL_MODEL / "plan_implement_review.dot")}
    wire = await daemon.connect()
    checked = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert checked["diagnostics"] == []
    # The settings for a real server name the same provider, of type openai.
    local = json.loads((REAL_MODEL / "local.json").read_text())
    assert local["providers"]["local"]["type"] == "openai"
    twin = json.loads((REAL_MODEL / "scripted.json").read_text())
    run = await wire.result("run.start", {"pipeline": pipeline, "settings": twin,
                                          "wait": True})
    assert (run["status"], run["outcome"]) == ("completed", "success"), run
    detail = await wire.result("run.get", {"run_id": run["run_id"]})
    # The reviewer's model asked for a fix once, then approved.
    assert visits(detail) == ["start", "plan", "implement", "review", "fix", "implement",
                              "review", "done"]
    labels = [s["outcome"]["preferred_label"] for s in detail["stages"]
              if s["node_id"] == "review"]
    assert labels == ["Fix", "Approve"]
    await replays_exactly(wire, run)
