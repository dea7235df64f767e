"""DOT parsing: attractor §2 and §11.1, with exact locations for every error."""

from __future__ import annotations

import gc

import pytest

from ostinato.daemon.engine.dot import parse_dot
from ostinato.daemon.engine.errors import PipelineSyntaxError
from ostinato.daemon.engine.graph import Duration, Location
from ostinato.daemon.engine.validate import validate

SIMPLE = """\
digraph Simple {
    graph [goal="Run tests and report", label="Simple pipeline"]
    rankdir=LR

    start [shape=Mdiamond, label="Start"]
    exit  [shape=Msquare, label="Exit"]

    run_tests [label="Run Tests", prompt="Run the test suite and report results"]
    report    [label="Report", prompt="Summarize the test results"]

    start -> run_tests -> report -> exit
}
"""

SMOKE = """\
digraph test_pipeline {
    graph [goal="Create a hello world Python script"]

    start       [shape=Mdiamond]
    plan        [shape=box, prompt="Plan how to create a hello world script for: $goal"]
    implement   [shape=box, prompt="Write the code based on the plan", goal_gate=true]
    review      [shape=box, prompt="Review the code for correctness"]
    done        [shape=Msquare]

    start -> plan
    plan -> implement
    implement -> review [condition="outcome=success"]
    implement -> plan   [condition="outcome=fail", label="Retry"]
    review -> done      [condition="outcome=success"]
    review -> implement [condition="outcome=fail", label="Fix"]
}
"""


def _error(source: str) -> PipelineSyntaxError:
    with pytest.raises(PipelineSyntaxError) as info:
        parse_dot(source)
    return info.value


def test_simple_linear_pipeline() -> None:
    graph = parse_dot(SIMPLE)
    assert graph.name == "Simple"
    assert graph.source == SIMPLE
    assert graph.source_format == "dot"
    assert graph.loc == Location(1, 1)
    assert list(graph.nodes) == ["start", "exit", "run_tests", "report"]
    assert [(e.source, e.target) for e in graph.edges] == [
        ("start", "run_tests"), ("run_tests", "report"), ("report", "exit")]
    assert graph.nodes["run_tests"].prompt == "Run the test suite and report results"
    assert graph.nodes["start"].type == "start"
    assert graph.nodes["exit"].type == "exit"
    assert graph.nodes["report"].type == "codergen"
    assert graph.nodes["report"].loc == Location(9, 5)


def test_graph_level_attributes() -> None:
    graph = parse_dot(SIMPLE)
    assert graph.goal == "Run tests and report"
    assert graph.attrs["label"] == "Simple pipeline"
    assert graph.attrs["rankdir"] == "LR"
    assert graph.attr_locs["rankdir"] == Location(3, 5)
    assert graph.attr_locs["goal"] == Location(2, 12)


def test_top_level_decls_and_stylesheet_attr() -> None:
    graph = parse_dot('digraph G {\n goal = "ship it"\n model_stylesheet = "* { llm_model: x }"'
                      '\n default_max_retries = "2"\n a }')
    assert graph.goal == "ship it"
    assert graph.attrs["model_stylesheet"] == "* { llm_model: x }"
    assert graph.attrs["default_max_retries"] == 2


def test_multi_line_node_attributes() -> None:
    graph = parse_dot("""digraph G {
    review_gate [
        shape=hexagon,
        label="Review Changes",
        type="wait.human",
        prompt="Line one
line two"
    ]
}""")
    node = graph.nodes["review_gate"]
    assert node.attrs == {"shape": "hexagon", "label": "Review Changes",
                          "type": "wait.human", "prompt": "Line one\nline two"}
    assert node.type == "wait.human"
    assert node.attr_locs["label"] == Location(4, 9)


def test_edge_attributes() -> None:
    graph = parse_dot('digraph G { a -> b [label="Yes", condition="outcome=success", '
                      'weight=3, loop_restart="true"] }')
    edge = graph.edges[0]
    assert edge.label == "Yes"
    assert edge.condition == "outcome=success"
    assert edge.weight == 3
    assert edge.attrs["loop_restart"] is True
    assert edge.attr_locs["condition"] == Location(1, 34)
    assert edge.loc == Location(1, 13)


