"""The engine and trials benchmarks still run (they import the daemon's internals, which
move), on tiny workloads: the floor and the engine write the same files, every workload is
timed, and the ratios the targets are judged on are printed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from .support import REPO


def bench(script: str, *args: str) -> dict[str, Any]:
    """The --json summary of a benchmark script run on a tiny workload."""
    # No peer that happens to be configured here: a smoke run covers the bench without it.
    env = {k: v for k, v in os.environ.items() if k != "OSTINATO_BENCH_ATTRACTOR_PYTHON"}
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), "--json", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          env=env)
    assert done.returncode == 0, done.stderr
    summary = next(line for line in done.stdout.splitlines() if line.startswith("{"))
    assert done.stdout.rstrip().splitlines()[-1].startswith("ratios:")
    return json.loads(summary)


def test_the_engine_bench_runs_and_both_sides_write_the_same_files() -> None:
    found = bench("engine.py", "--rounds", "1", "--nodes", "20", "--branches", "5",
                  "--thread-nodes", "30", "--large", "0")
    names = ("linear-20", "fanout-5", "thread-30")
    workloads = {(t["workload"], t["side"]) for t in found["timings"]}
    assert workloads == {(w, side) for w in names for side in ("floor", "engine")}
    for workload in names:
        floor_files, floor_bytes = found["sizes"][f"{workload}/floor"]
        engine_files, engine_bytes = found["sizes"][f"{workload}/engine"]
        assert floor_files == engine_files > 0
        # The same content too, give or take: a floor that drifts from what the engine
        # writes (a new field, a longer request) shows here first.
        assert abs(floor_bytes - engine_bytes) <= engine_bytes * 0.05
        assert found["ratios"][workload] > 0
    thread = [t for t in found["timings"] if t["workload"] == "thread-30"]
    assert all(t["early_ms"] > 0 and t["late_ms"] > 0 for t in thread)
    assert found["ratios"]["thread_growth"] > 0
    # Without --attractor-python the bench says so and measures everything else.
    assert found["attractor"] is None and found["ratios"]["linear_vs_attractor"] is None


def test_the_engine_parts_bench_prices_the_store_and_the_checkpoint() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OSTINATO_BENCH_ATTRACTOR_PYTHON"}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "engine_parts.py"), "--json",
                           "--rounds", "1", "--nodes", "20"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert set(found["best"]) == {"full", "no-store", "no-checkpoint", "neither"}
    assert all(ms > 0 for ms in found["best"].values())
    assert set(found["parts"]) == {"store", "checkpoint"} and found["vs_attractor"] is None


@pytest.mark.xdist_group("ray")  # a local Ray cluster when the extra is installed
def test_the_scale_bench_runs_every_executor() -> None:
    pinned = (os.cpu_count() or 1) >= 2  # --pinned needs a CPU for the daemon and one more
    found = bench("scale.py", "--rounds", "1", "--trials", "20", "--nodes", "20",
                  "--latency-ms", "10", "--latency-concurrency", "10", "--workers", "1",
                  *(["--pinned"] if pinned else []))
    ran = {(t["workload"], t["executor"]) for t in found["timings"]}
    with_ray = importlib.util.find_spec("ray") is not None
    executors = ("inline", "processes", *(("ray",) if with_ray else ()),
                 *(("pinned",) if pinned else ()))
    assert ran == {(w, e) for w in ("trials", "linear-20", "latency") for e in executors}
    assert found["ratios"]["throughput"] > 0 and found["ratios"]["linear_vs_inline"] > 0
    assert (found["ratios"].get("throughput_pinned", 0) > 0) == pinned
    assert (found["ratios"]["ray_vs_processes"] is not None) == with_ray
    assert found["ratios"]["linear_vs_attractor"] is None
    assert found["coordinator"]["daemon_cpu_ms"] > 0 and found["ratios"]["throughput_bound"] > 0


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="pins the daemon and its workers apart")
def test_the_coordinator_files_bench_prices_the_daemons_run_files() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "coordinator_files.py"),
                           "--json", "--rounds", "1", "--trials", "20", "--workers", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert set(found["best"]) == {"full", "no-run-files"}
    assert all(t["ms"] > 0 and t["daemon_ms"] > 0 for t in found["best"].values())
    assert "the run's own files cost the daemon" in done.stdout


def test_the_suite_bench_times_both_suites_one_at_a_time_and_side_by_side() -> None:
    found = bench("suite.py", "--rounds", "1", "--snapshots", "6", "--live-snapshots", "4",
                  "--concurrency", "4", "--latency-ms", "5")
    timed = {(t["suite"], t["executor"], t["concurrency"]) for t in found["timings"]}
    assert timed == {(suite, executor, concurrency) for suite in ("recorded", "live")
                     for executor in ("inline", "processes") for concurrency in (1, 4)}
    assert set(found["speedups"]) == {
        f"{suite}_{executor}_c4_vs_{base}" for suite in ("recorded", "live")
        for executor in ("inline", "processes") for base in ("c1", "inline_c1")}


def test_the_trials_bench_runs_every_workload() -> None:
    """promptfoo too when `make bench-promptfoo` installed it (not in CI: about 2 GB and a
    minute; there the next test's path, without it, is the one taken)."""
    found = bench("trials.py", "--quick", "--no-inspect", "--rounds", "1",
                  "--promptfoo-small", "5", "--promptfoo-tests", "40")
    workloads = {t["workload"]: t["units"] for t in found["timings"]}
    ours = {"trials-c1": 100, "trials-c8": 100, "latency-c100": 100,
            "linear-100 scripted": 100, "linear-100 replay": 100}
    installed = (REPO / "bench" / "promptfoo" / "node_modules" / "promptfoo").is_dir()
    peer = {"promptfoo echo-5": 5, "promptfoo echo-40": 40} if installed else {}
    assert workloads == {**ours, **peer}
    assert found["promptfoo_measured"] is installed
    assert set(found["ratios"]) == {"per_trial_vs_inspect", "per_trial_vs_promptfoo",
                                    "concurrency_vs_ideal", "replay_vs_scripted"}


def test_the_trials_bench_without_promptfoo_uses_its_reference(tmp_path: Any) -> None:
    found = bench("trials.py", "--no-inspect", "--rounds", "1", "--trials", "20",
                  "--replay-nodes", "20", "--replay-pairs", "1", "--promptfoo-dir",
                  str(tmp_path))
    assert found["promptfoo"] is None and not found["promptfoo_measured"]
    assert not any(t["workload"].startswith("promptfoo") for t in found["timings"])
    assert found["ratios"]["per_trial_vs_promptfoo"] == pytest.approx(
        found["per_trial_ms"] / found["promptfoo_ms_per_test"], abs=1e-3)
    assert found["promptfoo_ms_per_test"] == 3.5


def test_the_trial_files_floor_runs_and_cleans_up(tmp_path: Any) -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "trial_files.py"),
                           "--trials", "5", "--dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "5 trials' files" in done.stdout and "ms per trial" in done.stdout
    assert list(tmp_path.iterdir()) == []  # its files are gone


