"""The run context (attractor §5.1): the key-value store that nodes share."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from .threads import Thread


class Context(Mapping[str, Any]):
    """Values shared by the stages of one run, plus an append-only log, and the engine's
    state that travels with them: the `full` fidelity threads (attractor §5.4) and how many
    calls each node made (the scripted provider's n-th answer).

    The executor applies updates between nodes, one node at a time, and parallel branches
    work on clones, so no lock is needed.
    """

    def __init__(self, values: dict[str, Any] | None = None,
                 logs: list[dict[str, Any]] | None = None,
                 threads: dict[str, Thread] | None = None, last_thread: str | None = None,
                 calls: dict[str, int] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})
        self.logs: list[dict[str, Any]] = list(logs or [])
        self.threads: dict[str, Thread] = dict(threads or {})
        self.last_thread = last_thread  # the thread of the last `full` node
        self.calls: dict[str, int] = dict(calls or {})
        # The counts over 1, all a checkpoint keeps (a node it lists as completed and not
        # here was called once): a checkpoint of a long run stays small.
        self.repeated: dict[str, int] = {k: v for k, v in self.calls.items() if v > 1}

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def get(self, key: str, default: Any = None) -> Any:
        """A value, or `default` (Mapping's own goes through __getitem__ and an exception:
        every prompt, condition and handler asks)."""
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set one value."""
        self.values[key] = value

    def apply(self, updates: Mapping[str, Any]) -> None:
        """Merge updates in."""
        self.values.update(updates)

    def get_string(self, key: str, default: str = "") -> str:
        """A value as a string (missing → `default`)."""
        value = self.values.get(key)
        return default if value is None else str(value)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the values, safe to serialize while the run goes on."""
        return _copy(self.values)

    def count_call(self, node_id: str, count: int | None = None) -> int:
        """Count one more call of a node (or set its count); the node's count."""
        count = self.calls.get(node_id, 0) + 1 if count is None else count
        self.calls[node_id] = count
        if count > 1:
            self.repeated[node_id] = count
        return count

    def clone(self) -> Context:
        """An isolated copy for a parallel branch."""
        return Context(_copy(self.values), list(self.logs),
                       {key: thread.copy() for key, thread in self.threads.items()},
                       self.last_thread, self.calls)


_SHARED = frozenset({str, int, float, bool, type(None)})


def _copy(values: dict[str, Any]) -> dict[str, Any]:
    """A deep copy that shares immutable values: a branch clones its context, so the copy is
    on the path of every branch (deepcopy would also walk every string)."""
    return {key: value if type(value) in _SHARED else copy.deepcopy(value)
            for key, value in values.items()}
