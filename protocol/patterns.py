"""User-written regular expressions (the `regex` check, `jmespath`'s `regex` op), compiled
with RE2.

RE2 matches in time linear in the text, so no pattern a client sends (`(a+)+$`, say) can
stall the daemon's event loop the way a backtracking engine (Python's `re`) would. The price
is RE2's syntax: no backreferences, no lookaround. Invariants compile their patterns when
they are parsed, so such a pattern is refused at snapshot.create / run.reeval, and the
evaluators use the same compiled (cached) pattern.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

SYNTAX_URL = "https://github.com/google/re2/wiki/Syntax"

# (how RE2's error message ends, what to tell the user) for what Python users often write.
_HINTS = (
    (re.compile(r"\\[1-9kg]$|\(\?P$"), "RE2 does not support backreferences"),
    (re.compile(r"\(\?<?[=!]$"), "RE2 does not support lookahead or lookbehind"),
    (re.compile(r"\\Z$"), "RE2 writes the end of the text as \\z"),
    (re.compile(r"\\u$"), "RE2 writes a code point as \\x{00e9}"),
)


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why and where RE2's syntax is."""


def _options(re2: Any, ignore_case: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # a client's bad pattern is its error, not the daemon's log
    return options


# Bounded: each compiled pattern may hold up to RE2's max_mem (8 MiB) of matching state.
@lru_cache(maxsize=64)
def compile_pattern(pattern: str, ignore_case: bool = False) -> Any:
    """The RE2 pattern (with `.search` like re's) or PatternError saying why not."""
    import re2  # imported by the first pattern compiled: the daemon starts faster

    try:
        return re2.compile(pattern, _options(re2, ignore_case))
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "unknown error"
        if isinstance(detail, bytes):  # RE2's messages come as bytes
            detail = detail.decode("utf-8", "replace")
        raise PatternError(_message(detail)) from None


def _message(detail: str) -> str:
    """RE2's complaint, what it means for a Python habit, and where the syntax is."""
    hint = next((h for test, h in _HINTS if test.search(detail)), None)
    why = f"{hint}; see its syntax" if hint else "patterns use RE2 syntax"
    return f"not a valid regular expression: {detail} ({why}: {SYNTAX_URL})"
