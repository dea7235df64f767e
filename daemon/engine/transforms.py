"""Transforms between parse and validate (attractor §9.1-9.3).

Built-ins run first, in this order: variable expansion (`$goal` and the `--set` variables in
node `prompt`, `label` and `tool_command`), then the model stylesheet. Registered custom
transforms run after them, in registration order. `apply_transforms` starts from a copy, so
the caller's graph is never modified, whatever a custom transform does (unless the caller
hands it over with `owned=True`, as the loader does with the graph it just parsed).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from .graph import Graph
from .stylesheet import StylesheetError, apply_stylesheet, parse_stylesheet

EXPANDED_ATTRS = ("prompt", "label", "tool_command")


@runtime_checkable
class Transform(Protocol):
    """Rewrites a graph; returns the new graph and leaves the input untouched."""

    def apply(self, graph: Graph) -> Graph:
        """The transformed graph."""
        ...


class VariableExpansion:
    """Replace `$goal` and every `$name` of `variables` in prompts, labels, tool commands.

    A variable named `goal` overrides the graph's goal, and becomes the graph's goal.
    """

    def __init__(self, variables: Mapping[str, str] | None = None) -> None:
        self.variables = dict(variables or {})

    def apply(self, graph: Graph) -> Graph:
        """The graph with variables expanded."""
        return self.apply_in_place(copy.deepcopy(graph))

    def apply_in_place(self, graph: Graph) -> Graph:
        """Expand variables in `graph` itself (for a caller that already copied it)."""
        values = {"goal": graph.goal, **self.variables}
        if "goal" in self.variables:
            graph.attrs["goal"] = self.variables["goal"]
        for node in graph.nodes.values():
            for key in EXPANDED_ATTRS:
                value = node.attrs.get(key)
                if isinstance(value, str):
                    node.attrs[key] = expand_variables(value, values)
        return graph


class StylesheetApplication:
    """Fill `llm_model`, `llm_provider`, `reasoning_effort` from `model_stylesheet` (§8)."""

    def apply(self, graph: Graph) -> Graph:
        """The graph with stylesheet properties resolved."""
        return self.apply_in_place(copy.deepcopy(graph))

    def apply_in_place(self, graph: Graph) -> Graph:
        """Resolve the stylesheet in `graph` itself (for a caller that already copied it)."""
        try:
            rules = parse_stylesheet(str(graph.attrs.get("model_stylesheet", "")))
        except StylesheetError:
            return graph  # the stylesheet_syntax lint rule reports it
        return apply_stylesheet(graph, rules)


# `$$` is matched first and kept as written: it is the escape of a literal `$`, which the
# run-time context references of prompts (templates.py) turn into one `$`.
_VARIABLE = re.compile(r"\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand_variables(text: str, values: Mapping[str, str]) -> str:
    """Replace each `$name` that is a whole identifier and a known variable, in one pass
    (so `$goalpost` is left alone, and a value containing `$name` is not expanded again);
    `$$name` stays as written."""
    if "$" not in text or not values:
        return text
    return _VARIABLE.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values
                         else m.group(0), text)


_registered: list[Transform] = []


def register_transform(transform: Transform) -> None:
    """Run `transform` after the built-ins on every load, after those registered before."""
    _registered.append(transform)


def unregister_transform(transform: Transform) -> None:
    """Stop running a registered transform (tests, plugins that unload)."""
    _registered.remove(transform)


def registered_transforms() -> tuple[Transform, ...]:
    """The custom transforms, in registration order."""
    return tuple(_registered)


def apply_transforms(graph: Graph, variables: Mapping[str, str] | None = None,
                     extra: Iterable[Transform] = (), *, owned: bool = False) -> Graph:
    """Built-ins, then registered transforms, then `extra`; returns the final graph.

    `owned`: the caller hands over a graph nobody else holds (one just parsed), so the
    built-ins may change it in place instead of a copy.
    """
    # At most one copy for the built-ins (not one per transform); custom transforms follow
    # the Transform contract and copy what they change.
    if not owned:
        graph = copy.deepcopy(graph)
    VariableExpansion(variables).apply_in_place(graph)
    StylesheetApplication().apply_in_place(graph)
    for transform in [*_registered, *extra]:
        graph = transform.apply(graph)
    return graph
