"""Helpers of the test-run tests: priced pipelines whose calls cost a known amount, snapshots
made through the daemon, and test runs awaited.

The scripted provider reports the usage a node scripts (`scripted.usage`), and the pricing
settings price it: every model call of `priced()` reads 1,000,000 input tokens at $1 per
million, so it costs exactly CALL_USD, and where a budget runs out is computable.
"""

from __future__ import annotations

from typing import Any

from .runs_support import dot, run_to_end
from .support import Wire

CALL_USD = 1.0
PRICED: dict[str, Any] = {
    "retry": {"delay_scale": 0},
    "pricing": {"models": {"scripted/*": {"input_per_mtok": CALL_USD,
                                          "output_per_mtok": 0.0}}}}
PASSES = [{"type": "run_status", "value": "completed"}]
FAILS = [{"type": "run_status", "value": "completed"},
         {"type": "contains", "value": "a phrase nobody wrote", "description": "says it"}]


def priced(name: str, calls: int = 3, *, say: str = "fine") -> dict[str, str]:
    """A linear pipeline of `calls` model nodes, each costing CALL_USD, each answering
    `say`."""
    nodes = "\n".join(f'    n{i} [prompt="Step {i} of {name}", scripted.response="{say}", '
                      f'scripted.usage="1000000,0"]' for i in range(1, calls + 1))
    chain = " -> ".join(["start", *(f"n{i}" for i in range(1, calls + 1)), "done"])
    return dot(f"digraph {name} {{\n    start [shape=Mdiamond]\n{nodes}\n"
               f"    done [shape=Msquare]\n    {chain}\n}}")


async def snapshot(wire: Wire, name: str, pipeline: dict[str, Any], *,
                   invariants: list[dict[str, Any]] | None = None,
                   tags: list[str] | None = None,
                   settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A snapshot of a pipeline alone (no cassette, no reference)."""
    return await wire.result("snapshot.create", {
        "name": name, "pipeline": pipeline, "settings": settings or PRICED,
        "invariants": PASSES if invariants is None else invariants, "tags": tags or []})


async def snapshot_of_run(wire: Wire, name: str, pipeline: dict[str, Any], *,
                          invariants: list[dict[str, Any]] | None = None,
                          tags: list[str] | None = None) -> dict[str, Any]:
    """A snapshot of a finished run: its cassette and reference metrics."""
    detail = await run_to_end(wire, pipeline, settings=PRICED)
    return await wire.result("snapshot.create", {
        "name": name, "run_id": detail["run_id"], "tags": tags or [],
        "invariants": PASSES if invariants is None else invariants})


async def run_tests(wire: Wire, **params: Any) -> dict[str, Any]:
    """tests.run with `wait: true`: the ended test run."""
    result = await wire.result("tests.run", {"wait": True, **params})
    assert result["status"] != "running", result
    return result


def statuses(test_run: dict[str, Any]) -> list[str]:
    """Each snapshot's status, in order."""
    return [s["status"] for s in test_run["snapshots"]]
