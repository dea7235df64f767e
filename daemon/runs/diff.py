"""Structural comparison of two stored runs, behind `run.diff {a, b}`: the first divergence
(node, step, what differed) and per-node and whole-run metric deltas.

Pure: no I/O, no engine or store imports (but the store's record types and the engine's
dependency-free tool-call id aliases). The service reads each run's record, stages and calls
from the store, passes them through `from_store` and calls `diff_runs`.

Alignment. Stages are compared in a canonical order: top-level stages (no `branch`) in
completion order, each preceded by the stages of the parallel branches that finished
before it, grouped by branch name and in completion order within a branch. Concurrent
branches interleave differently from run to run; grouping them makes that invisible while
a branch that took another path still shows. A recipe DAG (`dag=True`) runs its ready
stages concurrently, so b's stages are put in the order a ran the same
(branch, node, attempt, visit), and stages a never ran follow in b's own order.

Within a stage, the calls of an agent node (those that carry a turn: tool lists, model
turns, tool calls) are put in the order (turn, phase, index): tool calls are recorded as
they finish, so two identical runs may record a turn's parallel calls in another order.
Calls without a turn keep their order. The vendor ids of tool calls are renamed "#1", "#2",
… by first appearance within the stage, since a real model makes up new ones every run.

Volatile values never count as a divergence: ids, run and trace ids, sequence numbers,
timestamps, latencies, durations, the pool's retry counters (`provider_attempt`,
`attempts`), a provider's response id, the cost a pricing table put on a response (cost
is reported as a metric delta instead), tool-call ids and a tool call's `metadata` (its
vendor id, the argv as run).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from .diff_turns import aliased, call_place, in_turn_order

if TYPE_CHECKING:
    from ..store.records import RunRecord, StageRecord

MAX_DIFFERENCES = 20  # per divergence; the rest are only counted (`more`)
MAX_VALUE = 200  # characters of a value shown in a difference
_CONTEXT = 60  # characters shown before the first differing one of a long string
# Top-level fields of a recorded request or response that change between identical runs.
_VOLATILE_REQUEST = frozenset({"provider_attempt"})
_VOLATILE_TOOL_REQUEST = frozenset({"provider_attempt", "metadata"})
_VOLATILE_RESPONSE = frozenset({"latency_ms", "raw_id", "attempts", "cost_usd", "cost_known"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class DiffSide:
    """One side of a diff: a stored run's row, its stages and its calls, JSON columns decoded."""

    run: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    dag: bool = False  # a recipe DAG: top-level stages ran concurrently (Graph.dag)


@dataclass(slots=True)
class _Step:
    """One stage in canonical order, with the calls made during it."""

    stage: dict[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str, int]:
        return self.stage.get("branch"), self.stage["node_id"], int(self.stage["attempt"])


def from_store(run: RunRecord, stages: Sequence[StageRecord], calls: list[Any], *,
               dag: bool = False) -> DiffSide:
    """A DiffSide from the store's records of a run, its stages and its (decoded) calls."""
    return DiffSide(run.as_dict(), [stage.as_dict() for stage in stages], calls, dag)


def diff_runs(a: DiffSide, b: DiffSide) -> dict[str, Any]:
    """Compare two runs: first divergence, per-node and whole-run metric deltas (JSON-ready)."""
    steps_a, steps_b = _steps(a), _steps(b)
    if a.dag or b.dag:
        steps_b = _in_order_of(steps_a, steps_b)
    divergence = _first_divergence(steps_a, steps_b)
    if divergence is None and a.run.get("status") != b.run.get("status"):
        # Every stage matched, yet the runs ended differently (one cancelled, say).
        divergence = _divergence(len(steps_a) + 1, None, None, "status",
                                 _run_ref(a.run), _run_ref(b.run))
    order = [s.stage["node_id"] for s in steps_a + steps_b]
    return {
        "a": a.run.get("id"),
        "b": b.run.get("id"),
        "identical": divergence is None,
        "first_divergence": divergence,
        "scenario": _scenario(a.run, b.run),
        "nodes": _node_deltas(_node_metrics(a), _node_metrics(b), order),
        "totals": _totals(a, b),
    }


