"""The model stylesheet of attractor §8: CSS-like rules that give nodes LLM settings.

    * { llm_model: claude-sonnet-4-5; llm_provider: anthropic; }
    .code { llm_model: claude-opus-4-6 }
    #critical_review { reasoning_effort: high }

Selectors: `*` (specificity 0), a shape name (1), `.class` (2), `#id` (3); later rules of
equal specificity win. A node's own attributes always win, including those it got from a
`node [...]` default block: the stylesheet only fills properties the node does not have.
`/* */` comments are allowed; unknown properties are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .graph import Graph, Node

PROPERTIES = frozenset({"llm_model", "llm_provider", "reasoning_effort"})

SelectorKind = Literal["universal", "shape", "class", "id"]
_SPECIFICITY: dict[SelectorKind, int] = {"universal": 0, "shape": 1, "class": 2, "id": 3}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS = re.compile(r"[A-Za-z0-9_-]+")
_BARE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*")
_QUOTED = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'""", re.DOTALL)
_SKIP = re.compile(r"(?:\s+|/\*.*?\*/)*", re.DOTALL)


class StylesheetError(ValueError):
    """A stylesheet that does not parse: a message, the 0-based offset and its line:col."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.message = message
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"{message} (stylesheet {self.line}:{self.col})")


@dataclass(frozen=True, slots=True)
class Selector:
    """Which nodes a rule applies to."""

    kind: SelectorKind
    value: str = ""

    @property
    def specificity(self) -> int:
        """0 universal, 1 shape, 2 class, 3 id."""
        return _SPECIFICITY[self.kind]

    def matches(self, node: Node) -> bool:
        """Whether `node` is selected."""
        if self.kind == "universal":
            return True
        if self.kind == "shape":
            return node.shape == self.value
        if self.kind == "class":
            return self.value in node.classes
        return node.id == self.value


@dataclass(frozen=True, slots=True)
class Rule:
    """A selector and its declarations, in source order."""

    selector: Selector
    declarations: dict[str, str]


def parse_stylesheet(text: str) -> list[Rule]:
    """Parse a model stylesheet; raises StylesheetError. Blank text has no rules."""
    return _Parser(text).rules()


def resolve_properties(node: Node, rules: list[Rule]) -> dict[str, str]:
    """The stylesheet's value for each property on `node`, ignoring the node's own attrs."""
    best: dict[str, tuple[int, str]] = {}
    for rule in rules:
        if not rule.selector.matches(node):
            continue
        rank = rule.selector.specificity
        for prop, value in rule.declarations.items():
            # `>=`: of equal specificity the later rule wins.
            if prop not in best or rank >= best[prop][0]:
                best[prop] = (rank, value)
    return {prop: value for prop, (_rank, value) in best.items()}


def apply_stylesheet(graph: Graph, rules: list[Rule] | None = None) -> Graph:
    """Fill every node's missing model properties from the stylesheet; mutates `graph`."""
    if rules is None:
        rules = parse_stylesheet(str(graph.attrs.get("model_stylesheet", "")))
    for node in graph.nodes.values():
        for prop, value in resolve_properties(node, rules).items():
            node.attrs.setdefault(prop, value)
    return graph


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def rules(self) -> list[Rule]:
        rules = []
        self._skip()
        while self.pos < len(self.text):
            rules.append(self._rule())
            self._skip()
        return rules

    def _rule(self) -> Rule:
        selector = self._selector()
        self._expect("{")
        declarations: dict[str, str] = {}
        while True:
            self._skip()
            if self._peek("}"):
                break
            prop, value = self._declaration()
            declarations[prop] = value
            self._skip()
            if self._peek(";"):
                self.pos += 1
            elif not self._peek("}"):
                raise self._error("expected ';' or '}' after a declaration")
        if not declarations:
            raise self._error("a rule needs at least one declaration")
        self.pos += 1
        return Rule(selector, declarations)

    def _selector(self) -> Selector:
        if self._peek("*"):
            self.pos += 1
            return Selector("universal")
        if self._peek("#"):
            self.pos += 1
            return Selector("id", self._match(_IDENT, "a node id after '#'"))
        if self._peek("."):
            self.pos += 1
            return Selector("class", self._match(_CLASS, "a class name after '.'"))
        return Selector("shape", self._match(_IDENT, "a selector: *, a shape, .class or #id"))

    def _declaration(self) -> tuple[str, str]:
        start = self.pos
        prop = self._match(_IDENT, "a property name")
        if prop not in PROPERTIES:
            raise StylesheetError(f"unknown property {prop!r}; expected one of "
                                  + ", ".join(sorted(PROPERTIES)), self.text, start)
        self._expect(":")
        self._skip()
        quoted = _QUOTED.match(self.text, self.pos)
        if quoted:
            self.pos = quoted.end()
            raw = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            return prop, re.sub(r"\\(.)", r"\1", raw)
        return prop, self._match(_BARE, f"a value for {prop}")

    def _match(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if not match:
            raise self._error(f"expected {what}")
        self.pos = match.end()
        return match.group(0)

    def _expect(self, char: str) -> None:
        self._skip()
        if not self._peek(char):
            raise self._error(f"expected {char!r}")
        self.pos += 1

    def _peek(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def _skip(self) -> None:
        match = _SKIP.match(self.text, self.pos)
        if match:
            self.pos = match.end()

    def _error(self, message: str) -> StylesheetError:
        if self.pos >= len(self.text):
            message += ", got end of stylesheet"
        else:
            message += f", got {self.text[self.pos]!r}"
        return StylesheetError(message, self.text, self.pos)
