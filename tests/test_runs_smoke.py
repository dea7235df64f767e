"""The attractor §11.13 integration smoke test: examples/pipelines/hello.dot, run by path
through a daemon with the scripted provider standing in for the LLM callback."""

from __future__ import annotations

import pytest

from .inprocess import InProcessDaemon
from .runs_support import read_json, run_file, run_to_end, visits
from .support import REPO

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]

HELLO = {"path": str(REPO / "examples" / "pipelines" / "hello.dot")}


async def test_smoke_pipeline_parses_validates_runs_and_checkpoints(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()

    # 1-2. Parse and validate: goal, 5 nodes, 6 edges, no error.
    planned = await wire.result("pipeline.plan", {"pipeline": HELLO})
    assert planned["valid"] is True
    assert not [d for d in planned["diagnostics"] if d["severity"] == "error"]
    plan = planned["plan"]
    assert plan["attrs"]["goal"] == "Create a hello world Python script"
    assert len(plan["nodes"]) == 5 and len(plan["edges"]) == 6

    # 3. Execute.
    detail = await run_to_end(wire, HELLO)

    # 4. Verify: success, implement completed, three stage directories with their files.
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert "implement" in detail["completed_nodes"]
    for node in ("plan", "implement", "review"):
        for name in ("prompt.md", "response.md", "status.json"):
            assert run_file(detail, node, name).is_file(), (node, name)
    assert run_file(detail, "plan", "prompt.md").read_text() == (
        "Plan how to create a hello world script for: Create a hello world Python script")

    # 5. The goal gate was satisfied: implement's last outcome is a success and the run
    # went through to the exit without a detour.
    implement = [s for s in detail["stages"] if s["node_id"] == "implement"]
    assert implement[-1]["status"] == "success"
    assert read_json(detail, "implement", "status.json")["outcome"] == "success"
    assert visits(detail) == ["start", "plan", "implement", "review", "done"]

    # 6. The checkpoint.
    checkpoint = read_json(detail, "checkpoint.json")
    assert checkpoint["current_node"] == "done"
    for node in ("plan", "implement", "review"):
        assert node in checkpoint["completed_nodes"]
    manifest = read_json(detail, "manifest.json")
    assert (manifest["pipeline_name"], manifest["status"]) == ("hello", "completed")