# -- alignment ----------------------------------------------------------------------------


def _steps(record: DiffSide) -> list[_Step]:
    """The run's stages in canonical order (see the module docstring), with their calls."""
    stages = sorted(record.stages, key=lambda s: s["seq"])
    steps = [_Step(stage) for stage in stages]
    _assign_calls(steps, record.calls)
    for step in steps:
        step.calls = aliased(in_turn_order(step.calls))
    ordered: list[_Step] = []
    pending: list[_Step] = []  # branch stages since the last top-level one
    for step in steps:
        if step.stage.get("branch") is None:
            ordered += sorted(pending, key=lambda s: str(s.stage["branch"]))  # stable
            pending = []
            ordered.append(step)
        else:
            pending.append(step)
    return ordered + sorted(pending, key=lambda s: str(s.stage["branch"]))


def _assign_calls(steps: list[_Step], calls: list[dict[str, Any]]) -> None:
    """Give each call to the stage it was made in.

    Calls carry node and attempt but neither stage seq nor branch, and a node visited twice
    (a loop) has attempt 1 both times: a call goes to the first stage of its node and
    attempt that had not ended when the call was recorded. Calls and stages of one key come
    in the same order, so a cursor per key keeps this linear in long loops.
    """
    by_key: dict[tuple[str, int], list[tuple[datetime | None, _Step]]] = {}
    for step in steps:
        key = step.stage["node_id"], int(step.stage["attempt"])
        by_key.setdefault(key, []).append((_time(step.stage.get("ended_at")), step))
    cursors: dict[tuple[str, int], int] = {}
    for call in sorted(calls, key=lambda c: c.get("seq", 0)):
        key = call["node_id"], int(call["attempt"])
        candidates = by_key.get(key)
        if not candidates:
            continue  # its stage never finished (a crash, a run still going)
        at = _time(call.get("created_at"))
        index = cursors.get(key, 0)
        while (index < len(candidates) - 1 and at is not None
               and candidates[index][0] is not None and candidates[index][0] < at):
            index += 1
        cursors[key] = index
        candidates[index][1].calls.append(call)


def _time(value: Any) -> datetime | None:
    # Parsed, not compared as text: isoformat() drops ".000000" when microseconds are 0.
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _occurrences(steps: list[_Step]) -> list[tuple[str | None, str, int, int]]:
    """(branch, node, attempt, n): the n-th stage with that key, for matching across runs."""
    seen: dict[tuple[str | None, str, int], int] = {}
    keys = []
    for step in steps:
        seen[step.key] = seen.get(step.key, 0) + 1
        keys.append((*step.key, seen[step.key]))
    return keys


def _in_order_of(reference: list[_Step], steps: list[_Step]) -> list[_Step]:
    """`steps` reordered to follow `reference` where their stages match; the rest after."""
    rank = {key: i for i, key in enumerate(_occurrences(reference))}
    keyed = list(zip(_occurrences(steps), steps, strict=True))
    keyed.sort(key=lambda pair: rank.get(pair[0], len(rank)))  # stable: b's order for extras
    return [step for _, step in keyed]


# -- the first divergence -----------------------------------------------------------------


def _first_divergence(steps_a: list[_Step], steps_b: list[_Step]) -> dict[str, Any] | None:
    """Walk both runs step by step: path, then each call's request, error and response,
    then the stage's outcome."""
    for index in range(max(len(steps_a), len(steps_b))):
        sa = steps_a[index] if index < len(steps_a) else None
        sb = steps_b[index] if index < len(steps_b) else None
        step = index + 1
        if sa is None or sb is None or sa.key != sb.key:
            ref_a, ref_b = _stage_ref(sa), _stage_ref(sb)
            return _divergence(step, sa, sb, "path", ref_a, ref_b,
                               _differences(_path_view(ref_a), _path_view(ref_b)))
        found = _call_divergence(step, sa, sb)
        if found is not None:
            return found
        out_a, out_b = _outcome_ref(sa.stage), _outcome_ref(sb.stage)
        routing = ("status", "preferred_label")  # what edge selection reads
        diffs = _differences({k: out_a[k] for k in routing}, {k: out_b[k] for k in routing})
        if diffs:
            return _divergence(step, sa, sb, "outcome", out_a, out_b, diffs)
    return None


