"""Where a run's records go besides its run directory: the `RunSink` the executor reports
stages, calls and events to (the daemon backs it with the store and its subscribers)."""

from __future__ import annotations

from typing import Any, Protocol

from .events import Event


class RunSink(Protocol):
    """Where a run's records go besides its directory (the daemon: store + subscribers)."""

    def emit(self, event: Event) -> None:
        """An event happened (publish now; persist with the next flush)."""
        ...

    def record_call(self, call: dict[str, Any]) -> None:
        """A model or tool call finished (persist with the next flush)."""
        ...

    async def stage_done(self, stage: dict[str, Any]) -> None:
        """Record a finished stage with what came before it (the daemon commits it soon;
        a checkpoint naming it is written only after that commit)."""
        ...


class NullSink:
    """A sink that keeps nothing (dry runs, benchmarks of the engine alone)."""

    def emit(self, event: Event) -> None:
        """Drop it."""

    def record_call(self, call: dict[str, Any]) -> None:
        """Drop it."""

    async def stage_done(self, stage: dict[str, Any]) -> None:
        """Drop it."""
