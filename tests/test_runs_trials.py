"""Trial sets through the daemon: N runs, each with its own trace; aggregates; early stop;
the set's manifest on disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from .fakes.llm_server import FakeLLMServer, Reply, SeenRequest
from .inprocess import InProcessDaemon
from .runs_support import FAILING, dot, make_fifo, read_fifo, runs_done_on_workers
from .support import Wire, start_daemon

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = pytest.mark.usefixtures("executor")

PIPELINE = dot("""\
    digraph trial {
        start [shape=Mdiamond]
        answer [prompt="Answer the question"]
        done [shape=Msquare]
        start -> answer -> done
    }""")
# A flaky model: 20% of calls fail (decided by a seeded hash, so the run is repeatable),
# and the pool does not retry them, so that those trials fail.
FLAKY = {"default_provider": "flaky", "retry": {"delay_scale": 0},
         "providers": {"flaky": {"type": "scripted", "fail_rate": 0.2, "seed": 11,
                                 "retry": {"max_attempts": 1}}}}


async def trace_lines(wire: Wire, run_id: str) -> list[dict[str, Any]]:
    detail = await wire.result("run.get", {"run_id": run_id})
    text = (Path(detail["run_dir"]) / "trace.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.in_process
async def test_a_trial_set_with_a_flaky_provider_keeps_a_trace_for_every_trial(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    result = await wire.result("run.start", {"pipeline": PIPELINE, "settings": FLAKY,
                                             "trials": 50, "concurrency": 8, "wait": True,
                                             "pass_threshold": 0.5})
    assert result["status"] == "completed" and result["trials"] == 50
    trials = result["trial_runs"]
    assert [t["index"] for t in trials] == list(range(50))
    assert len({t["run_id"] for t in trials}) == len({t["trace_id"] for t in trials}) == 50
    failed = [t for t in trials if not t["passed"]]
    assert 0 < len(failed) < 50  # the flaky provider failed some, not all
    assert result["passed"] + result["failed"] == result["finished"] == 50
    assert result["pass_rate"] == result["passed"] / 50
    assert result["verdict"] == ("passed" if result["passed"] >= 25 else "failed")
    assert result["latency_ms"]["count"] == 50
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p95"]
    shared = Path(result["set_dir"]) / "config"
    for trial in trials:
        calls = await trace_lines(wire, trial["run_id"])
        assert calls and {c["trace_id"] for c in calls} == {trial["trace_id"]}
        # Every trial's config/ is whole: the set's copy (one file, linked), its own launch.
        config = Path((await wire.result("run.get", {"run_id": trial["run_id"]}))["run_dir"],
                      "config")
        names = sorted(p.name for p in config.iterdir())
        assert names == sorted([p.name for p in shared.iterdir()] + ["launch.json"])
        assert all((config / name).samefile(shared / name) for name in names
                   if name != "launch.json")
        assert json.loads((config / "launch.json").read_text())["trial_index"] == trial["index"]
        assert (config / "pipeline.dot").read_text() == PIPELINE["source"]
        if not trial["passed"]:  # a failed trial's partial trace ends with the error
            assert calls[-1]["finish_reason"] == "error"
            assert "injected failure" in calls[-1]["error"]
    listed = await wire.result("run.list", {"limit": 100})
    assert {t["run_id"] for t in trials} <= {r["run_id"] for r in listed["runs"]}
    # The set's manifest maps the set to its trials.
    manifest = json.loads((Path(result["set_dir"]) / "manifest.json").read_text())
    assert [(t["index"], t["trace_id"], t["status"]) for t in manifest["trial_runs"]] == [
        (t["index"], t["trace_id"], t["status"]) for t in trials]
    again = await wire.result("trials.get", {"trial_set_id": result["trial_set_id"]})
    assert again == result


@pytest.mark.in_process
async def test_scores_are_aggregated_and_costs_summed(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    scored = dot("""\
        digraph scored {
            start [shape=Mdiamond]
            judge [prompt="Score it", scripted.context_updates="{\\"score\\": 0.75}"]
            done [shape=Msquare]
            start -> judge -> done
        }""")
    result = await wire.result("run.start", {"pipeline": scored, "trials": 4, "wait": True})
    assert (result["passed"], result["verdict"]) == (4, "passed")
    assert result["scores"] is not None and result["scores"]["count"] == 4
    assert result["scores"]["mean"] == result["scores"]["p95"] == 0.75
    assert result["input_tokens"] > 0 and result["output_tokens"] > 0


@pytest.mark.in_process
async def test_early_stop_ends_the_set_once_its_verdict_is_settled(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    result = await wire.result("run.start", {"pipeline": FAILING, "trials": 20,
                                             "concurrency": 1, "early_stop": True,
                                             "pass_threshold": 1.0, "wait": True})
    # All must pass: the first failure settles the verdict; nothing else runs.
    assert (result["verdict"], result["early_stopped"]) == ("failed", True)
    statuses = [t["status"] for t in result["trial_runs"]]
    assert statuses[0] == "failed" and set(statuses[1:]) == {"skipped"}
    assert result["finished"] == 1
    runs = await wire.result("run.list", {"limit": 100})
    assert len([r for r in runs["runs"] if r["pipeline_name"] == "failing"]) == 1


@pytest.mark.in_process
async def test_a_trial_set_answers_at_once_without_wait(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    started = await wire.result("run.start", {"pipeline": PIPELINE, "trials": 3})
    assert started["status"] == "running" and len(started["trial_runs"]) == 3
    done = await wire.result("trials.get", {"trial_set_id": started["trial_set_id"],
                                            "wait": True})
    assert (done["status"], done["finished"], done["verdict"]) == ("completed", 3, "passed")
    missing = await wire.request("trials.get", {"trial_set_id": "nope"})
    assert missing["error"]["code"] == -32001


def counted_pipeline(count: Path, fifo: Path) -> dict[str, str]:
    """The first two trials pass at once; the third announces itself and blocks."""
    return dot(f"""\
        digraph counted {{
            start [shape=Mdiamond]
            work [shape=parallelogram, tool_command="n=$(cat {count} 2>/dev/null || echo 0); \\
echo $((n+1)) > {count}; [ $n -lt 2 ] && exit 0; echo $$ > {fifo}; exec sleep 30"]
            done [shape=Msquare]
            start -> work -> done
        }}""")


async def cut_off(short_tmp: Path, stop: str, executor: str) -> dict[str, Any]:
    """A 5-trial set whose third trial is running when its daemon is stopped (`kill`:
    SIGKILL, `term`: SIGTERM); the set as the next daemon reports it."""
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    fifo = make_fifo(short_tmp / "announce")
    first = await start_daemon(home, "--socket", socket, "--executor", executor)
    wire = await first.connect()
    started = await wire.result("run.start", {
        "pipeline": counted_pipeline(short_tmp / "count", fifo), "trials": 5,
        "concurrency": 1})
    pid = int(await read_fifo(fifo))
    if stop == "kill":
        first.process.kill()
        await first.stop()
    else:
        assert await first.stop() == 0  # SIGTERM: a clean stop
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        kept = await wire.result("trials.get", {"trial_set_id": started["trial_set_id"]})
        blocked = kept["trial_runs"][2]["run_id"]
        kept["blocked_run"] = await wire.result("run.get", {"run_id": blocked})
    finally:
        assert await second.stop() == 0
    return kept


@pytest.mark.parametrize("stop", ["kill", "term"])
async def test_a_trial_set_cut_off_keeps_the_trials_that_finished(
        short_tmp: Path, stop: str, executor: str) -> None:
    kept = await cut_off(short_tmp, stop, executor)
    assert kept["status"] == "interrupted"
    assert (kept["finished"], kept["passed"]) == (2, 2)
    statuses = [t["status"] for t in kept["trial_runs"]]
    assert statuses[:3] == ["completed", "completed", "interrupted"]
    assert all(t["trace_id"] for t in kept["trial_runs"][:3])
    blocked = kept["blocked_run"]
    assert (blocked["status"], blocked["resumable"]) == ("interrupted", True)


@pytest.mark.in_process
async def test_early_stop_with_concurrent_trials_ends_every_trial(
        daemon: InProcessDaemon) -> None:
    """Trials cancelled by the early stop, even those whose run had not taken its first
    step yet, end as cancelled runs; the set answers, and nothing is left running."""
    wire = await daemon.connect()
    for seed in range(8):
        flaky = {**FLAKY, "providers": {"flaky": {**FLAKY["providers"]["flaky"],
                                                  "fail_rate": 0.3, "seed": seed}}}
        result = await wire.result("run.start", {
            "pipeline": PIPELINE, "settings": flaky, "trials": 20, "concurrency": 4,
            "early_stop": True, "pass_threshold": 1.0, "wait": True})
        assert result["status"] == "completed"
        if result["failed"]:
            assert result["verdict"] == "failed"
        statuses = {t["status"] for t in result["trial_runs"]}
        assert statuses <= {"completed", "failed", "cancelled", "skipped"}, statuses
    running = await wire.result("run.list", {"status": ["running", "waiting"]})
    assert running["runs"] == []


@pytest.mark.in_process
async def test_a_trial_set_on_a_real_provider_keeps_its_concurrency_limit(
        daemon: InProcessDaemon, executor: str) -> None:
    """The trials share one provider pool, whose limit holds across the set wherever its
    runs execute: on workers, each call waits for a permit of the daemon's pool."""
    in_flight, peak = 0, 0

    async def slow(seen: SeenRequest) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.05)  # the model's latency, for calls to overlap
        finally:
            in_flight -= 1
        return Reply(text="an answer")

    async with FakeLLMServer(responder=slow) as server:
        settings = {"default_provider": "llm", "providers": {"llm": {
            "type": "openai", "base_url": server.url + "/v1", "api_key_env": None,
            "model": "gpt-4o-mini", "concurrency": 2}}}
        wire = await daemon.connect()
        before = await runs_done_on_workers(wire)
        result = await wire.result("run.start", {"pipeline": PIPELINE, "settings": settings,
                                                 "trials": 8, "concurrency": 8,
                                                 "wait": True})
        assert result["status"] == "completed" and result["passed"] == 8
        assert len(server.requests) == 8 and peak == 2
        # On a pool, every trial executed on a worker.
        assert await runs_done_on_workers(wire) - before == (8 if executor != "inline" else 0)
