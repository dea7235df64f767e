"""MCP's two eras on one connection: the handshake revisions (an `initialize` opens a
session) and the stateless one, 2026-07-28, where every request carries its revision and the
client's capabilities in `_meta` and every result says `resultType` (decision 0005)."""

from __future__ import annotations

from typing import Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.mcp import (
    CAPABILITIES_KEY,
    MODERN_VERSIONS,
    SUPPORTED_VERSIONS,
    UNSUPPORTED_PROTOCOL_VERSION,
    VERSION_KEY,
)

# What the stateless revision adds to a result, and to a list's (a hint for clients' caches:
# the lists change with the daemon's version only, so an hour; `private`, as runs are).
COMPLETE = {"resultType": "complete"}
LISTED = {"resultType": "complete", "ttlMs": 3_600_000, "cacheScope": "private"}
# What changes with any run (a resource, the list of them): not to be reused from a cache.
UNCACHED = {"resultType": "complete", "ttlMs": 0, "cacheScope": "private"}


def modern_meta(params: Any) -> dict[str, Any] | None:
    """The stateless envelope (`_meta` with a revision) of a request's params, or None."""
    meta = params.get("_meta") if type(params) is dict else getattr(params, "meta", None)
    return meta if type(meta) is dict and VERSION_KEY in meta else None


def is_modern(params: Any) -> bool:
    """Whether the request came in the stateless revision's envelope."""
    return modern_meta(params) is not None


def stateless_refusal(meta: dict[str, Any], needs_token: bool) -> RpcError | None:
    """Why a stateless request cannot be served: a connection that needs a token (given
    only in `initialize`, which this revision skips), a revision not served (-32022, naming
    the ones that are), or no client capabilities (-32602); None when it can."""
    if needs_token:
        return RpcError(ErrorCode.UNAUTHORIZED, "Unauthorized: this connection needs a "
                        "token, given in initialize (MCP 2025-11-25)")
    version = meta.get(VERSION_KEY)
    if version not in MODERN_VERSIONS:
        return RpcError(UNSUPPORTED_PROTOCOL_VERSION,
                        f"Unsupported protocol version: {version!r}; this server speaks "
                        f"{', '.join(SUPPORTED_VERSIONS)}",
                        {"supported": list(SUPPORTED_VERSIONS), "requested": version})
    if type(meta.get(CAPABILITIES_KEY)) is not dict:
        return RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: `_meta` needs "
                        f"{CAPABILITIES_KEY!r} (an object) on every request of revision "
                        f"{version}")
    return None
