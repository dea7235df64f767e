"""What the benchmarks share."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

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


def run_in_temporary_directory(name: str, use_uvloop: bool,
                               measure: Callable[[Path], Coroutine[Any, Any, T]]) -> T:
    """`measure(tmp)` on the event loop the daemon would use, in a temporary directory that
    stays until it returns (file creation is slow after bulk deletes) and is removed then."""
    _, factory = loop_choice(use_uvloop)
    tmp = Path(tempfile.mkdtemp(prefix=f"ostinato-bench-{name}-"))
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(measure(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
