"""A module whose import takes as long as a test wants: it stands in for a vendor SDK's
(0.4-0.9 s) when a test checks what happens meanwhile. Its body says it started
(`ENTERED`), then waits for `RELEASE`, at most `PATIENCE` seconds, and keeps whether it
was released (`RELEASED`: False if it gave up waiting, for instance because the test
could not run while the import blocked its thread)."""

from __future__ import annotations

import threading

ENTERED = threading.Event()
RELEASE = threading.Event()
PATIENCE = 5.0
RELEASED: list[bool] = []


def importing() -> None:
    """The module's body: wait for the test to release it."""
    ENTERED.set()
    RELEASED.append(RELEASE.wait(timeout=PATIENCE))
