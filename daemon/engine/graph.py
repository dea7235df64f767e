"""The one in-memory model of a pipeline, whichever format it was written in.

DOT files and YAML recipes both load into a `Graph`: nodes and edges with typed attribute
values and the source location of everything, so that diagnostics can point at `line:col`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson

SourceFormat = Literal["dot", "recipe"]
T = TypeVar("T")

# Attractor §2.8: the handler type a shape stands for, unless a node says `type=`.
SHAPE_TO_TYPE: dict[str, str] = {
    "Mdiamond": "start",
    "Msquare": "exit",
    "box": "codergen",
    "hexagon": "wait.human",
    "diamond": "conditional",
    "component": "parallel",
    "tripleoctagon": "parallel.fan_in",
    "parallelogram": "tool",
    "house": "stack.manager_loop",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: 1-based line and column."""

    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Duration:
    """A typed duration value (`900s`, `250ms`, `2h`), kept in milliseconds."""

    ms: int

    @property
    def seconds(self) -> float:
        """The duration in seconds."""
        return self.ms / 1000

    def __str__(self) -> str:
        return f"{self.ms}ms"


AttrValue = str | int | float | bool | Duration


@dataclass
class Node:
    """A node: its id, attributes (explicit, defaults and stylesheet resolved) and classes."""

    id: str
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    loc: Location | None = None
    # Where each attribute was written, for diagnostics about one attribute.
    attr_locs: dict[str, Location] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """An attribute value, or `default`."""
        return self.attrs.get(key, default)

    @property
    def shape(self) -> str:
        """The Graphviz shape (default `box`)."""
        return str(self.attrs.get("shape", "box"))

    @property
    def type(self) -> str:
        """The handler type: explicit `type`, else the shape's (§2.8), else codergen."""
        explicit = self.attrs.get("type")
        if explicit:
            return str(explicit)
        if "shape" not in self.attrs:  # §3.2/§7.2: the ids start/exit name those nodes too
            if self.id in START_IDS:
                return "start"
            if self.id in EXIT_IDS:
                return "exit"
        return SHAPE_TO_TYPE.get(self.shape, "codergen")

    @property
    def label(self) -> str:
        """Display name (default: the id)."""
        return str(self.attrs.get("label") or self.id)

    @property
    def prompt(self) -> str:
        """The prompt, falling back to the label (§2.6)."""
        return str(self.attrs.get("prompt") or self.label)


@dataclass
class Edge:
    """A directed edge with its attributes."""

    source: str
    target: str
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    loc: Location | None = None
    # Where each attribute was written, for diagnostics about one attribute (a condition).
    attr_locs: dict[str, Location] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Caption and routing key."""
        return str(self.attrs.get("label", ""))

    @property
    def condition(self) -> str:
        """Guard expression (§10); empty means unconditional."""
        return str(self.attrs.get("condition", "")).strip()

    @property
    def weight(self) -> int:
        """Priority among eligible edges (higher wins)."""
        value = self.attrs.get("weight", 0)
        return int(value) if isinstance(value, int | float) else 0


@dataclass
class Graph:
    """A whole pipeline."""

    name: str
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    source: str = ""
    source_format: SourceFormat = "dot"
    # Recipe DAGs run every stage whose needs are met, concurrently (§ docs/pipelines.md);
    # DOT graphs and linear recipes are traversed one node at a time (attractor §3).
    dag: bool = False
    loc: Location | None = None
    _index_key: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    _index: tuple[dict[str, list[Edge]], dict[str, list[Edge]]] = field(
        default_factory=lambda: ({}, {}), repr=False, compare=False)
    # Where each graph attribute was written (model_stylesheet, retry_target, ...).
    attr_locs: dict[str, Location] = field(default_factory=dict)
    _derived_key: tuple[int, int, int, int] | None = field(default=None, repr=False,
                                                           compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def goal(self) -> str:
        """The graph's goal (`$goal`)."""
        return str(self.attrs.get("goal", ""))

    def start_nodes(self) -> list[Node]:
        """Every node that counts as a start node (a valid graph has exactly one)."""
        return [node for node in self.nodes.values() if is_start_node(node)]

    def exit_nodes(self) -> list[Node]:
        """Every node that counts as an exit node (a valid graph has exactly one)."""
        return [node for node in self.nodes.values() if is_exit_node(node)]

    def outgoing(self, node_id: str) -> list[Edge]:
        """Edges leaving `node_id`, in declaration order."""
        return self._adjacency()[0].get(node_id, [])

    def incoming(self, node_id: str) -> list[Edge]:
        """Edges entering `node_id`, in declaration order."""
        return self._adjacency()[1].get(node_id, [])

    def _adjacency(self) -> tuple[dict[str, list[Edge]], dict[str, list[Edge]]]:
        # Edge lookups run per node executed and per lint step: index the edges once, again
        # only when the list was replaced or grew or shrank (parsers and transforms).
        key = (id(self.edges), len(self.edges))
        if self._index_key != key:
            out: dict[str, list[Edge]] = {}
            into: dict[str, list[Edge]] = {}
            for edge in self.edges:
                out.setdefault(edge.source, []).append(edge)
                into.setdefault(edge.target, []).append(edge)
            self._index = (out, into)
            self._index_key = key
        return self._index

    def derived(self, name: str, compute: Callable[[Graph], T]) -> T:
        """A value computed from the graph once and kept with it (a loaded graph is shared
        by every run of it and never changed); computed again if nodes or edges changed."""
        key = (id(self.nodes), len(self.nodes), id(self.edges), len(self.edges))
        if self._derived_key != key:
            self._derived = {}
            self._derived_key = key
        if name not in self._derived:
            self._derived[name] = compute(self)
        return self._derived[name]  # type: ignore[no-any-return]

    def per_node(self, name: str, node: Node, compute: Callable[[Graph, Node], T]) -> T:
        """A value computed once per node and kept with the graph (see `derived`)."""
        kept: dict[str, T] = self.derived(name, lambda _: {})
        if node.id not in kept:
            kept[node.id] = compute(self, node)
        return kept[node.id]

    def to_dict(self) -> dict[str, Any]:
        """A canonical, JSON-ready form: the basis of the pipeline hash and of plan.json."""
        return {
            "name": self.name,
            "format": self.source_format,
            "dag": self.dag,
            "attrs": _plain(self.attrs),
            "nodes": [{"id": n.id, "type": n.type, "classes": n.classes,
                       "attrs": _plain(n.attrs)} for n in self.nodes.values()],
            "edges": [{"source": e.source, "target": e.target, "attrs": _plain(e.attrs)}
                      for e in self.edges],
        }

    def digest(self) -> str:
        """sha256 of the canonical form: the pipeline's identity (kept with the graph: each
        run of a large pipeline would otherwise walk all of it again)."""
        return self.derived("digest", _digest)


def _digest(graph: Graph) -> str:
    canonical = orjson.dumps(graph.to_dict(), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


# Attractor §7.2: start and exit are recognised by shape, handler type, or these ids.
START_IDS = frozenset({"start", "Start"})
EXIT_IDS = frozenset({"exit", "end"})


def is_start_node(node: Node) -> bool:
    """Whether `node` is a start node: type start, which shape Mdiamond gives, and so does
    the id start/Start on a node without a shape (see Node.type)."""
    return node.type == "start"


def is_exit_node(node: Node) -> bool:
    """Whether `node` is an exit node: type exit, which shape Msquare gives, and so does the
    id exit/end on a node without a shape (see Node.type)."""
    return node.type == "exit"


def _plain(attrs: dict[str, AttrValue]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Duration) else v) for k, v in sorted(attrs.items())}
