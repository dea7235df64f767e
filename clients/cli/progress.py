"""The live displays of `ostinato run` and `ostinato replay`: one line per node as it starts
and ends; for a trial set, one status line of finished, passed and failed trials, then the
set's summary."""

from __future__ import annotations

import math
from typing import Any, TextIO

_MARKS = {"StageCompleted": "✓", "StageFailed": "✗", "StageRetrying": "↻"}
_REASONS = {"no_call_for_node": "the recording has no call for this node",
            "request_changed": "the request differs from the recording",
            "extra_call": "the recording has no unused call left for this request"}
_DIVERGED = "replay diverged"  # how the failure of a diverged stage begins
_SHOWN = 5  # differences of a divergence listed one per line
_FAILED_SHOWN = 10  # failed trials listed in a trial set's summary


def _short(value: Any, limit: int = 70) -> str:
    import orjson

    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _difference(difference: dict[str, Any]) -> str:
    """One `ReplayDiverged` difference: `path: recorded → new`."""
    def side(name: str) -> str:
        return _short(difference[name]) if name in difference else "(absent)"
    where = f" (at {difference['offset']})" if difference.get("offset") else ""
    return f"{difference.get('path') or '(request)'}{where}: {side('recorded')} → {side('new')}"


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.1f} ms"


def _number(value: float) -> str:
    return f"{value:.4g}"


class Display:
    """Lines, and on a terminal one status line that the next line or status replaces."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.live = out.isatty()
        self._status_shown = False

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self._status_shown:
            self.out.write("\r\033[K")
            self._status_shown = False
        self.out.write(text + "\n")
        self.out.flush()

    def _status(self, text: str) -> None:
        if self.quiet or not self.live:
            return
        self.out.write("\r\033[K" + text)
        self.out.flush()
        self._status_shown = True


class RunDisplay(Display):
    """Writes run events as lines; on a terminal the running node shows on a status line."""

    def note(self, text: str) -> None:
        """A line of its own."""
        self._line(text)

    def started(self, run: dict[str, Any], replay: dict[str, Any] | None = None) -> None:
        """The run was created (`replay`: the run.start `replay` it was started with)."""
        what = f"  (replay of {replay['from_run']}, {replay['mode']})" if replay else ""
        self._line(f"run {run['run_id']}  {run['pipeline_name']}{what}")
        self._line(f"  run directory: {run['run_dir']}")

    def event(self, event: dict[str, Any]) -> None:
        """Show one run/event."""
        kind, data = event["type"], event["data"]
        name = data.get("name", "")
        branch = f" [{data['branch']}]" if data.get("branch") else ""
        if kind == "StageStarted":
            attempt = f" (attempt {data['attempt']})" if data.get("attempt", 1) > 1 else ""
            self._status(f"  … {name}{branch}{attempt}")
        elif kind == "StageCompleted":
            self._line(f"  {_MARKS[kind]} {name:<24}{branch} {data.get('duration_ms', 0):>9.1f} ms"
                       f"  {data.get('status', '')}")
        elif kind == "StageFailed" and str(data.get("error", "")).startswith(_DIVERGED):
            pass  # ReplayDiverged, next, says it with its differences
        elif kind == "StageFailed":
            retry = ", retrying" if data.get("will_retry") else ""
            self._line(f"  {_MARKS[kind]} {name:<24}{branch} {data.get('error', '')}{retry}")
        elif kind == "InterviewStarted":
            self._line(f"  ? {data['question']['text']}")
        elif kind == "InterviewCompleted":
            self._line(f"    answered: {data.get('answer')}")
        elif kind == "ParallelStarted":
            self._line(f"  ⇉ {name}: {data.get('branch_count')} branches")
        elif kind == "ReplayDiverged":
            self._line(f"  ✗ {data.get('node_id', ''):<24} replay diverged at step "
                       f"{data.get('step')} ({data.get('kind')} call, attempt "
                       f"{data.get('attempt')}): {_REASONS.get(data.get('reason'), '')}")
            differences = data.get("differences") or []
            for difference in differences[:_SHOWN]:
                self._line(f"      {_difference(difference)}")
            if len(differences) > _SHOWN:
                self._line(f"      … and {len(differences) - _SHOWN} more")

    def finished(self, run: dict[str, Any]) -> None:
        """The run ended."""
        tokens = run["input_tokens"] + run["output_tokens"]
        verdict = run["outcome"] or run["status"]
        reason = f": {run['failure_reason']}" if run.get("failure_reason") else ""
        self._line(f"{run['status']} ({verdict}{reason}); {tokens} tokens, "
                   f"${run['cost_usd']:.4f}")


class TrialDisplay(Display):
    """A trial set: a header, on a terminal a status line of the trials that ended (from
    `trials.get`), and the set's summary."""

    def started(self, trial_set: dict[str, Any], replay: dict[str, Any] | None = None) -> None:
        """The set was created."""
        how = [f"{trial_set['trials']} trials", f"{trial_set['concurrency']} at a time",
               f"pass threshold {_number(trial_set['pass_threshold'])}"]
        if trial_set["early_stop"]:
            how.append("early stop")
        if replay:
            how.append(f"replay of {replay['from_run']}, {replay['mode']}")
        self._line(f"trial set {trial_set['trial_set_id']}  {trial_set['pipeline_name']}  "
                   f"({', '.join(how)})")

    @staticmethod
    def progress_text(trial_set: dict[str, Any]) -> str:
        """The status line: trials finished, passed, failed, running (and waiting)."""
        statuses = [t["status"] for t in trial_set["trial_runs"]]
        text = (f"  {trial_set['finished']}/{trial_set['trials']} finished · "
                f"{trial_set['passed']} passed · {trial_set['failed']} failed · "
                f"{statuses.count('running')} running")
        if waiting := statuses.count("waiting"):
            text += f" · {waiting} waiting for a human answer"
        if trial_set["verdict"]:
            text += f" · verdict {trial_set['verdict']}"
        return text

    def progress(self, trial_set: dict[str, Any]) -> None:
        """Redraw the status line (on a terminal only)."""
        self._status(self.progress_text(trial_set))

    def finished(self, trial_set: dict[str, Any]) -> None:
        """The set ended: verdict, pass rate, cost, tokens, latency, scores, failures."""
        for line in summary_lines(trial_set):
            self._line(line)


