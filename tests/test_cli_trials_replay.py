"""`ostinato run --trials` and `ostinato replay` on the command line, as subprocesses against
a daemon: a trial set's summary and exit code by verdict, its `--json` (which is what
trials.get says), a replay at zero cost, and a replay of an edited pipeline that diverges at
the node that changed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import sys
from pathlib import Path
from typing import Any

from ostinato.clients.cli.progress import TrialDisplay, summary_lines

from .support import WAIT, DaemonProcess

TRIAL = """\
digraph trial {
    start [shape=Mdiamond]
    answer [prompt="Answer the question"]
    done [shape=Msquare]
    start -> answer -> done
}
"""
# 20% of the calls fail (a seeded draw per trial, so the same trials fail every time), and
# neither the pool nor the node retries them: those trials fail.
FLAKY = {"default_provider": "flaky", "retry": {"delay_scale": 0},
         "providers": {"flaky": {"type": "scripted", "fail_rate": 0.2, "seed": 11,
                                 "retry": {"max_attempts": 1}}}}
SCORED = """\
digraph scored {
    start [shape=Mdiamond]
    judge [prompt="Score it", scripted.context_updates="{\\"score\\": 0.75}"]
    done [shape=Msquare]
    start -> judge -> done
}
"""
FAILING = """\
digraph failing {
    start [shape=Mdiamond]
    work [prompt="Try", scripted.status="fail", max_retries=0]
    done [shape=Msquare]
    start -> work -> done
}
"""
REVIEW = """\
digraph review {{
    graph [goal="Ship the release notes"]
    start [shape=Mdiamond]
    draft [prompt="Draft the notes for $goal"]
    check [prompt="{check}"]
    count [shape=parallelogram, tool_command="echo 3 sources"]
    polish [prompt="Polish the notes"]
    done [shape=Msquare]
    start -> draft -> check -> count -> polish -> done
}}
"""
# The scripted provider at a real price, so that "zero cost" means something.
PRICED = {"retry": {"delay_scale": 0},
          "pricing": {"models": {"scripted/*": {"input_per_mtok": 3.0,
                                                "output_per_mtok": 15.0}}}}
CLI = [sys.executable, "-m", "ostinato.clients.cli"]


class Done:
    """A finished `ostinato` process."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.lines = stdout.splitlines()

    def json(self) -> Any:
        return json.loads(self.stdout)


