"""run.diff's comparison logic (daemon/runs/diff.py) on runs the engine really ran:
pipelines go through the Executor with the scripted provider and a recording sink, so the
stages and calls compared have exactly the shapes the store keeps."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.engine.executor import Executor
from ostinato.daemon.engine.handlers.base import Question
from ostinato.daemon.engine.handlers.registry import default_handlers
from ostinato.daemon.engine.load import load_pipeline
from ostinato.daemon.engine.providers.runtime import ProviderPool
from ostinato.daemon.engine.rundir import RunDirectory
from ostinato.daemon.ids import utc_now, uuid7
from ostinato.daemon.runs.diff import (
    MAX_VALUE,
    DiffSide,
    diff_runs,
    from_store,
)
from ostinato.daemon.store.db import Database
from ostinato.daemon.store.records import StageRecord
from ostinato.daemon.store.runs import RunStore
from ostinato.daemon.store.traces import TraceStore
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

from .runs_support import RecordingSink

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

LINEAR = """digraph linear {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    plan   [shape=box, prompt="Plan the work", scripted.usage="10,20"]
    write  [shape=box, prompt="%(write)s", scripted.usage="%(usage)s"]
    review [shape=box, prompt="Review it", scripted.usage="5,5"]
    start -> plan -> write -> review -> exit
}
"""

CONDITIONAL = """digraph conditional {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    check [shape=box, prompt="Check the input"]
    route [shape=diamond]
    yes   [shape=box, prompt="The fast way"]
    no    [shape=box, prompt="The slow way"]
    start -> check -> route
    route -> yes [condition="context.mode=fast"]
    route -> no  [condition="context.mode=slow"]
    yes -> exit
    no -> exit
}
"""

PARALLEL = """digraph fanout {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    fan  [shape=component, max_parallel=3]
    b1  [shape=box, prompt="Branch one"]
    b1x [shape=box, prompt="Branch one, second step"]
    b2  [shape=box, prompt="Branch two"]
    b2x [shape=box, prompt="Branch two, second step"]
    b3  [shape=box, prompt="Branch three"]
    join [shape=tripleoctagon]
    after [shape=box, prompt="Summarise the branches"]
    start -> fan
    fan -> b1
    fan -> b2
    fan -> b3
    b1 -> b1x -> join
    b2 -> b2x -> join
    b3 -> join
    join -> after -> exit
}
"""

TOOL = """digraph tool {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    probe [shape=parallelogram, tool_command="exit ${RUN_DIFF_TEST_CODE:-0}"]
    start -> probe -> exit
}
"""

PRICED = {"pricing": {"models": {"scripted/*": {"input_per_mtok": 1_000_000,
                                                "output_per_mtok": 2_000_000}}}}


class Answers:
    """A human who gives these answers, in order."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)

    async def ask(self, question: Question) -> str | None:
        """The next answer."""
        return self.answers.pop(0) if self.answers else None


class SlowNodes:
    """The run's provider pool, with a wait before some nodes' calls: it makes concurrent
    stages finish in another order without changing anything the calls record."""

    def __init__(self, pool: ProviderPool, delays: dict[str, float]) -> None:
        self.pool = pool
        self.delays = delays

    def resolve(self, request: Any) -> Any:
        """As the pool."""
        return self.pool.resolve(request)

    async def complete(self, request: Any, on_retry: Any = None) -> Any:
        """Wait, then as the pool."""
        await asyncio.sleep(self.delays.get(request.node_id, 0))
        return await self.pool.complete(request, on_retry=on_retry)