def _call_divergence(step: int, sa: _Step, sb: _Step) -> dict[str, Any] | None:
    for index in range(max(len(sa.calls), len(sb.calls))):
        ca = sa.calls[index] if index < len(sa.calls) else None
        cb = sb.calls[index] if index < len(sb.calls) else None
        ref_a, ref_b = _call_ref(ca, index), _call_ref(cb, index)
        call = ca or cb
        diffs = _differences(_request_view(ca), _request_view(cb))
        if diffs:
            return _divergence(step, sa, sb, "request", ref_a, ref_b, diffs, call)
        assert ca is not None and cb is not None  # else the requests differed
        responses = _differences(_clean(ca.get("response"), _VOLATILE_RESPONSE),
                                 _clean(cb.get("response"), _VOLATILE_RESPONSE))
        if ca.get("error") != cb.get("error"):
            errors = _differences({"error": ca.get("error")}, {"error": cb.get("error")})
            return _divergence(step, sa, sb, "error", ref_a, ref_b, errors + responses, call)
        if responses:
            return _divergence(step, sa, sb, "response", ref_a, ref_b, responses, call)
    return None


def _divergence(step: int, sa: _Step | None, sb: _Step | None, kind: str, a: Any, b: Any,
                differences: list[dict[str, Any]] | None = None,
                call: dict[str, Any] | None = None) -> dict[str, Any]:
    here = sa or sb
    differences = differences or []
    turn, tool, index = call_place(call)
    divergence = {
        "step": step,
        "node_id": here.stage["node_id"] if here else None,
        "b_node_id": sb.stage["node_id"] if sb else None,
        "branch": here.stage.get("branch") if here else None,
        "attempt": here.stage["attempt"] if here else None,
        "turn": turn,
        "tool": tool,
        "kind": kind,
        "a": a,
        "b": b,
        "differences": differences[:MAX_DIFFERENCES],
        "more": max(0, len(differences) - MAX_DIFFERENCES),
    }
    divergence["summary"] = _summary(divergence, index)
    return divergence


_KIND_SAYS = {"path": "another node ran", "request": "the request differs",
              "error": "the error differs", "response": "the response differs",
              "outcome": "the stage routed differently",
              "status": "the run ended differently"}


def _summary(divergence: dict[str, Any], index: int | None) -> str:
    """One line for people: where (node, attempt, turn, tool call) and what differs."""
    node = divergence["node_id"]
    if node is None:
        where = f"step {divergence['step']} (after the last stage)"
    else:
        where = f"step {divergence['step']}, node {node!r}"
        if divergence["b_node_id"] not in (None, node):
            where += f" (b: {divergence['b_node_id']!r})"
        if divergence["branch"]:
            where += f" [branch {divergence['branch']}]"
        if divergence["attempt"] not in (None, 1):
            where += f" attempt {divergence['attempt']}"
    if divergence["turn"] is not None:
        where += f" turn {divergence['turn']}"
    if divergence["tool"] is not None:
        call = f"tool call {index + 1} " if index is not None else "tool "
        where += f", {call}{divergence['tool']!r}"
    elif divergence["turn"] is not None and divergence["kind"] != "path":
        kind = (divergence["a"] or divergence["b"] or {}).get("kind")
        where += f", {'the model turn' if kind == 'model' else kind}"
    paths = [d["path"] for d in divergence["differences"] if d.get("path")]
    if paths:
        more = len(divergence["differences"]) - 3 + divergence["more"]
        what = ", ".join(paths[:3]) + (f" and {more} more" if more > 0 else "")
        return f"{where}: {what} differ{'s' if len(paths) == 1 and more <= 0 else ''}"
    return f"{where}: {_KIND_SAYS.get(divergence['kind'], divergence['kind'])}"


