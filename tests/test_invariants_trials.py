"""Across trials: `evaluate_trials` over the runs of a real trial set (a flaky scripted
provider fails some trials), with `pass_rate` checked against the Wilson bound computed
here, `pass_at_k`, and how per-run results aggregate; and the Judge as callers other than
run.reeval use it."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from statistics import NormalDist
from typing import Any

import pytest
import pytest_asyncio

from ostinato.daemon.engine.providers.runtime import ProviderPool
from ostinato.daemon.engine.replay import Cassette, Replayer, ReplayProviders
from ostinato.daemon.regression.invariants import Judge, StoredRun, evaluate_trials
from ostinato.protocol.invariants import invariant_list

from .inprocess import InProcessDaemon
from .invariants_support import module_daemon
from .runs_support import dot, trace

pytestmark = pytest.mark.asyncio(loop_scope="module")
shared = module_daemon()

PIPELINE = dot("""
    digraph flaky {
        start [shape=Mdiamond]
        answer [prompt="Answer", scripted.response="The answer is 42."]
        done [shape=Msquare]
        start -> answer -> done
    }""")
# A third of the calls fail (a seeded hash decides which), and nothing retries them.
FLAKY = {"default_provider": "flaky", "retry": {"delay_scale": 0},
         "providers": {"flaky": {"type": "scripted", "fail_rate": 0.35, "seed": 5,
                                 "retry": {"max_attempts": 1}}}}
TRIALS = 20


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trial_runs(shared_daemon: InProcessDaemon) -> AsyncIterator[list[StoredRun]]:
    """The runs of a 20-trial set, as stored (their row, stages, trace and context)."""
    wire = await shared_daemon.connect()
    result = await wire.result("run.start", {"pipeline": PIPELINE, "settings": FLAKY,
                                             "trials": TRIALS, "concurrency": 4,
                                             "wait": True})
    runs = []
    for trial in result["trial_runs"]:
        detail = await wire.result("run.get", {"run_id": trial["run_id"]})
        runs.append(StoredRun(run={**detail, "id": detail["run_id"]}, stages=detail["stages"],
                              calls=trace(detail), context=detail["context"]))
    await wire.close()
    yield runs


def checks(*entries: dict[str, Any]) -> list[Any]:
    return invariant_list.validate_python(list(entries))


def completed(runs: list[StoredRun]) -> int:
    return sum(run.run["status"] == "completed" for run in runs)


def wilson(passes: int, n: int, confidence: float) -> float:
    z = NormalDist().inv_cdf(confidence)
    p = passes / n
    return ((p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
            / (1 + z * z / n))


async def test_pass_rate_is_judged_by_the_wilson_lower_bound(
        trial_runs: list[StoredRun]) -> None:
    passes = completed(trial_runs)
    assert 0 < passes < TRIALS, "the seed should fail some trials and pass others"
    bound = wilson(passes, TRIALS, 0.9)
    below, above = round(bound - 0.01, 3), round(bound + 0.01, 3)

    evaluation = await evaluate_trials(checks(
        {"type": "run_status"},
        {"type": "contains", "value": "42"},
        {"type": "pass_rate", "threshold": below, "confidence": 0.9},
        {"type": "pass_rate", "threshold": above, "confidence": 0.9},
        {"type": "pass_rate", "threshold": 0.2}), trial_runs)

    status, contains, low, high, default = evaluation["results"]
    assert (low["status"], high["status"]) == ("passed", "failed")
    assert low["actual"] == {"rate": passes / TRIALS, "lower_bound": round(bound, 6),
                             "n": TRIALS, "passed": passes}
    assert low["expected"] == {"threshold": below, "confidence": 0.9}
    assert default["actual"]["lower_bound"] == round(wilson(passes, TRIALS, 0.95), 6)
    assert f"{passes} of {TRIALS} trials passed" in high["message"]
    # A trial passes when none of its checks failed: here, when its run completed.
    assert evaluation["trial_passed"] == [r.run["status"] == "completed" for r in trial_runs]
    assert len(evaluation["per_trial"]) == TRIALS
    assert [r["type"] for r in evaluation["per_trial"][0]] == ["run_status", "contains"]
    # The per-run checks feed the rate, not the verdict: reported with their counts.
    assert status["status"] == contains["status"] == "skipped"
    assert status["actual"] == {"trials": TRIALS, "passed": passes,
                                "failed": TRIALS - passes, "error": 0, "skipped": 0}
    assert contains["actual"]["error"] == TRIALS - passes  # a failed run has no output
    assert "counted by the across-trials checks" in status["message"]
    assert evaluation["verdict"] == "failed"  # `high` failed


async def test_without_an_across_trials_check_one_failing_trial_fails(
        trial_runs: list[StoredRun]) -> None:
    evaluation = await evaluate_trials(checks({"type": "run_status"},
                                              {"type": "max_cost_usd", "value": 1}),
                                       trial_runs)
    status, cost = evaluation["results"]
    assert status["status"] == "failed"
    assert status["message"].startswith(f"failed on {TRIALS - completed(trial_runs)} and "
                                        f"errored on 0 of {TRIALS} trial(s); first: the run "
                                        "ended failed")
    assert (cost["status"], cost["message"]) == ("passed", f"passed on all {TRIALS} trial(s)")
    assert evaluation["verdict"] == "failed"

    passing = await evaluate_trials(checks({"type": "max_cost_usd", "value": 1}),
                                    [r for r in trial_runs if r.run["status"] == "completed"])
    assert passing["verdict"] == "passed"



async def test_a_check_skipped_on_some_trials_passes_where_it_was_evaluated(
        trial_runs: list[StoredRun]) -> None:
    # A content check on trials recorded without content is skipped under allow_partial.
    good = [r for r in trial_runs if r.run["status"] == "completed"][:3]
    stripped = [StoredRun(run=r.run, stages=r.stages, calls=r.calls, context=r.context,
                          record="metadata_only") for r in good[:1]]
    evaluation = await evaluate_trials(checks({"type": "max_cost_usd", "value": 1},
                                              {"type": "regex", "value": "."}),
                                       good[1:] + stripped, allow_partial=True)
    regex = evaluation["results"][1]
    assert regex["status"] == "passed"
    assert regex["actual"] == {"trials": 3, "passed": 2, "failed": 0, "error": 0, "skipped": 1}
    assert regex["message"] == "passed on 2 trial(s), skipped on 1"

async def test_pass_at_k(trial_runs: list[StoredRun]) -> None:
    passes, n = completed(trial_runs), TRIALS
    expected = 1 - math.comb(n - passes, 2) / math.comb(n, 2)

    # No per-run checks: a trial passes when its run completed with success.
    evaluation = await evaluate_trials(checks(
        {"type": "pass_at_k", "k": 2, "threshold": round(expected - 0.001, 4)},
        {"type": "pass_at_k", "k": 1, "threshold": round(passes / n + 0.001, 4)},
        {"type": "pass_at_k", "k": 21}), trial_runs)

    two, one, too_many = evaluation["results"]
    assert two["status"] == "passed" and two["actual"]["pass_at_k"] == round(expected, 6)
    assert one["status"] == "failed" and one["actual"]["pass_at_k"] == passes / n
    assert too_many["status"] == "error"
    assert too_many["message"] == "pass_at_k with k=21 needs at least 21 trials, got 20"
    assert evaluation["trial_passed"] == [r.run["status"] == "completed" for r in trial_runs]


async def test_one_run_is_a_trial_set_of_one(trial_runs: list[StoredRun]) -> None:
    good = next(r for r in trial_runs if r.run["status"] == "completed")
    evaluation = await evaluate_trials(checks({"type": "run_status"},
                                              {"type": "pass_rate", "threshold": 0.2}), [good])
    assert [r["status"] for r in evaluation["results"]] == ["passed", "passed"]
    assert evaluation["results"][1]["actual"]["lower_bound"] == round(wilson(1, 1, 0.95), 6)
    empty = await evaluate_trials(checks({"type": "pass_rate", "threshold": 0.2}), [])
    assert empty["results"][0]["status"] == "error" and empty["verdict"] == "failed"


async def test_a_judge_keeps_its_calls_for_the_caller_to_store(
        trial_runs: list[StoredRun]) -> None:
    """What tests.run and snapshots use: a Judge over any providers collects trace-shaped
    calls and their cost; over a recorded replay without its votes, the check errors."""
    good = next(r for r in trial_runs if r.run["status"] == "completed")
    pool = ProviderPool({"providers": {"scripted": {"responses": {"$judge": ["PASS", "FAIL",
                                                                             "PASS"]}}},
                         "pricing": {"models": {"scripted/*": {"input_per_mtok": 1,
                                                               "output_per_mtok": 1}}}})
    judge = Judge(pool)
    rubric = {"type": "judge", "rubric": "Gives an answer.", "k": 3}

    evaluation = await evaluate_trials([rubric, {"type": "pass_rate", "threshold": 0.1}],
                                       [good, good], judge=judge)

    assert [r["status"] for r in evaluation["results"]] == ["passed", "passed"]
    assert [(c["node_id"], c["attempt"], c["kind"]) for c in judge.calls] == [
        ("$judge", 1, "model"), ("$judge", 2, "model"), ("$judge", 3, "model")] * 2
    first = judge.calls[0]
    assert first["request"]["provider"] == "scripted" and first["response"]["text"] == "PASS"
    assert first["usage"] == {"input_tokens": first["input_tokens"],
                              "output_tokens": first["output_tokens"]}
    assert judge.cost_usd == pytest.approx(sum(c["cost_usd"] for c in judge.calls))
    assert judge.cost_usd > 0
    assert judge.new_calls == judge.calls

    served = Judge(ReplayProviders(pool, Replayer("recorded", Cassette.from_calls(
        judge.calls[:3]))))
    again = await evaluate_trials([rubric], [good], judge=served)
    assert again["results"][0]["status"] == "passed" and served.new_calls == []
    assert served.cost_usd == 0
    missing = await evaluate_trials([{**rubric, "k": 4}], [good], judge=Judge(
        ReplayProviders(pool, Replayer("recorded", Cassette.from_calls(judge.calls[:3])))))
    assert missing["results"][0]["status"] == "error"
    assert "first: judge vote 4 of 4 failed: replay diverged at node '$judge'" in \
        missing["results"][0]["message"]
    await pool.aclose()
