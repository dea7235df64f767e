"""Parse a YAML recipe into the same `Graph` a DOT file gives.

The format (docs/pipelines.md describes it for users)::

    name: triage                 # required: the graph's name
    goal: Summarise the issue    # optional: graph attr `goal` ($goal)
    model_stylesheet: |          # optional: graph attr, attractor §8
      * { llm_model: gpt-4o-mini }
    attrs: {default_max_retries: 1}   # optional: any other graph attributes
    defaults: {timeout: 900s}         # optional: node attrs for every stage (stage wins)
    stages:                           # required, non-empty list
      - id: fetch                     # required, [A-Za-z_][A-Za-z0-9_]*, unique
        type: tool                    # handler type (else the shape's, else codergen)
        tool_command: ./fetch.sh      # any other key is a node attribute ...
      - id: summarise
        needs: [fetch]                # a stage id or a list of them
        prompt: "Summarise for $goal"
        params: {llm_model: gpt-4o}   # ... and so is every key under `params`

Without any `needs`, the stages run as a linear chain in list order:
start -> s1 -> s2 -> ... -> exit. If any stage has `needs`, the recipe is a DAG
(`Graph.dag`): an edge need -> stage for each need, `start` feeds every stage without needs,
and every stage that no stage needs feeds `exit`. `start` (shape Mdiamond) and `exit`
(shape Msquare) are synthesized, so no stage may use those ids. A stage without `shape`
gets the shape of its type (§2.8), so stylesheet shape selectors work as in DOT. `class` may
be a comma-separated string or a list. A top-level `goal` or `model_stylesheet` wins over
the same key in `attrs`. Typed attributes (timeout, max_retries, goal_gate, ...) are
normalised exactly as in DOT. Every error carries the YAML line:col.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.nodes import Node as YamlNode

from .attrs import coerce_attr
from .errors import PipelineSyntaxError
from .graph import SHAPE_TO_TYPE, AttrValue, Edge, Graph, Location, Node

_STAGE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP_KEYS = ("name", "goal", "model_stylesheet", "attrs", "defaults", "stages")
_TYPE_TO_SHAPE = {handler: shape for shape, handler in SHAPE_TO_TYPE.items()}
_RESERVED = ("start", "exit")

_Entry = tuple[ScalarNode, YamlNode]


def parse_recipe(source: str) -> Graph:
    """Parse a YAML recipe; raises PipelineSyntaxError with line:col."""
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise PipelineSyntaxError(f"invalid YAML: {what}", line, col) from None
    except yaml.YAMLError as exc:
        raise PipelineSyntaxError(f"invalid YAML: {exc}", 1, 1) from None
    except RecursionError:  # PyYAML composes nested collections by recursion, unbounded
        root = None
        deep = _too_deep(source)
    else:
        deep = None if root is None else _deepest(root)
    if deep is not None:
        raise PipelineSyntaxError(f"lists and maps nested more than {MAX_NESTING} deep",
                                  deep.line, deep.col)
    if root is None:
        raise PipelineSyntaxError("the recipe is empty: it needs `name` and `stages`", 1, 1)
    return _Builder(source).build(root)


# Far past any recipe a person writes; much deeper would exhaust the interpreter's stack.
MAX_NESTING = 100


def _too_deep(source: str) -> Location | None:
    """Where lists and maps first nest past MAX_NESTING, from PyYAML's event parser (which
    does not recurse)."""
    depth = 0
    for event in yaml.parse(source, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                return Location(event.start_mark.line + 1, event.start_mark.column + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _deepest(root: YamlNode) -> Location | None:
    """Where a composed document's lists and maps nest past MAX_NESTING, if they do
    (each node once: aliases share them)."""
    seen: set[int] = set()
    stack: list[tuple[YamlNode, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen or isinstance(node, ScalarNode):
            continue
        seen.add(id(node))
        if depth > MAX_NESTING:
            return _loc(node)
        children = ([part for pair in node.value for part in pair]
                    if isinstance(node, MappingNode) else node.value)
        stack.extend((child, depth + 1) for child in reversed(children))
    return None


def _loc(node: YamlNode) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)


def _error(message: str, node: YamlNode) -> PipelineSyntaxError:
    loc = _loc(node)
    return PipelineSyntaxError(message, loc.line, loc.col)


class _Builder:
    def __init__(self, source: str) -> None:
        self.graph = Graph(name="", source=source, source_format="recipe")
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, root: YamlNode) -> Graph:
        top = self._mapping(root, "the recipe")
        for key, (key_node, _value) in top.items():
            if key not in _TOP_KEYS:
                raise _error(f"unknown recipe key {key!r}; expected one of "
                             + ", ".join(_TOP_KEYS), key_node)
        if "name" not in top:
            raise _error("the recipe needs a `name`", root)
        if "stages" not in top:
            raise _error("the recipe needs `stages`", root)
        self.graph.name = self._string(top["name"][1], "name")
        self.graph.loc = _loc(root)
        if "attrs" in top:
            for key, value, loc in self._attrs(top["attrs"][1], "attrs"):
                self.graph.attrs[key] = value
                self.graph.attr_locs[key] = loc
        for key in ("goal", "model_stylesheet"):
            if key in top:
                self.graph.attrs[key] = self._string(top[key][1], key)
                self.graph.attr_locs[key] = _loc(top[key][0])
        defaults = self._attrs(top["defaults"][1], "defaults") if "defaults" in top else []
        self._stages(top["stages"], defaults)
        return self.graph

    def _stages(self, entry: _Entry, defaults: list[tuple[str, AttrValue, Location]]) -> None:
        key_node, seq = entry
        if not isinstance(seq, SequenceNode) or not seq.value:
            raise _error("`stages` must be a non-empty list of stages", seq)
        self.graph.nodes["start"] = Node("start", {"shape": "Mdiamond", "label": "Start"},
                                         loc=_loc(key_node))
        needs: dict[str, list[tuple[str, ScalarNode]]] = {}
        for item in seq.value:
            node, stage_needs = self._stage(item, defaults)
            needs[node.id] = stage_needs
        self.graph.nodes["exit"] = Node("exit", {"shape": "Msquare", "label": "Exit"},
                                        loc=_loc(key_node))
        stages = [n for n in self.graph.nodes.values() if n.id not in _RESERVED]
        if self.graph.dag:
            self._dag_edges(stages, needs)
        else:
            chain = ["start", *(n.id for n in stages), "exit"]
            for source, target in itertools.pairwise(chain):
                # Located at the stage the edge enters, or leaves for the exit.
                at = self.graph.nodes[source if target == "exit" else target].loc
                self.graph.edges.append(Edge(source, target, loc=at))

    def _stage(self, item: YamlNode,
               defaults: list[tuple[str, AttrValue, Location]],
               ) -> tuple[Node, list[tuple[str, ScalarNode]]]:
        fields = self._mapping(item, "a stage")
        if "id" not in fields:
            raise _error("a stage needs an `id`", item)
        id_node = fields["id"][1]
        stage_id = self._string(id_node, "id")
        if not _STAGE_ID.fullmatch(stage_id):
            raise _error(f"invalid stage id {stage_id!r}: ids match [A-Za-z_][A-Za-z0-9_]*",
                         id_node)
        if stage_id in _RESERVED:
            raise _error(f"stage id {stage_id!r} is reserved: the recipe adds its own start "
                         "and exit nodes", id_node)
        if stage_id in self.graph.nodes:
            raise _error(f"duplicate stage id {stage_id!r}", id_node)
        node = Node(stage_id, loc=_loc(item))
        self.graph.nodes[stage_id] = node
        if "needs" in fields:
            self.graph.dag = True  # one `needs` anywhere makes the whole recipe a DAG
        own: list[tuple[str, AttrValue, Location]] = []
        for key, (key_node, value_node) in fields.items():
            if key in ("id", "needs", "params"):
                continue
            own.append((key, self._attr(key, value_node), _loc(key_node)))
        if "params" in fields:
            for key, value, loc in self._attrs(fields["params"][1], "params"):
                if key in fields:
                    raise PipelineSyntaxError(f"{key!r} is given both in the stage and in "
                                              "its params", loc.line, loc.col)
                own.append((key, value, loc))
        for key, value, loc in [*defaults, *own]:
            node.attrs[key] = value
            node.attr_locs[key] = loc
        if "type" not in node.attrs and "shape" not in node.attrs:
            node.attrs["type"] = "codergen"  # a stage with neither says what it is
        shape = _TYPE_TO_SHAPE.get(str(node.attrs.get("type", "")))
        if shape:
            node.attrs.setdefault("shape", shape)
        node.classes = [c.strip() for c in str(node.attrs.get("class", "")).split(",")
                        if c.strip()]
        return node, self._needs(fields["needs"][1]) if "needs" in fields else []

    def _needs(self, value: YamlNode) -> list[tuple[str, ScalarNode]]:
        items = value.value if isinstance(value, SequenceNode) else [value]
        out: dict[str, tuple[str, ScalarNode]] = {}
        for item in items:
            if not isinstance(item, ScalarNode):
                raise _error("`needs` must be a stage id or a list of stage ids", item)
            need = self._string(item, "needs")
            out.setdefault(need, (need, item))
        return list(out.values())

    def _dag_edges(self, stages: list[Node],
                   needs: dict[str, list[tuple[str, ScalarNode]]]) -> None:
        for stage in stages:
            for need, item in needs[stage.id]:
                if need not in needs:
                    raise _error(f"stage {stage.id!r} needs {need!r}, which is not a stage",
                                 item)
        _check_acyclic(needs)
        needed = {need for stage_needs in needs.values() for need, _item in stage_needs}
        for stage in stages:
            if not needs[stage.id]:
                self.graph.edges.append(Edge("start", stage.id, loc=stage.loc))
            for need, item in needs[stage.id]:
                self.graph.edges.append(Edge(need, stage.id, loc=_loc(item)))
        for stage in stages:
            if stage.id not in needed:
                self.graph.edges.append(Edge(stage.id, "exit", loc=stage.loc))

    # --- YAML helpers -----------------------------------------------------------------

    def _mapping(self, node: YamlNode, what: str) -> dict[str, _Entry]:
        if not isinstance(node, MappingNode):
            raise _error(f"{what} must be a mapping", node)
        out: dict[str, _Entry] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise _error("keys must be plain strings", key_node)
            key = str(key_node.value)
            if key in out:
                raise _error(f"duplicate key {key!r}", key_node)
            out[key] = (key_node, value_node)
        return out

    def _attrs(self, node: YamlNode, what: str) -> list[tuple[str, AttrValue, Location]]:
        return [(key, self._attr(key, value), _loc(key_node))
                for key, (key_node, value) in self._mapping(node, f"`{what}`").items()]

    def _attr(self, key: str, node: YamlNode) -> AttrValue:
        if key == "class" and isinstance(node, SequenceNode):
            return ",".join(self._string(item, key) for item in node.value)
        if not isinstance(node, ScalarNode):
            raise _error(f"{key!r} must be a single value, not a list or mapping", node)
        value: Any = self.constructor.construct_object(node)
        if value is None:
            raise _error(f"{key!r} has no value", node)
        if not isinstance(value, str | int | float | bool):
            value = str(node.value)  # dates and the like: keep the text as written
        try:
            return coerce_attr(key, value)
        except ValueError as exc:
            raise _error(str(exc), node) from None

    def _string(self, node: YamlNode, key: str) -> str:
        if not isinstance(node, ScalarNode) or not str(node.value).strip():
            raise _error(f"{key!r} must be a non-empty string", node)
        return str(node.value)


def _check_acyclic(needs: dict[str, list[tuple[str, ScalarNode]]]) -> None:
    """Raise at the `needs` entry that closes the first cycle found, in stage order."""
    done: set[str] = set()
    for root in needs:
        if root in done:
            continue
        # Iterative depth-first search: a long chain of needs must not hit the recursion limit.
        path = [root]
        pending = [iter(needs[root])]
        while pending:
            step = next(pending[-1], None)
            if step is None:
                done.add(path.pop())
                pending.pop()
                continue
            need, item = step
            if need in path:
                cycle = [*path[path.index(need):], need]
                raise _error("needs form a cycle: " + " needs ".join(cycle), item)
            if need not in done:
                path.append(need)
                pending.append(iter(needs[need]))