def test_chained_edges_share_attributes() -> None:
    graph = parse_dot('digraph G {\n A -> B -> C [label="next", weight=2]\n}')
    assert [(e.source, e.target, e.attrs) for e in graph.edges] == [
        ("A", "B", {"label": "next", "weight": 2}),
        ("B", "C", {"label": "next", "weight": 2}),
    ]
    assert [e.loc for e in graph.edges] == [Location(2, 2), Location(2, 7)]
    # Nodes met only in edges exist, located where they were first mentioned.
    assert graph.nodes["C"].loc == Location(2, 12)


def test_defaults_apply_to_subsequent_declarations_only() -> None:
    graph = parse_dot("""digraph G {
    early
    node [shape=box, timeout="900s"]
    edge [weight=5]
    late
    custom [timeout=30s]
    late -> fresh
}""")
    assert graph.nodes["early"].attrs == {}
    assert graph.nodes["late"].attrs == {"shape": "box", "timeout": Duration(900_000)}
    assert graph.nodes["custom"].attrs["timeout"] == Duration(30_000)
    assert graph.nodes["fresh"].attrs["timeout"] == Duration(900_000)
    assert graph.edges[0].weight == 5


def test_subgraph_scoping_and_class_derivation() -> None:
    graph = parse_dot("""digraph G {
    start -> Plan
    subgraph cluster_loop {
        label = "Loop A"
        node [thread_id="loop-a", timeout="900s"]

        Plan      [label="Plan next step"]
        Implement [label="Implement", timeout="1800s"]
    }
    after
}""")
    plan, implement, after = (graph.nodes[n] for n in ("Plan", "Implement", "after"))
    assert plan.attrs["thread_id"] == "loop-a"
    assert plan.attrs["timeout"] == Duration(900_000)
    assert implement.attrs["thread_id"] == "loop-a"
    assert implement.attrs["timeout"] == Duration(1_800_000)
    assert plan.classes == ["loop-a"] and implement.classes == ["loop-a"]
    # Defaults and classes stay inside the subgraph; its label is not the graph's.
    assert after.attrs == {} and after.classes == []
    assert "label" not in graph.attrs
    assert plan.loc == Location(2, 14)


def test_class_derivation_strips_symbols_and_nests() -> None:
    graph = parse_dot("""digraph G {
    subgraph outer {
        graph [label="Fast Path!"]
        subgraph { label="R&D Team 2"; x [class="code, critical"] }
        y
    }
}""")
    assert graph.nodes["x"].classes == ["code", "critical", "fast-path", "rd-team-2"]
    assert graph.nodes["y"].classes == ["fast-path"]


def test_node_declared_twice_merges_later_wins() -> None:
    graph = parse_dot('digraph G { a [label="one", prompt="p"]\n a [label="two"] }')
    assert graph.nodes["a"].attrs == {"label": "two", "prompt": "p"}
    assert graph.nodes["a"].loc == Location(1, 13)


def test_value_types_quoted_and_unquoted() -> None:
    graph = parse_dot('digraph G { a [i=42, n=-1, f=0.5, g=-3.14, t=true, b=false, '
                      'bare=claude-opus-4.6:x, s="42", q="true", esc="a\\"b\\\\c\\td\\ne"] }')
    attrs = graph.nodes["a"].attrs
    assert attrs["i"] == 42 and attrs["n"] == -1
    assert attrs["f"] == 0.5 and attrs["g"] == -3.14
    assert attrs["t"] is True and attrs["b"] is False
    assert attrs["bare"] == "claude-opus-4.6:x"
    # Quoted values stay strings unless the key is typed.
    assert attrs["s"] == "42" and attrs["q"] == "true"
    assert attrs["esc"] == 'a"b\\c\td\ne'