def test_the_mcp_bench_measures_both_faces_with_each_probe() -> None:
    """bench/mcp.py checks every reply it times (all successes, exact ids), so a face that
    answers wrongly fails it; its last line is the MCP face's ratios."""
    for probe in ("status", "run"):
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "mcp.py"), "--rounds", "1",
             "--sequential", "20", "--pipelined", "50", "--warmup", "5", "--cold", "0",
             "--probe", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
            check=False)
        assert done.returncode == 0, done.stderr
        last = done.stdout.rstrip().splitlines()[-1]
        assert last.startswith("ratios to the daemon") and "daemon-mcp p50" in last


def summary_of(script: str, *args: str) -> dict[str, Any]:
    """The --json summary line of a benchmark that prints one (it may exit 1 on a tiny,
    noisy workload that misses its target: the run itself must not fail)."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), "--json", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout.rstrip().splitlines()[-1])


def test_the_agent_bench_times_both_loops_and_a_replay_that_starts_nothing() -> None:
    # bench/agent.py raises if the replay sends a request or starts a process.
    found = summary_of("agent.py", "--rounds", "1", "--turns", "3", "--replay-turns", "5")
    assert found["agent_ms_per_turn"] > 0 and found["bare_ms_per_turn"] > 0
    assert 0 < found["replay_ratio"] < 1


def test_the_providers_bench_times_runs_on_each_vendors_sdk_without_new_connections() -> None:
    found = summary_of("providers.py", "--rounds", "1", "--runs", "3")
    assert set(found["vendors"]) == {"openai", "anthropic"} and found["executor"] == "inline"
    for vendor in found["vendors"].values():
        assert vendor["run_ms"] > 0 and vendor["bare_ms"] > 0 and vendor["ratio"] > 0
        assert vendor["connections"] == 0  # the runs reused their daemon's connection


def test_the_concurrency_bench_times_both_ways() -> None:
    found = summary_of("concurrency.py", "--rounds", "1", "--runs", "20")
    assert set(found["ms_per_run"]) == {"in-process serial", "in-process concurrent",
                                        "daemon serial", "daemon concurrent"}
    assert found["in-process ratio"] > 0 and found["daemon ratio"] > 0


def test_the_disk_bench_reports_the_wal_and_a_runs_disk_use() -> None:
    found = summary_of("disk.py", "--sets", "2", "--trials", "20")
    assert found["runs"] == 40 and found["wal_peak_bytes"] > 0
    assert found["last"]["run_dir_bytes_per_run"] > 0 and found["last"]["files_per_run"] > 0