async def ostinato(*args: str, cwd: Path, timeout: float = 60) -> Done:
    """Run the `ostinato` command (without blocking the loop that drains the daemon)."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def test_a_trial_set_shows_its_summary_and_exits_by_its_verdict(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    pipeline = write(tmp_path / "trial.dot", TRIAL)
    settings = write(tmp_path / "flaky.json", json.dumps(FLAKY))

    half = await ostinato("run", pipeline, "--trials", "20", "--concurrency", "4",
                          "--pass-threshold", "0.5", "--settings", settings, *socket,
                          cwd=tmp_path)
    assert half.returncode == 0, half.stderr
    assert half.lines[0].startswith("trial set ")
    assert half.lines[0].endswith("trial  (20 trials, 4 at a time, pass threshold 0.5)")
    [verdict] = [line for line in half.lines if line.startswith("verdict ")]
    assert verdict.startswith("verdict passed: ") and "10 needed" in verdict
    passed = int(verdict.split(": ")[1].split()[0])
    assert 10 <= passed < 20  # the flaky provider failed some trials, not too many
    assert f"pass rate {passed / 20:.1%} of 20 finished" in verdict
    assert any(line.startswith("  cost $0.0000; ") and " tokens (" in line
               for line in half.lines), half.stdout
    assert any(line.startswith("  latency p50 ") and ", p95 " in line for line in half.lines)
    failed = [line for line in half.lines if line.startswith("  ✗ trial ")]
    assert len(failed) == 20 - passed
    assert all("injected failure" in line and "(run " in line for line in failed)
    set_dir = half.lines[-1].removeprefix("  set directory: ")
    assert half.lines[-1] != set_dir and (Path(set_dir) / "manifest.json").is_file()

    # The same trials fail again (the draws are seeded); all of them must pass now.
    strict = await ostinato("run", pipeline, "--trials", "20", "--settings", settings,
                            *socket, cwd=tmp_path)
    assert strict.returncode == 1, strict.stderr
    assert f"verdict failed: {passed} of 20 trials passed, 20 needed (pass threshold 1)" \
        in strict.stdout
    assert [line for line in strict.lines if line.startswith("  ✗ trial ")] != []


async def test_early_stop_and_scores_in_the_summary(daemon: DaemonProcess,
                                                    tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    failing = await ostinato("run", write(tmp_path / "failing.dot", FAILING), "--trials", "5",
                             "--concurrency", "1", "--early-stop", *socket, cwd=tmp_path)
    assert failing.returncode == 1, failing.stderr
    assert "early stop" in failing.lines[0]
    assert "verdict failed: 0 of 5 trials passed, 5 needed" in failing.stdout
    assert "  early stop: 4 skipped" in failing.lines
    assert any(line.startswith("  ✗ trial 0 (run ") and "the model reported fail" in line
               for line in failing.lines), failing.stdout

    scored = await ostinato("run", write(tmp_path / "scored.dot", SCORED), "--trials", "3",
                            *socket, cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert "verdict passed: 3 of 3 trials passed" in scored.stdout
    assert any(line.startswith("  scores p50 0.75, p95 0.75 (mean 0.75") and "3 scored" in line
               for line in scored.lines), scored.stdout


async def test_trial_set_json_is_what_trials_get_says(daemon: DaemonProcess,
                                                     tmp_path: Path) -> None:
    done = await ostinato("run", write(tmp_path / "trial.dot", TRIAL), "--trials", "6",
                          "--concurrency", "3", "--pass-threshold", "0.5",
                          "--record", "metadata_only", "--json",
                          "--settings", json.dumps(FLAKY), "--socket", daemon.socket,
                          cwd=tmp_path)
    assert done.returncode == (0 if done.json()["verdict"] == "passed" else 1), done.stderr
    summary = done.json()
    assert (summary["status"], summary["trials"], summary["finished"]) == ("completed", 6, 6)
    assert (summary["concurrency"], summary["pass_threshold"]) == (3, 0.5)
    wire = await daemon.connect()
    again = await wire.result("trials.get", {"trial_set_id": summary["trial_set_id"]})
    assert again == summary
    # --record reached every trial.
    for trial in summary["trial_runs"]:
        detail = await wire.result("run.get", {"run_id": trial["run_id"]})
        launch = json.loads((Path(detail["run_dir"]) / "config" / "launch.json").read_text())
        assert (launch["record"], launch["trial_set_id"]) == (
            "metadata_only", summary["trial_set_id"])
        assert not (Path(detail["run_dir"]) / "answer" / "prompt.md").exists()


async def test_a_replay_of_a_recorded_run_costs_nothing(daemon: DaemonProcess,
                                                        tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    pipeline = write(tmp_path / "review.dot", REVIEW.format(check="Check the facts"))
    recorded = await ostinato("run", pipeline, "--settings", json.dumps(PRICED), "--json",
                              *socket, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    original = recorded.json()
    assert original["cost_usd"] > 0

    replay = await ostinato("replay", original["run_id"], *socket, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert replay.lines[0].endswith(f"review  (replay of {original['run_id']}, recorded)")
    for node in ("draft", "check", "count", "polish"):
        assert any(line.strip().startswith(f"✓ {node}") for line in replay.lines)
    tokens = original["input_tokens"] + original["output_tokens"]
    assert replay.lines[-1] == f"completed (success); {tokens} tokens, $0.0000"

    as_json = await ostinato("replay", original["run_id"], "--json", *socket, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    replayed = as_json.json()
    assert (replayed["status"], replayed["outcome"], replayed["cost_usd"]) == (
        "completed", "success", 0.0)
    assert replayed["completed_nodes"] == original["completed_nodes"]
    assert replayed["run_id"] != original["run_id"]

    live = await ostinato("replay", original["run_id"], "--mode", "live", "--json", *socket,
                          cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    assert live.json()["cost_usd"] == original["cost_usd"]  # the recorded settings, live


async def test_a_replay_of_an_edited_pipeline_diverges_at_the_node_that_changed(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    recorded = await ostinato("run", write(tmp_path / "v1.dot",
                                           REVIEW.format(check="Check the facts")),
                              "--json", *socket, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    run_id = recorded.json()["run_id"]
    edited = write(tmp_path / "v2.dot", REVIEW.format(check="Check the facts and the tone"))

    diverged = await ostinato("replay", run_id, "--pipeline", edited, *socket, cwd=tmp_path)
    assert diverged.returncode == 1, diverged.stderr
    lines = diverged.lines
    assert any(line.strip().startswith("✓ draft") for line in lines), diverged.stdout
    [at] = [line for line in lines if line.strip().startswith("✗ ")]
    assert at.split()[1] == "check" and "replay diverged at step 2 (model call" in at
    assert any("messages[1].content" in line and "Check the facts → Check the facts and the "
               "tone" in line for line in lines), diverged.stdout
    assert lines[-1].startswith("failed (fail: replay diverged at node 'check', step 2")
    assert not any("polish" in line for line in lines)  # nothing ran after the divergence

    as_json = await ostinato("replay", run_id, "--pipeline", edited, "--json", *socket,
                             cwd=tmp_path)
    assert as_json.returncode == 1
    summary = as_json.json()
    assert summary["status"] == "failed" and "node 'check'" in summary["failure_reason"]

    hybrid = await ostinato("replay", run_id, "--pipeline", edited, "--mode", "hybrid",
                            *socket, cwd=tmp_path)
    assert hybrid.returncode == 0, hybrid.stdout + hybrid.stderr
    assert hybrid.lines[-1].startswith("completed (success)")


async def test_bad_trial_and_replay_arguments(daemon: DaemonProcess, tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    pipeline = write(tmp_path / "trial.dot", TRIAL)
    without_trials = await ostinato("run", pipeline, "--concurrency", "2", *socket,
                                    cwd=tmp_path)
    assert without_trials.returncode == 2
    assert "need --trials" in without_trials.stderr
    threshold = await ostinato("run", pipeline, "--trials", "2", "--pass-threshold", "1.5",
                               *socket, cwd=tmp_path)
    assert threshold.returncode == 2 and "between 0 and 1" in threshold.stderr
    unknown = await ostinato("replay", "no-such-run", *socket, cwd=tmp_path)
    assert unknown.returncode == 1 and "no run no-such-run" in unknown.stderr
    quiet = await ostinato("run", pipeline, "--record", "metadata_only", "--json", *socket,
                           cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    refused = await ostinato("replay", quiet.json()["run_id"], *socket, cwd=tmp_path)
    assert refused.returncode == 1 and "metadata_only" in refused.stderr


async def test_on_a_terminal_a_trial_set_shows_a_bar(daemon: DaemonProcess,
                                                          tmp_path: Path) -> None:
    slow = {"providers": {"scripted": {"latency_ms": 40}}}
    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", write(tmp_path / "trial.dot", TRIAL), "--trials", "8", "--concurrency",
        "1", "--settings", json.dumps(slow), "--socket", daemon.socket, cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL, stdout=secondary, stderr=asyncio.subprocess.PIPE)
    os.close(secondary)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        output = (await asyncio.wait_for(asyncio.to_thread(read_all), WAIT * 2)).decode()
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        os.close(primary)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)  # the colours and redraws
    # rich's bar: trials finished of all, the counts from trials.get, elapsed time and ETA.
    assert "  trials " in plain and " 0/8 " in plain, plain
    assert " passed · 0 failed · " in plain and " ETA " in plain, plain
    assert "━" in plain and "\r\x1b[2K" in output  # a bar, redrawn in place
    assert "verdict passed: 8 of 8 trials passed" in plain


def test_the_status_line_counts_running_and_waiting_trials() -> None:
    trial_set: dict[str, Any] = {
        "trial_set_id": "ts", "status": "running", "pipeline_name": "p", "trials": 4,
        "concurrency": 2, "early_stop": True, "pass_threshold": 0.5, "set_dir": "/x/ts",
        "finished": 1, "passed": 1, "failed": 0, "pass_rate": 1.0, "verdict": None,
        "early_stopped": False, "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0,
        "latency_ms": None, "scores": None,
        "trial_runs": [{"index": 0, "run_id": "r0", "status": "completed", "passed": True},
                       {"index": 1, "run_id": "r1", "status": "running", "passed": None},
                       {"index": 2, "run_id": "r2", "status": "waiting", "passed": None},
                       {"index": 3, "run_id": None, "status": "pending", "passed": None}]}
    out = io.StringIO()  # not a terminal: the status line as plain text
    TrialDisplay(out).progress(trial_set)
    assert out.getvalue() == ("  1/4 finished · 1 passed · 0 failed · 1 running · "
                              "1 waiting for a human answer\n")
    ended = {**trial_set, "status": "completed", "verdict": "passed", "early_stopped": True,
             "trial_runs": [*trial_set["trial_runs"][:1],
                            {"index": 1, "run_id": "r1", "status": "completed",
                             "passed": True},
                            {"index": 2, "run_id": "r2", "status": "cancelled",
                             "passed": None},
                            {"index": 3, "run_id": None, "status": "skipped",
                             "passed": None}]}
    lines = summary_lines(ended)
    assert lines[1] == "  early stop: 1 skipped, 1 cancelled"
    assert lines[-1] == "  set directory: /x/ts"
