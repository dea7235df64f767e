"""The example scenarios of examples/snapshots/ (the ones `make demo` snapshots and tests):
each becomes a snapshot that passes `tests.run`, and each fails its own invariants when it is
broken on purpose, so that none of its checks is vacuous."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .support import REPO, Wire

pytestmark = pytest.mark.in_process


def _load_examples() -> Any:
    """examples/demo_snapshots.py, the scenarios' loader (examples/ is not a package)."""
    path = REPO / "examples" / "demo_snapshots.py"
    spec = importlib.util.spec_from_file_location("demo_snapshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("demo_snapshots", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


examples = _load_examples()
SCENARIOS = examples.load_scenarios()


class Client:
    """What demo_snapshots expects of a client (`request` answers the result), over the
    tests' raw wire."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    async def request(self, method: str, params: Any = None) -> Any:
        return await self.wire.result(method, params)


def _failed_types(result: dict[str, Any]) -> set[str]:
    return {check["type"] for check in result["invariants"] if check["status"] == "failed"}


def test_the_three_examples_are_there_and_each_can_be_broken() -> None:
    assert [s.name for s in SCENARIOS] == ["design-and-evaluate", "review-loop",
                                           "single-prompt"]
    for scenario in SCENARIOS:
        assert examples.TAG in scenario.tags
        assert scenario.broken, f"{scenario.name} has no `broken` entry"
        types = {invariant["type"] for invariant in scenario.invariants}
        for broken in scenario.broken:
            assert set(broken["fails"]) <= types, broken  # a break names checks it has


def test_seed_001_checks_are_all_in_the_design_example() -> None:
    design = next(s for s in SCENARIOS if s.name == "design-and-evaluate")
    types = {invariant["type"] for invariant in design.invariants}
    assert types >= {"min_candidates", "max_candidates", "min_scenarios", "max_scenarios",
                     "run_status", "min_top_i_score", "max_top_i_score",
                     "no_hard_constraint_violations", "max_duration_seconds",
                     "min_evaluation_coverage", "node_sequence", "max_cost_usd", "expr"}


async def test_every_example_becomes_a_snapshot_that_passes(daemon: InProcessDaemon) -> None:
    client = Client(await daemon.connect())
    for scenario in SCENARIOS:
        made = await examples.snapshot_scenario(client, scenario)
        assert (made["run"]["status"], made["run"]["outcome"]) == ("completed", "success")
        assert made["check"]["verdict"] == "passed", made["check"]["results"]
        snapshot = made["snapshot"]
        assert (snapshot["name"], snapshot["tags"]) == (scenario.name, scenario.tags)
        assert snapshot["has_cassette"] and snapshot["reference"]["metrics"]["cost_usd"] > 0
    summary = await client.request("tests.run", {
        "tags": [examples.TAG], "mode": "recorded", "trials": examples.TRIALS,
        "cost_limit_usd": examples.COST_LIMIT_USD, "wait": True})
    assert summary["status"] == "passed", summary
    assert summary["summary"]["passed"] == len(SCENARIOS)
    assert summary["total_cost_usd"] == 0  # recorded: the judge's votes too
    for result, scenario in zip(summary["snapshots"], SCENARIOS, strict=True):
        assert result["name"] == scenario.name
        assert result["trials_passed"] == examples.TRIALS
        # With trials every invariant is evaluated (pass_rate too): none is skipped.
        assert [c["status"] for c in result["invariants"]] == \
            ["passed"] * len(scenario.invariants), result["invariants"]
        # A recorded replay costs nothing: the delta is minus the reference's cost.
        cost = result["metrics_delta"]["cost_usd"]
        assert cost["replay"] == 0 and cost["delta"] == -cost["baseline"] < 0
    for fmt in ("junit", "markdown", "html"):
        report = await client.request("tests.report", {"test_run_id": summary["test_run_id"],
                                                       "format": fmt})
        assert all(s.name in report["content"] for s in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_a_broken_example_fails_its_invariants(daemon: InProcessDaemon,
                                                     scenario: Any) -> None:
    """The scenario as it is and each of its breaks, made snapshots of and replayed live in
    one test run: the intact one passes, each broken one fails the checks it names."""
    client = Client(await daemon.connect())
    variants = [scenario.settings] + [scenario.broken_settings(i)
                                      for i in range(len(scenario.broken))]
    ids = []
    for index, settings in enumerate(variants):
        snapshot = await client.request("snapshot.create", {
            "name": f"{scenario.name}-{index}", "pipeline": {"path": str(scenario.pipeline)},
            "inputs": scenario.inputs, "variables": scenario.variables,
            "settings": settings, "invariants": scenario.invariants})
        ids.append(snapshot["id"])
    summary = await client.request("tests.run", {"snapshot_ids": ids, "mode": "live",
                                                 "wait": True})
    intact, *broken = summary["snapshots"]
    assert intact["status"] == "passed", intact
    for result, entry in zip(broken, scenario.broken, strict=True):
        assert result["status"] == "failed", (entry["description"], result)
        assert _failed_types(result) >= set(entry["fails"]), (entry["description"],
                                                              result["invariants"])
    assert summary["status"] == "failed"
    assert summary["summary"] == {"total": len(variants), "passed": 1,
                                  "failed": len(scenario.broken), "errors": 0,
                                  "skipped": 0, "budget_exceeded": 0}
