"""Keeping secrets off disk: redaction of secret-looking names and of known secret values."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

REDACTED = "[redacted]"
REDACTED_BYTES = REDACTED.encode()
# Environment variables whose names read like secrets but hold none (PWD: the working
# directory, which would otherwise be blanked out of every path a run writes).
_NOT_SECRETS = frozenset({"PWD", "OLDPWD"})
_MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words
# Whole words only, so that `max_tokens` survives while `access_token` does not.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd",
                           "credential", "credentials", "auth", "authorization", "bearer",
                           "cookie"})


@functools.lru_cache(maxsize=4096)  # the same few names are asked about for every run
def is_secret_name(name: str) -> bool:
    """True for setting names that look like keys, tokens, secrets or passwords."""
    # Names ending in `_env` hold the name of an environment variable, not its value.
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    words = [word for word in words if word]
    if not words or words[-1] == "env":
        return False
    return any(word in _SECRET_WORDS for word in words)


def redact_settings(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of `value` with secret-named settings and every secret's occurrences replaced."""
    return Redactor(secrets).data(value)


class Redactor:
    """Replaces secret values wherever they appear, and values under secret-looking names."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH},
                              key=len, reverse=True)
        self._encoded = [(secret.encode(), orjson.dumps(secret)[1:-1])
                         for secret in self.secrets]

    def text(self, value: str) -> str:
        """`value` with every known secret replaced."""
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def data(self, value: Any) -> Any:
        """A copy of settings-like JSON with secrets replaced, and every value under a
        secret-looking name (settings, launch records, providers)."""
        if isinstance(value, str):
            return self.text(value) if self.secrets else value
        if isinstance(value, Mapping):
            return {k: (REDACTED if is_secret_name(str(k)) and v not in (None, "")
                        else self.data(v)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def encoded(self, data: bytes) -> bytes:
        """JSON bytes with every known secret replaced, as written raw or JSON-escaped."""
        for raw, escaped in self._encoded:
            if raw in data:
                data = data.replace(raw, REDACTED_BYTES)
            if escaped != raw and escaped in data:
                data = data.replace(escaped, REDACTED_BYTES)
        return data

    def values(self, value: Any) -> Any:
        """A copy of run data (context, outcomes, events, calls) with the known secret
        values replaced wherever they occur. Names are not judged here: a context key
        `prep.token` or a human option's `key` is data, and a checkpoint must keep it to
        resume to the same result."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.values(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.values(v) for v in value]
        return value


def environment_secrets(environ: dict[str, str]) -> list[str]:
    """Values of environment variables whose names look like secrets."""
    return [value for name, value in environ.items()
            if value and name not in _NOT_SECRETS and is_secret_name(name)]


def run_secrets(named: Mapping[str, Any], keys: Iterable[str] = ()) -> list[str]:
    """A run's secrets: secret-looking environment variables, the provider keys `keys`, and
    the values in `named` (inputs, variables) whose names look like secrets."""
    values = [str(v) for k, v in named.items() if is_secret_name(k) and isinstance(v, str | int)]
    return [*environment_secrets(dict(os.environ)), *keys, *values]