async def execute(tmp_path: Path, source: str, *, fmt: str = "dot",
                  inputs: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                  answers: tuple[str, ...] = (), delays: dict[str, float] | None = None,
                  ) -> DiffSide:
    """Run a pipeline through the engine; the record the service would read back."""
    loaded = load_pipeline(PipelineRef(source=source, format=fmt), EXAMPLES)
    assert loaded.graph is not None and loaded.valid, loaded.diagnostics
    graph = loaded.graph
    run_settings = RunSettings.model_validate(
        {"retry": {"delay_scale": 0, "jitter": False}, **(settings or {})})
    pool = ProviderPool({"default": run_settings.default_provider,
                         "providers": run_settings.providers, "pricing": run_settings.pricing})
    run_id, trace_id = uuid7(), uuid7()
    run_dir = RunDirectory(tmp_path / "runs" / run_id)
    run_dir.create()
    sink = RecordingSink()
    executor = Executor(run_id=run_id, trace_id=trace_id, graph=graph, run_dir=run_dir,
                        handlers=default_handlers(), providers=SlowNodes(pool, delays or {}),
                        interviewer=Answers(list(answers)), sink=sink, settings=run_settings)
    started = utc_now()
    try:
        result = await executor.run(dict(inputs or {}))
    finally:
        await pool.aclose()
    run = {"id": run_id, "trace_id": trace_id, "pipeline_hash": graph.digest(),
           "pipeline_name": graph.name, "status": result.status,
           "outcome": result.outcome.value, "failure_reason": result.failure_reason or None,
           "inputs": dict(inputs or {}), "settings": run_settings.model_dump(mode="json"),
           "run_dir": f"runs/{run_id}", "created_at": started, "started_at": started,
           "ended_at": utc_now()}
    return DiffSide(run, sink.stages, sink.calls, dag=graph.dag)


def example(name: str) -> str:
    """The source of an example pipeline."""
    return (EXAMPLES / "pipelines" / name).read_text()


def paths(divergence: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A divergence's differences by path."""
    return {d["path"]: d for d in divergence["differences"]}


# -- no divergence ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "answers"), [
    ("branching.dot", ()),
    ("retries.dot", ()),  # attempts: several stages of one node
    ("review.dot", ("R", "A")),  # a loop: gate and draft visited twice, attempt 1 each
])
async def test_identical_runs_have_no_divergence(tmp_path: Path, name: str,
                                                 answers: tuple[str, ...]) -> None:
    a = await execute(tmp_path, example(name), answers=answers)
    b = await execute(tmp_path, example(name), answers=answers)
    # Everything volatile differs: ids, trace ids, timestamps.
    assert a.run["id"] != b.run["id"] and a.run["trace_id"] != b.run["trace_id"]
    assert {c["id"] for c in a.calls}.isdisjoint(c["id"] for c in b.calls)
    assert [s["started_at"] for s in a.stages] != [s["started_at"] for s in b.stages]

    diff = diff_runs(a, b)

    assert diff["identical"] is True
    assert diff["first_divergence"] is None
    assert diff["a"] == a.run["id"] and diff["b"] == b.run["id"]
    assert diff["scenario"] == {"pipeline_changed": False, "inputs": [], "settings": []}
    assert not any(node["outcome_changed"] for node in diff["nodes"].values())
    assert all(node["delta"]["tokens"] == 0 for node in diff["nodes"].values())
    assert diff["totals"]["status_changed"] is False
    assert diff["totals"]["delta"]["stages"] == 0


async def test_parallel_branches_interleaved_differently_are_not_a_divergence(
        tmp_path: Path) -> None:
    a = await execute(tmp_path, PARALLEL, delays={"b1": 0.05})
    b = await execute(tmp_path, PARALLEL, delays={"b2": 0.05, "b3": 0.03})
    order_a = [s["node_id"] for s in a.stages if s["branch"]]
    order_b = [s["node_id"] for s in b.stages if s["branch"]]
    assert sorted(order_a) == sorted(order_b)
    assert order_a != order_b, "the branches should have finished in another order"

    diff = diff_runs(a, b)

    assert diff["identical"] is True, diff["first_divergence"]
    assert diff["nodes"]["b1x"]["a"]["status"] == "success"


