"""Retry policies and backoff (attractor §3.6), shared by node retries and provider calls."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attractor §3.6 retry policy (delays in milliseconds)."""

    max_attempts: int = 4
    initial_delay_ms: float = 200.0
    backoff_factor: float = 2.0
    max_delay_ms: float = 60_000.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("retry: max_attempts must be at least 1")
        if self.initial_delay_ms < 0 or self.max_delay_ms < 0 or self.backoff_factor <= 0:
            raise ValueError("retry: delays must be >= 0 and backoff_factor > 0")

    @classmethod
    def from_settings(cls, value: str | Mapping[str, Any] | RetryPolicy | None) -> RetryPolicy:
        """A policy from a preset name or a mapping (`factor` = backoff_factor, `preset` = base)."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, str):
            return preset(value)
        fields = dict(value)
        if "factor" in fields:
            fields["backoff_factor"] = fields.pop("factor")
        base = preset(fields.pop("preset")) if "preset" in fields else cls()
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"retry: unknown settings {sorted(unknown)}")
        try:
            typed = {key: _FIELD_TYPES[key](item) for key, item in fields.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"retry: {exc}") from None
        return replace(base, **typed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


_FIELD_TYPES: dict[str, Callable[[Any], Any]] = {
    "max_attempts": int, "initial_delay_ms": float, "backoff_factor": float,
    "max_delay_ms": float, "jitter": bool,
}

PRESETS: dict[str, RetryPolicy] = {
    "none": RetryPolicy(max_attempts=1),
    "standard": RetryPolicy(max_attempts=5, initial_delay_ms=200, backoff_factor=2.0),
    "aggressive": RetryPolicy(max_attempts=5, initial_delay_ms=500, backoff_factor=2.0),
    "linear": RetryPolicy(max_attempts=3, initial_delay_ms=500, backoff_factor=1.0),
    "patient": RetryPolicy(max_attempts=3, initial_delay_ms=2000, backoff_factor=3.0),
}


def preset(name: str) -> RetryPolicy:
    """One of attractor §3.6's preset policies by name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"retry: unknown preset {name!r}; one of {sorted(PRESETS)}") from None


def backoff_delay_ms(attempt: int, policy: RetryPolicy,
                     rng: random.Random | None = None) -> float:
    """§3.6: initial * factor^(attempt-1), capped at max_delay_ms, times U(0.5, 1.5) if jitter."""
    try:
        delay = policy.initial_delay_ms * policy.backoff_factor ** (max(attempt, 1) - 1)
    except OverflowError:
        delay = policy.max_delay_ms
    delay = min(delay, policy.max_delay_ms)
    if policy.jitter:
        delay *= (rng or random).uniform(0.5, 1.5)
    return delay
