"""What the benchmarks share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

# An installed package has its bytecode cached; a machine that forbids writing it
# (PYTHONDONTWRITEBYTECODE) would make start-up benches measure compiling, not starting.
INSTALLED_ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


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
