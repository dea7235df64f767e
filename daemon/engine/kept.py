"""What the daemon keeps of the pipelines it loaded: least recently used first out, within a
budget of source text (what parsing costs grows with it)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class KeptBySource(Generic[V]):
    """Values by key, each counted as the length of the source it came from; once the
    lengths add up past `budget`, the least recently used go."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0

    def get(self, key: Hashable) -> V | None:
        """The value kept for `key`, now the most recently used; None if none is."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, source: str) -> None:
        """Keep `value`, unless its source alone is over the budget."""
        if len(source) > self.budget:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= old[1]
        self._entries[key] = (value, len(source))
        self._size += len(source)
        while self._size > self.budget:
            _, (_, size) = self._entries.popitem(last=False)
            self._size -= size
