"""The example scenarios of examples/snapshots/, and the second part of `make demo`.

Each scenario is a directory with a pipeline and a `scenario.yaml` (examples/snapshots/
README.md describes the format). `make demo` runs each scenario once on the offline scripted
model, checks the run against the scenario's invariants, makes a snapshot of it, then tests
every snapshot tagged `examples` in one test run (recorded replays under a cost limit),
prints the results and writes the reports. tests/test_examples_snapshots.py uses the loader.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
TAG = "examples"  # every example scenario has it; the demo's test run selects by it
TRIALS = 5  # replays of each snapshot in the demo's test run, so that pass_rate counts
COST_LIMIT_USD = 0.50  # the test run's budget (recorded replays cost nothing)
REPORTS = {"junit": "examples-junit.xml", "markdown": "examples.md", "html": "examples.html"}
_KEYS = {"name", "description", "tags", "pipeline", "inputs", "variables", "settings",
         "invariants", "broken"}
_REQUIRED = {"name", "pipeline", "invariants"}


@dataclass(frozen=True)
class Scenario:
    """One example scenario, as its scenario.yaml says."""

    path: Path
    name: str
    description: str
    tags: list[str]
    pipeline: Path
    inputs: dict[str, Any]
    variables: dict[str, str]
    settings: dict[str, Any]
    invariants: list[dict[str, Any]]
    broken: list[dict[str, Any]]

    def run_params(self, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """`run.start` params that run the scenario (with other settings, if given)."""
        return {"pipeline": {"path": str(self.pipeline)}, "inputs": self.inputs,
                "variables": self.variables,
                "settings": self.settings if settings is None else settings, "wait": True}

    def broken_settings(self, index: int) -> dict[str, Any]:
        """The settings with the `index`th break merged in."""
        return deep_merge(self.settings, self.broken[index]["settings"])


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in: mappings key by key, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_scenario(path: Path) -> Scenario:
    """Read one scenario.yaml; ValueError names what is wrong with it."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    if unknown := set(data) - _KEYS:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    if missing := _REQUIRED - set(data):
        raise ValueError(f"{path}: missing keys {sorted(missing)}")
    pipeline = (path.parent / data["pipeline"]).resolve()
    if not pipeline.is_file():
        raise ValueError(f"{path}: no pipeline {pipeline}")
    for entry in data.get("broken") or []:
        if set(entry) != {"description", "settings", "fails"}:
            raise ValueError(f"{path}: a `broken` entry has description, settings and fails")
    return Scenario(path=path, name=data["name"], description=data.get("description", ""),
                    tags=list(data.get("tags") or []), pipeline=pipeline,
                    inputs=dict(data.get("inputs") or {}),
                    variables={k: str(v) for k, v in (data.get("variables") or {}).items()},
                    settings=dict(data.get("settings") or {}),
                    invariants=list(data["invariants"]), broken=list(data.get("broken") or []))


def load_scenarios(root: Path = SNAPSHOTS) -> list[Scenario]:
    """Every example scenario, by directory name."""
    return [load_scenario(path) for path in sorted(root.glob("*/scenario.yaml"))]


# -- the demo -------------------------------------------------------------------------------


async def snapshot_scenario(client: Any, scenario: Scenario) -> dict[str, Any]:
    """Run the scenario, check the run against its invariants, snapshot it; the run's
    summary, the check (run.reeval) and the snapshot."""
    run = await client.request("run.start", scenario.run_params())
    # Checked before it is snapshotted: a judge's votes are recorded on the run, so the
    # snapshot's cassette holds them and a recorded replay is judged at no cost.
    check = await client.request("run.reeval", {"run_id": run["run_id"],
                                                "invariants": scenario.invariants})
    snapshot = await client.request("snapshot.create", {
        "name": scenario.name, "description": scenario.description, "tags": scenario.tags,
        "run_id": run["run_id"], "invariants": scenario.invariants})
    return {"run": run, "check": check, "snapshot": snapshot}


def _counts(invariants: list[dict[str, Any]]) -> str:
    """`12 passed, 1 failed, …`: how many invariants ended in each status."""
    statuses = [check["status"] for check in invariants]
    return ", ".join(f"{statuses.count(s)} {s}" for s in ("passed", "failed", "error",
                                                           "skipped") if s in statuses)


def _delta(result: dict[str, Any], metric: str, digits: int) -> str:
    change = result["metrics_delta"].get(metric) or {}
    if change.get("delta") is None:
        return "-"
    return f"{change['delta']:+.{digits}f}"


def table(summary: dict[str, Any]) -> list[str]:
    """The test run's results, one line per snapshot, with metric deltas against the
    snapshot's reference run (the mean over the trials)."""
    lines = [f"  {'snapshot':<24} {'status':<8} {'invariants':<22} {'trials':>6} "
             f"{'cost Δ $':>9} {'tokens Δ':>8} {'time Δ ms':>9}"]
    for result in summary["snapshots"]:
        trials = (f"{result['trials_passed']}/{result['trials']}"
                  if result["trials_passed"] is not None else str(result["trials"]))
        lines.append(f"  {result['name'] + ' v' + str(result['version']):<24} "
                     f"{result['status']:<8} {_counts(result['invariants']):<22} "
                     f"{trials:>6} {_delta(result, 'cost_usd', 4):>9} "
                     f"{_delta(result, 'tokens', 0):>8} {_delta(result, 'duration_ms', 1):>9}")
    return lines


async def write_reports(client: Any, test_run_id: str, directory: Path) -> list[Path]:
    """The test run's JUnit, Markdown and HTML reports, written into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, name in REPORTS.items():
        report = await client.request("tests.report", {"test_run_id": test_run_id,
                                                       "format": fmt})
        path = directory / name
        path.write_text(report["content"], encoding="utf-8")
        paths.append(path)
    return paths


async def run_examples(client: Any, home: Path) -> bool:
    """Snapshot every example scenario, test them all in one test run, print the results
    and write the reports into `home`/reports; True when everything passed."""
    ok = True
    print("\nThe example scenarios of examples/snapshots/ become snapshots:")
    for scenario in load_scenarios():
        made = await snapshot_scenario(client, scenario)
        run, check, snapshot = made["run"], made["check"], made["snapshot"]
        ok = ok and run["status"] == "completed" and check["verdict"] == "passed"
        print(f"  {scenario.name}: run {run['status']} (${run['cost_usd']:.4f}), invariants "
              f"{_counts(check['results'])} → snapshot {snapshot['name']} "
              f"v{snapshot['version']} ({snapshot['cassette_calls']} calls in its cassette)")
    print(f"\nOne test run over the tag {TAG!r}: recorded replays, {TRIALS} trials each, "
          f"a ${COST_LIMIT_USD:.2f} budget:")
    summary = await client.request("tests.run", {
        "tags": [TAG], "mode": "recorded", "trials": TRIALS,
        "cost_limit_usd": COST_LIMIT_USD, "wait": True})
    for line in table(summary):
        print(line)
    counts = summary["summary"]
    print(f"  test run {summary['status']}: {counts['passed']} of {counts['total']} "
          f"snapshots passed, cost ${summary['total_cost_usd']:.4f}")
    for path in await write_reports(client, summary["test_run_id"], home / "reports"):
        print(f"  report: {path}")
    return ok and summary["status"] == "passed"