async def test_dag_stages_finishing_in_another_order_are_not_a_divergence(
        tmp_path: Path) -> None:
    source = (EXAMPLES / "recipes" / "dag.yaml").read_text()
    # write and fact_check both need only outline and nothing needs them: their order
    # changes, and no later prompt mentions it.
    a = await execute(tmp_path, source, fmt="recipe", delays={"write": 0.05})
    b = await execute(tmp_path, source, fmt="recipe", delays={"fact_check": 0.05})
    assert a.dag and b.dag
    assert [s["node_id"] for s in a.stages] != [s["node_id"] for s in b.stages]

    assert diff_runs(a, b)["identical"] is True

    # Compared in completion order, as a linear pipeline's stages are, they would differ.
    sequential = diff_runs(dataclasses.replace(a, dag=False), dataclasses.replace(b, dag=False))
    assert sequential["first_divergence"]["kind"] == "path"
    assert {sequential["first_divergence"]["node_id"],
            sequential["first_divergence"]["b_node_id"]} == {"write", "fact_check"}


async def test_volatile_values_are_not_a_divergence(tmp_path: Path) -> None:
    a = await execute(tmp_path, LINEAR % {"write": "Write it", "usage": "10,20"})
    b = await execute(tmp_path, LINEAR % {"write": "Write it", "usage": "10,20"})
    # What a real provider and the pool vary between identical calls, and the cost a newer
    # pricing table puts on them.
    for call in b.calls:
        call["request"]["provider_attempt"] = 2
        call["response"].update(raw_id="chatcmpl-other", latency_ms=812.5, attempts=2,
                                cost_usd=0.25, cost_known=False)
        call.update(latency_ms=812.5, cost_usd=0.25)
    for stage in b.stages:
        stage["duration_ms"] += 1000

    diff = diff_runs(a, b)

    assert diff["identical"] is True
    assert diff["nodes"]["write"]["delta"]["cost_usd"] == 0.25
    assert diff["nodes"]["write"]["delta"]["duration_ms"] == pytest.approx(1000, abs=100)


# -- divergences --------------------------------------------------------------------------


async def test_a_changed_prompt_names_the_node_and_the_request_path(tmp_path: Path) -> None:
    common = "Write the summary. " + "Mind the details. " * 40
    a = await execute(tmp_path, LINEAR % {"write": common + "End A.", "usage": "10,20"})
    b = await execute(tmp_path, LINEAR % {"write": common + "End B.", "usage": "10,20"})

    diff = diff_runs(a, b)

    assert diff["identical"] is False
    divergence = diff["first_divergence"]
    assert divergence["node_id"] == "write" and divergence["b_node_id"] == "write"
    assert divergence["step"] == 3  # start, plan, write
    assert divergence["kind"] == "request"
    assert divergence["a"]["kind"] == "model" and divergence["a"]["index"] == 1
    assert diff["scenario"]["pipeline_changed"] is True
    content = paths(divergence)["messages[1].content"]
    assert content["at"] == len(common) + len("End ")
    # Long strings are cut to a window around where they start to differ.
    assert len(content["a"]) <= MAX_VALUE + 2 and content["a"].startswith("…")
    assert content["a"].endswith("End A.") and content["b"].endswith("End B.")
    assert list(paths(divergence)) == ["messages[1].content"]


async def test_a_conditional_going_another_way_is_a_path_divergence(tmp_path: Path) -> None:
    a = await execute(tmp_path, CONDITIONAL, inputs={"mode": "fast"})
    b = await execute(tmp_path, CONDITIONAL, inputs={"mode": "slow"})

    diff = diff_runs(a, b)

    divergence = diff["first_divergence"]
    assert divergence["kind"] == "path"
    assert divergence["step"] == 4  # start, check, route, then yes or no
    assert (divergence["node_id"], divergence["b_node_id"]) == ("yes", "no")
    assert divergence["a"]["node_id"] == "yes" and divergence["b"]["node_id"] == "no"
    assert paths(divergence)["node_id"] == {"path": "node_id", "a": "yes", "b": "no", "at": 0}
    assert diff["scenario"]["inputs"] == [{"path": "mode", "a": "fast", "b": "slow", "at": 0}]
    # A node only one run visited: the other side is null, its outcome changed.
    assert diff["nodes"]["yes"]["b"] is None and diff["nodes"]["no"]["a"] is None
    assert diff["nodes"]["yes"]["outcome_changed"] and diff["nodes"]["no"]["outcome_changed"]
    assert not diff["nodes"]["check"]["outcome_changed"]
    assert diff["nodes"]["no"]["delta"]["output_tokens"] == \
        diff["nodes"]["no"]["b"]["output_tokens"] > 0
    assert list(diff["nodes"]) == ["start", "check", "route", "yes", "exit", "no"]


