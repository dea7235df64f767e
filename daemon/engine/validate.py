"""Lint rules of attractor §7.2, each a small function that yields Diagnostics.

Severities follow §7.2 with one deliberate exception: `reachability` is a WARNING. §7.2
calls it an ERROR while the §11.12 parity matrix says "orphan node -> warning"; an orphan
never runs, so it is a likely mistake but not a reason to refuse the whole pipeline.

Other readings: the start (exit) node is the node whose handler type is start (exit): an
explicit `type`, shape Mdiamond (Msquare), or, on a node without a shape, the id
`start`/`Start` (`exit`/`end`) (graph.is_start_node/is_exit_node, shared with the
executor). `goal_gate_has_retry` is satisfied by a graph-level retry target too, since §3.4
falls back to it. `prompt_on_llm_nodes` follows §7.2: a codergen node needs a `prompt` or a
`label` (the prompt falls back to the label, §2.6).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from ostinato.protocol.pipelines import Diagnostic, Severity

from .conditions import ConditionError, parse_condition
from .context_keys import TEMPLATE_ATTRS, known_keys, template_references
from .errors import ValidationError
from .graph import Edge, Graph, Location, Node
from .handlers.base import ACCEPTED_YES_NO, QUESTION_TYPES, YES_NO_TYPES, yes_or_no
from .handlers.human import attr_text, choice_options, match_option, question_type
from .retry import PRESETS
from .stylesheet import StylesheetError, parse_stylesheet
from .templates import TemplateError, references
from .tools.agent_spec import (
    attached_servers,
    declared_names,
    declared_servers,
    is_agent,
    loop_bounds,
    names,
    tool_errors,
)
from .tools.spec import tools_from_attrs

DEFAULT_KNOWN_TYPES: frozenset[str] = frozenset({
    "start", "exit", "codergen", "conditional", "wait.human", "parallel", "parallel.fan_in",
    "tool", "stack.manager_loop",
})
FIDELITY_MODES = frozenset({"full", "truncate", "compact", "summary:low", "summary:medium",
                            "summary:high"})
RETRY_KEYS = ("retry_target", "fallback_retry_target")


@dataclass(frozen=True, slots=True)
class LintContext:
    """What rules may need beyond the graph."""

    known_types: Collection[str] = DEFAULT_KNOWN_TYPES
    inputs: Collection[str] = ()  # the run's input names, when known: context keys too


LintRule = Callable[[Graph, LintContext], Iterable[Diagnostic]]

BUILT_IN_RULES: list[LintRule] = []
_custom_rules: list[LintRule] = []


def register_rule(rule: LintRule) -> None:
    """Run `rule` after the built-in rules in every validation."""
    _custom_rules.append(rule)


def unregister_rule(rule: LintRule) -> None:
    """Stop running a registered rule."""
    _custom_rules.remove(rule)


def registered_rules() -> tuple[LintRule, ...]:
    """The rules registered with `register_rule`, in order."""
    return tuple(_custom_rules)


def validate(graph: Graph, known_types: Collection[str] = DEFAULT_KNOWN_TYPES,
             extra_rules: Iterable[LintRule] = (),
             inputs: Collection[str] = ()) -> list[Diagnostic]:
    """Every diagnostic of the built-in, registered and `extra_rules` rules, in rule order."""
    ctx = LintContext(known_types, inputs)
    return [d for rule in (*BUILT_IN_RULES, *_custom_rules, *extra_rules)
            for d in rule(graph, ctx)]


def validate_or_raise(graph: Graph, known_types: Collection[str] = DEFAULT_KNOWN_TYPES,
                      extra_rules: Iterable[LintRule] = ()) -> list[Diagnostic]:
    """`validate`, raising ValidationError if any diagnostic is an error."""
    diagnostics = validate(graph, known_types, extra_rules)
    if any(d.severity == "error" for d in diagnostics):
        raise ValidationError(diagnostics)
    return diagnostics


def diagnostic(rule: str, severity: Severity, message: str, loc: Location | None, *,
               node: str | None = None, edge: Edge | None = None,
               fix: str | None = None) -> Diagnostic:
    """A Diagnostic located at `loc` (rules and custom rules build theirs with this)."""
    return Diagnostic(rule=rule, severity=severity, message=message, node=node,
                      edge=(edge.source, edge.target) if edge else None,
                      line=loc.line if loc else None, col=loc.col if loc else None, fix=fix)


def _rule(fn: LintRule) -> LintRule:
    BUILT_IN_RULES.append(fn)
    return fn


def _attr_loc(node: Node, key: str) -> Location | None:
    return node.attr_locs.get(key, node.loc)


@_rule
def start_node(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Exactly one start node."""
    yield from _exactly_one(graph, graph.start_nodes(), "start_node", "start",
                            "add `start [shape=Mdiamond]`")