@pytest.mark.parametrize(("text", "ms"), [
    ("250ms", 250), ("900s", 900_000), ("15m", 900_000), ("2h", 7_200_000),
    ("1d", 86_400_000), ('"45s"', 45_000),
])
def test_durations(text: str, ms: int) -> None:
    graph = parse_dot(f"digraph G {{ a [timeout={text}, other={text}] }}")
    assert graph.nodes["a"].attrs["timeout"] == Duration(ms)
    expected_other = text.strip('"') if text.startswith('"') else Duration(ms)
    assert graph.nodes["a"].attrs["other"] == expected_other


def test_typed_attributes_are_normalised() -> None:
    graph = parse_dot('digraph G { a [max_retries="3", goal_gate="true", auto_status=false, '
                      'allow_partial="FALSE", max_parallel=4] }')
    attrs = graph.nodes["a"].attrs
    assert attrs["max_retries"] == 3
    assert attrs["goal_gate"] is True
    assert attrs["auto_status"] is False
    assert attrs["allow_partial"] is False
    assert attrs["max_parallel"] == 4


@pytest.mark.parametrize(("attr", "col", "fragment"), [
    ('timeout="soon"', 21, "timeout must be a duration"),
    ("timeout=900", 21, "timeout must be a duration"),
    ('max_retries="x"', 25, "max_retries must be an integer"),
    ("goal_gate=yes", 23, "goal_gate must be true or false"),
    ("weight=1.5", 20, "weight must be an integer"),
])
def test_untypable_values_are_syntax_errors(attr: str, col: int, fragment: str) -> None:
    error = _error(f"digraph G {{\n  abcdefgh [{attr}]\n}}")
    assert (error.line, error.col) == (2, col)
    assert fragment in error.message


def test_qualified_keys() -> None:
    graph = parse_dot('digraph G {\n graph [tool_hooks.pre="echo hi", stack.child_dotfile="c.dot"]'
                      '\n gate [human.default_choice="approve"] }')
    assert graph.attrs["tool_hooks.pre"] == "echo hi"
    assert graph.attrs["stack.child_dotfile"] == "c.dot"
    assert graph.nodes["gate"].attrs["human.default_choice"] == "approve"


def test_comments_are_stripped() -> None:
    graph = parse_dot("""// leading comment
digraph G { /* block
   comment */ a [label="not // a comment", prompt="nor /* this */"] // trailing
# hash comment
    a -> b /* inline */ -> c
}""")
    assert graph.nodes["a"].attrs == {"label": "not // a comment", "prompt": "nor /* this */"}
    assert [(e.source, e.target) for e in graph.edges] == [("a", "b"), ("b", "c")]


def test_semicolons_trailing_commas_and_quoted_ids() -> None:
    graph = parse_dot('digraph G { a [x=1, y=2,]; "b" [x=1; y=2]; a -> "b"; ; }')
    assert graph.nodes["a"].attrs == {"x": 1, "y": 2}
    assert graph.nodes["b"].attrs == {"x": 1, "y": 2}
    assert [(e.source, e.target) for e in graph.edges] == [("a", "b")]


def test_class_attribute_is_split() -> None:
    graph = parse_dot('digraph G { review [class="code,critical", prompt="Review"] }')
    assert graph.nodes["review"].classes == ["code", "critical"]


def test_smoke_pipeline_parses_and_validates() -> None:
    graph = parse_dot(SMOKE)
    assert graph.goal == "Create a hello world Python script"
    assert len(graph.nodes) == 5
    assert len(graph.edges) == 6
    assert graph.nodes["implement"].attrs["goal_gate"] is True
    assert [d for d in validate(graph) if d.severity == "error"] == []


# --- errors, with exact locations ---------------------------------------------------------


def test_missing_closing_bracket() -> None:
    error = _error('digraph G {\n  a [label="x"\n  b -> c\n}')
    assert (error.line, error.col) == (3, 3)
    assert error.message.startswith("expected ',' or ']', got 'b'")


