"""Which context keys a pipeline's nodes set, and which its prompts and conditions read.

The lint rule `reference_resolves` warns about a `${key}` that no part of the pipeline is
known to set. Codergen keeps a node's whole answer in the context as `<node>.response` only
when something reads that key: checkpoints are rewritten after every node, and a context
holding every answer of a long run would make each rewrite cost more than the last.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import orjson

from .conditions import ConditionError, parse_condition
from .graph import Graph, Node
from .supervision import INSTRUCTIONS
from .templates import Reference, TemplateError, references

# Attributes whose text is a template (rendered when the node runs).
TEMPLATE_ATTRS = ("prompt", "label")
# Keys the engine sets after every node.
ENGINE_KEYS = frozenset({"outcome", "current_node", "preferred_label"})
# Keys each handler type sets; `{id}` is the node's id.
HANDLER_KEYS: dict[str, tuple[str, ...]] = {
    "codergen": ("last_stage", "last_response", "{id}.response"),
    "tool": ("tool.output", "tool.exit_code", "{id}.output"),
    "wait.human": ("human.gate.selected", "human.gate.label", "human.gate.answer",
                   "{id}.answer"),
    "parallel": ("parallel.results",),
    "parallel.fan_in": ("parallel.fan_in.best_id", "parallel.fan_in.best_outcome",
                        "parallel.fan_in.ranking", "parallel.fan_in.reason"),
    "stack.manager_loop": ("stack.child.status",
                           "stack.child.outcome", "stack.child.current_node",
                           "stack.child.completed_nodes", "stack.child.failure_reason",
                           "stack.manager.cycles", "stack.manager.message"),
}


def declared_keys(node: Node) -> list[str]:
    """A node's `context_keys` attribute: the keys its model may set (comma-separated)."""
    return [key.strip() for key in str(node.get("context_keys", "") or "").split(",")
            if key.strip()]


def node_keys(node: Node) -> set[str]:
    """The keys `node` is known to set: its handler's, declared ones, scripted updates."""
    keys = {key.format(id=node.id) for key in HANDLER_KEYS.get(node.type, ())}
    keys.update(declared_keys(node))
    scripted = node.get("scripted.context_updates")
    if isinstance(scripted, str):
        try:
            parsed = orjson.loads(scripted)
        except orjson.JSONDecodeError:
            parsed = None  # the scripted provider reports it when the node runs
        if isinstance(parsed, dict):
            keys.update(parsed)
    return keys


def known_keys(graph: Graph, inputs: Collection[str] = ()) -> set[str]:
    """Every key some part of the pipeline is known to set, with the run's input names."""
    keys = {*ENGINE_KEYS, *inputs, INSTRUCTIONS}  # a manager sets it in its child
    keys.update(f"graph.{key}" for key in graph.attrs)
    for node in graph.nodes.values():
        keys |= node_keys(node)
    return keys


def template_references(node: Node) -> Iterator[tuple[str, Reference]]:
    """(attribute, reference) for every `${…}` in the node's templates; raises
    TemplateError for one that does not parse."""
    for attr in TEMPLATE_ATTRS:
        value = node.attrs.get(attr)
        if isinstance(value, str):
            for reference in references(value):
                yield attr, reference


def referenced_keys(graph: Graph) -> frozenset[str]:
    """Every context key the pipeline's templates and edge conditions read."""
    return graph.derived("referenced_keys", _referenced)


def _referenced(graph: Graph) -> frozenset[str]:
    keys: set[str] = set()
    for node in graph.nodes.values():
        try:
            keys.update(ref.context_key for _, ref in template_references(node))
        except TemplateError:
            continue  # the reference_syntax lint rule reports it
    for edge in graph.edges:
        try:
            condition = parse_condition(edge.condition)
        except ConditionError:
            continue
        keys.update(clause.key.removeprefix("context.") for clause in condition.clauses)
    return frozenset(keys)