def summary_lines(s: dict[str, Any]) -> list[str]:
    """A trial set's summary for people."""
    trials, passed = s["trials"], s["passed"]
    needed = max(0, math.ceil(s["pass_threshold"] * trials - 1e-9))
    verdict = s["verdict"] or f"none ({s['status']})"
    rate = f"{s['pass_rate']:.1%}" if s["pass_rate"] is not None else "n/a"
    lines = [f"verdict {verdict}: {passed} of {trials} trials passed, {needed} needed "
             f"(pass threshold {_number(s['pass_threshold'])}); pass rate {rate} of "
             f"{s['finished']} finished"]
    statuses = [t["status"] for t in s["trial_runs"]]
    unfinished = {status: statuses.count(status) for status in ("skipped", "cancelled")
                  if statuses.count(status)}
    if s["early_stopped"] or unfinished:
        parts = [f"{n} {status}" for status, n in unfinished.items()]
        lead = "early stop" if s["early_stopped"] else "not finished"
        lines.append(f"  {lead}: {', '.join(parts) or 'nothing left to run'}")
    tokens = s["input_tokens"] + s["output_tokens"]
    lines.append(f"  cost ${s['cost_usd']:.4f}; {tokens} tokens ({s['input_tokens']} in, "
                 f"{s['output_tokens']} out)")
    if latency := s["latency_ms"]:
        lines.append(f"  latency p50 {_ms(latency['p50'])}, p95 {_ms(latency['p95'])} "
                     f"(mean {_ms(latency['mean'])}, min {_ms(latency['min'])}, "
                     f"max {_ms(latency['max'])}, {latency['count']} trials)")
    if scores := s["scores"]:
        lines.append(f"  scores p50 {_number(scores['p50'])}, p95 {_number(scores['p95'])} "
                     f"(mean {_number(scores['mean'])}, min {_number(scores['min'])}, "
                     f"max {_number(scores['max'])}, {scores['count']} scored)")
    failed = [t for t in s["trial_runs"] if t["passed"] is False]
    for trial in failed[:_FAILED_SHOWN]:
        reason = trial.get("failure_reason") or trial["status"]
        run = f" (run {trial['run_id']})" if trial["run_id"] else ""
        lines.append(f"  ✗ trial {trial['index']}{run}: {_short(reason, 100)}")
    if len(failed) > _FAILED_SHOWN:
        lines.append(f"  … and {len(failed) - _FAILED_SHOWN} more failed trials")
    lines.append(f"  set directory: {s['set_dir']}")
    return lines
