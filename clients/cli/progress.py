"""The live display of `ostinato run`: one line per node as it starts and ends."""

from __future__ import annotations

from typing import Any, TextIO

_MARKS = {"StageCompleted": "✓", "StageFailed": "✗", "StageRetrying": "↻"}


class RunDisplay:
    """Writes run events as lines; on a terminal the running node shows on a status line."""

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

    def note(self, text: str) -> None:
        """A line of its own."""
        self._line(text)

    def started(self, run: dict[str, Any]) -> None:
        """The run was created."""
        self._line(f"run {run['run_id']}  {run['pipeline_name']}")
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
        elif kind == "StageFailed":
            retry = ", retrying" if data.get("will_retry") else ""
            self._line(f"  {_MARKS[kind]} {name:<24}{branch} {data.get('error', '')}{retry}")
        elif kind == "InterviewStarted":
            self._line(f"  ? {data['question']['text']}")
        elif kind == "InterviewCompleted":
            self._line(f"    answered: {data.get('answer')}")
        elif kind == "ParallelStarted":
            self._line(f"  ⇉ {name}: {data.get('branch_count')} branches")

    def finished(self, run: dict[str, Any]) -> None:
        """The run ended."""
        tokens = run["input_tokens"] + run["output_tokens"]
        verdict = run["outcome"] or run["status"]
        reason = f": {run['failure_reason']}" if run.get("failure_reason") else ""
        self._line(f"{run['status']} ({verdict}{reason}); {tokens} tokens, "
                   f"${run['cost_usd']:.4f}")
