"""What the services need of whoever hosts them (the daemon's server, a bench, a test): a
home, a way to tell subscribers, and the limits the services obey."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.load import DEFAULT_MAX_PIPELINE_BYTES

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


@dataclass(frozen=True, slots=True)
class Host:
    """Where the services live: everything they use of the process around them."""

    home: Path
    publish: Publish = no_subscribers
    settings: Settings = Settings()
