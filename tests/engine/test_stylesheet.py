"""The model stylesheet (§8) and the transforms that run between parse and validate (§9)."""

from __future__ import annotations

import pytest

from ostinato.daemon.engine.dot import parse_dot
from ostinato.daemon.engine.graph import Graph
from ostinato.daemon.engine.stylesheet import (
    Selector,
    StylesheetError,
    apply_stylesheet,
    parse_stylesheet,
)
from ostinato.daemon.engine.transforms import (
    Transform,
    VariableExpansion,
    apply_transforms,
    expand_variables,
    register_transform,
    registered_transforms,
    unregister_transform,
)

EXAMPLE = """\
digraph Pipeline {
    graph [
        goal="Implement feature X",
        model_stylesheet="
            * { llm_model: claude-sonnet-4-5; llm_provider: anthropic; }
            .code { llm_model: claude-opus-4-6; llm_provider: anthropic; }
            #critical_review { llm_model: gpt-5.2; llm_provider: openai; reasoning_effort: high; }
        "
    ]

    start [shape=Mdiamond]
    exit  [shape=Msquare]

    plan            [label="Plan", class="planning"]
    implement       [label="Implement", class="code"]
    critical_review [label="Critical Review", class="code"]

    start -> plan -> implement -> critical_review -> exit
}
"""

_MODEL_KEYS = ("llm_model", "llm_provider", "reasoning_effort")


def _models(graph: Graph, node_id: str) -> dict[str, object]:
    attrs = graph.nodes[node_id].attrs
    return {k: attrs[k] for k in _MODEL_KEYS if k in attrs}


def test_spec_example() -> None:
    graph = apply_stylesheet(parse_dot(EXAMPLE))
    assert _models(graph, "plan") == {"llm_model": "claude-sonnet-4-5",
                                      "llm_provider": "anthropic"}
    assert _models(graph, "implement") == {"llm_model": "claude-opus-4-6",
                                           "llm_provider": "anthropic"}
    assert _models(graph, "critical_review") == {"llm_model": "gpt-5.2",
                                                 "llm_provider": "openai",
                                                 "reasoning_effort": "high"}
    assert _models(graph, "start") == {"llm_model": "claude-sonnet-4-5",
                                       "llm_provider": "anthropic"}


def test_parse_selectors_and_values() -> None:
    rules = parse_stylesheet("""
        /* comment */ box { llm_model: "claude opus"; }
        .fast-1 { llm_provider: 'gemini' }
        #review { reasoning_effort: high; llm_model: openrouter/anthropic/claude-3.5 }
    """)
    assert [r.selector for r in rules] == [Selector("shape", "box"), Selector("class", "fast-1"),
                                          Selector("id", "review")]
    assert [r.selector.specificity for r in rules] == [1, 2, 3]
    assert rules[0].declarations == {"llm_model": "claude opus"}
    assert rules[1].declarations == {"llm_provider": "gemini"}
    assert rules[2].declarations == {"reasoning_effort": "high",
                                     "llm_model": "openrouter/anthropic/claude-3.5"}
    assert parse_stylesheet("  \n ") == []


def test_specificity_beats_order() -> None:
    graph = parse_dot('digraph G { a [class="c"] b [shape=hexagon] }')
    apply_stylesheet(graph, parse_stylesheet(
        "#a { llm_model: by-id } .c { llm_model: by-class } box { llm_model: by-shape } "
        "* { llm_model: any; llm_provider: p }"))
    assert _models(graph, "a") == {"llm_model": "by-id", "llm_provider": "p"}
    assert _models(graph, "b") == {"llm_model": "any", "llm_provider": "p"}


def test_shape_selector() -> None:
    graph = parse_dot("digraph G { a b [shape=hexagon] }")
    apply_stylesheet(graph, parse_stylesheet("box { llm_model: m1 } hexagon { llm_model: m2 }"))
    assert graph.nodes["a"].attrs["llm_model"] == "m1"
    assert graph.nodes["b"].attrs["llm_model"] == "m2"


def test_later_rule_of_equal_specificity_wins() -> None:
    graph = parse_dot('digraph G { a [class="x,y"] }')
    apply_stylesheet(graph, parse_stylesheet(".x { llm_model: first } .y { llm_model: second }"))
    assert graph.nodes["a"].attrs["llm_model"] == "second"


