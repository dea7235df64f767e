"""Keeping secrets off disk: redaction of secret-looking names and of known secret values.

Redaction works on decoded JSON values, never by replacing bytes in serialized JSON: a
replacement inside the bytes could cut a token (an unquoted number `123456` would become a
bare `[redacted]`, an escape sequence could lose its backslash), so every redacted document
is still JSON. A secret is taken out of strings (values and keys, raw or JSON-escaped) and a
number whose text contains a secret becomes the string "[redacted]"."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

REDACTED = "[redacted]"
# Environment variables whose names read like secrets but hold none (PWD: the working
# directory, which would otherwise be blanked out of every path a run writes).
_NOT_SECRETS = frozenset({"PWD", "OLDPWD"})
_MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words
# Whole words only, so that `max_tokens` survives while `access_token` does not.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd",
                           "credential", "credentials", "auth", "authorization", "bearer",
                           "cookie"})
# Only a secret made of these characters can be part of a JSON number's text.
_NUMBER_CHARACTERS = frozenset("0123456789+-.eE")
_CONTAINERS = (Mapping, list, tuple)


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
        # Strings may hold JSON text themselves (a tool's output, a request body): the
        # secret's JSON-escaped spelling is replaced there too.
        escaped = (orjson.dumps(s).decode()[1:-1] for s in self.secrets)
        self._needles = sorted({*self.secrets, *escaped}, key=len, reverse=True)
        # What a JSON document's bytes hold where a string holds a needle: the needle,
        # escaped once more (a JSON text inside a string).
        self._encoded = list(dict.fromkeys(
            spelling for needle in self._needles
            for spelling in (needle.encode(), orjson.dumps(needle)[1:-1])))
        self._numeric = [s for s in self.secrets if _NUMBER_CHARACTERS.issuperset(s)]

    def text(self, value: str) -> str:
        """`value` with every known secret replaced."""
        for needle in self._needles:
            if needle in value:
                value = value.replace(needle, REDACTED)
        return value

    def data(self, value: Any) -> Any:
        """A copy of settings-like JSON with secrets replaced, and every value under a
        secret-looking name (settings, launch records, providers)."""
        return self._copy(value, named=True, plain=not self._holds_secret(value))

    def _holds_secret(self, value: Any) -> bool:
        """Whether a known secret may be in `value`: its JSON searched as bytes, as
        `encoded` does, which costs a fraction of a walk asking every string."""
        if not self._encoded:
            return False
        if self._numeric:  # str() and JSON spell some numbers differently: walk
            return True
        try:
            dumped = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            return True
        return any(needle in dumped for needle in self._encoded)

    def values(self, value: Any) -> Any:
        """Run data (context, outcomes, events, calls) with the known secret values replaced
        wherever they occur: a copy when one occurs, else `value` itself. Names are not
        judged here: a context key `prep.token` or a human option's `key` is data, and a
        checkpoint must keep it to resume to the same result."""
        return self._copy(value, named=False) if self._holds_secret(value) else value

    def encoded(self, data: bytes) -> bytes:
        """One JSON document's bytes (compact or orjson's 2-space indent, an optional final
        newline) with every known secret taken out; still JSON, formatted alike."""
        if not any(needle in data for needle in self._encoded):
            return data  # the usual case, at the cost of a few searches
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:  # not JSON: there is no token to cut
            return self.text(data.decode("utf-8", "replace")).encode("utf-8")
        pretty = orjson.OPT_INDENT_2 if data.lstrip()[1:2] == b"\n" else 0
        newline = b"\n" if data.endswith(b"\n") else b""
        return orjson.dumps(self.values(value), option=pretty) + newline

    def _leaf(self, value: Any) -> Any:
        """A scalar with the secrets taken out: a number whose text holds one is replaced
        whole (keeping its other digits would still be a number, and wrong)."""
        if isinstance(value, str):
            return self.text(value)
        if self._numeric and isinstance(value, int | float) and not isinstance(value, bool):
            spellings = (str(value), _json_number(value))
            if any(secret in spelling for secret in self._numeric for spelling in spellings):
                return REDACTED
        return value

    def _key(self, key: Any) -> Any:
        spelled = key if isinstance(key, str) else str(key)
        redacted = self.text(spelled)
        return key if redacted == spelled else redacted

    def _copy(self, value: Any, named: bool, plain: bool = False) -> Any:
        """A redacted copy of `value`, walked without recursion (no depth is too deep);
        `plain`: no known secret is in it, only names are judged."""
        text, leaf = (_same, _same) if plain else (self.text, self._leaf)
        if not isinstance(value, _CONTAINERS):
            return leaf(value)
        root: list[Any] = [None]
        pending: list[tuple[Any, Any, Any]] = [(value, root, 0)]  # (source, parent, slot)
        while pending:
            source, parent, slot = pending.pop()
            if isinstance(source, Mapping):
                copy: Any = {}
                for key, item in source.items():
                    name = text(key) if type(key) is str else self._key(key)
                    if named and item not in (None, "") and is_secret_name(str(key)):
                        copy[name] = REDACTED
                    elif type(item) is str:  # the most common value, tested first
                        copy[name] = text(item)
                    elif isinstance(item, _CONTAINERS):
                        copy[name] = None  # filled in when its turn comes, in its place
                        pending.append((item, copy, name))
                    else:
                        copy[name] = leaf(item)
            else:
                copy = [None] * len(source)
                for index, item in enumerate(source):
                    if isinstance(item, _CONTAINERS):
                        pending.append((item, copy, index))
                    else:
                        copy[index] = leaf(item)
            parent[slot] = copy
        return root[0]


def _same(value: Any) -> Any:
    return value


def _json_number(value: int | float) -> str:
    """How orjson writes a number (floats differ from str: `1e16`, not `1e+16`)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits
        return str(value)


def environment_secrets(environ: dict[str, str]) -> list[str]:
    """Values of environment variables whose names look like secrets."""
    return [value for name, value in environ.items()
            if value and name not in _NOT_SECRETS and is_secret_name(name)]


def named_secrets(named: Any) -> list[str]:
    """The scalars (strings and numbers, as text) under secret-looking names at any depth of
    `named`: all of them under such a name, however deep they sit below it."""
    found: list[str] = []
    pending: list[tuple[Any, bool]] = [(named, False)]
    while pending:
        value, secret = pending.pop()
        if isinstance(value, Mapping):
            pending.extend((item, secret or is_secret_name(str(key)))
                           for key, item in value.items())
        elif isinstance(value, list | tuple):
            pending.extend((item, secret) for item in value)
        elif secret and isinstance(value, str):
            found.append(value)
        elif secret and isinstance(value, int | float) and not isinstance(value, bool):
            found.extend({str(value), _json_number(value)})
    return found


def run_secrets(named: Mapping[str, Any], keys: Iterable[str] = (),
                environment: Iterable[str] | None = None) -> list[str]:
    """A run's secrets: secret-looking environment variables (`environment`, when the
    caller has them already), the provider keys `keys`, and the values in `named` (inputs,
    variables) under secret-looking names, at any depth."""
    if environment is None:
        environment = environment_secrets(dict(os.environ))
    return [*environment, *keys, *named_secrets(named)]
