"""The HTTP connections of the vendor SDK clients: one httpx client per SDK, shared by the
providers of every run a process executes, for as long as that process (a daemon's runner,
a worker) makes calls.

Each SDK client otherwise builds an httpx client of its own, and with it a TLS context
that loads the CA bundle: about 18 ms of CPU on the event loop for every run's provider,
and a new connection (TCP and TLS handshakes) for every run's first call. Shared, a run's
provider costs a few microseconds to build and its first call reuses a kept connection.
Nothing of one run reaches another through it: each SDK client puts its own key in every
request's headers, and the shared client keeps no cookies (a cookie one run's answer set,
a gateway's session for instance, would go out with every later run's requests).
"""

from __future__ import annotations

import asyncio
import functools
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import ModuleType
from typing import Any


def _client(sdk: ModuleType) -> Any:
    """A new httpx client with `sdk`'s defaults (its connection limits, redirects and
    timeouts, the latter replaced per request by the provider's own), keeping no cookie."""
    return sdk.DefaultAsyncHttpxClient(
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


class SharedConnections:
    """The httpx client of each SDK, built on first use (or ahead, by `prepare`) and closed
    by the owner's `aclose`."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._building: dict[str, asyncio.Task[Any]] = {}
        self._closed = False

    async def prepare(self, sdk: ModuleType) -> None:
        """Build the client for `sdk` in a thread, if there is none: its TLS context and its
        transport's modules cost 35 ms of CPU the first time, which the event loop would
        otherwise spend on a run's first call. Runs preparing at once share one build."""
        name = sdk.__name__
        if name in self._clients or self._closed:
            return
        building = self._building.get(name)
        if building is None:
            building = self._building[name] = asyncio.ensure_future(
                asyncio.to_thread(_client, sdk))
            building.add_done_callback(functools.partial(self._built, name))
        await asyncio.shield(building)  # a run cancelled meanwhile leaves it to the others

    def _built(self, name: str, building: asyncio.Task[Any]) -> None:
        self._building.pop(name, None)
        if building.cancelled() or building.exception() is not None:
            return  # the caller sees why; a later call builds it on the loop
        # Not kept when its owner stopped meanwhile, or one was built on the loop: it has
        # opened no connection, so there is nothing to close.
        if not self._closed:
            self._clients.setdefault(name, building.result())

    def client(self, sdk: ModuleType) -> Any:
        """The httpx client for `sdk` (the `openai` or `anthropic` module)."""
        client = self._clients.get(sdk.__name__)
        if client is None or client.is_closed:
            client = self._clients[sdk.__name__] = _client(sdk)
        return client

    async def aclose(self) -> None:
        """Close every connection. A call made after it (a run still starting as its owner
        stopped) gets a client of its own, which the process's end closes."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
