"""run.diff through a real daemon: the node where two runs part, metric deltas, and
`ostinato diff` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .inprocess import InProcessDaemon
from .runs_support import FAST, dot, recipe, run_to_end
from .support import REPO, DaemonProcess, published

NOT_FOUND = -32001

REPORT = """
    digraph report {
        start  [shape=Mdiamond]
        exit   [shape=Msquare]
        plan   [prompt="Plan the report", scripted.usage="10,20"]
        write  [prompt="%s", scripted.usage="%s"]
        review [prompt="Review the report", scripted.usage="5,5"]
        start -> plan -> write -> review -> exit
    }
"""
V1 = dot(REPORT % ("Write the report in French", "10,20"))
V2 = dot(REPORT % ("Write the report in German", "10,50"))
DAG = recipe((REPO / "examples" / "recipes" / "dag.yaml").read_text())


@pytest.mark.in_process
async def test_pipelines_that_differ_at_one_node_diverge_there(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    a = await run_to_end(wire, V1)
    b = await run_to_end(wire, V2)

    diff = published("run.diff", await wire.result("run.diff", {"a": a["run_id"],
                                                                "b": b["run_id"]}))

    assert (diff["a"], diff["b"], diff["identical"]) == (a["run_id"], b["run_id"], False)
    divergence = diff["first_divergence"]
    assert (divergence["node_id"], divergence["b_node_id"]) == ("write", "write")
    assert divergence["step"] == 3  # start, plan, write
    assert divergence["kind"] == "request"
    changed = {d["path"]: d for d in divergence["differences"]}
    assert changed["messages[1].content"]["a"] == "Write the report in French"
    assert changed["messages[1].content"]["b"] == "Write the report in German"
    assert diff["scenario"]["pipeline_changed"] is True
    # Nodes before and after the change did the same; write spent 30 more output tokens.
    assert diff["nodes"]["plan"]["delta"]["tokens"] == 0
    assert diff["nodes"]["write"]["delta"]["output_tokens"] == 30
    assert not any(node["outcome_changed"] for node in diff["nodes"].values())
    assert list(diff["nodes"]) == ["start", "plan", "write", "review", "exit"]
    assert diff["totals"]["delta"]["output_tokens"] == 30
    assert diff["totals"]["a"]["calls"] == diff["totals"]["b"]["calls"] == 3
    assert diff["totals"]["status_changed"] is False


@pytest.mark.in_process
async def test_identical_reruns_are_identical(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    for pipeline in (V1, DAG):
        a = await run_to_end(wire, pipeline, inputs={"topic": "tides"})
        b = await run_to_end(wire, pipeline, inputs={"topic": "tides"})

        diff = await wire.result("run.diff", {"a": a["run_id"], "b": b["run_id"]})

        assert diff["identical"] is True and diff["first_divergence"] is None
        assert diff["scenario"] == {"pipeline_changed": False, "inputs": [], "settings": []}
        assert diff["totals"]["delta"]["tokens"] == 0
        assert diff["totals"]["delta"]["stages"] == 0


@pytest.mark.in_process
async def test_a_run_that_failed_where_its_twin_succeeded(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    a = await run_to_end(wire, V1)
    b = await run_to_end(wire, V1, settings={
        **FAST, "providers": {"scripted": {"statuses": {"review": "fail"}}}})
    assert (a["status"], b["status"]) == ("completed", "failed")

    diff = await wire.result("run.diff", {"a": a["run_id"], "b": b["run_id"]})

    divergence = diff["first_divergence"]
    assert (divergence["node_id"], divergence["kind"]) == ("review", "response")
    assert diff["nodes"]["review"]["outcome_changed"] is True
    assert diff["totals"]["status_changed"] is True
    assert (diff["totals"]["a"]["status"], diff["totals"]["b"]["status"]) == (
        "completed", "failed")
    assert [d["path"] for d in diff["scenario"]["settings"]] == ["providers.scripted"]


@pytest.mark.in_process
async def test_diff_of_an_unknown_run_names_it(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    a = await run_to_end(wire, V1)
    unknown = "01a20000-0000-7000-8000-000000000000"

    reply = await wire.request("run.diff", {"a": a["run_id"], "b": unknown})

    assert reply["error"]["code"] == NOT_FOUND
    assert unknown in reply["error"]["message"] and "`b`" in reply["error"]["message"]


def ostinato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ostinato.clients.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


async def test_cli_diff_names_the_node_and_exits_by_verdict(daemon: DaemonProcess,
                                                            tmp_path: Path) -> None:
    wire = await daemon.connect()
    a = await run_to_end(wire, V1)
    b = await run_to_end(wire, V2)
    again = await run_to_end(wire, V1)
    socket = ("--socket", daemon.socket)

    changed = ostinato("diff", a["run_id"], b["run_id"], *socket, cwd=tmp_path)
    assert changed.returncode == 1, changed.stderr
    lines = changed.stdout.splitlines()
    assert "first divergence at step 3, node write: request" in lines
    assert any("messages[1].content" in line and "French" in line and "German" in line
               for line in lines), changed.stdout
    # The per-node table: a header, then a row per node with its statuses and deltas.
    assert any(line.split() == ["node", "a", "b", "tokens", "Δ", "cost", "Δ", "time", "Δ"]
               for line in lines), changed.stdout
    assert any(line.startswith("write") and "+30" in line for line in lines), changed.stdout

    same = ostinato("diff", a["run_id"], again["run_id"], "--json", *socket, cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["identical"] is True

    missing = ostinato("diff", a["run_id"], "no-such-run", *socket, cwd=tmp_path)
    assert missing.returncode == 1 and "no run no-such-run" in missing.stderr
