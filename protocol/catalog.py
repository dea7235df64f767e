"""The whole contract: every family's methods gathered into registries."""

from __future__ import annotations

from . import lifecycle, mcp, pipelines, runs, snapshots, tests, traces, trials
from .registry import Registry


def client_methods() -> Registry:
    """Every method a client may call on the daemon (requests and notifications)."""
    return Registry([*lifecycle.METHODS, *mcp.METHODS, *pipelines.METHODS, *runs.METHODS,
                     *traces.METHODS, *trials.METHODS, *snapshots.METHODS,
                     *tests.METHODS])


def server_notifications() -> Registry:
    """Every notification the daemon may send to a client."""
    return Registry([*lifecycle.SERVER_NOTIFICATIONS, *mcp.SERVER_NOTIFICATIONS,
                     *runs.SERVER_NOTIFICATIONS,
                     *tests.SERVER_NOTIFICATIONS])