def _stage_ref(step: _Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    stage = step.stage
    return {"node_id": stage["node_id"], "branch": stage.get("branch"),
            "attempt": stage["attempt"], "status": stage.get("status"), "seq": stage["seq"]}


def _path_view(ref: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if ref is None else {k: ref[k] for k in ("node_id", "branch", "attempt")}


def _outcome_ref(stage: dict[str, Any]) -> dict[str, Any]:
    outcome = stage.get("outcome") or {}
    return {"status": stage.get("status", outcome.get("outcome")),
            "preferred_label": outcome.get("preferred_label", ""),
            "failure_reason": outcome.get("failure_reason", "")}


def _call_ref(call: dict[str, Any] | None, index: int) -> dict[str, Any] | None:
    if call is None:
        return None
    # `seq` locates the call in the run's trace; `index` is its place within the stage.
    ref = {"seq": call.get("seq"), "index": index + 1, "kind": call.get("kind"),
           "error": call.get("error")}
    turn, tool, tool_index = call_place(call)
    if turn is not None:
        ref["turn"] = turn
    if tool is not None:
        ref.update(tool=tool, tool_index=tool_index)
    return ref


def _request_view(call: dict[str, Any] | None) -> dict[str, Any] | None:
    if call is None:
        return None
    kind = call.get("kind")
    volatile = _VOLATILE_REQUEST if kind == "model" else _VOLATILE_TOOL_REQUEST
    return {"kind": kind, **(_clean(call.get("request"), volatile) or {})}


def _clean(value: Any, volatile: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in volatile}
    return value


def _run_ref(run: dict[str, Any]) -> dict[str, Any]:
    return {"status": run.get("status"), "outcome": run.get("outcome"),
            "failure_reason": run.get("failure_reason")}


# -- JSON differences ---------------------------------------------------------------------


def _differences(a: Any, b: Any) -> list[dict[str, Any]]:
    """Every leaf where `a` and `b` differ, as {path, a, b} (plus `at` for strings and
    `only_in` for a key or item one side lacks)."""
    found: list[dict[str, Any]] = []
    _walk(a, b, "", found)
    return found


def _walk(a: Any, b: Any, path: str, found: list[dict[str, Any]]) -> None:
    if a == b and isinstance(a, bool) == isinstance(b, bool):  # True == 1, yet it changed
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            _walk(a.get(key, _MISSING), b.get(key, _MISSING), _join(path, key), found)
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            _walk(a[index] if index < len(a) else _MISSING,
                  b[index] if index < len(b) else _MISSING, f"{path}[{index}]", found)
    else:
        found.append(_difference(path, a, b))


def _join(path: str, key: Any) -> str:
    key = str(key)
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{orjson.dumps(key).decode()}]"


def _difference(path: str, a: Any, b: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path}
    if isinstance(a, str) and isinstance(b, str):
        at = _common_prefix(a, b)
        entry.update(a=_excerpt(a, at), b=_excerpt(b, at), at=at)
        return entry
    entry.update(a=None if a is _MISSING else _preview(a),
                 b=None if b is _MISSING else _preview(b))
    if a is _MISSING or b is _MISSING:
        entry["only_in"] = "b" if a is _MISSING else "a"
    return entry


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    return next((i for i in range(limit) if a[i] != b[i]), limit)


def _excerpt(text: str, at: int) -> str:
    """A long string cut to a window around `at`, where it starts to differ."""
    if len(text) <= MAX_VALUE:
        return text
    start = max(0, min(at - _CONTEXT, len(text) - MAX_VALUE))
    end = start + MAX_VALUE
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def _preview(value: Any) -> Any:
    if isinstance(value, str):
        return _excerpt(value, 0)
    if isinstance(value, dict | list):
        text = orjson.dumps(value, default=str).decode()
        if len(text) > MAX_VALUE:
            return text[:MAX_VALUE] + "…"  # a JSON text cut short, no longer JSON
    return value


# -- metrics ------------------------------------------------------------------------------

_SUMS = ("duration_ms", "input_tokens", "output_tokens", "cost_usd")


def _node_metrics(record: DiffSide) -> dict[str, dict[str, Any]]:
    """Per node: visits, attempts, last status, time, tokens and cost (from its calls)."""
    nodes: dict[str, dict[str, Any]] = {}

    def entry(node_id: str) -> dict[str, Any]:
        return nodes.setdefault(node_id, {"visits": 0, "attempts": 0, "status": None,
                                          "duration_ms": 0.0, "input_tokens": 0,
                                          "output_tokens": 0, "cost_usd": 0.0})

    for stage in sorted(record.stages, key=lambda s: s["seq"]):
        metrics = entry(stage["node_id"])
        metrics["attempts"] += 1
        metrics["visits"] += int(stage["attempt"]) == 1  # each visit starts at attempt 1
        metrics["status"] = stage.get("status")
        metrics["duration_ms"] += float(stage.get("duration_ms") or 0)
    for call in record.calls:
        metrics = entry(call["node_id"])
        metrics["input_tokens"] += int(call.get("input_tokens") or 0)
        metrics["output_tokens"] += int(call.get("output_tokens") or 0)
        metrics["cost_usd"] += float(call.get("cost_usd") or 0)
    for metrics in nodes.values():
        _round(metrics)
    return nodes


def _node_deltas(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]],
                 order: list[str]) -> dict[str, Any]:
    """Union of both runs' nodes, in the order they first ran (a's, then b's new ones)."""
    names = list(dict.fromkeys([*order, *a, *b]))
    result = {}
    for name in names:
        ma, mb = a.get(name), b.get(name)
        result[name] = {"a": ma, "b": mb, "delta": _delta(ma, mb),
                        "outcome_changed": (ma or {}).get("status") != (mb or {}).get("status")}
    return result


