"""Context values in prompts: `${key}`, `${key:-default}` and `$$` (docs/pipelines.md).

`$goal` and the run's `$name` variables are replaced once, when the pipeline is loaded
(transforms.py). `${key}` is replaced when the node runs, by the context value `key` as it is
then: an earlier node's full answer (`${plan.response}`), a tool's output, a human answer,
an input, anything a `context_updates` set. `context.` in front of a key is optional, as in
edge conditions. A string is inserted as it is, any other value as compact JSON.

A reference whose key is missing fails the node with a reason that names it, unless it
gives a default (`${review.response:-no review yet}`; `${key:-}` for empty). `$$` is a
literal `$`. Nothing else is special: `$5` or `$HOME` stay as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

KEY_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TOKEN = re.compile(r"\$\$|\$\{")
_BODY = re.compile(rf"({KEY_PATH})(?::-([^}}]*))?\}}")
MISSING: Any = object()


class TemplateError(ValueError):
    """A `${…}` that does not parse; `offset` is its 0-based position in the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class MissingReference(LookupError):
    """A `${key}` without a default whose key the context does not hold."""

    def __init__(self, reference: Reference) -> None:
        super().__init__(reference.key)
        self.reference = reference


@dataclass(frozen=True, slots=True)
class Reference:
    """One `${key}` or `${key:-default}` of a template."""

    key: str
    default: str | None
    offset: int

    @property
    def text(self) -> str:
        """The reference as written."""
        return f"${{{self.key}}}" if self.default is None else \
            f"${{{self.key}:-{self.default}}}"

    @property
    def context_key(self) -> str:
        """The key without its optional `context.` prefix."""
        return self.key.removeprefix("context.")


def _scan(text: str) -> Iterator[tuple[int, int, Reference | None]]:
    """(start, end, reference) of each `$$` (reference None) and `${…}` in `text`."""
    position = 0
    while True:
        match = _TOKEN.search(text, position)
        if match is None:
            return
        start = match.start()
        if match.group() == "$$":
            yield start, start + 2, None
            position = start + 2
            continue
        body = _BODY.match(text, match.end())
        if body is None:
            close = text.find("}", match.end())
            what = text[start:close + 1] if close >= 0 else text[start:start + 30]
            reason = ("is not closed with '}'" if close < 0 else
                      "needs a key such as ${plan.response} or ${context.score}, and "
                      "optionally a default after ':-'")
            raise TemplateError(f"{what!r} {reason} (write $$ for a literal $)", start)
        yield start, body.end(), Reference(body.group(1), body.group(2), start)
        position = body.end()


def references(text: str) -> list[Reference]:
    """Every `${…}` reference in `text`; raises TemplateError for one that does not parse."""
    if "$" not in text:
        return []
    return [reference for _, _, reference in _scan(text) if reference is not None]


def render(text: str, lookup: Callable[[str], Any]) -> str:
    """`text` with references replaced by `lookup(key)` (MISSING when absent) and `$$` by `$`.

    Raises MissingReference for a missing key without a default, TemplateError for a
    reference that does not parse.
    """
    if "$" not in text:
        return text
    parts: list[str] = []
    position = 0
    for start, end, reference in _scan(text):
        parts.append(text[position:start])
        position = end
        if reference is None:
            parts.append("$")
            continue
        value = lookup(reference.key)
        if value is MISSING and reference.key != reference.context_key:
            value = lookup(reference.context_key)
        if value is MISSING:
            if reference.default is None:
                raise MissingReference(reference)
            parts.append(reference.default)
        else:
            parts.append(as_text(value))
    parts.append(text[position:])
    return "".join(parts)


def as_text(value: Any) -> str:
    """A context value as prompt text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()