async def test_a_different_human_answer_is_an_outcome_divergence(tmp_path: Path) -> None:
    a = await execute(tmp_path, example("review.dot"), answers=("A",))
    b = await execute(tmp_path, example("review.dot"), answers=("R", "A"))

    diff = diff_runs(a, b)

    divergence = diff["first_divergence"]
    assert (divergence["kind"], divergence["node_id"], divergence["step"]) == \
        ("outcome", "gate", 3)
    assert list(paths(divergence)) == ["preferred_label"]
    assert divergence["a"]["preferred_label"] == "[A] Approve"
    assert divergence["b"]["preferred_label"] == "R) Request changes"
    gate = diff["nodes"]["gate"]
    assert (gate["a"]["visits"], gate["b"]["visits"]) == (1, 2)
    assert gate["outcome_changed"] is False  # both ended approved


async def test_a_model_status_change_is_a_response_divergence(tmp_path: Path) -> None:
    a = await execute(tmp_path, CONDITIONAL, inputs={"mode": "fast"})
    b = await execute(tmp_path, CONDITIONAL, inputs={"mode": "fast"},
                      settings={"providers": {"scripted": {"statuses": {"check": "fail"}}}})

    diff = diff_runs(a, b)

    divergence = diff["first_divergence"]
    assert (divergence["kind"], divergence["node_id"]) == ("response", "check")
    assert paths(divergence)["status"] == {"path": "status", "a": None, "b": "fail"}
    assert diff["nodes"]["check"]["outcome_changed"] is True
    assert diff["totals"]["status_changed"] is True
    assert diff["scenario"]["settings"][0]["path"] == "providers.scripted"


