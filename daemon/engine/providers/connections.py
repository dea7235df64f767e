"""The HTTP connections of the vendor SDK clients: one httpx client per SDK, shared by the
providers of every run a process executes, for as long as that process (a daemon's runner,
a worker) makes calls.

Each SDK client otherwise builds an httpx client of its own, and with it a TLS context
that loads the CA bundle: about 18 ms of CPU on the event loop for every run's provider,
and a new connection (TCP and TLS handshakes) for every run's first call. Shared, a run's
provider costs a few microseconds to build and its first call reuses a kept connection.
Nothing secret is part of it: each SDK client puts its own key in every request's headers.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any


class SharedConnections:
    """The httpx client of each SDK, built on first use (with that SDK's defaults: its
    connection limits, redirects and timeouts, the latter replaced per request by the
    provider's own) and closed by the owner's `aclose`."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    async def prepare(self, sdk: ModuleType) -> None:
        """Build the client for `sdk` in a thread, if there is none: its TLS context and its
        transport's modules cost 35 ms of CPU the first time, which the event loop would
        otherwise spend on a run's first call."""
        if sdk.__name__ in self._clients:
            return
        client = await asyncio.to_thread(sdk.DefaultAsyncHttpxClient)
        if self._clients.setdefault(sdk.__name__, client) is not client:  # built meanwhile
            await client.aclose()

    def client(self, sdk: ModuleType) -> Any:
        """The httpx client for `sdk` (the `openai` or `anthropic` module)."""
        client = self._clients.get(sdk.__name__)
        if client is None or client.is_closed:
            client = self._clients[sdk.__name__] = sdk.DefaultAsyncHttpxClient()
        return client

    async def aclose(self) -> None:
        """Close every connection; a later call builds a new client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
