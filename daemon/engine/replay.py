"""Replay from a recording: any run's calls serve as a cassette (DESIGN.md §1, replay).

A `Cassette` indexes a run's recorded model and tool calls by (node, attempt, kind, request
hash); a `Replayer` puts one in a mode and tells the engine, before each call, whether to
serve the recording, go live, or stop the run with a `ReplayDivergence` that names the node,
the step and what changed. `ReplayProviders` wraps a provider pool so that model calls need
no handler change; the tool handler asks the `Replayer` itself.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from .call_ids import alias_messages
from .providers.base import ModelRequest, ModelResponse, ProviderError
from .recording import INTERRUPTED, NOT_WORK
from .redact import Redactor

ReplayMode = Literal["recorded", "hybrid", "live"]
ReplayAction = Literal["serve", "live", "diverge"]
DivergenceReason = Literal["no_call_for_node", "request_changed", "extra_call"]
Key = tuple[str, int, str, str]  # node_id, attempt, kind, request hash

# What a model's answer depends on; node_id, attempt, metadata and provider_attempt only say
# where and when the call was made (the scripted provider's `scripted.*` metadata is its
# script, i.e. part of the "model" that the cassette stands in for).
_MODEL_FIELDS: dict[str, Any] = {"provider": "", "model": "", "messages": [], "params": {},
                                 "output": None}
# What a model's answer also depends on, hashed only when set: a request without tools hashes
# to the very digest it had before requests could carry them.
_TOOL_FIELDS: dict[str, Any] = {"tools": [], "tool_choice": None, "parallel_tool_calls": None}
# Fields of other calls that identify the run or the visit, not the work: never hashed.
_VOLATILE_FIELDS = frozenset({"node_id", "attempt", "provider_attempt", "metadata", "run_id",
                              "trace_id", "stage_dir", "env"})
_SNIPPET = 80  # characters of a differing string shown after the point where it differs
_LEAD = 20  # characters shown before that point
_VALUE_LIMIT = 200  # longest JSON shown for a non-string value
_SHOWN = 3  # differences spelled out in the one-line message; to_dict() has them all
_DIFF_LIMIT = 50  # differences kept per divergence


def _plain(request: Any) -> dict[str, Any]:
    """A request as JSON-shaped data: a pydantic model, a dict, or a store row's JSON text."""
    if hasattr(request, "model_dump"):
        return request.model_dump(mode="json")
    if isinstance(request, str | bytes):
        return orjson.loads(request)
    return dict(request or {})


def canonical_request(kind: str, request: Mapping[str, Any] | ModelRequest) -> dict[str, Any]:
    """The part of a request that determines its answer (what replays match on)."""
    data = _plain(request)
    if kind == "model":
        canonical = {name: data.get(name, default) for name, default in _MODEL_FIELDS.items()}
        # Vendor tool-call ids are new in every live run: only their pattern counts. A request
        # without tool traffic is left as it was, so old recordings hash as before.
        canonical["messages"] = alias_messages(canonical["messages"])
        canonical.update((name, data[name]) for name, empty in _TOOL_FIELDS.items()
                         if data.get(name, empty) != empty)
        return canonical
    return {k: v for k, v in data.items() if k not in _VOLATILE_FIELDS}


def _digest(canonical: Mapping[str, Any]) -> str:
    # Sorted keys: the same request hashes alike whether built in Python or read from JSON.
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS,
                                       default=str)).hexdigest()


def request_hash(kind: str, request: Mapping[str, Any] | ModelRequest) -> str:
    """sha256 of the canonical request as sorted-key JSON."""
    return _digest(canonical_request(kind, request))


def replay_action(mode: ReplayMode, matched: bool) -> ReplayAction:
    """What to do with a call: serve the recording, go live, or stop the run."""
    if mode == "live":
        return "live"
    if matched:
        return "serve"
    return "live" if mode == "hybrid" else "diverge"


# -- differences --------------------------------------------------------------------------

_ABSENT: Any = object()