async def test_a_tool_error_is_an_error_divergence(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a = await execute(tmp_path, TOOL)
    monkeypatch.setenv("RUN_DIFF_TEST_CODE", "3")  # the same command, another exit code
    b = await execute(tmp_path, TOOL)

    divergence = diff_runs(a, b)["first_divergence"]

    assert (divergence["kind"], divergence["node_id"]) == ("error", "probe")
    assert divergence["a"]["error"] is None and divergence["b"]["error"] == "exit code 3"
    assert set(paths(divergence)) == {"error", "exit_code"}


async def test_metric_deltas_per_node_and_for_the_run(tmp_path: Path) -> None:
    a = await execute(tmp_path, LINEAR % {"write": "Write it", "usage": "10,20"},
                      settings=PRICED)
    b = await execute(tmp_path, LINEAR % {"write": "Write it", "usage": "10,50"},
                      settings=PRICED)

    diff = diff_runs(a, b)

    assert diff["first_divergence"]["kind"] == "request"
    assert list(paths(diff["first_divergence"])) == ['metadata["scripted.usage"]']
    write = diff["nodes"]["write"]
    assert write["a"]["output_tokens"] == 20 and write["b"]["output_tokens"] == 50
    assert write["a"]["cost_usd"] == 10 + 2 * 20
    assert write["delta"]["output_tokens"] == 30 and write["delta"]["tokens"] == 30
    assert write["delta"]["cost_usd"] == 60
    assert write["a"]["visits"] == write["a"]["attempts"] == 1
    assert write["a"]["duration_ms"] > 0 and isinstance(write["delta"]["duration_ms"], float)
    assert diff["nodes"]["review"]["delta"]["cost_usd"] == 0
    totals = diff["totals"]
    assert totals["a"]["input_tokens"] == 25 and totals["a"]["output_tokens"] == 45
    assert totals["delta"]["output_tokens"] == 30 and totals["delta"]["cost_usd"] == 60
    assert totals["a"]["nodes"] == totals["a"]["stages"] == 5
    assert totals["a"]["status"] == totals["b"]["status"] == "completed"
    assert totals["a"]["duration_ms"] > 0


async def test_a_run_that_ended_differently_after_the_same_stages(tmp_path: Path) -> None:
    a = await execute(tmp_path, example("hello.dot"))
    b = dataclasses.replace(a, run={**a.run, "status": "cancelled", "outcome": None})

    diff = diff_runs(a, b)

    divergence = diff["first_divergence"]
    assert diff["identical"] is False
    assert (divergence["kind"], divergence["node_id"]) == ("status", None)
    assert divergence["step"] == len(a.stages) + 1
    assert divergence["b"]["status"] == "cancelled"
    assert diff["totals"]["status_changed"] is True


async def test_a_run_cut_short_diverges_where_it_stopped(tmp_path: Path) -> None:
    a = await execute(tmp_path, example("hello.dot"))
    b = dataclasses.replace(a, stages=a.stages[:2])

    divergence = diff_runs(a, b)["first_divergence"]

    assert (divergence["kind"], divergence["step"]) == ("path", 3)
    assert divergence["node_id"] == a.stages[2]["node_id"] and divergence["b"] is None


# -- rows from the store ------------------------------------------------------------------


async def store_rows(store: RunStore, record: DiffSide) -> DiffSide:
    """Write a record as the daemon does, read it back through the store's records."""
    run = record.run
    await store.add_run(pipeline_hash=run["pipeline_hash"], pipeline_name=run["pipeline_name"],
                        pipeline_format="dot", source="digraph {}", run=run)
    calls = sorted(record.calls, key=lambda c: c["seq"])
    for stage in record.stages:
        await store.record(run["id"], stages=[stage], events=[], calls=[
            c for c in calls if (c["node_id"], c["attempt"]) == (stage["node_id"],
                                                                  stage["attempt"])])
    await store.update_run(
        run["id"], status=run["status"], outcome=run["outcome"], ended_at=run["ended_at"],
        input_tokens=sum(c["input_tokens"] for c in calls),
        output_tokens=sum(c["output_tokens"] for c in calls),
        cost_usd=sum(c["cost_usd"] for c in calls))
    stored = await store.get_run(run["id"])
    stages = await store.stages(run["id"])
    calls = await TraceStore(store.db).run_calls(run["id"])
    assert stored is not None and isinstance(stages[0], StageRecord) and calls
    return from_store(stored, stages, calls, dag=record.dag)


async def test_rows_from_the_store_diff_like_the_engine_records(tmp_path: Path) -> None:
    a = await execute(tmp_path, LINEAR % {"write": "Write it", "usage": "10,20"},
                      settings=PRICED)
    b = await execute(tmp_path, LINEAR % {"write": "Write it again", "usage": "10,20"},
                      settings=PRICED)
    db = await Database.open(tmp_path / "ostinato.db")
    try:
        store = RunStore(db)
        row_a, row_b = await store_rows(store, a), await store_rows(store, b)
    finally:
        await db.close()
    assert row_a.stages[0]["outcome"]["outcome"] == "success"
    assert row_a.calls[0]["request"]["messages"][-1]["content"] == "Plan the work"
    assert row_a.run["inputs"] == {} and row_a.run["settings"]["pricing"] == PRICED["pricing"]

    from_store, in_memory = diff_runs(row_a, row_b), diff_runs(a, b)

    assert from_store["first_divergence"] == in_memory["first_divergence"]
    assert from_store["first_divergence"]["node_id"] == "write"
    assert from_store["nodes"] == in_memory["nodes"]
    assert from_store["totals"]["a"]["cost_usd"] == in_memory["totals"]["a"]["cost_usd"] > 0
    assert diff_runs(row_a, row_a)["identical"] is True
