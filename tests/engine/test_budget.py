"""A cost budget stops runs where it runs out: nothing new starts, the run can resume."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ostinato.daemon.engine.budget import Budget, BudgetExceeded
from ostinato.daemon.engine.executor import Executor
from ostinato.daemon.engine.handlers.registry import default_handlers
from ostinato.daemon.engine.load import load_source
from ostinato.daemon.engine.providers import ProviderPool
from ostinato.daemon.engine.run_state import RunResult
from ostinato.daemon.engine.rundir import RunDirectory

SETTINGS = SimpleNamespace(retry=SimpleNamespace(delay_scale=0.0, jitter=False),
                           max_steps=0, max_parallel=4)
# Every call reports a million input tokens at $1 per million: each call costs exactly $1.
PRICED = {"pricing": {"models": {"scripted/scripted": {"input_per_mtok": 1.0,
                                                       "output_per_mtok": 0.0}}}}

LINEAR = """digraph linear {
    node [shape=box, scripted.usage="1000000,0"]
    start [shape=Mdiamond]  exit [shape=Msquare]
    start -> a -> b -> c -> d -> exit
}"""

FAN_OUT = """digraph fan {
    node [shape=box, scripted.usage="1000000,0"]
    start [shape=Mdiamond]  exit [shape=Msquare]
    fan [shape=component, max_parallel=1]  join [shape=tripleoctagon]
    start -> fan
    fan -> b1 -> join
    fan -> b2 -> join
    fan -> b3 -> join
    fan -> b4 -> join
    join -> exit
}"""


class Sink:
    """Keeps events and calls in memory."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.calls: list[dict[str, Any]] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def record_call(self, call: dict[str, Any]) -> None:
        self.calls.append(call)

    async def stage_done(self, stage: dict[str, Any]) -> None:
        pass


def executor(root: Path, source: str, budget: Budget | None, sink: Sink) -> Executor:
    graph = load_source(source, "dot").graph
    assert graph is not None
    run_dir = RunDirectory(root)
    run_dir.create()
    return Executor(run_id=root.name, trace_id=f"trace-{root.name}", graph=graph,
                    run_dir=run_dir, handlers=default_handlers(),
                    providers=ProviderPool(PRICED), interviewer=None,  # type: ignore[arg-type]
                    sink=sink, settings=SETTINGS, budget=budget)


async def run(root: Path, source: str, budget: Budget | None) -> tuple[RunResult, Sink]:
    sink = Sink()
    engine = executor(root, source, budget, sink)
    try:
        return await engine.run({}), sink
    finally:
        engine.run_dir.close()


def test_a_budget_refuses_work_once_spent() -> None:
    budget = Budget(2.0)
    budget.check()
    budget.charge(1.5)
    assert not budget.exceeded
    budget.charge(0.5)
    assert budget.exceeded
    with pytest.raises(BudgetExceeded, match=r"\$2 spent of \$2"):
        budget.check()
    with pytest.raises(ValueError):
        Budget(-1)


async def test_a_linear_run_stops_at_the_node_after_the_limit(tmp_path: Path) -> None:
    budget = Budget(2.5)
    result, sink = await run(tmp_path / "r", LINEAR, budget)
    # a, b and c start while less than $2.5 is spent; c's call takes it to $3; d never starts.
    assert result.status == "budget_exceeded"
    assert [c["node_id"] for c in sink.calls] == ["a", "b", "c"]
    assert budget.spent_usd == pytest.approx(3.0)
    assert result.completed_nodes == ["start", "a", "b", "c"]
    types = [e.type for e in sink.events]
    assert "BudgetExceeded" in types and types[-1] == "PipelineFailed"
    assert not any(e.type == "StageStarted" and e.data["name"] == "d" for e in sink.events)
    # The checkpoint holds no final result: the run resumes where it stopped.
    checkpoint = RunDirectory(tmp_path / "r").read_json("checkpoint.json")
    assert checkpoint["next_node"] == "d" and "result" not in checkpoint


async def test_runs_sharing_a_budget_draw_on_one_limit(tmp_path: Path) -> None:
    budget = Budget(3.0)
    first, _ = await run(tmp_path / "one", LINEAR, budget)
    second, sink = await run(tmp_path / "two", LINEAR, budget)
    assert first.status == "budget_exceeded" and budget.spent_usd == pytest.approx(3.0)
    assert second.status == "budget_exceeded"
    assert sink.calls == [] and second.completed_nodes == ["start"]


async def test_a_fan_out_starts_no_branch_once_spent(tmp_path: Path) -> None:
    budget = Budget(2.0)
    result, sink = await run(tmp_path / "fan", FAN_OUT, budget)
    assert result.status == "budget_exceeded"
    assert [c["node_id"] for c in sink.calls] == ["b1", "b2"]  # one branch at a time


async def test_without_a_budget_nothing_changes(tmp_path: Path) -> None:
    result, sink = await run(tmp_path / "free", LINEAR, None)
    assert result.status == "completed" and len(sink.calls) == 4
    assert sum(c["cost_usd"] for c in sink.calls) == pytest.approx(4.0)


def test_free_work_never_exceeds_a_budget() -> None:
    budget = Budget(0.0)
    budget.check()  # nothing spent: a recorded replay under a zero limit runs
    budget.charge(0.0)
    assert not budget.exceeded
    budget.charge(0.01)
    assert budget.exceeded


async def test_a_run_whose_last_call_reaches_the_limit_completes(tmp_path: Path) -> None:
    budget = Budget(4.0)
    result, sink = await run(tmp_path / "exact", LINEAR, budget)
    # d's call takes the spending to the limit; only the exit is left, and it costs nothing.
    assert budget.exceeded and len(sink.calls) == 4
    assert result.status == "completed"