@dataclass(frozen=True)
class Difference:
    """One JSON path where a recorded and a new request differ, values shortened."""

    path: str
    recorded: Any = _ABSENT
    new: Any = _ABSENT
    offset: int | None = None  # strings: the index of the first differing character

    def to_dict(self) -> dict[str, Any]:
        """JSON form; a side that lacks the path has no key."""
        out: dict[str, Any] = {"path": self.path}
        for name in ("recorded", "new"):
            value = getattr(self, name)
            if value is not _ABSENT:
                out[name] = value
        if self.offset is not None:
            out["offset"] = self.offset
        return out

    def describe(self) -> str:
        """One line for people."""
        def show(value: Any) -> str:
            return "(absent)" if value is _ABSENT else orjson.dumps(value, default=str).decode()
        where = f" (from char {self.offset})" if self.offset else ""
        return f"{self.path or '(request)'}{where}: recorded {show(self.recorded)}, " \
               f"new {show(self.new)}"


def _shorten(value: Any) -> Any:
    if value is _ABSENT or value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= _SNIPPET else value[:_SNIPPET] + "…"
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return value if len(text) <= _VALUE_LIMIT else text[:_VALUE_LIMIT] + "…"


def _string_difference(path: str, recorded: str, new: str) -> Difference:
    # Long prompts usually differ in one place: show the text around it, not the start.
    at = next((i for i, (a, b) in enumerate(zip(recorded, new, strict=False)) if a != b),
              min(len(recorded), len(new)))
    start = max(0, at - _LEAD)

    def cut(text: str) -> str:
        head = "…" if start else ""
        tail = "…" if len(text) > at + _SNIPPET else ""
        return head + text[start:at + _SNIPPET] + tail
    return Difference(path, cut(recorded), cut(new), at)


def diff_requests(recorded: Any, new: Any, path: str = "",
                  limit: int = _DIFF_LIMIT) -> list[Difference]:
    """Every JSON path (`messages[1].content`) where two requests differ, up to `limit`."""
    out: list[Difference] = []
    _diff(recorded, new, path, out, limit)
    return out


