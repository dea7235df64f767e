"""What the evaluators read (`StoredRun`) and what they share: the errors that make a check
`error` or `skipped`, and the reading of outputs and context values. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...engine.recording import NOT_WORK

MAX_ACTUAL = 200  # characters of a searched text shown as `actual`
JUDGE_NODE = "$judge"  # the node id of a judge's calls (recorded on the judged run)


@dataclass(frozen=True, slots=True)
class StoredRun:
    """What a run recorded, as the evaluators read it: the decoded run row (`status`,
    `outcome`, `cost_usd`, `inputs`, `settings`, …), its stages and calls in order (decoded),
    the final context (None when the run left no checkpoint), its record mode and launch
    record (config/launch.json)."""

    run: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] | None = None
    record: str = "full"
    # Reads the value behind an `artifact_ref` (context values over 100 KB); None: unreadable.
    artifact: Callable[[str], Any] | None = None
    launch: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.run.get("id", ""))

    def work_calls(self) -> list[dict[str, Any]]:
        """The pipeline's own calls: without the judge calls a reeval recorded on the run,
        the entry that ends a failed run's trace and the tries a provider retried."""
        return [c for c in self.calls
                if c.get("node_id") != JUDGE_NODE and c.get("kind") not in NOT_WORK]


class Unavailable(Exception):
    """The value a check needs is not there: the check errors."""


class NotRecorded(Unavailable):
    """The content a check needs was left out by the record mode: the check errors, or is
    skipped under `allow_partial`."""


def result(ok: bool, expected: Any, actual: Any, message: str) -> dict[str, Any]:
    """An evaluator's answer: status, expected, actual, message."""
    return {"status": "passed" if ok else "failed", "expected": expected, "actual": actual,
            "message": message}


def to_json(value: Any) -> str:
    """Canonical JSON text (keys sorted)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str).decode()


def resolve(value: Any, run: StoredRun) -> Any:
    """A context value, with an `artifact_ref` replaced by the value it stands for."""
    if isinstance(value, dict) and set(value) >= {"artifact_ref", "key"}:
        if run.artifact is None:
            raise Unavailable(f"context key {value['key']!r} is stored as artifact "
                              f"{value['artifact_ref']}, which cannot be read")
        return run.artifact(str(value["artifact_ref"]))
    return value


def context_value(key: str, run: StoredRun) -> Any:
    """A key of the run's final context (artifacts read back)."""
    if run.context is None:
        raise Unavailable("the run left no checkpoint, so no final context to read")
    if key not in run.context:
        raise Unavailable(f"the run's final context has no key {key!r}")
    return resolve(run.context[key], run)


def call_text(call: dict[str, Any]) -> str:
    """A call's response text: a model's `text`, a tool's `stdout`."""
    response = call.get("response") or {}
    text = response.get("text") if call.get("kind") == "model" else response.get("stdout")
    if isinstance(text, dict) and text.get("omitted"):  # metadata_only: length and digest
        raise NotRecorded(f"the content of call {call.get('seq')} (node "
                          f"{call.get('node_id')!r}) was not recorded")
    if not isinstance(text, str):
        raise Unavailable(f"call {call.get('seq')} of node {call.get('node_id')!r} recorded "
                          "no text")
    return text


def output(path: str, run: StoredRun) -> tuple[str, Any]:
    """(what was read, its value) for an output path: `output`, `node.<id>`, `context.<key>`.
    Outputs are texts; a context value is returned as it is (a string, a list, …)."""
    if path.startswith("context."):
        key = path[len("context."):]
        return f"context key {key!r}", context_value(key, run)
    calls = run.work_calls()
    if path.startswith("node."):
        node_id = path[len("node."):]
        of_node = [c for c in calls if c.get("node_id") == node_id]
        if not of_node:
            ran = any(s.get("node_id") == node_id for s in run.stages)
            raise Unavailable(f"node {node_id!r} made no model or tool call" if ran else
                              f"node {node_id!r} did not run")
        answered = [c for c in of_node if c.get("response") is not None]
        if not answered:
            raise Unavailable(f"every call of node {node_id!r} failed; the last: "
                              f"{of_node[-1].get('error')}")
        return f"the output of node {node_id!r}", call_text(answered[-1])
    for call in reversed(calls):  # `output`: the last call that answered
        if call.get("response") is not None:
            return f"the run's output (node {call.get('node_id')!r})", call_text(call)
    raise Unavailable("the run made no call that answered, so it has no output")


def output_text(path: str, run: StoredRun) -> tuple[str, str]:
    """(what was read, its text): a non-string context value as its JSON text."""
    where, value = output(path, run)
    return where, value if isinstance(value, str) else to_json(value)


def excerpt(text: str, needle: str = "") -> str:
    """The text, cut to a window around `needle` (or its start)."""
    if len(text) <= MAX_ACTUAL:
        return text
    at = text.find(needle) if needle else -1
    start = 0 if at < 0 else max(0, min(at - 60, len(text) - MAX_ACTUAL))
    end = start + MAX_ACTUAL
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
