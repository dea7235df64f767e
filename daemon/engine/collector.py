"""The cyclic garbage collector paused around bulk allocations of objects that live on."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection while the block runs. A parse creates hundreds of thousands of
    objects, none of them garbage, and every collection it triggers walks all those made so
    far: half of a large pipeline's parse time. Nested and concurrent blocks are counted;
    the collector runs again (if it ran before) when the last one ends."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
