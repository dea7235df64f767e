"""A `full` fidelity thread (attractor §5.4): the turns of the nodes that share one
conversation, compacted deterministically to stay inside a budget (docs/pipelines.md,
"Compaction"). Threads travel with a run's context and are kept in its checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4  # the estimate used for budgets; real tokenizers vary around it
DIGEST_LINES = 20  # compacted turns named in a thread's digest


@dataclass
class Thread:
    """One conversation of `full` nodes: its kept turns and what compaction removed."""

    turns: list[dict[str, str]] = field(default_factory=list)  # {node, status, user, assistant}
    chars: int = 0  # of the kept turns' texts
    dropped: int = 0  # turns compacted away
    digest: list[str] = field(default_factory=list)  # one line each, the last DIGEST_LINES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thread:
        """A thread as a checkpoint holds it."""
        return cls([dict(t) for t in data.get("turns", ())], int(data.get("chars", 0)),
                   int(data.get("dropped", 0)), list(data.get("digest", ())))

    def copy(self) -> Thread:
        """An independent copy (turns themselves are never changed in place)."""
        return Thread(list(self.turns), self.chars, self.dropped, list(self.digest))

    def add(self, turn: dict[str, str], budget_tokens: int, max_turns: int) -> None:
        """Append a turn, then compact: drop the oldest turns while more than `max_turns`
        are kept or their text is over the budget; a single turn over the budget keeps
        its head and tail."""
        self.turns.append(turn)
        self.chars += _size(turn)
        budget = max(1, budget_tokens) * CHARS_PER_TOKEN
        while len(self.turns) > 1 and (len(self.turns) > max_turns or self.chars > budget):
            oldest = self.turns.pop(0)
            self.chars -= _size(oldest)
            self.dropped += 1
            self.digest = [*self.digest, _digest_line(oldest)][-DIGEST_LINES:]
        if self.chars > budget:  # the shorter text keeps up to half, the other the rest
            only = self.turns[0]
            short, long = sorted(("user", "assistant"), key=lambda key: len(only[key]))
            kept = _shorten(only[short], budget // 2)
            self.turns[0] = {**only, short: kept,
                             long: _shorten(only[long], max(1, budget - len(kept)))}
            self.chars = _size(self.turns[0])


def _size(turn: Mapping[str, str]) -> int:
    return len(turn["user"]) + len(turn["assistant"])


def _shorten(text: str, limit: int) -> str:
    """The head and tail of `text` around a marker, about `limit` characters in all."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40) // 2
    return f"{text[:keep]}\n…[{len(text) - 2 * keep} characters compacted]…\n{text[-keep:]}" \
        if keep else text[:limit]


def _digest_line(turn: Mapping[str, str]) -> str:
    answer = " ".join(turn["assistant"].split())
    return f"- {turn['node']}: {turn['status']}: {answer[:120]}"
