"""Evaluating invariants against a stored run, behind `run.reeval` (and, later, snapshot
replays and test runs).

Pure: no I/O, no engine or store imports. The service gathers what a run recorded into a
`StoredRun` (its row, stages, calls, final context, record mode) and calls `evaluate`; each
invariant type has one evaluator in `EVALUATORS`. Scenario drift compares hashes:
`pipeline_hash` is the engine's graph digest, `inputs_hash` the sha256 of canonical JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ostinato.protocol.invariants import (
    CONTENT_CHECKS,
    ContainsInvariant,
    InvariantBase,
    MaxCostInvariant,
    RunStatusInvariant,
)

MAX_ACTUAL = 200  # characters of a searched text shown as `actual`


@dataclass(frozen=True, slots=True)
class StoredRun:
    """What a run recorded, as the evaluators read it: the decoded run row (`status`,
    `outcome`, `cost_usd`, …), its stages and calls in order (decoded), the final context
    (None when the run left no checkpoint) and its record mode."""

    run: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] | None = None
    record: str = "full"
    # Reads the value behind an `artifact_ref` (context values over 100 KB); None: unreadable.
    artifact: Callable[[str], Any] | None = None


class _Unavailable(Exception):
    """The value a check needs is not there: the check errors."""


class _NotRecorded(_Unavailable):
    """The content a check needs was left out by the record mode: the check errors, or is
    skipped under `allow_partial`."""


def evaluate(invariants: Iterable[InvariantBase], run: StoredRun, *,
             allow_partial: bool = False) -> list[dict[str, Any]]:
    """One result per invariant, in order: {type, description, status, expected, actual,
    message}."""
    results = []
    for invariant in invariants:
        type_ = getattr(invariant, "type", type(invariant).__name__)
        base = {"type": type_, "description": invariant.description}
        if type_ in CONTENT_CHECKS and run.record != "full":
            status = "skipped" if allow_partial else "error"
            results.append({**base, "status": status, "expected": _expected(invariant),
                            "actual": None,
                            "message": f"the run was recorded `{run.record}`: its content was "
                                       "not kept" + (", check skipped (allow_partial)"
                                                     if allow_partial else
                                                     "; pass allow_partial to skip such "
                                                     "checks")})
            continue
        evaluator = EVALUATORS.get(type(invariant))
        if evaluator is None:  # a model without an evaluator: a bug, reported, not raised
            results.append({**base, "status": "error", "expected": None, "actual": None,
                            "message": f"no evaluator for invariant type {type_!r}"})
            continue
        try:
            results.append({**base, **evaluator(invariant, run)})
        except _Unavailable as exc:
            status = "skipped" if allow_partial and isinstance(exc, _NotRecorded) else "error"
            results.append({**base, "status": status, "expected": _expected(invariant),
                            "actual": None, "message": str(exc)})
    return results


def verdict(results: Sequence[dict[str, Any]]) -> str:
    """`passed` when no result failed or errored (skipped ones do not count)."""
    return "failed" if any(r["status"] in ("failed", "error") for r in results) else "passed"


def _expected(invariant: Any) -> Any:
    return getattr(invariant, "value", None)


# -- run_status ---------------------------------------------------------------------------


def _run_status(invariant: RunStatusInvariant, run: StoredRun) -> dict[str, Any]:
    wanted = invariant.value if isinstance(invariant.value, list) else [invariant.value]
    status, outcome = run.run.get("status"), run.run.get("outcome")
    expected: dict[str, Any] = {"status": invariant.value}
    actual: dict[str, Any] = {"status": status}
    ok = status in wanted
    if invariant.outcome is not None:
        expected["outcome"] = invariant.outcome
        actual["outcome"] = outcome
        ok = ok and outcome == invariant.outcome
    described = " or ".join(wanted) + (f" ({invariant.outcome})" if invariant.outcome else "")
    ended = f"{status}" + (f" ({outcome})" if outcome else "")
    return {"status": "passed" if ok else "failed", "expected": expected, "actual": actual,
            "message": f"the run ended {ended}" + ("" if ok else f", expected {described}")}


# -- contains -----------------------------------------------------------------------------


def _contains(invariant: ContainsInvariant, run: StoredRun) -> dict[str, Any]:
    where, text = _output(invariant.path, run)
    found = invariant.value in text
    return {"status": "passed" if found else "failed", "expected": invariant.value,
            "actual": _excerpt(text, invariant.value),
            "message": f"{where} {'contains' if found else 'does not contain'} "
                       f"{invariant.value!r}"}


def _output(path: str, run: StoredRun) -> tuple[str, str]:
    """(what was searched, its text) for a `contains` path."""
    if path.startswith("context."):
        key = path[len("context."):]
        if run.context is None:
            raise _Unavailable("the run left no checkpoint, so no final context to search")
        if key not in run.context:
            raise _Unavailable(f"the run's final context has no key {key!r}")
        value = _resolve(run.context[key], run)
        return f"context key {key!r}", value if isinstance(value, str) else _json(value)
    if path.startswith("node."):
        node_id = path[len("node."):]
        calls = [c for c in run.calls if c.get("node_id") == node_id]
        if not calls:
            ran = any(s.get("node_id") == node_id for s in run.stages)
            raise _Unavailable(f"node {node_id!r} made no model or tool call" if ran else
                               f"node {node_id!r} did not run")
        answered = [c for c in calls if c.get("response") is not None]
        if not answered:
            raise _Unavailable(f"every call of node {node_id!r} failed; the last: "
                               f"{calls[-1].get('error')}")
        return f"the output of node {node_id!r}", _call_text(answered[-1])
    for call in reversed(run.calls):  # `output`: the last call that answered
        if call.get("response") is not None:
            return f"the run's output (node {call.get('node_id')!r})", _call_text(call)
    raise _Unavailable("the run made no call that answered, so it has no output")


def _call_text(call: dict[str, Any]) -> str:
    """A call's response text: a model's `text`, a tool's `stdout`."""
    response = call.get("response") or {}
    text = response.get("text") if call.get("kind") == "model" else response.get("stdout")
    if isinstance(text, dict) and text.get("omitted"):  # metadata_only: length and digest
        raise _NotRecorded(f"the content of call {call.get('seq')} (node "
                           f"{call.get('node_id')!r}) was not recorded")
    if not isinstance(text, str):
        raise _Unavailable(f"call {call.get('seq')} of node {call.get('node_id')!r} recorded "
                           "no text")
    return text