def test_undirected_edge() -> None:
    error = _error("digraph G {\n  a -> b\n  b -- c\n}")
    assert (error.line, error.col) == (3, 5)
    assert "'--'" in error.message and "'->'" in error.message


def test_strict_digraph() -> None:
    error = _error("\n  strict digraph G { a }")
    assert (error.line, error.col) == (2, 3)
    assert "strict" in error.message


def test_undirected_graph() -> None:
    error = _error("graph G { a }")
    assert (error.line, error.col) == (1, 1)
    assert "undirected" in error.message


@pytest.mark.parametrize(("source", "line", "col", "shown"), [
    ("digraph G {\n  ../../x [label=1]\n}", 2, 3, "'../../x'"),
    ('digraph G {\n  a -> "../../x"\n}', 2, 8, "'../../x'"),
    ("digraph G {\n  a.b -> c\n}", 2, 3, "'a.b'"),
    ("digraph G {\n  a -> 42\n}", 2, 8, "'42'"),
])
def test_invalid_node_ids(source: str, line: int, col: int, shown: str) -> None:
    error = _error(source)
    assert (error.line, error.col) == (line, col)
    assert error.message.startswith(f"invalid node id {shown}")


def test_unterminated_string() -> None:
    error = _error('digraph G {\n  a [label=1]\n  b [label="oops]\n}\n')
    assert (error.line, error.col) == (3, 12)
    assert error.message.startswith("unterminated string")


def test_unterminated_block_comment() -> None:
    error = _error("digraph G {\n  a /* never closed\n}")
    assert (error.line, error.col) == (2, 5)
    assert "unterminated comment" in error.message


def test_two_graphs() -> None:
    error = _error("digraph A { a }\n\ndigraph B { b }\n")
    assert (error.line, error.col) == (3, 1)
    assert "only one graph" in error.message


def test_unexpected_end_of_file() -> None:
    error = _error("digraph G {\n  a -> b\n")
    assert (error.line, error.col) == (3, 1)
    assert error.message.startswith("unexpected end of file")
    assert "'}'" in error.message


def test_missing_graph_name() -> None:
    error = _error("digraph {\n a }")
    assert (error.line, error.col) == (1, 9)
    assert "needs a name" in error.message


def test_error_as_diagnostic() -> None:
    diagnostic = _error("digraph G {\n  a -- b }").to_diagnostic()
    assert diagnostic.rule == "syntax"
    assert diagnostic.severity == "error"
    assert (diagnostic.line, diagnostic.col) == (2, 5)
    assert str(_error("digraph G {\n  a -- b }")).startswith("2:5: ")


def test_parsing_the_same_source_again_gives_an_independent_equal_graph() -> None:
    source = 'digraph G { start [shape=Mdiamond] a [prompt="x"] start -> a }'
    first = parse_dot(source)
    first.nodes["a"].attrs["prompt"] = "changed"
    first.edges.clear()
    second = parse_dot(source)  # from the kept syntax tree: nothing of `first` is shared
    assert second.nodes["a"].attrs["prompt"] == "x"
    assert [(e.source, e.target) for e in second.edges] == [("start", "a")]


def test_a_kept_syntax_tree_is_left_out_of_garbage_collections() -> None:
    # Every full collection walks every object the collector tracks: lark's tree of a
    # 10,000-node pipeline, kept for the next load, added a quarter of a second to each.
    body = "\n".join(f'  n{i} [prompt="step {i}", timeout="5s"]\n  n{i - 1} -> n{i}'
                     for i in range(1, 2001))
    source = f"digraph Big {{\n  n0 [shape=Mdiamond]\n{body}\n}}"
    parse_dot('digraph Warm { a -> b }')  # the parser itself is built once per process
    gc.collect()
    before = len(gc.get_objects())
    graph = parse_dot(source)
    assert len(graph.nodes) == 2001
    del graph
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # lark's tree: about 35 per node
    assert parse_dot(source).nodes["n2000"].attrs["prompt"] == "step 2000"  # it was kept
