"""Typed attributes: the keys whose values are normalised whatever the source wrote.

DOT and recipes share this so that `timeout="900s"`, `timeout=900s` and `timeout: 900s`
all load as the same `Duration`, and `max_retries="3"` as the integer 3.
"""

from __future__ import annotations

import re

from .graph import AttrValue, Duration

DURATION_KEYS = frozenset({"timeout", "manager.poll_interval"})
INT_KEYS = frozenset({"max_retries", "default_max_retries", "default_max_retry", "weight",
                      "max_parallel", "thread_budget", "thread_turns", "manager.max_cycles"})
BOOL_KEYS = frozenset({"goal_gate", "auto_status", "allow_partial", "loop_restart", "verdict",
                       "stack.child_autostart"})

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_INT = re.compile(r"[+-]?\d+")


def parse_duration(text: str) -> Duration | None:
    """`900s`, `250ms`, `15m`, `2h`, `1d` as a Duration; None if `text` is not one."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    return Duration(int(match.group(1)) * _UNIT_MS[match.group(2)])


def coerce_attr(key: str, value: AttrValue) -> AttrValue:
    """`value` converted to the type `key` requires; ValueError says why it cannot be."""
    if key in DURATION_KEYS:
        return _to_duration(key, value)
    if key in INT_KEYS:
        return _to_int(key, value)
    if key in BOOL_KEYS:
        return _to_bool(key, value)
    return value


def _to_duration(key: str, value: AttrValue) -> Duration:
    if isinstance(value, Duration):
        return value
    # A bare number has no unit; guessing seconds or milliseconds would be a silent trap.
    duration = parse_duration(value) if isinstance(value, str) else None
    if duration is None:
        raise ValueError(f"{key} must be a duration such as 900s, 15m or 250ms, got {value!r}")
    return duration


def _to_int(key: str, value: AttrValue) -> int:
    # bool is an int subclass: `weight=true` is a mistake, not 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    raise ValueError(f"{key} must be an integer, got {value!r}")


def _to_bool(key: str, value: AttrValue) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{key} must be true or false, got {value!r}")
