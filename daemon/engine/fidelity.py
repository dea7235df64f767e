"""Context fidelity (attractor §5.4): what an LLM node's request carries of the run so far.

`full` continues a thread's conversation: the earlier turns of the nodes on the same thread
are sent as message history, compacted to stay inside a budget. The other modes start a
fresh session whose system message states the run so far at their level of detail.
Everything here is deterministic: the same context builds the same request, so a recorded
replay and a resumed run send exactly what the original run sent. docs/pipelines.md
("Context fidelity and threads") describes each mode's content.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .context import Context
from .graph import Edge, Graph, Node
from .supervision import INSTRUCTIONS
from .templates import as_text

MODES = ("full", "truncate", "compact", "summary:low", "summary:medium", "summary:high")
DEFAULT_MODE = "compact"
CHARS_PER_TOKEN = 4  # the estimate used for budgets; real tokenizers vary around it
DEFAULT_THREAD_BUDGET = 16_000  # tokens of history a `full` thread keeps
DEFAULT_THREAD_TURNS = 20  # turns a `full` thread keeps
DIGEST_LINES = 20  # compacted turns named in a thread's digest
_COMPACT_NODES = 20  # completed nodes listed by `compact`
_CONTEXT_VALUE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Summary:
    """What a `summary:*` mode states, and how much of it."""

    recent: int  # recent stages listed
    note_chars: int  # characters of each stage's note (0: none)
    context_keys: int  # context values listed
    value_chars: int
    budget_tokens: int  # the approximate budget of attractor §5.4


SUMMARIES = {
    "summary:low": Summary(5, 0, 0, 0, 600),
    "summary:medium": Summary(12, 160, 15, 160, 1500),
    "summary:high": Summary(30, 300, 30, 300, 3000),
}


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


def thread_limits(graph: Graph, node: Node) -> tuple[int, int]:
    """(budget in tokens, turns) of `node`'s thread: the node's, else the graph's
    `thread_budget` / `thread_turns`, else the defaults."""
    def setting(key: str, default: int) -> int:
        value = node.get(key, graph.attrs.get(key))
        return int(value) if isinstance(value, int | float) and value > 0 else default
    return (setting("thread_budget", DEFAULT_THREAD_BUDGET),
            setting("thread_turns", DEFAULT_THREAD_TURNS))


def resolve_mode(graph: Graph, node: Node, via: Edge | None) -> str:
    """Fidelity by §5.4's precedence: the incoming edge, the node, the graph's
    `default_fidelity`, then `compact` (unknown modes are skipped: the lint warns)."""
    for value in (via.attrs.get("fidelity") if via else None, node.get("fidelity"),
                  graph.attrs.get("default_fidelity")):
        if value in MODES:
            return str(value)
    return DEFAULT_MODE


def resolve_thread(graph: Graph, node: Node, via: Edge | None, context: Context) -> str:
    """The thread of a `full` node (§5.4): the node's `thread_id`, the incoming edge's, the
    graph's, the class of the innermost subgraph it is in, else the thread the last `full`
    node used (so a chain of `full` nodes is one conversation), else the previous node."""
    for value in (node.get("thread_id"), via.attrs.get("thread_id") if via else None,
                  graph.attrs.get("thread_id")):
        if value:
            return str(value)
    explicit = {c.strip() for c in str(node.get("class", "") or "").split(",")}
    derived = [c for c in node.classes if c not in explicit]
    if derived:
        return derived[-1]
    return context.last_thread or str(context.get("current_node") or node.id)


# -- the messages -------------------------------------------------------------------------


def is_engine_key(key: str, node_ids: Collection[str]) -> bool:
    """Keys the engine and the built-in handlers set (not "key context values")."""
    if key in ("outcome", "current_node", "preferred_label", "last_stage", "last_response"):
        return True
    if key.startswith(("graph.", "internal.", "parallel.", "human.gate.", "stack.", "tool.")):
        return True
    head, _, tail = key.rpartition(".")
    return tail in ("output", "response", "answer") and head in node_ids


def context_lines(context: Context, graph: Graph, skip: Collection[str], limit: int,
                  chars: int) -> list[str]:
    """`- key: value` for the last `limit` context values nodes set (not the engine's, not
    those in `skip`), values cut to `chars`."""
    lines = []
    for key, value in reversed(context.values.items()):
        if len(lines) == limit:
            break
        if key in skip or is_engine_key(key, graph.nodes) or value is None:
            continue
        if isinstance(value, dict) and "artifact_ref" in value:
            continue  # too large for a summary; a `${key}` reference inserts it
        text = " ".join(as_text(value).split())
        lines.append(f"- {key}: {text[:chars]}{'…' if len(text) > chars else ''}")
    lines.reverse()
    return lines


def _recent(context: Context, node: Node, count: int) -> list[dict[str, Any]]:
    """The last `count` completed nodes other than this node's earlier visits."""
    done: list[dict[str, Any]] = []
    for entry in reversed(context.logs):  # without walking the whole log
        if entry.get("node") != node.id:
            done.append(entry)
            if len(done) == count:
                break
    done.reverse()
    return done


