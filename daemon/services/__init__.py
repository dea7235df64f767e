"""Services: one module per method family, each exporting a `table` of handlers."""

from __future__ import annotations

from ..server.dispatch import HandlerTable
from . import lifecycle


def tables() -> list[HandlerTable]:
    """The handler tables of every family."""
    return [lifecycle.table]
