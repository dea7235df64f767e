"""The live displays of `ostinato run`, `ostinato replay` and `ostinato test`, drawn with
rich (docs/decisions/0004). On a terminal: bars with counts, elapsed time and ETA for trial
sets and test runs, a spinner per running node of a run, and a line per node as it ends
(retries included). Without a terminal: the same lines as plain text, and a status line at
least every PLAIN_EVERY_S seconds so that a log shows the work is alive.

rich is imported only when something is drawn: the CLI must start fast."""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

_MARKS = {"StageCompleted": "✓", "StageFailed": "✗", "StageRetrying": "↻"}
_REASONS = {"no_call_for_node": "the recording has no call for this node",
            "request_changed": "the request differs from the recording",
            "extra_call": "the recording has no unused call left for this request"}
_DIVERGED = "replay diverged"  # how the failure of a diverged stage begins
_SHOWN = 5  # differences of a divergence listed one per line
_FAILED_SHOWN = 10  # failed trials listed in a trial set's summary
PLAIN_EVERY_S = 2.0  # without a terminal, a status line at least this often
_PLAIN_WIDTH = 200  # tables without a terminal: wide enough not to cut a run id
_STYLES = {"✓": "green", "✗": "red", "↻": "yellow", "!": "red", "$": "yellow"}


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


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def console(out: TextIO, quiet: bool = False) -> Any:
    """A rich Console on `out`: styled on a terminal; plain text, never wrapped, elsewhere.
    Markup and emoji codes are off: node names and model output are printed as they are."""
    from rich.console import Console

    return Console(file=out, quiet=quiet, highlight=False, markup=False, emoji=False,
                   width=None if out.isatty() else _PLAIN_WIDTH)


