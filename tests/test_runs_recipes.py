"""YAML recipes through the daemon: a DAG runs independent stages concurrently, a plain list
runs strictly in order. The stage timestamps of run.get are the evidence; the scripted
provider's `latency_ms` makes every model stage take a known, non-zero time."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import read_json, recipe, run_to_end, stages_of, when

pytestmark = pytest.mark.in_process


LATENCY_MS = 200

DIAMOND = recipe("""\
    name: diamond
    goal: Combine two views
    stages:
      - id: a
        prompt: Gather the facts
      - id: b
        needs: a
        prompt: View one
      - id: c
        needs: [a]
        prompt: View two
      - id: d
        needs: [b, c]
        prompt: Combine both views
    """)


def slow(latency_ms: float, **settings: Any) -> dict[str, Any]:
    return {"retry": {"delay_scale": 0},
            "providers": {"scripted": {"latency_ms": latency_ms}}, **settings}


def interval(detail: dict[str, Any], node: str) -> tuple[Any, Any]:
    [stage] = stages_of(detail, node)
    return when(stage["started_at"]), when(stage["ended_at"])


async def test_a_diamond_dag_runs_its_middle_stages_concurrently(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    plan = (await wire.result("pipeline.plan", {"pipeline": DIAMOND}))["plan"]
    assert plan["dag"] is True
    assert sorted((e["source"], e["target"]) for e in plan["edges"]) == [
        ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "exit"), ("start", "a")]

    detail = await run_to_end(wire, DIAMOND, settings=slow(LATENCY_MS))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    a, b, c, d = (interval(detail, node) for node in "abcd")
    # b and c overlap: each started before the other ended.
    assert b[0] < c[1] and c[0] < b[1], (b, c)
    # ... and the needs hold: a before both, d after both.
    assert a[1] <= min(b[0], c[0])
    assert d[0] >= max(b[1], c[1])
    for node in "abcd":  # each took the scripted latency (less a timer's granularity)
        started, ended = interval(detail, node)
        assert ended - started >= timedelta(milliseconds=LATENCY_MS * 0.9)
    assert set(detail["completed_nodes"]) == {"start", "a", "b", "c", "d", "exit"}
    assert detail["completed_nodes"][-1] == "exit"
    for node in "bcd":  # each stage's response is on disk (the context keeps only the last)
        assert (Path(detail["run_dir"]) / node / "response.md").read_text()


async def test_the_same_dag_with_max_parallel_1_runs_one_stage_at_a_time(
        daemon: InProcessDaemon) -> None:
    """The control: the overlap above comes from concurrency, not from clock noise."""
    wire = await daemon.connect()
    detail = await run_to_end(wire, DIAMOND, settings=slow(LATENCY_MS / 2, max_parallel=1))
    assert detail["status"] == "completed"
    b, c = interval(detail, "b"), interval(detail, "c")
    assert b[1] <= c[0] or c[1] <= b[0], (b, c)


async def test_a_linear_recipe_runs_its_stages_strictly_in_order(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = recipe("""\
        name: chain
        stages:
          - id: fetch
            prompt: Fetch
          - id: summarise
            prompt: Summarise
          - id: publish
            type: tool
            tool_command: echo published
          - id: notify
            prompt: Notify
        """)
    plan = (await wire.result("pipeline.plan", {"pipeline": pipeline}))["plan"]
    assert plan["dag"] is False
    assert [(e["source"], e["target"]) for e in plan["edges"]] == [
        ("start", "fetch"), ("fetch", "summarise"), ("summarise", "publish"),
        ("publish", "notify"), ("notify", "exit")]

    detail = await run_to_end(wire, pipeline, settings=slow(LATENCY_MS / 2))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    order = ["start", "fetch", "summarise", "publish", "notify", "exit"]
    assert [s["node_id"] for s in detail["stages"]] == detail["completed_nodes"] == order
    stages = detail["stages"]
    for before, after in itertools.pairwise(stages):
        assert when(before["ended_at"]) <= when(after["started_at"]), (before, after)
    assert detail["context"]["publish.output"] == "published\n"
    assert read_json(detail, "manifest.json")["node_count"] == len(order)

