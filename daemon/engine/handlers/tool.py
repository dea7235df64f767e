"""The tool handler (attractor §4.10): a subprocess with a timeout and captured output.

`tool_command` runs through `/bin/sh -c`; `tool_argv` (a JSON list) runs without a shell.
The process gets its stage directory in `OSTINATO_STAGE_DIR`; a `status.json` it writes there
is its outcome (the status-file contract, appendix C). Cancelling the run kills the whole
process group.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson

from ..outcome import Outcome, Status
from ..recording import INTERRUPTED
from ..tools.capture import kill_group, start_in_group
from .base import NodeRun


def _argv(run: NodeRun) -> list[str] | None:
    argv = run.node.get("tool_argv")
    if argv:
        parsed = orjson.loads(str(argv)) if isinstance(argv, str) else argv
        if isinstance(parsed, list) and parsed and all(isinstance(a, str) for a in parsed):
            return parsed
        raise ValueError("tool_argv must be a JSON list of strings")
    command = str(run.node.get("tool_command", "") or "")
    return ["/bin/sh", "-c", command] if command else None


class ToolHandler:
    """Runs the node's command and reports its exit status and output."""

    async def execute(self, run: NodeRun) -> Outcome:
        """Run it; a non-zero exit is FAIL, the node's `timeout` kills it."""
        argv = _argv(run)
        if argv is None:
            return Outcome(Status.FAIL, failure_reason="No tool_command specified")
        recorded = run.executor.recorded(run.node.id, run.attempt, "tool", {"argv": argv})
        if recorded is not None:  # served from the recording: nothing is run
            if recorded.get("error") == INTERRUPTED:
                _record_interrupted(run, argv, 0.0)
                raise TimeoutError  # it timed out in the recording: the same outcome
            if recorded.get("response") is None:  # it could not be started
                return _not_started(run, argv, str(recorded.get("error")), 0.0)
            response = recorded["response"]
            latency_ms = 0.0
        else:
            # The tool's effects are never ahead of the record of the nodes before it.
            await run.executor.commit_records()
            started = time.monotonic()
            try:
                response, latency_ms = await _run(run, argv)
            except (asyncio.CancelledError, TimeoutError):
                _record_interrupted(run, argv, (time.monotonic() - started) * 1000)
                raise
            except OSError as exc:  # no such program, not executable, …
                return _not_started(run, argv, f"cannot start {argv[0]!r}: "
                                    f"{exc.strerror or exc}",
                                    (time.monotonic() - started) * 1000)
        code = response.get("exit_code")
        run.executor.record_call(
            node_id=run.node.id, attempt=run.attempt, kind="tool", request={"argv": argv},
            response=response, latency_ms=latency_ms,
            finish_reason="exit" if code == 0 else "error",
            error=None if code == 0 else f"exit code {code}")
        return _outcome(run, argv, response)


def _not_started(run: NodeRun, argv: list[str], error: str, latency_ms: float) -> Outcome:
    """A command that could not be started: a recorded call with the error, and FAIL."""
    run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="tool",
                             request={"argv": argv}, response=None, error=error,
                             latency_ms=latency_ms, finish_reason="error")
    return Outcome(Status.FAIL, failure_reason=error)


def _record_interrupted(run: NodeRun, argv: list[str], latency_ms: float) -> None:
    run.executor.record_call(node_id=run.node.id, attempt=run.attempt, kind="tool",
                             request={"argv": argv}, response=None, error=INTERRUPTED,
                             latency_ms=latency_ms, finish_reason="error")


async def _run(run: NodeRun, argv: list[str]) -> tuple[dict[str, Any], float]:
    """Run the command in the node's stage directory: its exit code, output and the status
    file it wrote (or None), and how long it took."""
    stage_dir = Path(run.executor.run_dir.stage(run.node.id))
    status_file = stage_dir / "status.json"
    for stale in (status_file, stage_dir / "stdout.txt", stage_dir / "stderr.txt"):
        stale.unlink(missing_ok=True)  # from an earlier attempt or visit
    env = {**os.environ, "OSTINATO_STAGE_DIR": str(stage_dir),
           "OSTINATO_RUN_ID": run.executor.run_id, "OSTINATO_NODE_ID": run.node.id}
    started = time.monotonic()
    process = await start_in_group(argv, env=env)
    try:
        stdout, stderr = await process.communicate()
    except BaseException:  # cancelled or timed out: never leave the process behind
        await kill_group(process)
        raise
    latency_ms = (time.monotonic() - started) * 1000
    # The status file is part of the answer: a replay must reproduce the outcome it gave.
    status = orjson.loads(status_file.read_bytes()) if status_file.exists() else None
    return {"exit_code": process.returncode, "stdout": stdout.decode("utf-8", "replace"),
            "stderr": stderr.decode("utf-8", "replace"), "status_file": status}, latency_ms


def _outcome(run: NodeRun, argv: list[str], response: dict[str, Any]) -> Outcome:
    """The node's outcome from what the command did (or did in the recording)."""
    code, out, err = response.get("exit_code"), response.get("stdout", ""), \
        response.get("stderr", "")
    run.write_file("stdout.txt", out)
    if err:
        run.write_file("stderr.txt", err)
    updates = {"tool.output": out, "tool.exit_code": code, f"{run.node.id}.output": out}
    if response.get("status_file") is not None:  # the tool reported its own outcome
        outcome = Outcome.from_status_file(response["status_file"])
        outcome.context_updates = {**updates, **outcome.context_updates}
        return outcome
    if code != 0:
        return Outcome(Status.FAIL, context_updates=updates,
                       failure_reason=f"exit code {code}: {err.strip()[-500:]}")
    return Outcome(Status.SUCCESS, context_updates=updates,
                   notes=f"Tool completed: {' '.join(argv)[:200]}")