def _delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """b - a; a side that lacks the node counts as zero (what the other spent there)."""
    zero: dict[str, Any] = dict.fromkeys(_SUMS, 0)
    ma, mb = a or zero, b or zero

    def minus(name: str) -> Any:
        return None if ma.get(name) is None or mb.get(name) is None else mb[name] - ma[name]

    inputs, outputs = minus("input_tokens"), minus("output_tokens")
    return _round({"duration_ms": minus("duration_ms"), "input_tokens": inputs,
                   "output_tokens": outputs,
                   "tokens": None if inputs is None or outputs is None else inputs + outputs,
                   "cost_usd": minus("cost_usd")})


def _round(metrics: dict[str, Any]) -> dict[str, Any]:
    # Float sums leave noise such as 0.30000000000000004 that would read as a real change.
    for name, digits in (("duration_ms", 3), ("cost_usd", 10)):
        if metrics.get(name) is not None:
            metrics[name] = round(metrics[name], digits)
    return metrics


def _run_totals(record: DiffSide) -> dict[str, Any]:
    run = record.run
    calls = record.calls
    # The run row keeps running totals; a record without them is summed from its calls.
    sums = {"input_tokens": sum(int(c.get("input_tokens") or 0) for c in calls),
            "output_tokens": sum(int(c.get("output_tokens") or 0) for c in calls),
            "cost_usd": sum(float(c.get("cost_usd") or 0) for c in calls)}
    started, ended = _time(run.get("started_at")), _time(run.get("ended_at"))
    return _round({
        "status": run.get("status"),
        "outcome": run.get("outcome"),
        # Wall time from start to end (a resumed run's includes the pause); None until it ends.
        "duration_ms": (ended - started).total_seconds() * 1000 if started and ended else None,
        **{name: run[name] if run.get(name) is not None else value
           for name, value in sums.items()},
        "nodes": len({s["node_id"] for s in record.stages}),
        "stages": len(record.stages),
        "calls": len(calls),
    })


def _totals(a: DiffSide, b: DiffSide) -> dict[str, Any]:
    ta, tb = _run_totals(a), _run_totals(b)
    delta = _delta(ta, tb)
    for name in ("nodes", "stages", "calls"):
        delta[name] = tb[name] - ta[name]
    return {"a": ta, "b": tb, "delta": delta, "status_changed": ta["status"] != tb["status"]}


def _scenario(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What differed before either run started: the pipeline, the inputs, the settings."""
    hashes = a.get("pipeline_hash"), b.get("pipeline_hash")
    return {
        "pipeline_changed": None if None in hashes else hashes[0] != hashes[1],
        "inputs": _differences(a.get("inputs", {}), b.get("inputs", {}))[:MAX_DIFFERENCES],
        "settings": _differences(a.get("settings", {}),
                                 b.get("settings", {}))[:MAX_DIFFERENCES],
    }
