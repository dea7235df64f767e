"""Context fidelity (attractor §5.4): what an LLM node's request carries of the run so far.

`full` continues a thread's conversation: the earlier turns of the nodes on the same thread
are sent as message history, compacted to stay inside a budget. The other modes start a
fresh session whose system message states the run so far at their level of detail.
Everything here is deterministic: the same context builds the same request, so a recorded
replay and a resumed run send exactly what the original run sent. docs/pipelines.md
("Context fidelity and threads") describes each mode's content.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from .context import Context
from .graph import Edge, Graph, Node
from .supervision import INSTRUCTIONS
from .templates import as_text
from .threads import CHARS_PER_TOKEN

MODES = ("full", "truncate", "compact", "summary:low", "summary:medium", "summary:high")
DEFAULT_MODE = "compact"
DEFAULT_THREAD_BUDGET = 16_000  # tokens of history a `full` thread keeps
DEFAULT_THREAD_TURNS = 20  # turns a `full` thread keeps
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


_ENGINE_PREFIXES = ("graph.", "internal.", "parallel.", "human.gate.", "stack.", "tool.")


def engine_keys(graph: Graph) -> frozenset[str]:
    """The keys the engine and the built-in handlers set, but for those under
    _ENGINE_PREFIXES (not "key context values")."""
    return graph.derived("engine_keys", lambda g: frozenset(
        ["outcome", "current_node", "preferred_label", "last_stage", "last_response"]
        + [f"{node}.{tail}" for node in g.nodes for tail in ("output", "response", "answer")]))


def context_lines(context: Context, graph: Graph, skip: Collection[str], limit: int,
                  chars: int) -> list[str]:
    """`- key: value` for the last `limit` context values nodes set (not the engine's, not
    those in `skip`), values cut to `chars`."""
    lines = []
    engine = engine_keys(graph)
    for key, value in reversed(context.values.items()):
        if len(lines) == limit:
            break
        if key in engine or key in skip or value is None or key.startswith(_ENGINE_PREFIXES):
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
