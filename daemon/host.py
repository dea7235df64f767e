"""What the services and the domain packages need of whoever hosts them (the daemon's
server, a bench, a test): a home, a way to tell subscribers, the limits the services obey;
and the session a request came on, with its progress reporting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .engine.load import DEFAULT_MAX_PIPELINE_BYTES
from .store.db import DEFAULT_WAL_MAX_BYTES

# publish(topics, method, params): send the notification once to every client subscribed
# to any of `topics`; returns how many got it.
Publish = Callable[[str | tuple[str, ...], str, Any], int]


def no_subscribers(topics: str | tuple[str, ...], method: str, params: Any) -> int:
    """A host without clients: nobody hears the notification."""
    return 0


@dataclass(frozen=True, slots=True)
class Settings:
    """The daemon's options that services obey."""

    max_pipeline_bytes: int = DEFAULT_MAX_PIPELINE_BYTES
    # api_key_env names a client may use besides the providers' documented ones.
    allowed_key_env: frozenset[str] = frozenset()
    wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES  # the store's WAL is truncated past this
    # Where runs execute (decision 0007): "inline" in the daemon's process, "processes" on a
    # pool of `workers` local worker processes (0: one per core), or "ray" on as many actors
    # of the Ray cluster at `ray_address` (None: a local cluster the daemon starts).
    executor: str = "inline"
    workers: int = 0
    ray_address: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    """Where the services live: everything they use of the process around them."""

    home: Path
    publish: Publish = no_subscribers
    settings: Settings = Settings()


class Session(Protocol):
    """The connection a request came on, as service handlers may use it (the session's
    lifecycle is the server's)."""

    id: int
    subscriptions: set[str]  # topics whose notifications this client gets

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification to this client."""
        ...


class Progress:
    """Work done progress of one request; does nothing when the client passed no token."""

    __slots__ = ("_connection", "_state", "token")

    def __init__(self, connection: Session, token: int | str | None) -> None:
        self._connection = connection
        self.token = token
        self._state = "new"

    def begin(self, title: str, message: str | None = None, percentage: int | None = None,
              cancellable: bool = True) -> None:
        """Start reporting (LSP `begin`)."""
        if self._state == "new":
            self._state = "begun"
            self._send({"kind": "begin", "title": title, "message": message,
                        "percentage": percentage, "cancellable": cancellable})

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        """One step (LSP `report`); begins implicitly."""
        if self._state == "new":
            self.begin("working")
        if self._state == "begun":
            self._send({"kind": "report", "message": message, "percentage": percentage})

    def end(self, message: str | None = None) -> None:
        """Finish reporting (LSP `end`); sent at most once, and only after a begin."""
        if self._state == "begun":
            self._state = "ended"
            self._send({"kind": "end", "message": message})

    def _send(self, value: dict[str, Any]) -> None:
        if self.token is not None:
            value = {k: v for k, v in value.items() if v is not None}
            self._connection.notify("$/progress", {"token": self.token, "value": value})


class _NoProgress(Progress):
    """Shared by every request that passed no token: reporting is a no-op."""

    def begin(self, title: str, message: str | None = None, percentage: int | None = None,
              cancellable: bool = True) -> None:
        """Nothing to report to."""

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        """Nothing to report to."""

    def end(self, message: str | None = None) -> None:
        """Nothing to report to."""


NO_PROGRESS: Progress = _NoProgress(None, None)  # type: ignore[arg-type]
