"""Identifiers and timestamps: uuid7 ids (time-sortable) and UTC ISO 8601 times."""

from __future__ import annotations

import os
import random
import time

_last_ms = 0
_counter = 0
# The random bits of an id need to be unique, not secret: a generator seeded from the OS
# (again in a forked child) spares a system call per id.
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)


def uuid7() -> str:
    """A RFC 9562 version 7 UUID: 48-bit unix milliseconds, then a counter and randomness.

    Written out rather than imported (Python 3.14 has uuid.uuid7); the 12-bit counter keeps
    ids minted in the same millisecond in order.
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        _counter += 1
        if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
            _last_ms += 1
            _counter = 0
        ms = _last_ms
    else:
        _last_ms = ms
        _counter = 0
    value = ((ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62)
             | _random.getrandbits(62))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def utc_now() -> str:
    """Now, as UTC ISO 8601 with microseconds and a Z."""
    # A run stamps every event, stage and call: formatting only the fraction keeps it cheap.
    global _second
    now = time.time()
    second = int(now)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"
