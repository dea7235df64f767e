"""The edge condition language of attractor §10: `key=value`, `key!=value`, bare keys, `&&`.

Semantics follow §10.3-10.5: clauses are AND-combined left to right; `outcome` and
`preferred_label` come from the node's outcome; `context.x` looks up `context.x` and then
`x` in the run context; unqualified keys look up the context directly; a missing key is "".
Values compare as exact, case-sensitive strings; booleans render as `true` / `false`.

Two readings are stricter or kinder than the pseudo-code, on purpose:
- parsing follows the §10.2 grammar, so an empty clause (`a=1 && && b=2`), `==`, or a bare
  literal with spaces is a syntax error instead of being silently skipped or mis-split;
- a bare key is true when its value is non-empty and not `false`, so a context flag set to
  the boolean False is false (the pseudo-code's `bool("false")` would make it true).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Operator = Literal["=", "!=", "truthy"]

_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_KEY = re.compile(rf"outcome|preferred_label|context\.{_PATH}|{_PATH}")
_BARE_LITERAL = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*|-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_ESCAPES = {'"': '"', "n": "\n", "t": "\t", "\\": "\\"}


class ConditionError(ValueError):
    """A condition that does not parse; `offset` is the 0-based column in the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at column {offset + 1})")
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Clause:
    """One `key op literal` test, or a bare key tested for truthiness."""

    key: str
    op: Operator
    literal: str = ""

    def evaluate(self, outcome: str, preferred_label: str, context: Mapping[str, Any]) -> bool:
        """Whether this clause holds."""
        value = resolve_key(self.key, outcome, preferred_label, context)
        if self.op == "=":
            return value == self.literal
        if self.op == "!=":
            return value != self.literal
        return value not in ("", "false")


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition: all clauses must hold; no clauses means always true."""

    text: str
    clauses: tuple[Clause, ...]

    def evaluate(self, outcome: str, preferred_label: str, context: Mapping[str, Any]) -> bool:
        """Whether the edge is eligible for this outcome and context (§10.5)."""
        return all(c.evaluate(outcome, preferred_label, context) for c in self.clauses)


def parse_condition(text: str) -> Condition:
    """Parse a §10 condition; raises ConditionError with a column offset."""
    if not text.strip():
        return Condition(text, ())
    clauses = []
    start = 0
    for part in text.split("&&"):
        clauses.append(_parse_clause(part, start))
        start += len(part) + 2
    return Condition(text, tuple(clauses))


def evaluate_condition(text: str, outcome: str, preferred_label: str,
                       context: Mapping[str, Any]) -> bool:
    """Parse and evaluate `text` in one step."""
    return parse_condition(text).evaluate(outcome, preferred_label, context)


def resolve_key(key: str, outcome: str, preferred_label: str,
                context: Mapping[str, Any]) -> str:
    """A key's value as a string (§10.4); missing keys are ""."""
    if key == "outcome":
        return outcome
    if key == "preferred_label":
        return preferred_label
    value = context.get(key)
    if value is None and key.startswith("context."):
        value = context.get(key.removeprefix("context."))
    return "" if value is None else _stringify(value)


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_clause(part: str, offset: int) -> Clause:
    lead = len(part) - len(part.lstrip())
    clause = part.strip()
    at = offset + lead
    if not clause:
        raise ConditionError("empty clause around '&&'", offset)
    # The first '=' ends the key (keys cannot hold '=', '!' or quotes), so a quoted literal
    # may contain '=' or '!='.
    eq = clause.find("=")
    if eq < 0:
        _check_key(clause, at)
        return Clause(clause, "truthy")
    op: Operator = "!=" if eq > 0 and clause[eq - 1] == "!" else "="
    key, literal = clause[: eq + 1 - len(op)], clause[eq + 1:]
    _check_key(key.strip(), at)
    literal_at = at + len(key) + len(op) + (len(literal) - len(literal.lstrip()))
    return Clause(key.strip(), op, _parse_literal(literal.strip(), literal_at))


def _check_key(key: str, at: int) -> None:
    if not key:
        raise ConditionError("missing key before the operator", at)
    if not _KEY.fullmatch(key):
        raise ConditionError(
            f"invalid key {key!r}: use outcome, preferred_label, context.<name> or <name>", at)


def _parse_literal(literal: str, at: int) -> str:
    if not literal:
        raise ConditionError('missing value after the operator (use "" for empty)', at)
    if literal.startswith('"'):
        if not _QUOTED.fullmatch(literal):
            raise ConditionError(f"invalid quoted value {literal}", at)
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)),
                      literal[1:-1], flags=re.DOTALL)
    if literal.startswith("="):
        raise ConditionError("'==' is not an operator: use '='", at - 1)
    if not _BARE_LITERAL.fullmatch(literal):
        raise ConditionError(f"invalid value {literal!r}: quote values that contain "
                             "spaces or symbols", at)
    return literal