@_rule
def terminal_node(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Exactly one exit node."""
    yield from _exactly_one(graph, graph.exit_nodes(), "terminal_node", "exit",
                            "add `exit [shape=Msquare]`")


def _exactly_one(graph: Graph, found: list[Node], rule: str, what: str,
                 fix: str) -> Iterator[Diagnostic]:
    if not found:
        yield diagnostic(rule, "error", f"the pipeline has no {what} node", graph.loc, fix=fix)
    ids = ", ".join(n.id for n in found)
    for extra in found[1:]:
        yield diagnostic(rule, "error", f"more than one {what} node ({ids})", extra.loc,
                         node=extra.id, fix=f"keep exactly one {what} node")


@_rule
def reachability(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Every node reachable from the start node (a WARNING, see the module docstring)."""
    starts = graph.start_nodes()
    if not starts:
        return  # start_node reports it; everything would look orphaned
    seen = {n.id for n in starts}
    queue = deque(seen)
    while queue:
        for edge in graph.outgoing(queue.popleft()):
            if edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    for node in graph.nodes.values():
        if node.id not in seen:
            yield diagnostic("reachability", "warning",
                             f"node {node.id!r} is not reachable from the start node",
                             node.loc, node=node.id, fix="add an edge to it or remove it")


@_rule
def edge_target_exists(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Both ends of every edge are nodes."""
    for edge in graph.edges:
        for end, node_id in (("source", edge.source), ("target", edge.target)):
            if node_id not in graph.nodes:
                yield diagnostic("edge_target_exists", "error",
                                 f"edge {end} {node_id!r} is not a node", edge.loc, edge=edge)


@_rule
def start_no_incoming(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """No edge enters a start node."""
    for node in graph.start_nodes():
        for edge in graph.incoming(node.id):
            yield diagnostic("start_no_incoming", "error",
                             f"start node {node.id!r} has an incoming edge from {edge.source!r}",
                             edge.loc, node=node.id, edge=edge)


@_rule
def exit_no_outgoing(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """No edge leaves an exit node."""
    for node in graph.exit_nodes():
        for edge in graph.outgoing(node.id):
            yield diagnostic("exit_no_outgoing", "error",
                             f"exit node {node.id!r} has an outgoing edge to {edge.target!r}",
                             edge.loc, node=node.id, edge=edge)


@_rule
def condition_syntax(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Every edge condition parses (§10)."""
    for edge in graph.edges:
        try:
            parse_condition(edge.condition)
        except ConditionError as exc:
            yield diagnostic("condition_syntax", "error",
                             f"condition {edge.condition!r}: {exc}",
                             edge.attr_locs.get("condition", edge.loc), edge=edge)


@_rule
def stylesheet_syntax(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """The model_stylesheet parses (§8)."""
    try:
        parse_stylesheet(str(graph.attrs.get("model_stylesheet", "")))
    except StylesheetError as exc:
        yield diagnostic("stylesheet_syntax", "error", f"model_stylesheet: {exc}",
                         graph.attr_locs.get("model_stylesheet", graph.loc))


@_rule
def type_known(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Every node's handler type is registered."""
    for node in graph.nodes.values():
        if node.type not in ctx.known_types:
            yield diagnostic("type_known", "warning",
                             f"node {node.id!r} has unknown handler type {node.type!r}",
                             _attr_loc(node, "type"), node=node.id,
                             fix="use one of " + ", ".join(sorted(ctx.known_types)))


@_rule
def fidelity_valid(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Fidelity modes on the graph, nodes and edges are known (§5.4)."""
    fix = "use one of " + ", ".join(sorted(FIDELITY_MODES))
    value = graph.attrs.get("default_fidelity")
    if value and value not in FIDELITY_MODES:
        yield diagnostic("fidelity_valid", "warning", f"unknown default_fidelity {value!r}",
                         graph.attr_locs.get("default_fidelity", graph.loc), fix=fix)
    for node in graph.nodes.values():
        value = node.attrs.get("fidelity")
        if value and value not in FIDELITY_MODES:
            yield diagnostic("fidelity_valid", "warning",
                             f"node {node.id!r} has unknown fidelity {value!r}",
                             _attr_loc(node, "fidelity"), node=node.id, fix=fix)
    for edge in graph.edges:
        value = edge.attrs.get("fidelity")
        if value and value not in FIDELITY_MODES:
            yield diagnostic("fidelity_valid", "warning",
                             f"edge {edge.source} -> {edge.target} has unknown fidelity "
                             f"{value!r}", edge.attr_locs.get("fidelity", edge.loc),
                             edge=edge, fix=fix)


@_rule
def retry_target_exists(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Retry targets on the graph and on nodes name existing nodes."""
    for key in RETRY_KEYS:
        target = graph.attrs.get(key)
        if target and str(target) not in graph.nodes:
            yield diagnostic("retry_target_exists", "warning",
                             f"graph {key} {target!r} is not a node",
                             graph.attr_locs.get(key, graph.loc))
    for node in graph.nodes.values():
        for key in RETRY_KEYS:
            target = node.attrs.get(key)
            if target and str(target) not in graph.nodes:
                yield diagnostic("retry_target_exists", "warning",
                                 f"node {node.id!r} has {key} {target!r}, which is not a node",
                                 _attr_loc(node, key), node=node.id)


@_rule
def goal_gate_has_retry(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Goal gates have somewhere to retry from (node or graph retry target)."""
    graph_has_target = any(graph.attrs.get(key) for key in RETRY_KEYS)
    for node in graph.nodes.values():
        if node.attrs.get("goal_gate") is True and not graph_has_target \
                and not any(node.attrs.get(key) for key in RETRY_KEYS):
            yield diagnostic("goal_gate_has_retry", "warning",
                             f"goal gate {node.id!r} has no retry_target or "
                             "fallback_retry_target", _attr_loc(node, "goal_gate"),
                             node=node.id, fix="set retry_target on the node or the graph")


@_rule
def prompt_on_llm_nodes(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """LLM (codergen) nodes have a prompt or a label."""
    for node in graph.nodes.values():
        if node.type == "codergen" and not node.attrs.get("prompt") \
                and not node.attrs.get("label"):
            yield diagnostic("prompt_on_llm_nodes", "warning",
                             f"LLM node {node.id!r} has no prompt or label", node.loc,
                             node=node.id, fix="add prompt=\"...\"")


# Ostinato's own rules, beyond attractor §7.2.
RESERVED_NODE_IDS = frozenset({"config", "artifacts"})  # folders of the run directory


@_rule
def node_id_reserved(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """No node id names a folder the run directory already uses."""
    for node in graph.nodes.values():
        if node.id in RESERVED_NODE_IDS:
            yield diagnostic("node_id_reserved", "error",
                             f"node id {node.id!r} is reserved: the run directory has a "
                             f"{node.id}/ folder of its own", node.loc, node=node.id,
                             fix="rename the node")


# A node id names its stage directory, and file systems refuse names past 255 bytes: the
# margin leaves room for what the run directory may add to a name.
MAX_NODE_ID_BYTES = 200


@_rule
def node_id_length(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """No node id is too long to name its stage directory."""
    for node in graph.nodes.values():
        size = len(node.id.encode("utf-8"))
        if size > MAX_NODE_ID_BYTES:
            yield diagnostic("node_id_length", "error",
                             f"node id {node.id[:40]!r}... is {size} bytes long: a node id "
                             f"names a directory and may have at most {MAX_NODE_ID_BYTES}",
                             node.loc, node=node.id, fix="shorten the node id")


@_rule
def retry_policy_known(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """`retry_policy` names one of the §3.6 presets."""
    for node in graph.nodes.values():
        value = node.attrs.get("retry_policy")
        if value is not None and str(value) not in PRESETS:
            yield diagnostic("retry_policy_known", "warning",
                             f"node {node.id!r} has unknown retry_policy {value!r}; "
                             "standard is used", _attr_loc(node, "retry_policy"),
                             node=node.id, fix="use one of " + ", ".join(sorted(PRESETS)))


@_rule
def human_type_known(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """`human.type` names a question type of §6.2."""
    for node in graph.nodes.values():
        value = node.attrs.get("human.type")
        if value is not None and str(value).strip().lower() not in QUESTION_TYPES:
            yield diagnostic("human_type_known", "warning",
                             f"node {node.id!r} has unknown human.type {value!r}; "
                             "multiple_choice is used", _attr_loc(node, "human.type"),
                             node=node.id, fix="use one of " + ", ".join(QUESTION_TYPES))


@_rule
def human_default_choice_valid(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """A human gate's `human.default_choice` is an answer its question takes."""
    for node in graph.nodes.values():
        value = node.attrs.get("human.default_choice")
        if value is None or node.type != "wait.human":
            continue
        kind, text = question_type(node), attr_text(value)
        options = choice_options(graph, node) if kind == "multiple_choice" else []
        if kind in YES_NO_TYPES and yes_or_no(text) is None:
            problem, fix = (f"is not yes or no, so a timeout fails the {kind} gate",
                            f"use one of {ACCEPTED_YES_NO}")
        elif options and match_option(text, options) is None:
            problem, fix = ("matches no option, so a timeout takes the first one",
                            "use an option's key, label or target")
        else:
            continue
        yield diagnostic("human_default_choice_valid", "warning",
                         f"node {node.id!r} has human.default_choice {value!r}, which "
                         f"{problem}", _attr_loc(node, "human.default_choice"),
                         node=node.id, fix=fix)


@_rule
def reference_syntax(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Every `${…}` context reference in a prompt or label parses."""
    for node in graph.nodes.values():
        for attr in TEMPLATE_ATTRS:
            value = node.attrs.get(attr)
            if not isinstance(value, str):
                continue
            try:
                references(value)
            except TemplateError as exc:
                yield diagnostic("reference_syntax", "error",
                                 f"node {node.id!r} {attr}: {exc}", _attr_loc(node, attr),
                                 node=node.id)


@_rule
def reference_resolves(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Every `${key}` without a default names a key some part of the pipeline sets."""
    known = known_keys(graph, ctx.inputs)
    for node in graph.nodes.values():
        try:
            found = list(template_references(node))
        except TemplateError:
            continue  # reference_syntax reports it
        for attr, reference in found:
            key = reference.context_key
            if reference.default is not None or key in known \
                    or key.startswith("internal."):
                continue
            if key == "goal":
                fix = "write $goal (the graph's goal) or ${graph.goal}"
            else:
                fix = (f"give a default, ${{{reference.key}:-…}}, if it may be missing, or "
                       "name the key in the `context_keys` of the node whose model sets it")
            yield diagnostic(
                "reference_resolves", "warning",
                f"node {node.id!r} {attr} refers to {reference.text}, which no node of "
                f"this pipeline is known to set (an input, a tool's status.json or a "
                f"model's verdict may set it at run time; if none does, the node fails)",
                _attr_loc(node, attr), node=node.id, fix=fix)


@_rule
def manager_child_pipeline(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """A manager loop (§4.11) has a child pipeline: `stack.child_dotfile` on it or the graph."""
    if graph.attrs.get("stack.child_dotfile"):
        return
    for node in graph.nodes.values():
        if node.type == "stack.manager_loop" and not node.attrs.get("stack.child_dotfile"):
            yield diagnostic("manager_child_pipeline", "warning",
                             f"manager node {node.id!r} has no child pipeline to supervise, "
                             "so it fails when it runs", node.loc, node=node.id,
                             fix="set stack.child_dotfile (a path) on the node or the graph")


@_rule
def manager_stop_condition_syntax(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """A manager's `manager.stop_condition` parses (§10), as edge conditions do."""
    for node in graph.nodes.values():
        text = node.attrs.get("manager.stop_condition")
        if node.type != "stack.manager_loop" or text is None:
            continue
        try:
            parse_condition(str(text))
        except ConditionError as exc:
            yield diagnostic("manager_stop_condition_syntax", "error",
                             f"node {node.id!r} manager.stop_condition {text!r}: {exc}",
                             _attr_loc(node, "manager.stop_condition"), node=node.id)


@_rule
def agent_tools_valid(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    """Command tools are declared validly (tool.<name>.*), and an agent node's tools, MCP
    servers and loop bounds exist and make sense. A name declared nowhere in the pipeline is
    a warning: the run's settings may declare it (settings.agent)."""
    try:
        tools_from_attrs(graph.attrs)
    except ValueError as exc:
        yield diagnostic("agent_tools_valid", "error", f"graph: {exc}", graph.loc,
                         fix="see docs/pipelines.md, Agent nodes")
    for node in graph.nodes.values():
        if not is_agent(graph, node):
            continue
        try:
            tools_from_attrs(node.attrs)
            loop_bounds(node)
            tool_errors(node)
        except ValueError as exc:
            yield diagnostic("agent_tools_valid", "error", f"node {node.id!r}: {exc}",
                             node.loc, node=node.id, fix="see docs/pipelines.md, Agent nodes")
        declared = declared_names("tool", graph.attrs) | declared_names("tool", node.attrs)
        missing = [name for name in names(node.get("tools")) if name not in declared]
        missing += [f"MCP server {name}" for name in attached_servers(graph, node)
                    if name not in declared_servers(graph, node)]
        if missing:
            yield diagnostic(
                "agent_tools_valid", "warning",
                f"node {node.id!r} names {', '.join(missing)}, which the pipeline does not "
                "declare: unless the run's settings.agent does, the node fails",
                _attr_loc(node, "tools"), node=node.id,
                fix="declare tool.<name>.argv (or mcp.<name>.command) on the graph or node")
