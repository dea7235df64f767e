"""The MCP face of the daemon (decision 0005): MCP's tools, resources and prompts served
by the same core, connections and handlers as JSON-RPC clients (docs/agents.md)."""

from __future__ import annotations

from ...services.base import HandlerTable


def tables() -> list[HandlerTable]:
    """The handler tables of MCP's methods (imported here: the connection imports `era`)."""
    from . import listing, prompts, resources, tools

    return [tools.table, resources.table, listing.table, prompts.table]