def _diff(recorded: Any, new: Any, path: str, out: list[Difference], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(recorded, Mapping) and isinstance(new, Mapping):
        for key in sorted({*recorded, *new}, key=str):
            _diff(recorded.get(key, _ABSENT), new.get(key, _ABSENT),
                  f"{path}.{key}" if path else str(key), out, limit)
    elif isinstance(recorded, list) and isinstance(new, list):
        for index in range(max(len(recorded), len(new))):
            _diff(recorded[index] if index < len(recorded) else _ABSENT,
                  new[index] if index < len(new) else _ABSENT, f"{path}[{index}]", out, limit)
    elif isinstance(recorded, str) and isinstance(new, str):
        if recorded != new:
            out.append(_string_difference(path, recorded, new))
    # type() too: True == 1 and 1 == 1.0 in Python, but not in the JSON that was hashed.
    elif recorded != new or type(recorded) is not type(new):
        out.append(Difference(path, _shorten(recorded), _shorten(new)))


class ReplayDivergence(Exception):
    """A recorded replay reached a call the recording cannot serve; the run must stop."""

    def __init__(self, *, node_id: str, attempt: int, kind: str, step: int,
                 reason: DivergenceReason, recorded_call: Mapping[str, Any] | None = None,
                 differences: list[Difference] | None = None, recorded_count: int = 0) -> None:
        self.node_id = node_id
        self.attempt = attempt
        self.kind = kind
        self.step = step  # this call's 1-based position among the new run's calls
        self.reason = reason
        recorded = recorded_call or {}
        self.recorded_seq: int | None = recorded.get("seq")
        self.recorded_attempt: int | None = recorded.get("attempt")
        self.recorded_kind: str | None = recorded.get("kind")
        self.differences = list(differences or [])
        self.recorded_count = recorded_count  # recorded calls of this node, any attempt
        self.request: dict[str, Any] | None = None  # the new request, set by the Replayer
        super().__init__(self._message())

    def _message(self) -> str:
        where = (f"replay diverged at node {self.node_id!r}, step {self.step} "
                 f"({self.kind} call, attempt {self.attempt})")
        if self.reason == "no_call_for_node":
            return f"{where}: the recording has no call for this node"
        other = f"recorded call #{self.recorded_seq}"
        if (self.recorded_attempt, self.recorded_kind) != (self.attempt, self.kind):
            other += f" ({self.recorded_kind} call, attempt {self.recorded_attempt})"
        if self.reason == "extra_call":
            return (f"{where}: the request equals {other}, but the recording has no "
                    f"unused call for this node, attempt and request "
                    f"({self.recorded_count} recorded for this node)")
        shown = "; ".join(d.describe() for d in self.differences[:_SHOWN])
        more = len(self.differences) - _SHOWN
        if more > 0:
            shown += f"; and {more} more"
        return f"{where}: the request differs from {other}: {shown}"

    def without_content(self) -> str:
        """The message naming only where the requests differ, not what they hold (for runs
        recorded metadata_only, whose records keep no prompt text)."""
        where = (f"replay diverged at node {self.node_id!r}, step {self.step} "
                 f"({self.kind} call, attempt {self.attempt}): {self.reason}")
        if self.differences:
            where += "; differing: " + ", ".join(d.path for d in self.differences)
        return where

    def to_dict(self, content: bool = True) -> dict[str, Any]:
        """Structured form for the run's error data and test reports; without `content`,
        the differences are their paths only."""
        return {"node_id": self.node_id, "attempt": self.attempt, "kind": self.kind,
                "step": self.step, "reason": self.reason, "recorded_seq": self.recorded_seq,
                "recorded_attempt": self.recorded_attempt, "recorded_kind": self.recorded_kind,
                "recorded_count": self.recorded_count,
                "differences": [d.to_dict() if content else {"path": d.path}
                                for d in self.differences],
                "message": str(self) if content else self.without_content()}


# -- the cassette -------------------------------------------------------------------------


def _trace_lines(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a trace.jsonl; a line cut short by a crash is skipped."""
    calls = []
    for line in Path(path).read_bytes().splitlines():
        if line.strip():
            try:
                calls.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # only a crash mid-write leaves half a line
    return calls


@dataclass
class _Entry:
    call: dict[str, Any]
    canonical: dict[str, Any]
    used: bool = False


class Cassette:
    """A run's recorded calls, served once each, repeats of one request in recorded order."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor
        self.entries: list[_Entry] = []
        self.lookups = 0  # calls the new run asked for: the last one's step
        self._queues: dict[Key, deque[_Entry]] = {}

    @classmethod
    def from_calls(cls, calls: Iterable[Mapping[str, Any]], *,
                   redactor: Redactor | None = None) -> Cassette:
        """Index recorded calls: trace.jsonl lines, Executor.record_call dicts or store rows
        (`request_json`/`response_json`); the last call of each seq wins."""
        by_seq: dict[int, dict[str, Any]] = {}
        for index, raw in enumerate(calls):
            call = dict(raw)
            call.setdefault("seq", index + 1)
            for name in ("request", "response"):
                if name not in call and f"{name}_json" in call:
                    text = call.pop(f"{name}_json")
                    call[name] = None if text is None else orjson.loads(text)
            # A run resumed after a crash numbers again from its checkpoint: the trace then
            # holds the abandoned calls first and their re-run (same seq) after them.
            by_seq[int(call["seq"])] = call
        cassette = cls(redactor)
        for _, call in sorted(by_seq.items()):
            kind = str(call["kind"])
            if kind in NOT_WORK:  # how a failed run ended, a retried try: not served
                continue
            entry = _Entry(call, cassette._canonical(kind, call["request"]))
            cassette.entries.append(entry)
            key = (str(call["node_id"]), int(call["attempt"]), kind, _digest(entry.canonical))
            cassette._queues.setdefault(key, deque()).append(entry)
        return cassette

    def recorded(self) -> list[dict[str, Any]]:
        """Every recorded call it serves, in order, used or not (`from_calls` builds the
        same cassette from them: what a worker gets, decision 0007)."""
        return [entry.call for entry in self.entries]

    @classmethod
    def from_trace_file(cls, path: str | Path, *, redactor: Redactor | None = None) -> Cassette:
        """A cassette from a run directory's trace.jsonl (a cut-off last line is skipped)."""
        return cls.from_calls(_trace_lines(path), redactor=redactor)

    def _canonical(self, kind: str, request: Any) -> dict[str, Any]:
        canonical = canonical_request(kind, request)
        # Recordings had secrets replaced before they were stored; the new request must get
        # the same treatment or a prompt that holds a secret could never match.
        return self.redactor.values(canonical) if self.redactor else canonical

    def match(self, node_id: str, attempt: int, kind: str,
              request: Mapping[str, Any] | ModelRequest) -> dict[str, Any] | None:
        """The recorded call for this one, consumed; None when the recording has none left."""
        self.lookups += 1
        key = (node_id, attempt, kind, _digest(self._canonical(kind, request)))
        queue = self._queues.get(key)
        if not queue:
            return None
        entry = queue.popleft()
        entry.used = True
        return entry.call

    def consume(self, calls: Iterable[Mapping[str, Any]]) -> None:
        """Mark calls a resumed run already made (its own trace up to the checkpoint's
        call_seq, less its open_calls) as served, so that it goes on where it stopped."""
        for call in calls:
            self.match(str(call["node_id"]), int(call["attempt"]), str(call["kind"]),
                       call["request"])

    def remaining(self) -> list[dict[str, Any]]:
        """Recorded calls the new run has not made, in recorded order."""
        return [entry.call for entry in self.entries if not entry.used]

    def __len__(self) -> int:
        return len(self.entries)

    def divergence(self, node_id: str, attempt: int, kind: str,
                   request: Mapping[str, Any] | ModelRequest,
                   step: int | None = None) -> ReplayDivergence:
        """Why this call has no recording: the closest recorded call of the node and how
        its request differs (same attempt and kind first, unused before used)."""
        step = self.lookups if step is None else step
        canonical = self._canonical(kind, request)
        of_node = [e for e in self.entries if e.call.get("node_id") == node_id]
        if not of_node:
            return ReplayDivergence(node_id=node_id, attempt=attempt, kind=kind, step=step,
                                    reason="no_call_for_node")

        def rank(entry: _Entry) -> tuple[bool, bool, bool, int]:
            call = entry.call
            return (call.get("kind") != kind, call.get("attempt") != attempt, entry.used,
                    len(diff_requests(entry.canonical, canonical)))
        best = min(of_node, key=rank)  # min keeps the first (lowest seq) of equals
        differences = diff_requests(best.canonical, canonical)
        return ReplayDivergence(node_id=node_id, attempt=attempt, kind=kind, step=step,
                                reason="request_changed" if differences else "extra_call",
                                recorded_call=best.call, differences=differences,
                                recorded_count=len(of_node))


# -- what the engine calls ----------------------------------------------------------------


class Replayer:
    """A cassette in a mode: consulted before every model and tool call of a run."""

    def __init__(self, mode: ReplayMode, cassette: Cassette | None = None) -> None:
        if mode != "live" and cassette is None:
            raise ValueError(f"replay mode {mode!r} needs a cassette")
        self.mode: ReplayMode = mode
        self.cassette = cassette or Cassette()
        self.served = 0
        self.live = 0

    def lookup(self, node_id: str, attempt: int, kind: str,
               request: Mapping[str, Any] | ModelRequest) -> dict[str, Any] | None:
        """The recorded call to serve, or None to make the call live (and record it as
        usual); raises ReplayDivergence when the mode is `recorded` and nothing matches."""
        if self.mode == "live":  # a live replay leaves the cassette alone
            self.live += 1
            return None
        call = self.cassette.match(node_id, attempt, kind, request)
        action = replay_action(self.mode, call is not None)
        if action == "diverge":
            divergence = self.cassette.divergence(node_id, attempt, kind, request)
            divergence.request = _plain(request)
            raise divergence
        if action == "serve":
            self.served += 1
            return call
        self.live += 1
        return None


def replayed_response(call: Mapping[str, Any], *, paid: bool = False) -> ModelResponse:
    """The model response a recorded call gave, at zero cost and latency (`paid`: at its
    recorded ones, for a call the run itself made before it was interrupted); a recorded
    failure is raised again as the ProviderError it was (not retryable: it is a record)."""
    response = call.get("response")
    if call.get("error") == INTERRUPTED:
        raise TimeoutError  # it timed out in the recording: the node's outcome is the same
    if response is None:
        raise ProviderError(str(call.get("error") or "model call failed"), retryable=False)
    if paid:
        return ModelResponse.model_validate(response)
    return ModelResponse.model_validate({**response, "cost_usd": 0.0, "latency_ms": 0.0})


class Journal:
    """The agent turns and tool calls an interrupted run finished after its checkpoint: its
    resume serves them again instead of making them again, so a finished tool call or model
    turn of the agent node the crash cut short is never repeated (decision 0006 §7). The
    trace is the journal: its lines reach the page cache as each call ends, so a kill -9
    loses none. A node of one call (an LLM or tool node) runs again, as it always has."""

    def __init__(self, cassette: Cassette, seqs: list[int]) -> None:
        self.cassette = cassette
        # The numbers the resumed run records again: the calls it serves, and those cut short
        # (made again live).
        self.seqs = seqs

    @classmethod
    def from_trace(cls, path: str | Path, checkpoint: Mapping[str, Any] | None, *,
                   redactor: Redactor | None = None) -> Journal | None:
        """The finished calls of work the checkpoint does not hold (those after its
        call_seq, and its open branches'); None when there are none."""
        kept = int((checkpoint or {}).get("call_seq", 0))
        reopened = set((checkpoint or {}).get("open_calls", ()))
        try:
            lines = _trace_lines(path)
        except FileNotFoundError:
            return None
        latest = {int(line["seq"]): line for line in lines if "seq" in line}
        redone = [line for seq, line in sorted(latest.items())
                  if (seq > kept or seq in reopened) and _of_a_loop(line)]
        if not redone:
            return None
        finished = [line for line in redone
                    if line.get("response") is not None and line.get("error") != INTERRUPTED]
        return cls(Cassette.from_calls(finished, redactor=redactor),
                   [int(line["seq"]) for line in redone])

    def match(self, node_id: str, attempt: int, kind: str,
              request: Mapping[str, Any] | ModelRequest) -> dict[str, Any] | None:
        """The finished call for this one, consumed; None: make it."""
        return self.cassette.match(node_id, attempt, kind, request)


def _of_a_loop(call: Mapping[str, Any]) -> bool:
    """Whether a call is one turn, or one tool call, of an agent's loop."""
    request = call.get("request") or {}
    return "turn" in request or "turn" in (request.get("metadata") or {})


def recorded_call(journal: Journal | None, replayer: Replayer | None, node_id: str,
                  attempt: int, kind: str,
                  request: Mapping[str, Any] | ModelRequest) -> tuple[dict[str, Any] | None, bool]:
    """The recorded call to serve instead of making this one, and whether it is the run's
    own (from the journal of its interruption, rather than the replayed recording)."""
    if journal is not None:
        call = journal.match(node_id, attempt, kind, request)
        if call is not None:
            if replayer is not None and replayer.mode != "live":
                # Its counterpart in the replayed recording is used up too.
                replayer.cassette.match(node_id, attempt, kind, request)
            return call, True
    if replayer is None:
        return None, False
    return replayer.lookup(node_id, attempt, kind, request), False


class ReplayProviders:
    """A provider pool that serves model calls from a Replayer first; everything else
    (resolve, secrets, describe, aclose, …) is the wrapped pool's."""

    def __init__(self, pool: Any, replayer: Replayer | None,
                 journal: Journal | None = None) -> None:
        self.pool = pool
        self.replayer = replayer
        self.journal = journal

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    def resolve(self, request: ModelRequest) -> ModelRequest:
        """The wrapped pool's resolution: the provider and model the recording names."""
        return self.pool.resolve(request)

    async def complete(self, request: ModelRequest, on_retry: Any = None) -> ModelResponse:
        """The recorded response if the replayer serves one, else the live pool's, which
        tells `on_retry` (a providers.runtime.RetryCallback) of its retried tries; a served
        recording has none."""
        # Resolved as codergen records it, so that the hash matches the recorded request.
        request = self.pool.resolve(request)
        call, own = recorded_call(self.journal, self.replayer, request.node_id,
                                  request.attempt, "model", request)
        if call is None:
            return await self.pool.complete(request, on_retry=on_retry)
        return replayed_response(call, paid=own)
