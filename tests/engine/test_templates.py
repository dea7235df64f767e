"""Context references in prompts: `${key}`, `${key:-default}`, `$$`, with `$goal` and the
`$name` variables still expanded at load time; and the lint rules that check them."""

from __future__ import annotations

from typing import Any

import pytest

from ostinato.daemon.engine.load import load_source
from ostinato.daemon.engine.templates import (
    MISSING,
    MissingReference,
    TemplateError,
    references,
    render,
)

CONTEXT: dict[str, Any] = {"plan.response": "1. Do it\n2. Check it", "score": 0.9,
                           "human.gate.answer": "yes", "items": [1, 2], "flag": True,
                           "empty": ""}


def lookup(key: str) -> Any:
    return CONTEXT.get(key, MISSING)


@pytest.mark.parametrize(("text", "expected"), [
    ("Plan:\n${plan.response}\nGo.", "Plan:\n1. Do it\n2. Check it\nGo."),
    ("score ${score}, items ${items}, flag ${flag}", "score 0.9, items [1,2], flag true"),
    ("${context.human.gate.answer}", "yes"),  # context. is optional, as in conditions
    ("${review.response:-no review yet}", "no review yet"),
    ("[${review.response:-}]", "[]"),
    ("${empty:-fallback}", ""),  # a present empty value is a value
    ("costs $$5 and $$${score}", "costs $5 and $0.9"),
    ("$5, $HOME and {braces} stay", "$5, $HOME and {braces} stay"),
    ("no dollar at all", "no dollar at all"),
])
def test_render_fills_references_from_the_context(text: str, expected: str) -> None:
    assert render(text, lookup) == expected


def test_a_missing_key_without_default_names_the_reference() -> None:
    with pytest.raises(MissingReference) as caught:
        render("Fix: ${review.response}", lookup)
    assert caught.value.reference.text == "${review.response}"
    assert caught.value.reference.key == "review.response"


@pytest.mark.parametrize(("text", "message", "offset"), [
    ("Go ${plan.response", "'${plan.response' is not closed with '}'", 3),
    ("${}", "needs a key", 0),
    ("a ${ spaced }", "needs a key", 2),
    ("${1abc}", "needs a key", 0),
])
def test_a_reference_that_does_not_parse_is_an_error(text: str, message: str,
                                                     offset: int) -> None:
    with pytest.raises(TemplateError) as caught:
        references(text)
    assert message in str(caught.value) and "write $$ for a literal $" in str(caught.value)
    assert caught.value.offset == offset


def test_references_lists_keys_and_defaults() -> None:
    found = references("${a.b} ${c:-x y} $$ ${d}")
    assert [(r.key, r.default) for r in found] == [("a.b", None), ("c", "x y"), ("d", None)]


def _prompt(source: str, variables: dict[str, str] | None = None) -> str:
    result = load_source(source, "dot", variables)
    assert result.graph is not None
    return str(result.graph.nodes["a"].attrs["prompt"])


def test_load_time_variables_leave_context_references_and_escapes_alone() -> None:
    source = ('digraph g { graph [goal="Ship"]; start [shape=Mdiamond]; '
              'a [prompt="$goal v$version: ${plan.response} $$version $$goal"]; '
              'e [shape=Msquare]; start -> a -> e }')
    # $$version stays for the run-time render (which makes it $version); $version expands.
    assert _prompt(source, {"version": "2"}) == "Ship v2: ${plan.response} $$version $$goal"


def _lint(source: str, inputs: tuple[str, ...] = ()) -> list[tuple[str, str, str | None]]:
    from ostinato.daemon.engine.dot import parse_dot
    from ostinato.daemon.engine.validate import validate

    return [(d.rule, d.severity, d.node) for d in validate(parse_dot(source), inputs=inputs)
            if d.rule.startswith("reference_")]


PIPELINE = """\
digraph g {
    graph [goal="Ship"]
    start [shape=Mdiamond]
    exit [shape=Msquare]
    plan [prompt="Plan $goal"]
    check [shape=parallelogram, tool_command="true"]
    gate [shape=hexagon, label="OK? ${check.output}"]
    impl [prompt="%s"]
    start -> plan -> check -> gate -> impl -> exit
}
"""


@pytest.mark.parametrize("prompt", [
    "${plan.response}", "${check.output} ${tool.exit_code}", "${gate.answer}",
    "${human.gate.answer}", "${graph.goal}", "${last_response}", "${risk:-low}",
    "${context.plan.response}", "${stack.instructions}",
])
def test_keys_the_pipeline_sets_resolve(prompt: str) -> None:
    assert _lint(PIPELINE % prompt) == []


def test_unknown_keys_are_warned_about_with_a_fix() -> None:
    from ostinato.daemon.engine.dot import parse_dot
    from ostinato.daemon.engine.validate import validate

    found = [d for d in validate(parse_dot(PIPELINE % "${risk} and ${goal}"))
             if d.rule == "reference_resolves"]
    assert [(d.severity, d.node) for d in found] == [("warning", "impl")] * 2
    assert "refers to ${risk}, which no node of this pipeline is known to set" in \
        found[0].message
    assert found[0].fix is not None and "${risk:-…}" in found[0].fix
    assert found[1].fix == "write $goal (the graph's goal) or ${graph.goal}"
    # An input of the run, or a key a node declares in context_keys, is known.
    assert _lint(PIPELINE % "${risk}", inputs=("risk",)) == []
    declared = PIPELINE.replace('plan [prompt="Plan $goal"]',
                                'plan [prompt="Plan $goal", context_keys="risk, size"]')
    assert _lint(declared % "${risk} ${size}") == []


def test_a_broken_reference_is_a_located_error() -> None:
    from ostinato.daemon.engine.dot import parse_dot
    from ostinato.daemon.engine.validate import validate

    found = [d for d in validate(parse_dot(PIPELINE % "${plan.response"))
             if d.rule == "reference_syntax"]
    assert [(d.severity, d.node, d.line) for d in found] == [("error", "impl", 8)]
    assert "is not closed" in found[0].message
