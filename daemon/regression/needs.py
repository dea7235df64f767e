"""What the regression machinery uses of the services (`Needs`), as a protocol: the domain
packages stand below daemon/services, which builds them (services/__init__.py's `Services`
is one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from ..host import Host
from ..runs.launch import Launchers
from ..store.db import Database
from ..store.runs import RunStore
from ..store.snapshots import SnapshotStore


class Needs(Launchers, Protocol):
    """The store, the host and the launchers a replay, a check or a reeval works with."""

    host: Host
    db: Database
    runs: RunStore
    snapshots: SnapshotStore
    # Held while calls are appended to a stored run (regression/stored.py).
    appending_calls: asyncio.Lock

    @property
    def home(self) -> Path:
        """The home: the store, run directories, trial sets and snapshots."""
        ...