def test_explicit_attributes_win() -> None:
    graph = parse_dot('digraph G { node [llm_provider=mine] a [llm_model="explicit"] }')
    apply_stylesheet(graph, parse_stylesheet("#a { llm_model: s; llm_provider: s; "
                                             "reasoning_effort: low }"))
    assert _models(graph, "a") == {"llm_model": "explicit", "llm_provider": "mine",
                                   "reasoning_effort": "low"}


def test_subgraph_class_selects() -> None:
    graph = parse_dot('digraph G { subgraph { label="Loop A"; a } b }')
    apply_stylesheet(graph, parse_stylesheet(".loop-a { llm_model: looped }"))
    assert graph.nodes["a"].attrs["llm_model"] == "looped"
    assert "llm_model" not in graph.nodes["b"].attrs


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [
    ("* { llm_modle: x }", 1, 5, "unknown property 'llm_modle'"),
    ("* { llm_model: x y }", 1, 18, "expected ';' or '}'"),
    ("* { llm_model: x }\n\n  ? { }", 3, 3, "expected a selector"),
    ("box {\n  llm_model x\n}", 2, 13, "expected ':'"),
    ("#a { llm_model: x", 1, 18, "got end of stylesheet"),
    (".code { }", 1, 9, "at least one declaration"),
    ("* { llm_model: }", 1, 16, "expected a value for llm_model"),
])
def test_stylesheet_errors(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(StylesheetError) as info:
        parse_stylesheet(text)
    assert fragment in info.value.message
    assert (info.value.line, info.value.col) == (line, col)


# --- transforms ---------------------------------------------------------------------------


def test_goal_expansion_in_prompt_label_and_tool_command() -> None:
    graph = parse_dot('digraph G { goal="ship v2"\n a [prompt="Do $goal now", '
                      'label="$goal", tool_command="echo $goal", other="$goal"] }')
    out = apply_transforms(graph)
    assert out.nodes["a"].attrs == {"prompt": "Do ship v2 now", "label": "ship v2",
                                    "tool_command": "echo ship v2", "other": "$goal"}
    # The input graph is left untouched.
    assert graph.nodes["a"].attrs["prompt"] == "Do $goal now"


def test_variables_expand_and_goal_variable_overrides() -> None:
    graph = parse_dot('digraph G { goal="old"\n a [prompt="$goal in $env for $goal_x"] }')
    out = apply_transforms(graph, {"goal": "new", "env": "prod", "goal_x": "X"})
    assert out.nodes["a"].attrs["prompt"] == "new in prod for X"
    assert out.goal == "new"


def test_expand_variables_whole_names_single_pass() -> None:
    values = {"a": "$ab", "ab": "AB", "goal": "G"}
    assert expand_variables("$a $ab $abc", values) == "$ab AB $abc"
    assert expand_variables("$goalpost, $goal.", values) == "$goalpost, G."
    assert expand_variables("no vars", values) == "no vars"
    assert expand_variables("cost $5", {}) == "cost $5"


def test_stylesheet_runs_as_transform_and_bad_stylesheet_is_skipped() -> None:
    out = apply_transforms(parse_dot(EXAMPLE))
    assert out.nodes["implement"].attrs["llm_model"] == "claude-opus-4-6"
    bad = parse_dot('digraph G { model_stylesheet="* { nope: 1 }"\n a }')
    assert "nope" not in apply_transforms(bad).nodes["a"].attrs


class _Tag:
    """A custom transform that appends its name to every node's `trail`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, graph: Graph) -> Graph:
        for node in graph.nodes.values():
            node.attrs["trail"] = str(node.attrs.get("trail", "")) + self.name
        return graph


def test_custom_transforms_run_after_builtins_in_registration_order() -> None:
    first, second = _Tag("1"), _Tag("2")
    assert isinstance(first, Transform)
    register_transform(first)
    register_transform(second)
    try:
        assert registered_transforms()[-2:] == (first, second)
        graph = parse_dot('digraph G { goal="g"\n a [prompt="$goal"] }')
        out = apply_transforms(graph, extra=[_Tag("3")])
        assert out.nodes["a"].attrs["trail"] == "123"
        assert out.nodes["a"].attrs["prompt"] == "g"
        assert "trail" not in graph.nodes["a"].attrs
    finally:
        unregister_transform(first)
        unregister_transform(second)
    assert first not in registered_transforms()


def test_variable_expansion_alone_copies() -> None:
    graph = parse_dot('digraph G { a [prompt="$who"] }')
    out = VariableExpansion({"who": "me"}).apply(graph)
    assert out.nodes["a"].attrs["prompt"] == "me"
    assert graph.nodes["a"].attrs["prompt"] == "$who"
