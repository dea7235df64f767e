"""Services: one module per method family, each exporting a `table` of handlers."""

from __future__ import annotations

from . import lifecycle
from .base import HandlerTable


def tables() -> list[HandlerTable]:
    """The handler tables of every family."""
    return [lifecycle.table]
