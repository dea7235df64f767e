"""MCP (Model Context Protocol): the revisions the daemon negotiates with an MCP client, and
MCP's own lifecycle methods. An MCP client says so in `initialize` (its `protocolVersion` is
an MCP revision date); everything else about that session is the daemon's usual core
(docs/protocol.md, "MCP clients")."""

from __future__ import annotations

import re

from .base import AnyParams, Result
from .registry import MethodSpec

# The handshake-era revisions served, newest first: a client asking for one gets it, a client
# asking for another MCP revision gets the newest (the lifecycle's rule).
MCP_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
_REVISION = re.compile(r"\d{4}-\d{2}-\d{2}")


def mcp_version(requested: str | None) -> str | None:
    """The MCP revision to answer an `initialize` asking for `requested`; None when the
    client is not an MCP client (no protocolVersion, or not an MCP revision date)."""
    if requested is None or not _REVISION.fullmatch(requested):
        return None
    return requested if requested in MCP_VERSIONS else MCP_VERSIONS[0]


class PingResult(Result):
    """MCP's `ping` answer: an empty object."""


METHODS = [
    MethodSpec("ping", AnyParams, PingResult,
               "MCP liveness check, answered with an empty object at any time, before "
               "`initialize` too."),
    MethodSpec("notifications/initialized", AnyParams, None,
               "MCP client notification that it has processed the initialize result."),
]