def _goal(graph: Graph) -> list[str]:
    return [f"Goal: {graph.goal}"] if graph.goal else []


def _compact(context: Context, graph: Graph, node: Node, inputs: Collection[str]) -> list[str]:
    lines = _goal(graph) + [f"- {e['node']}: {e['outcome']}"
                            for e in _recent(context, node, _COMPACT_NODES)]
    values = context_lines(context, graph, inputs, _COMPACT_NODES, _CONTEXT_VALUE_CHARS)
    if values:
        lines += ["Context:", *values]
    return lines


def _summary(context: Context, graph: Graph, node: Node, level: Summary,
             completed: int) -> list[str]:
    recent = _recent(context, node, level.recent)
    failed = sum(e["outcome"] == "fail" for e in recent)
    lines = _goal(graph)
    lines.append(f"The run so far: {completed} nodes completed; of the last {len(recent)}, "
                 f"{len(recent) - failed} succeeded and {failed} failed.")
    if not level.note_chars:
        if recent:
            lines.append("Recent: " + " → ".join(f"{e['node']} ({e['outcome']})"
                                                  for e in recent))
    elif recent:
        lines.append("Recent stages:")
        for entry in recent:
            note = " ".join(str(entry.get("note") or "").split())
            cut = note[:level.note_chars] + ("…" if len(note) > level.note_chars else "")
            lines.append(f"- {entry['node']}: {entry['outcome']}" + (f": {cut}" if cut else ""))
    if level.context_keys:
        values = context_lines(context, graph, (), level.context_keys, level.value_chars)
        if values:
            lines += ["Context:", *values]
    return lines


def _fit(lines: Sequence[str], budget_tokens: int) -> str:
    """The lines that fit in the budget, whole lines only, then a marker."""
    limit = budget_tokens * CHARS_PER_TOKEN
    out: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > limit:
            out.append("…")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def build_messages(mode: str, graph: Graph, node: Node, context: Context, prompt: str, *,
                   thread: str | None = None, inputs: Collection[str] = (),
                   completed: int = 0, instructions: str = "") -> list[dict[str, str]]:
    """The messages of one request: a system message stating the run so far (or, for
    `full`, the goal and what compaction removed) with `instructions` last, the thread's
    earlier turns for `full`, then the prompt."""
    history: list[dict[str, str]] = []
    if mode == "full":
        state = context.threads.get(thread or "")
        lines = _goal(graph)
        if state is not None:
            if state.dropped:
                lines += [f"Earlier in this conversation, {state.dropped} turns were "
                          "compacted (the most recent last):", *state.digest]
            for turn in state.turns:
                history += [{"role": "user", "content": turn["user"]},
                            {"role": "assistant", "content": turn["assistant"] or "(empty)"}]
        system = "\n".join(lines)
    elif mode == "truncate":
        system = "\n".join(_goal(graph))
    elif mode in SUMMARIES:
        level = SUMMARIES[mode]
        system = _fit(_summary(context, graph, node, level, completed), level.budget_tokens)
    else:
        system = "\n".join(_compact(context, graph, node, inputs))
    steer = context.get(INSTRUCTIONS)
    if steer:  # a supervising manager's instructions (handlers/manager.py)
        note = f"Instructions from the run's supervisor: {as_text(steer)}"
        system = f"{system}\n\n{note}" if system else note
    if instructions:
        system = f"{system}\n\n{instructions}" if system else instructions
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, *history, {"role": "user", "content": prompt}]
