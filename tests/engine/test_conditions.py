"""The §10 condition language: parsing, key resolution and evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from ostinato.daemon.engine.conditions import (
    Clause,
    ConditionError,
    evaluate_condition,
    parse_condition,
    resolve_key,
)


def test_parse_clauses() -> None:
    condition = parse_condition('outcome=success && context.tests_passed!=false && ready '
                                '&& preferred_label="[A] Approve"')
    assert condition.clauses == (
        Clause("outcome", "=", "success"),
        Clause("context.tests_passed", "!=", "false"),
        Clause("ready", "truthy"),
        Clause("preferred_label", "=", "[A] Approve"),
    )


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_condition_is_always_true(text: str) -> None:
    assert parse_condition(text).clauses == ()
    assert evaluate_condition(text, "fail", "", {}) is True


@pytest.mark.parametrize(("text", "outcome", "label", "context", "expected"), [
    ("outcome=success", "success", "", {}, True),
    ("outcome=success", "fail", "", {}, False),
    ("outcome!=success", "fail", "", {}, True),
    ("outcome=fail", "fail", "", {}, True),
    ("preferred_label=Fix", "success", "Fix", {}, True),
    ("preferred_label=Fix", "success", "fix", {}, False),  # case-sensitive
    ("outcome=success && context.tests_passed=true", "success", "",
     {"tests_passed": True}, True),
    ("outcome=success && context.tests_passed=true", "success", "",
     {"tests_passed": False}, False),
    ("outcome=success && context.tests_passed=true", "fail", "",
     {"tests_passed": True}, False),
    ("context.loop_state!=exhausted", "success", "", {"loop_state": "running"}, True),
    ("context.loop_state!=exhausted", "success", "", {"loop_state": "exhausted"}, False),
    # Missing keys are "": never equal to a non-empty value, always unequal to one.
    ("context.missing=x", "success", "", {}, False),
    ("context.missing!=x", "success", "", {}, True),
    ('context.missing=""', "success", "", {}, True),
    # The full key is tried first, then the key without `context.`.
    ("context.mode=fast", "success", "", {"context.mode": "fast", "mode": "slow"}, True),
    ("context.mode=slow", "success", "", {"mode": "slow"}, True),
    # Unqualified keys look up the context directly (and only directly).
    ("tool.output=ok", "success", "", {"tool.output": "ok"}, True),
    ("mode=fast", "success", "", {"context.mode": "fast"}, False),
    # Values compare as strings.
    ("context.count=3", "success", "", {"count": 3}, True),
    ("context.ratio=0.5", "success", "", {"ratio": 0.5}, True),
    # Bare keys: non-empty and not false.
    ("flag", "success", "", {"flag": "yes"}, True),
    ("flag", "success", "", {"flag": True}, True),
    ("flag", "success", "", {"flag": False}, False),
    ("flag", "success", "", {"flag": ""}, False),
    ("flag", "success", "", {}, False),
    ("context.flag", "success", "", {"flag": 1}, True),
    ('preferred_label="say \\"hi\\""', "success", 'say "hi"', {}, True),
    ('context.expr="a!=b"', "success", "", {"expr": "a!=b"}, True),
])
def test_evaluate(text: str, outcome: str, label: str, context: dict[str, Any],
                  expected: bool) -> None:
    assert parse_condition(text).evaluate(outcome, label, context) is expected


def test_resolve_key_renders_booleans_lowercase() -> None:
    assert resolve_key("context.ok", "success", "", {"ok": True}) == "true"
    assert resolve_key("ok", "success", "", {"ok": False}) == "false"
    assert resolve_key("outcome", "partial_success", "", {}) == "partial_success"
    assert resolve_key("context.none", "success", "", {"none": None}) == ""


@pytest.mark.parametrize(("text", "offset", "fragment"), [
    ("outcome==success", 7, "'==' is not an operator"),
    ("outcome=success && && x", 18, "empty clause"),
    ("outcome=success &&", 18, "empty clause"),
    ("!outcome", 0, "invalid key '!outcome'"),
    ("outcome=", 8, "missing value"),
    ("=success", 0, "missing key"),
    ("  context.=x", 2, "invalid key 'context.'"),
    ("outcome=two words", 8, "quote values"),
    ("outcome=success || outcome=fail", 8, "quote values"),
    ('preferred_label="open', 16, "invalid quoted value"),
    ("a=1 && b c=2", 7, "invalid key 'b c'"),
])
def test_syntax_errors_have_offsets(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert fragment in info.value.message
    assert info.value.offset == offset
