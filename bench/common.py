"""What the benchmarks share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_choice(use_uvloop: bool) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The event loop the daemon would use: uvloop when importable (name, factory)."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return f"uvloop {uvloop.__version__}", uvloop.new_event_loop
    return "asyncio", None
