"""A test run as one self-contained HTML page: no external resources (inline CSS, inline SVG,
no scripts). A pass/fail matrix of snapshots by invariants, whose cells carry `data-status` and
a text symbol, and per snapshot a bar chart of its metric deltas. Everything that came from a
run is escaped with html.escape.
"""

from __future__ import annotations

import html
from typing import Any

import orjson

from .markdown import number

MEDIA_TYPE = "text/html"
SYMBOLS = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "-",
           "budget_exceeded": "$", "pending": "…", "running": "…", "none": "·"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;margin:4px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600}
[data-status=passed]{background:#dafbe1;color:#116329}
[data-status=failed]{background:#ffebe9;color:#a40e26}
[data-status=error]{background:#fff1cc;color:#7d4e00}
[data-status=budget_exceeded]{background:#fbefff;color:#6e2a96}
[data-status=skipped],[data-status=none],[data-status=pending],[data-status=running]{
background:#f6f8fa;color:#57606a}
#matrix td.cell{text-align:center;font-weight:700;min-width:28px}
#matrix th[scope=row]{white-space:nowrap}#matrix thead th{max-width:150px;font-size:12px;
font-weight:600}.scroll{overflow-x:auto}
.meta{color:#57606a}.chart{margin:8px 0 16px}.chart text{font:12px system-ui,sans-serif}
.bar-up{fill:#cf222e}.bar-down{fill:#1a7f37}.bar-zero{fill:#8c959f}.axis{stroke:#57606a}
"""
_CHART_LABEL, _CHART_BARS, _CHART_TEXT, _ROW = 170, 300, 260, 22


def _e(value: Any) -> str:
    """Escaped text of any value."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return html.escape(text)


def _label(check: dict[str, Any]) -> str:
    return check["type"] + (f": {check['description']}" if check.get("description") else "")


def _columns(results: list[dict[str, Any]]) -> list[str]:
    """Every invariant label in the order first seen (a label repeated within one snapshot
    gets `#2`, `#3`)."""
    columns: list[str] = []
    for result in results:
        for label in _labels(result):
            if label not in columns:
                columns.append(label)
    return columns


def _labels(result: dict[str, Any]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for check in result["invariants"]:
        label = _label(check)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return labels


def _badge(status: str) -> str:
    return (f'<span class="badge" data-status="{_e(status)}">'
            f'{SYMBOLS.get(status, "")} {_e(status)}</span>')


def _matrix(results: list[dict[str, Any]]) -> str:
    columns = _columns(results)
    head = "".join(f'<th scope="col" data-invariant="{_e(c)}">{_e(c)}</th>' for c in columns)
    rows = []
    for result in results:
        by_label = dict(zip(_labels(result), result["invariants"], strict=True))
        cells = []
        for column in columns:
            check = by_label.get(column)
            status = check["status"] if check else "none"
            title = check["message"] if check else "not an invariant of this snapshot"
            cells.append(f'<td class="cell" data-invariant="{_e(column)}" '
                         f'data-status="{_e(status)}" title="{_e(title)}">'
                         f'{SYMBOLS.get(status, "?")}</td>')
        rows.append(f'<tr data-snapshot="{_e(result["name"])}" '
                    f'data-snapshot-id="{_e(result["snapshot_id"])}">'
                    f'<th scope="row">{_e(result["name"])} v{result["version"]} '
                    f'{_badge(result["status"])}</th>{"".join(cells)}</tr>')
    legend = " ".join(f"{symbol} {status}" for status, symbol in SYMBOLS.items()
                      if status not in ("pending", "running"))
    return (f'<div class="scroll"><table id="matrix"><thead><tr><th scope="col">snapshot</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            f'<p class="meta">{_e(legend)}</p>')


def _relative(change: dict[str, Any]) -> float:
    """delta / |baseline|; ±1 when the baseline is 0 and the value moved."""
    delta, baseline = change["delta"], change["baseline"]
    if not delta:
        return 0.0
    return delta / abs(baseline) if baseline else (1.0 if delta > 0 else -1.0)


def _chart(result: dict[str, Any]) -> str:
    """Horizontal bars of each metric's relative change, centred on 0."""
    changes = [(name, c) for name, c in result["metrics_delta"].items()
               if c["delta"] is not None]
    if not changes:
        return '<p class="meta">No metric deltas (no reference metrics).</p>'
    scale = max(max(abs(_relative(c)) for _, c in changes), 1e-9)
    centre = _CHART_LABEL + _CHART_BARS / 2
    width, height = _CHART_LABEL + _CHART_BARS + _CHART_TEXT, _ROW * len(changes) + 8
    parts = ['<p class="meta">Metric deltas against the reference: each bar is the change '
             'relative to the baseline (longest bar: the largest change).</p>',
             f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="metric deltas of {_e(result["name"])}">'
             f'<title>Metric deltas of {_e(result["name"])} v{result["version"]}</title>',
             f'<line class="axis" x1="{centre}" y1="0" x2="{centre}" y2="{height}"/>']
    for row, (name, change) in enumerate(changes):
        relative = _relative(change)
        length = abs(relative) / scale * (_CHART_BARS / 2 - 4)
        x = centre if relative >= 0 else centre - length
        y = 4 + row * _ROW
        kind = "bar-up" if relative > 0 else "bar-down" if relative < 0 else "bar-zero"
        percent = f" ({relative:+.1%})" if change["baseline"] else ""
        text = (f"{number(change['baseline'])} → {number(change['replay'])}: "
                f"{'+' if change['delta'] > 0 else ''}{number(change['delta'])}{percent}")
        parts += [f'<text x="4" y="{y + 14}">{_e(name)}</text>',
                  f'<rect class="{kind}" data-metric="{_e(name)}" x="{x:.1f}" y="{y + 3}" '
                  f'width="{max(length, 1):.1f}" height="{_ROW - 8}"/>',
                  f'<text x="{_CHART_LABEL + _CHART_BARS + 8}" y="{y + 14}">{_e(text)}</text>']
    parts.append("</svg>")
    return "".join(parts)


def _details(result: dict[str, Any]) -> str:
    facts = [f"snapshot {_e(result['snapshot_id'])}", f"cost ${result['cost_usd']:.6f}"]
    if result["run_ids"]:
        facts.append("runs " + ", ".join(_e(r) for r in result["run_ids"]))
    message = f"<p>{_e(result['message'])}</p>" if result.get("message") else ""
    rows = "".join(
        f'<tr><td>{_e(c["type"])}</td><td>{_e(c.get("description"))}</td>'
        f'<td data-status="{_e(c["status"])}">{SYMBOLS.get(c["status"], "")} '
        f'{_e(c["status"])}</td><td>{_e(c.get("expected"))}</td>'
        f'<td>{_e(c.get("actual"))}</td><td>{_e(c["message"])}</td></tr>'
        for c in result["invariants"])
    table = ("<table><thead><tr><th>invariant</th><th>description</th><th>status</th>"
             f"<th>expected</th><th>actual</th><th>message</th></tr></thead><tbody>{rows}"
             "</tbody></table>") if rows else ""
    return (f'<section class="snapshot" data-snapshot="{_e(result["name"])}">'
            f'<h3>{_e(result["name"])} v{result["version"]} {_badge(result["status"])}</h3>'
            f'<p class="meta">{"; ".join(facts)}</p>{message}{table}{_chart(result)}'
            "</section>")


def render(test_run: dict[str, Any]) -> str:
    """The HTML page of a test run (TestRunSummary's fields)."""
    summary, results = test_run["summary"], test_run["snapshots"]
    keys = ["total", "passed", "failed", "errors", "skipped", "budget_exceeded"]
    limit = test_run.get("cost_limit_usd")
    cost = f"${test_run['total_cost_usd']:.6f}" + (
        f" of a ${limit:.6f} limit" if limit is not None else "")
    message = f"<p>{_e(test_run['message'])}</p>" if test_run.get("message") else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Test run {_e(test_run['test_run_id'])}: {_e(test_run['status'])}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Test run {_e(test_run['test_run_id'])} {_badge(test_run['status'])}</h1>"
        f'<p class="meta">mode {_e(test_run["mode"])}, {test_run["trials"]} trial(s) per '
        f"snapshot; started {_e(test_run['started_at'])}, ended "
        f"{_e(test_run.get('ended_at') or '—')}; cost {cost}</p>{message}"
        '<h2>Summary</h2><table id="summary"><tr>'
        + "".join(f"<th>{k}</th>" for k in keys) + "</tr><tr>"
        + "".join(f'<td data-count="{k}">{summary[k]}</td>' for k in keys) + "</tr></table>"
        f"<h2>Pass/fail matrix</h2>{_matrix(results)}"
        f"<h2>Snapshots</h2>{''.join(_details(r) for r in results)}"
        "</body></html>\n")
