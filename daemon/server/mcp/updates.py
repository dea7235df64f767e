"""MCP resource subscriptions: the events the daemon publishes to a run's or a test run's
topic, as `notifications/resources/updated` for the URIs a client subscribed to.

Services publish `run/event` and `tests/event` to topics and know nothing of MCP; the
daemon hands each published topic to the watch of every MCP connection that has one, and
the watch tells its client which of its URIs changed. Updates coalesce: a burst of events
in one turn of the loop is one notification per URI (the client reads the resource again
anyway)."""

from __future__ import annotations

import asyncio

from ...host import Session


class ResourceWatch:
    """The subscribed URIs of one connection, by the topic whose events change them."""

    __slots__ = ("_changed", "_connection", "topics")

    def __init__(self, connection: Session) -> None:
        self._connection = connection
        self.topics: dict[str, dict[str, None]] = {}  # topic -> URIs, in subscription order
        self._changed: dict[str, None] = {}  # URIs to announce at the end of this turn

    def __len__(self) -> int:
        return sum(len(uris) for uris in self.topics.values())

    def __contains__(self, uri: object) -> bool:
        return any(uri in uris for uris in self.topics.values())

    def add(self, topic: str, uri: str) -> None:
        """Announce `uri` whenever `topic` has an event."""
        self.topics.setdefault(topic, {})[uri] = None

    def remove(self, uri: str) -> None:
        """Announce `uri` no more (whatever its topic), from this turn's updates on."""
        self._changed.pop(uri, None)
        for topic, uris in list(self.topics.items()):
            uris.pop(uri, None)
            if not uris:
                del self.topics[topic]

    def touched(self, topics: set[str]) -> None:
        """Events were published to `topics`: announce their URIs once this turn ends."""
        for topic in topics.intersection(self.topics):
            if not self._changed:
                asyncio.get_running_loop().call_soon(self._announce)
            self._changed.update(self.topics[topic])

    def _announce(self) -> None:
        changed, self._changed = self._changed, {}
        for uri in changed:
            self._connection.notify("notifications/resources/updated", {"uri": uri})
