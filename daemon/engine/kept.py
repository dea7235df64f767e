"""What the daemon keeps of the pipelines it loaded: least recently used first out, within a
budget of the memory the kept values hold (an estimate each caller makes) and of entries."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Kept(Generic[V]):
    """Values by key, each with the bytes it is estimated to hold; once they add up past
    `budget`, or there are more than `max_entries`, the least recently used go."""

    def __init__(self, budget: int, max_entries: int = 256) -> None:
        self.budget = budget
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0

    @property
    def size(self) -> int:
        """The bytes the kept values are estimated to hold."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        """The value kept for `key`, now the most recently used; None if none is."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        """Keep `value`, estimated to hold `size` bytes, unless that alone is over the
        budget."""
        if size > self.budget:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= old[1]
        self._entries[key] = (value, size)
        self._size += size
        while self._size > self.budget or len(self._entries) > self.max_entries:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._size -= dropped

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._size = 0
