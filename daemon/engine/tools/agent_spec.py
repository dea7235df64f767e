"""What an agent node offers its model and how far its loop may go (decision 0006 §1-2).

A codergen node is an agent node when it names tools (`tools="a,b"`) or MCP servers
(`mcp="files"`), or the graph's `mcp` attaches servers to every codergen node. A tool's
declaration is looked up in the run's settings (`agent.tools`), then the node's own
`tool.<name>.*` attributes, then the graph's; MCP servers likewise (`agent.mcp_servers`,
`mcp.<name>.*`). The loop's bounds come from the node (`max_turns`, `max_tool_calls`,
`tool_concurrency`, `tool_errors`), else the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..graph import Graph, Node
from .fields import grouped
from .mcp_spec import McpServerSpec, servers_from_attrs, servers_from_settings
from .spec import CommandTool, tools_from_attrs, tools_from_settings

ToolErrors = Literal["model", "fail"]
# MCP tools are offered as `<server>__<tool>`: OpenAI function names allow no dot or slash.
SERVER_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent node's tools, servers, bounds and hooks."""

    tools: dict[str, CommandTool]
    servers: dict[str, McpServerSpec]
    max_turns: int
    max_tool_calls: int
    tool_concurrency: int
    tool_errors: ToolErrors
    pre_hook: str
    post_hook: str


def names(value: Any) -> tuple[str, ...]:
    """A comma-separated attribute (or a list) as names, in order, without repeats."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def is_agent(graph: Graph, node: Node) -> bool:
    """True when the codergen node offers its model tools or MCP servers (its own, or the
    servers the graph's `mcp` attaches to every codergen node)."""
    return graph.per_node("is_agent", node, _offers_tools)  # asked at every codergen call


def _offers_tools(graph: Graph, node: Node) -> bool:
    return node.type == "codergen" and bool(
        names(node.get("tools")) or names(node.get("mcp")) or names(graph.attrs.get("mcp")))


def has_agents(graph: Graph) -> bool:
    """True when some node of the graph is an agent node."""
    return graph.derived("has_agents", lambda g: any(is_agent(g, n) for n in g.nodes.values()))


def agent_spec(graph: Graph, node: Node, settings: Any = None) -> AgentSpec:
    """The node's agent spec; ValueError names a declaration that is missing or invalid."""
    agent = getattr(settings, "agent", None)
    declared = declared_tools(graph, node, agent)
    wanted = names(node.get("tools"))
    missing = [name for name in wanted if name not in declared]
    if missing:
        known = ", ".join(sorted(declared)) or "none"
        raise ValueError(f"node {node.id}: tools {', '.join(missing)} are not declared "
                         f"(declare tool.<name>.argv on the graph or node, or in "
                         f"settings.agent.tools); declared: {known}")
    servers = attached_servers(graph, node)
    known = _declared_server_specs(graph, node, agent)
    unknown = [name for name in servers if name not in known]
    if unknown:
        raise ValueError(f"node {node.id}: MCP servers {', '.join(unknown)} are not declared "
                         "(declare mcp.<name>.command or mcp.<name>.url, or "
                         "settings.agent.mcp_servers)")
    bounds = loop_bounds(node, agent)
    return AgentSpec(tools={name: declared[name] for name in wanted},
                     servers={name: known[name] for name in servers},
                     max_turns=bounds["max_turns"], max_tool_calls=bounds["max_tool_calls"],
                     tool_concurrency=bounds["tool_concurrency"],
                     tool_errors=tool_errors(node), pre_hook=_hook(graph, node, "pre"),
                     post_hook=_hook(graph, node, "post"))


def attached_servers(graph: Graph, node: Node) -> tuple[str, ...]:
    """The MCP servers the node attaches: the graph's `mcp`, then its own."""
    return tuple(dict.fromkeys((*names(graph.attrs.get("mcp")), *names(node.get("mcp")))))


def loop_bounds(node: Node, agent: Any = None) -> dict[str, int]:
    """max_turns, max_tool_calls and tool_concurrency: the node's, else the settings'."""
    return {"max_turns": _bound(node, "max_turns", agent, 10),
            "max_tool_calls": _bound(node, "max_tool_calls", agent, 50),
            "tool_concurrency": _bound(node, "tool_concurrency", agent, 4)}


def tool_errors(node: Node) -> ToolErrors:
    """What a tool error does: go back to the model (`model`), or fail the node (`fail`)."""
    value = str(node.get("tool_errors", "model") or "model")
    if value not in ("model", "fail"):
        raise ValueError(f"tool_errors must be model or fail, not {value!r}")
    return value  # type: ignore[return-value]


def declared_servers(graph: Graph, node: Node, agent: Any = None) -> set[str]:
    """The names of the MCP servers the node could attach."""
    return set(getattr(agent, "mcp_servers", {}) or {}) | declared_names("mcp", graph.attrs) | \
        declared_names("mcp", node.attrs)


def declared_tools(graph: Graph, node: Node, agent: Any = None) -> dict[str, CommandTool]:
    """Every tool the node could name: settings over the node's over the graph's; ValueError
    for a declaration that is not valid."""
    cached = graph.per_node("agent_tools", node, lambda g, n: {
        **tools_from_attrs(g.attrs), **tools_from_attrs(n.attrs)})
    from_settings = getattr(agent, "tools", None) or {}
    return {**cached, **tools_from_settings(from_settings)} if from_settings else cached


def _declared_server_specs(graph: Graph, node: Node, agent: Any) -> dict[str, McpServerSpec]:
    """Every MCP server the node could attach: settings over the node's over the graph's."""
    cached = graph.per_node("agent_servers", node, lambda g, n: {
        **servers_from_attrs(g.attrs), **servers_from_attrs(n.attrs)})
    from_settings = getattr(agent, "mcp_servers", None) or {}
    return {**cached, **servers_from_settings(from_settings)} if from_settings else cached


def declared_names(family: str, attrs: Mapping[str, Any]) -> set[str]:
    """The names `<family>.<name>.<field>` attributes declare (tool, mcp)."""
    try:
        return set(grouped(attrs, family))
    except ValueError:  # a key without a field: the declaration's own check says so
        return set()


def _bound(node: Node, name: str, agent: Any, default: int) -> int:
    value = node.get(name)
    if value is None:
        return int(getattr(agent, name, default))
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive whole number, "
                         f"not {value!r}")
    return number


def _hook(graph: Graph, node: Node, which: str) -> str:
    key = f"tool_hooks.{which}"
    return str(node.get(key) or graph.attrs.get(key) or "")
