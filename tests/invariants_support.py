"""Purpose-built runs for the invariant tests: a design-and-evaluate pipeline shaped like
seeds/001's (designers, evaluators, a ranking tool, a report) in a GOOD variant that meets
every check of `EVERY_CHECK` and a BAD one that misses each of them."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from .inprocess import InProcessDaemon, in_process_daemon
from .runs_support import FAST, dot, run_to_end
from .support import Wire

# $1 per input token, $2 per output token: costs are easy to check.
PRICING = {"models": {"scripted/*": {"input_per_mtok": 1_000_000,
                                     "output_per_mtok": 2_000_000}}}


def attr(value: Any) -> str:
    """A DOT attribute value holding `value` as JSON text."""
    return json.dumps(json.dumps(value))


def design_pipeline(good: bool) -> dict[str, str]:
    """GOOD: 3 candidates, 2 scenarios, 5 of the 6 pairs evaluated, soft violations only,
    top I-score 0.72, a `rank` tool, a JSON report naming c2; it completes. BAD: 2
    candidates, 7 scenarios, 1 of 14 pairs evaluated with a hard violation, top 0.3, no
    `rank` node, a report without scores whose node fails the run."""
    if good:
        design = {"candidates": [{"id": "c1"}, {"id": "c2"}, {"id": "c3"}],
                  "scenarios": ["s1", "s2"]}
        evaluations = [{"candidate": c, "scenario": s,
                        "violations": [{"constraint": "budget", "weight": 10}]}
                       for c in ("c1", "c2", "c3") for s in ("s1", "s2")][:5]
        ranked = {"evaluations": evaluations, "score": 0.72,
                  "rankings": [{"candidate": "c2", "i_score": 0.72},
                               {"candidate": "c1", "i_score": 0.4}]}
        report = {"top": "c2", "scores": [0.72, 0.4], "summary": "Candidate C2 leads"}
        usage, rank = "10,10", 'rank [shape=parallelogram, tool_command="echo ranked c2 first"]'
        status = "success"
        edges = "start -> design -> evaluate -> rank -> report -> exit"
    else:
        design = {"candidates": [{"id": "c1"}, {"id": "c2"}],
                  "scenarios": [f"s{i}" for i in range(1, 8)]}
        ranked = {"evaluations": [{"candidate": "c1", "scenario": "s1", "violations": [
                      {"constraint": "safety", "weight": 100}]}],
                  "score": 0.3, "rankings": [{"candidate": "c1", "i_score": 0.3}]}
        report = {"top": "none", "scores": [], "summary": "no ranking: error in evaluator"}
        usage, rank, status = "100,100", "", "fail"
        edges = "start -> design -> evaluate -> report -> exit"
    return dot(f"""
        digraph design {{
            start [shape=Mdiamond]
            exit  [shape=Msquare]
            design   [prompt="Design candidates", scripted.usage="{usage}",
                      scripted.context_updates={attr(design)}]
            evaluate [prompt="Evaluate each pair", scripted.usage="{usage}",
                      scripted.context_updates={attr(ranked)}]
            {rank}
            report   [prompt="Report", scripted.usage="{usage}", scripted.status={status},
                      scripted.response={attr(report)}]
            {edges}
        }}""")


def settings(judge: list[str], latency_ms: float = 0.0) -> dict[str, Any]:
    """Priced scripted settings whose judge answers `judge`, vote by vote."""
    return {**FAST, "pricing": PRICING, "providers": {"scripted": {
        "responses": {"$judge": judge}, "latency_ms": latency_ms}}}


# Every per-run check, each met by the GOOD run and missed by the BAD one.
EVERY_CHECK: list[dict[str, Any]] = [
    {"type": "run_status", "value": "COMPLETED", "outcome": "success"},
    {"type": "min", "metric": "calls", "value": 4},
    {"type": "max", "metric": "tokens", "value": 100},
    {"type": "between", "metric": "context.candidates", "min": 3, "max": 5},
    {"type": "min_candidates", "value": 3},
    {"type": "max_scenarios", "value": 5},
    {"type": "min_top_i_score", "value": 0.7},
    {"type": "no_hard_constraint_violations", "value": True},
    {"type": "max_duration_seconds", "value": 1.2},
    {"type": "min_evaluation_coverage", "value": 0.8},
    {"type": "equals", "value": {"top": "c2", "scores": [0.72, 0.4],
                                 "summary": "Candidate C2 leads"}},
    {"type": "contains", "value": "c2"},
    {"type": "icontains", "value": "CANDIDATE c2"},
    {"type": "regex", "value": r'"top":\s*"c\d"'},
    {"type": "json_schema", "value": {"type": "object", "required": ["top", "scores"],
                                      "properties": {"scores": {"type": "array",
                                                                "minItems": 1}}}},
    {"type": "jmespath", "expression": "scores[0]", "op": "gt", "value": 0.7},
    {"type": "not", "check": {"type": "icontains", "value": "error"}},
    {"type": "node_visited", "node": "rank"},
    {"type": "node_sequence", "nodes": ["start", "design", "evaluate", "rank", "report", "exit"],
     "mode": "exact"},
    {"type": "tool_called", "command": "echo ranked", "exit_code": 0},
    {"type": "max_cost_usd", "value": 100},
    {"type": "max_tokens", "value": 100},
    {"type": "max_latency_ms", "value": 300, "metric": "max_call_latency_ms"},
    {"type": "judge", "rubric": "The report names the top candidate.", "k": 3},
    {"type": "expr", "expression": "metrics.calls == 4 && size(context.candidates) >= 3 "
                                   "&& 'rank' in nodes && status == 'completed'"},
]


def module_daemon() -> Any:
    """A `shared_daemon` fixture: one in-process daemon for a whole test module (runs are
    cheap, daemons less so). Use as `shared = module_daemon()` at a module's top level."""
    @pytest_asyncio.fixture(scope="module", loop_scope="module", name="shared_daemon")
    async def shared_daemon() -> AsyncIterator[InProcessDaemon]:
        root = Path(tempfile.mkdtemp(prefix="ost-"))
        async with in_process_daemon(root / "home") as daemon:
            yield daemon
        shutil.rmtree(root, ignore_errors=True)
    return shared_daemon


async def good_run(wire: Wire, judge: list[str] | None = None, **params: Any) -> dict[str, Any]:
    """A completed GOOD run (its judge says PASS, PASS, FAIL unless told)."""
    run = await run_to_end(wire, design_pipeline(True),
                           settings=settings(judge or ["PASS", "PASS", "FAIL"]), **params)
    assert run["status"] == "completed", run
    return run


async def bad_run(wire: Wire) -> dict[str, Any]:
    """A failed BAD run: slow calls (0.5 s each), a judge that says FAIL twice."""
    run = await run_to_end(wire, design_pipeline(False),
                           settings=settings(["FAIL", "Verdict: fail", "PASS"],
                                             latency_ms=500))
    assert run["status"] == "failed", run
    return run


async def reeval(wire: Wire, run_id: str, invariants: list[dict[str, Any]],
                 **params: Any) -> dict[str, Any]:
    """run.reeval's result."""
    return await wire.result("run.reeval", {"run_id": run_id, "invariants": invariants,
                                            **params})
