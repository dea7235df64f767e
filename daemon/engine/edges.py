"""Edge selection (attractor §3.3): condition, preferred label, suggested ids, weight, lexical."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .conditions import Condition, parse_condition
from .graph import Edge, Graph, Node
from .outcome import Outcome

_ACCELERATOR = re.compile(r"^\s*(?:\[\w\]\s*|\w\)\s*|\w\s+-\s+)")


def normalize_label(label: str) -> str:
    """Lowercase, trimmed, accelerator prefix (`[Y] `, `Y) `, `Y - `) removed."""
    return _ACCELERATOR.sub("", label).strip().lower()


@lru_cache(maxsize=4096)
def _condition(text: str) -> Condition:
    return parse_condition(text)


def condition_holds(edge: Edge, outcome: Outcome, context: Mapping[str, Any]) -> bool:
    """Whether an edge's condition is true (an empty one is)."""
    if not edge.condition:
        return True
    return _condition(edge.condition).evaluate(outcome.status.value, outcome.preferred_label,
                                               context)


def _best(edges: list[Edge]) -> Edge:
    return sorted(edges, key=lambda e: (-e.weight, e.target))[0]


def select_edge(graph: Graph, node: Node, outcome: Outcome,
                context: Mapping[str, Any]) -> Edge | None:
    """The edge to follow after `node`, or None."""
    edges = graph.outgoing(node.id)
    if not edges:
        return None
    matched = [e for e in edges if e.condition and condition_holds(e, outcome, context)]
    if matched:
        return _best(matched)
    unconditional = [e for e in edges if not e.condition]
    if outcome.preferred_label:
        wanted = normalize_label(outcome.preferred_label)
        for edge in unconditional:
            if normalize_label(edge.label) == wanted:
                return edge
    for suggested in outcome.suggested_next_ids:
        for edge in unconditional:
            if edge.target == suggested:
                return edge
    return _best(unconditional) if unconditional else None
