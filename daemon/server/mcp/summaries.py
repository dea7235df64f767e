"""The short text a tool result starts with: what happened, the ids and paths an agent
needs next, and the next useful step. The whole result follows it as JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ostinato.mcp")
Summary = Callable[[Any], str]


def _run(run: dict[str, Any]) -> str:
    if "trial_set_id" in run:
        return _trial_set(run)
    outcome = f", outcome {run['outcome']}" if run.get("outcome") else ""
    why = f" ({run['failure_reason']})" if run.get("failure_reason") else ""
    text = (f"Run {run['run_id']} of pipeline {run['pipeline_name']}: {run['status']}"
            f"{outcome}{why}. Cost ${run.get('cost_usd', 0):.4f}. Run directory: "
            f"{run['run_dir']}.")
    question = run.get("question")
    if run["status"] == "waiting" and question:
        return (text + f" It waits on a human: {question.get('text', '')!r}. Next: `run` "
                f"action `answer` with run_id {run['run_id']} and question_id "
                f"{question.get('question_id')}.")
    if run["status"] == "waiting":
        return text + (f" It waits on a human. Next: `inspect` action `run` with run_id "
                       f"{run['run_id']} for the question, then `run` action `answer`.")
    if run["status"] in ("pending", "running"):
        return text + (f" Next: `inspect` action `run` with run_id {run['run_id']} to follow"
                       " it, or `run` action `start` with `wait: true` next time.")
    if run.get("resumable") and run["status"] in ("interrupted", "cancelled"):
        return text + f" Next: `run` action `resume` with run_id {run['run_id']}."
    return text + (f" Next: `inspect` action `run` for its stages, or `snapshot` action "
                   f"`create` with run_id {run['run_id']} to keep it as a regression test.")


def _trial_set(summary: dict[str, Any]) -> str:
    verdict = summary.get("verdict") or "pending"
    return (f"Trial set {summary['trial_set_id']} of pipeline {summary['pipeline_name']}: "
            f"{summary['status']}, {summary['finished']}/{summary['trials']} trials finished, "
            f"{summary['passed']} passed (pass rate {summary.get('pass_rate') or 0:.2f}), "
            f"verdict {verdict}. Directory: {summary['set_dir']}. Next: `inspect` action "
            f"`trials` with trial_set_id {summary['trial_set_id']}.")


def _validate(result: dict[str, Any]) -> str:
    diagnostics = result.get("diagnostics", [])
    errors = [d for d in diagnostics if d.get("severity") == "error"]
    if result.get("valid"):
        warned = f" with {len(diagnostics)} warning(s)" if diagnostics else ""
        return f"The pipeline is valid{warned}. Next: `run` action `start` with it."
    first = errors[0] if errors else {}
    where = f" (line {first['line']})" if first.get("line") else ""
    return (f"The pipeline is not valid: {len(errors)} error(s); the first{where}: "
            f"{first.get('message', '')}. Fix it and validate again.")


def _plan(result: dict[str, Any]) -> str:
    if not result.get("valid"):
        return _validate(result)
    plan = result.get("plan") or {}
    return (f"The pipeline is valid: {len(plan.get('nodes', []))} nodes, "
            f"{len(plan.get('edges', []))} edges. Next: `run` action `start` with it.")


def _listing(noun: str, items: list[dict[str, Any]], line: Callable[[dict[str, Any]], str],
             more: bool = False) -> str:
    """A page of a list: how many, then one line each for the first 20."""
    lines = [f"{len(items)} {noun}(s)" + (" (more: pass next_cursor as cursor)" if more
                                          else "") + ":"]
    lines += [f"- {line(item)}" for item in items[:20]]
    return "\n".join(lines)


def _runs(result: dict[str, Any]) -> str:
    return _listing("run", result["runs"], lambda r: (
        f"{r['run_id']} {r['pipeline_name']} {r['status']}"
        f"{' ' + r['outcome'] if r.get('outcome') else ''} {r['created_at']}"),
        bool(result.get("next_cursor")))


def _diff(result: dict[str, Any]) -> str:
    if result.get("identical"):
        return f"Runs {result['a']} and {result['b']} did the same calls with the same results."
    first = result.get("first_divergence")
    if not first:
        return f"Runs {result['a']} and {result['b']} differ in their metrics only."
    where = first.get("summary") or f"step {first['step']}, node {first['node_id']}"
    return (f"Runs {result['a']} and {result['b']} first diverge at {where} "
            f"({first['kind']}). The details are in first_divergence and nodes.")


def _reeval(result: dict[str, Any]) -> str:
    counts = result.get("counts") or {}
    failed = [f"{r['type']} ({r['message']})" for r in result.get("results", [])
              if r.get("status") == "failed"]
    text = (f"Run {result['run_id']} against its invariants: verdict {result['verdict']} "
            f"({counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed).")
    return text + (f" Failed: {'; '.join(failed)}." if failed else "")


def _snapshot(result: dict[str, Any]) -> str:
    if "deleted" in result:
        return (f"Snapshot {result['name']} v{result['version']} ({result['id']}) deleted; "
                f"{result.get('runs_kept', 0)} replay run(s) kept.")
    return (f"Snapshot {result['name']} v{result['version']} ({result['id']}), "
            f"{len(result.get('invariants') or [])} invariant(s), "
            f"{result.get('cassette_calls', 0)} recorded call(s). Next: `tests` action `run` "
            f"with snapshot_ids [{result['id']!r}], or `snapshot` action `replay`.")


def _snapshots(result: dict[str, Any]) -> str:
    return _listing("snapshot", result["snapshots"],
                    lambda s: f"{s['name']} v{s['version']} ({s['id']})",
                    bool(result.get("next_cursor")))


def _test_run(result: dict[str, Any]) -> str:
    summary = result.get("summary") or {}
    counts = ", ".join(f"{n} {k}" for k, n in summary.items() if n)
    text = (f"Test run {result['test_run_id']}: {result['status']}"
            + (f" ({counts})" if counts else "") + f", cost ${result['total_cost_usd']:.4f}.")
    bad = [s for s in result.get("snapshots", []) if s["status"] in ("failed", "error")]
    if bad:
        first = bad[0]
        runs = ", ".join(first.get("run_ids") or [])
        text += (f" First failure: {first['name']} v{first['version']} ({first['status']}"
                 f"{': ' + first['message'] if first.get('message') else ''}; run {runs}). "
                 f"Next: read resource ostinato://tests/{result['test_run_id']}/report.md, "
                 f"then `inspect` action `diff`.")
    elif result["status"] == "running":
        text += (f" Next: `tests` action `get` with test_run_id {result['test_run_id']} and "
                 "`wait: true`.")
    return text


def _test_runs(result: dict[str, Any]) -> str:
    return _listing("test run", result["test_runs"],
                    lambda t: f"{t['test_run_id']} {t['status']}",
                    bool(result.get("next_cursor")))


def _report(result: dict[str, Any]) -> str:
    return (f"Report of test run {result['test_run_id']} as {result['format']} "
            f"({len(result['content'])} characters) follows; also resource "
            f"ostinato://tests/{result['test_run_id']}/report.{_SUFFIX[result['format']]}.")


_SUFFIX = {"markdown": "md", "html": "html", "junit": "xml"}


def _trace(result: dict[str, Any]) -> str:
    calls = result.get("calls", [])
    more = (f" More: pass after_seq {result['next_after_seq']}."
            if result.get("next_after_seq") is not None else "")
    return f"Trace {result['trace_id']}: {len(calls)} call(s).{more}"


def _traces(result: dict[str, Any]) -> str:
    return f"Run {result['run_id']} has {len(result['traces'])} trace(s)."


def _status(result: dict[str, Any]) -> str:
    return (f"Ostinato {result['version']} is up (pid {result['pid']}, home {result['home']})"
            f": {result['active_runs']} active run(s), {result['connections']} "
            "connection(s).")


def _prune(result: dict[str, Any]) -> str:
    verb = "would remove" if result.get("dry_run") else "removed"
    return f"Prune {verb} {len(result.get('removed', []))} run(s)."


def _answered(result: None) -> str:
    return ("Answered; the run goes on. Next: `inspect` action `run` with `wait: true` until "
            "it ends or asks again.")


SUMMARIES: dict[str, Summary] = {
    "human.answer": _answered,
    "daemon.status": _status,
    "pipeline.validate": _validate, "pipeline.plan": _plan,
    "run.start": _run, "run.get": _run, "run.cancel": _run, "run.resume": _run,
    "snapshot.replay": _run, "trials.get": _trial_set, "trials.cancel": _trial_set,
    "run.list": _runs, "run.diff": _diff, "run.reeval": _reeval, "run.prune": _prune,
    "snapshot.create": _snapshot, "snapshot.get": _snapshot, "snapshot.delete": _snapshot,
    "snapshot.list": _snapshots,
    "tests.run": _test_run, "tests.get": _test_run, "tests.cancel": _test_run,
    "tests.list": _test_runs, "tests.report": _report,
    "trace.get": _trace, "trace.list": _traces,
}


def summary(method: str, result: Any) -> str:
    """The text summary of `method`'s result (which is JSON data)."""
    summarize = SUMMARIES.get(method)
    if summarize is None:
        return f"{method} done."
    try:
        return summarize(result)
    except Exception:  # a summary must never fail a call that succeeded: log it, say less
        log.exception("no summary for a result of %s", method)
        return f"{method} done."
