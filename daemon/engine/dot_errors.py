"""What a lark parse error of a DOT pipeline says to a person: the message and location of
its PipelineSyntaxError."""

from __future__ import annotations

import re

from lark import Token, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from .errors import PipelineSyntaxError

# How terminals read in messages, in the order they are listed; values all read "a value".
_READABLE = {
    "ARROW": "'->'", "COMMA": "','", "SEMI": "';'", "EQUAL": "'='", "LSQB": "'['",
    "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'", "NAME": "an identifier",
    "STRING": "a string", "BARE": "a value", "DURATION": "a value", "FLOAT": "a value",
    "INT": "a value", "STRICT": "'strict'", "DIGRAPH": "'digraph'", "GRAPH": "'graph'",
    "NODE": "'node'", "EDGE": "'edge'", "SUBGRAPH": "'subgraph'", "UNDIRECTED": "'--'",
}
_STATEMENT_START = {"GRAPH", "NODE", "EDGE", "SUBGRAPH"}


def translate(exc: UnexpectedInput, source: str) -> PipelineSyntaxError:
    """A lark error as a PipelineSyntaxError with a message a person can act on."""
    line, col = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        return PipelineSyntaxError(_bad_characters(exc, source), line, col)
    if isinstance(exc, UnexpectedToken):
        token, expected = exc.token, exc.expected
        if token.type == "$END":
            lines = source.split("\n")
            return PipelineSyntaxError(
                f"unexpected end of file; expected {_readable(expected)}",
                len(lines), len(lines[-1]) + 1)
        if {"NAME", "STRING"} <= expected and token.type in ("INT", "FLOAT", "DURATION",
                                                              "BARE"):
            return PipelineSyntaxError(
                f"invalid node id {str(token)!r}: node ids match [A-Za-z_][A-Za-z0-9_]*",
                line, col)
        message = f"expected {_readable(expected)}, got {_describe(token)}"
        if expected <= {"COMMA", "SEMI", "RSQB"}:
            message += " (attributes are separated by ',' and the list ends with ']')"
        return PipelineSyntaxError(message, line, col)
    return PipelineSyntaxError(f"syntax error: {exc}", line if line > 0 else 1,
                               col if col > 0 else 1)


def _bad_characters(exc: UnexpectedCharacters, source: str) -> str:
    char = exc.char
    if char == '"':
        return "unterminated string: no closing '\"'"
    if source.startswith("/*", exc.pos_in_stream):
        return "unterminated comment: no closing '*/'"
    allowed = exc.allowed or set()
    if {"NAME", "STRING"} <= allowed:
        word = re.match(r"[^\s\[\];,{}]+", source[exc.pos_in_stream:])
        text = word.group(0) if word else char
        return f"invalid node id {text!r}: node ids match [A-Za-z_][A-Za-z0-9_]*"
    if allowed:
        return f"unexpected character {char!r}; expected {_readable(allowed)}"
    return f"unexpected character {char!r}"


def _readable(terminals: set[str]) -> str:
    names = set(terminals)
    if names >= _STATEMENT_START:
        names -= _STATEMENT_START | {"NAME", "STRING", "SEMI"}
        names.add("STATEMENT")
    # ',' is the documented separator and '--' is only parsed to be rejected: naming the
    # lenient alternatives would only confuse the message.
    if len(names) > 1:
        names -= {"SEMI", "UNDIRECTED"}
    words = list(dict.fromkeys(_READABLE.get(n, "a statement" if n == "STATEMENT" else n)
                               for n in sorted(names, key=_order)))
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _order(name: str) -> int:
    keys = list(_READABLE)
    return keys.index(name) if name in keys else -1


def _describe(token: Token) -> str:
    text = str(token)
    if token.type == "STRING":
        short = text if len(text) <= 24 else text[:20] + '..."'
        return f"string {short}"
    return repr(text)