def _resolve(value: Any, run: StoredRun) -> Any:
    """A context value, with an `artifact_ref` replaced by the value it stands for."""
    if isinstance(value, dict) and set(value) >= {"artifact_ref", "key"}:
        if run.artifact is None:
            raise _Unavailable(f"context key {value['key']!r} is stored as artifact "
                               f"{value['artifact_ref']}, which cannot be read")
        return run.artifact(str(value["artifact_ref"]))
    return value


def _excerpt(text: str, needle: str) -> str:
    """The searched text, cut to a window around the match (or its start)."""
    if len(text) <= MAX_ACTUAL:
        return text
    at = text.find(needle)
    start = 0 if at < 0 else max(0, min(at - 60, len(text) - MAX_ACTUAL))
    end = start + MAX_ACTUAL
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


# -- max_cost_usd -------------------------------------------------------------------------


def _max_cost(invariant: MaxCostInvariant, run: StoredRun) -> dict[str, Any]:
    cost = run.run.get("cost_usd")
    if cost is None:
        cost = sum(float(c.get("cost_usd") or 0) for c in run.calls)
    cost = round(float(cost), 10)  # float sums leave noise such as 0.30000000000000004
    ok = cost <= invariant.value
    return {"status": "passed" if ok else "failed", "expected": invariant.value,
            "actual": cost,
            "message": f"the run cost ${cost:g}, "
                       + ("within" if ok else "over") + f" the ${invariant.value:g} limit"}


EVALUATORS: dict[type, Callable[[Any, StoredRun], dict[str, Any]]] = {
    RunStatusInvariant: _run_status,
    ContainsInvariant: _contains,
    MaxCostInvariant: _max_cost,
}


# -- scenario drift -----------------------------------------------------------------------


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str).decode()


def inputs_hash(inputs: dict[str, Any]) -> str:
    """sha256 of the inputs' canonical JSON (keys sorted): equal inputs, equal hashes."""
    return hashlib.sha256(_json(inputs).encode()).hexdigest()


def drift(subject: str, run_hash: str | None, given_hash: str) -> dict[str, Any]:
    """One drift check."""
    return {"subject": subject, "run_hash": run_hash, "given_hash": given_hash,
            "drifted": run_hash != given_hash}
