"""A test run as Markdown: a summary table, a table of snapshots, and per snapshot a table
of its invariants and one of its metric deltas."""

from __future__ import annotations

import html
from typing import Any

import orjson

MEDIA_TYPE = "text/markdown"
_MARK = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️",
         "budget_exceeded": "💸", "pending": "…", "running": "…"}
_CELL_LIMIT = 120


def cell(value: Any) -> str:
    """A table cell: one line, HTML and pipes escaped, long values cut."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = " ".join(text.split())
    if len(text) > _CELL_LIMIT:
        text = text[:_CELL_LIMIT - 1] + "…"
    # Renderers pass raw HTML through: what a run said must show as text, never as markup.
    return html.escape(text, quote=False).replace("\\", "\\\\").replace("|", "\\|")


def number(value: float | None) -> str:
    """A metric value for people; empty for none."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _snapshot(result: dict[str, Any]) -> list[str]:
    status = result["status"]
    lines = ["", f"### {cell(result['name'])} v{result['version']} — "
                 f"{_MARK.get(status, '')} {status}", ""]
    facts = [f"snapshot `{result['snapshot_id']}`", f"cost ${result['cost_usd']:.6f}"]
    if result["run_ids"]:
        facts.append("runs " + ", ".join(f"`{r}`" for r in result["run_ids"]))
    if result.get("trials_passed") is not None and result["trials"] > 1:
        facts.append(f"{result['trials_passed']}/{result['trials']} trials passed")
    lines.append("; ".join(facts))
    if result.get("message"):
        lines += ["", f"> {cell(result['message'])}"]
    if result["invariants"]:
        rows = [[cell(c["type"]), cell(c.get("description")),
                 f"{_MARK.get(c['status'], '')} {c['status']}", cell(c.get("expected")),
                 cell(c.get("actual")), cell(c["message"])] for c in result["invariants"]]
        lines += ["", *_table(["invariant", "description", "status", "expected", "actual",
                               "message"], rows)]
    if result["metrics_delta"]:
        rows = [[cell(name), number(d["baseline"]), number(d["replay"]), _signed(d["delta"])]
                for name, d in result["metrics_delta"].items()]
        lines += ["", *_table(["metric", "baseline", "replay", "delta"], rows)]
    return lines


def _signed(delta: float | None) -> str:
    if delta is None:
        return ""
    return ("+" if delta > 0 else "") + number(delta)


def render(test_run: dict[str, Any]) -> str:
    """The Markdown report of a test run (TestRunSummary's fields)."""
    summary, status = test_run["summary"], test_run["status"]
    limit = test_run.get("cost_limit_usd")
    lines = [f"# Test run {test_run['test_run_id']} — {_MARK.get(status, '')} {status}", "",
             f"Mode `{test_run['mode']}`, {test_run['trials']} trial(s) per snapshot; "
             f"started {test_run['started_at']}, ended {test_run.get('ended_at') or '—'}; "
             f"cost ${test_run['total_cost_usd']:.6f}"
             + (f" of a ${limit:.6f} limit" if limit is not None else "") + "."]
    if test_run.get("message"):
        lines += ["", f"> {cell(test_run['message'])}"]
    keys = ["total", "passed", "failed", "errors", "skipped", "budget_exceeded"]
    lines += ["", "## Summary", "", *_table(keys, [[str(summary[k]) for k in keys]])]
    rows = [[str(r["index"] + 1), cell(r["name"]), str(r["version"]),
             f"{_MARK.get(r['status'], '')} {r['status']}",
             f"{sum(c['status'] == 'passed' for c in r['invariants'])}/{len(r['invariants'])}",
             f"${r['cost_usd']:.6f}", cell(r.get("message"))]
            for r in test_run["snapshots"]]
    lines += ["", "## Snapshots", "",
              *_table(["#", "snapshot", "version", "status", "invariants passed", "cost",
                       "message"], rows)]
    for result in test_run["snapshots"]:
        lines += _snapshot(result)
    return "\n".join(lines) + "\n"
