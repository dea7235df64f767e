"""The fields command tools and MCP servers share, read the same way from attribute strings
(JSON in text) and from settings values (already parsed): dotted attribute families, JSON,
argv lists, environments, secret names and durations. Each raises ValueError saying what is
wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from ..attrs import parse_duration
from ..graph import Duration

# Names a model may see: OpenAI function names allow only these (and at most 64 of them).
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def grouped(attrs: Mapping[str, Any], family: str) -> dict[str, dict[str, Any]]:
    """`<family>.<name>.<field>` attributes as fields by name (`tool_hooks.pre`, another
    family, is left alone)."""
    found: dict[str, dict[str, Any]] = {}
    prefix = family + "."
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        name, _, field_name = key[len(prefix):].partition(".")
        if not field_name:
            raise ValueError(f"attribute {key}: expected {family}.<name>.<field>")
        found.setdefault(name, {})[field_name] = value
    return found


def unknown_fields(entry: Mapping[str, Any], known: frozenset[str]) -> str | None:
    """What to say about fields the entry has but `known` does not, or None."""
    unknown = sorted(set(entry) - known)
    if not unknown:
        return None
    return f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"


def json_value(value: Any, what: str) -> Any:
    """Attributes carry JSON as text; settings may carry it already parsed."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def argv_list(value: Any, what: str) -> tuple[str, ...]:
    """A JSON list of strings with a program first."""
    argv = json_value(value, what)
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
            and argv[0]):
        raise ValueError(f"{what} must be a JSON list of strings with a program first")
    return tuple(argv)


def environment(value: Any) -> dict[str, str]:
    """A JSON object of variable names to strings (none when not given)."""
    env = json_value(value, "env") if value is not None else {}
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and _ENV_NAME.fullmatch(k) and isinstance(v, str)
            for k, v in env.items()):
        raise ValueError("env must be a JSON object of variable names to strings")
    return env


def secret_names(value: Any) -> tuple[str, ...]:
    """Comma-separated (or listed) names of environment variables."""
    names = value.split(",") if isinstance(value, str) else value or []
    if not isinstance(names, list | tuple):
        raise ValueError("secrets must be a comma-separated list of variable names")
    names = [str(n).strip() for n in names if str(n).strip()]
    bad = [n for n in names if not _ENV_NAME.fullmatch(n)]
    if bad:
        raise ValueError(f"secrets: not variable names: {', '.join(bad)}")
    return tuple(names)


def seconds(value: Any, default: float, what: str) -> float:
    """A positive duration (`10s`, `500ms`, or a parsed attribute) in seconds."""
    if value is None:
        return default
    # As for node timeouts, a bare number has no unit: seconds or milliseconds would be a guess.
    duration = value if isinstance(value, Duration) else \
        parse_duration(value) if isinstance(value, str) else None
    if duration is None or duration.ms <= 0:
        raise ValueError(f"{what} must be a positive duration such as 10s, got {value!r}")
    return duration.seconds