class Display:
    """Lines (styled by their mark on a terminal), and on a terminal a rich Progress above
    which they are printed; without one, `due()` says when a plain status line is owed."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.live = out.isatty()
        self._console: Any = None
        self._progress: Any = None  # rich.progress.Progress while one is shown
        self.began = time.monotonic()
        self._last_line = self.began

    @property
    def console(self) -> Any:
        """The rich Console, made on first use."""
        if self._console is None:
            self._console = console(self.out, self.quiet)
        return self._console

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Take the bars or spinners off the terminal (lines printed stay)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        mark = text.lstrip()[:1]
        self.console.print(text, style=_STYLES.get(mark) if self.live else None,
                           soft_wrap=True)
        self._last_line = time.monotonic()

    def _bars(self, *columns: Any) -> Any:
        """The rich Progress of this display, started on first use (terminal only)."""
        if self._progress is None:
            from rich.progress import Progress

            self._progress = Progress(*columns, console=self.console, transient=True,
                                      redirect_stdout=False, redirect_stderr=False)
            self._progress.start()
        return self._progress

    def due(self) -> bool:
        """Without a terminal: PLAIN_EVERY_S have passed since the last line."""
        return (not self.live and not self.quiet
                and time.monotonic() - self._last_line >= PLAIN_EVERY_S)


class RunDisplay(Display):
    """Writes run events as lines; on a terminal each running node shows with a spinner and
    its elapsed time; without one, `heartbeat` prints the running nodes now and then."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        super().__init__(out, quiet)
        self._running: dict[tuple[str, str], tuple[float, Any]] = {}  # node, branch -> since
        self._done = 0  # stages completed

    def note(self, text: str) -> None:
        """A line of its own."""
        self._line(text)

    def started(self, run: dict[str, Any], replay: dict[str, Any] | None = None) -> None:
        """The run was created (`replay`: the run.start `replay` it was started with)."""
        what = f"  (replay of {replay['from_run']}, {replay['mode']})" if replay else ""
        self._line(f"run {run['run_id']}  {run['pipeline_name']}{what}")
        self._line(f"  run directory: {run['run_dir']}")

    def _begin(self, key: tuple[str, str], label: str) -> None:
        task = None
        if self.live and not self.quiet:
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            bars = self._bars(SpinnerColumn(), TextColumn("{task.description}"),
                              TimeElapsedColumn())
            task = bars.add_task(label, total=None)
        self._end(key)
        self._running[key] = (time.monotonic(), task)

    def _end(self, key: tuple[str, str]) -> None:
        _, task = self._running.pop(key, (0.0, None))
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)

    def _relabel(self, key: tuple[str, str], label: str) -> None:
        _, task = self._running.get(key, (0.0, None))
        if task is not None and self._progress is not None:
            self._progress.update(task, description=label)

    def event(self, event: dict[str, Any]) -> None:
        """Show one run/event."""
        kind, data = event["type"], event["data"]
        name = data.get("name", "")
        key = (name, data.get("branch") or "")
        branch = f" [{data['branch']}]" if data.get("branch") else ""
        if kind == "StageStarted":
            attempt = f" (attempt {data['attempt']})" if data.get("attempt", 1) > 1 else ""
            self._begin(key, f"{name}{branch}{attempt}")
        elif kind == "StageCompleted":
            self._end(key)
            self._done += 1
            self._line(f"  {_MARKS[kind]} {name:<24}{branch} {data.get('duration_ms', 0):>9.1f} ms"
                       f"  {data.get('status', '')}")
        elif kind == "StageFailed" and str(data.get("error", "")).startswith(_DIVERGED):
            self._end(key)  # ReplayDiverged, next, says it with its differences
        elif kind == "StageFailed":
            self._end(key)
            retry = ", retrying" if data.get("will_retry") else ""
            self._line(f"  {_MARKS[kind]} {name:<24}{branch} {data.get('error', '')}{retry}")
        elif kind == "StageRetrying":
            self._line(f"  ↻ {name:<24}{branch} attempt {data.get('attempt')} in "
                       f"{_ms(data.get('delay_ms') or 0)}")
        elif kind == "ModelRetrying":
            status = f" ({data['status']})" if data.get("status") else ""
            self._line(f"  ↻ {name:<24}{branch} provider try {data.get('provider_try')} "
                       f"failed{status}: {_short(data.get('error', ''))}; retrying in "
                       f"{_ms(data.get('delay_ms') or 0)}")
            self._relabel(key, f"{name}{branch} (provider try "
                               f"{(data.get('provider_try') or 0) + 1})")
        elif kind == "InterviewStarted":
            self.stop()  # the terminal is the human's now: no spinner under the prompt
            self._running.clear()
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

    def heartbeat(self) -> None:
        """Without a terminal, once PLAIN_EVERY_S passed in silence: what runs, for how
        long."""
        if not self.due():
            return
        now = time.monotonic()
        running = ", ".join(f"{name}{f' [{branch}]' if branch else ''} "
                            f"({_seconds(now - since)})"
                            for (name, branch), (since, _) in self._running.items())
        self._line(f"  … {'running ' + running if running else 'between nodes'}; "
                   f"{self._done} done, {_seconds(now - self.began)} elapsed")

    def finished(self, run: dict[str, Any]) -> None:
        """The run ended."""
        self.stop()
        tokens = run["input_tokens"] + run["output_tokens"]
        verdict = run["outcome"] or run["status"]
        reason = f": {run['failure_reason']}" if run.get("failure_reason") else ""
        self._line(f"{run['status']} ({verdict}{reason}); {tokens} tokens, "
                   f"${run['cost_usd']:.4f}")


class TrialDisplay(Display):
    """A trial set: a header, its progress (from `trials.get`; a bar on a terminal, a plain
    line elsewhere), and the set's summary."""

    _task: Any = None  # the bar's task in the rich Progress

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
        """On a terminal, the bar: trials finished of all, passed, failed and running,
        elapsed time and ETA; without one, the status line as plain text."""
        if self.quiet:
            return
        if not self.live:
            self._line(self.progress_text(trial_set))
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self._progress is None:
            bars = self._bars(TextColumn("  trials"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                              TextColumn("ETA"), TimeRemainingColumn())
            self._task = bars.add_task("trials", total=trial_set["trials"], counts="")
        text = self.progress_text(trial_set)
        counts = text.split(" finished · ", 1)[1]
        self._progress.update(self._task, completed=trial_set["finished"], counts=counts)

    def finished(self, trial_set: dict[str, Any]) -> None:
        """The set ended: verdict, pass rate, cost, tokens, latency, scores, failures."""
        self.stop()
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
