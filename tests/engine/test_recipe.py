"""YAML recipes: linear chains, needs DAGs, typed attributes and located errors."""

from __future__ import annotations

import pytest

from ostinato.daemon.engine.errors import PipelineSyntaxError
from ostinato.daemon.engine.graph import Duration, Location
from ostinato.daemon.engine.recipe import parse_recipe
from ostinato.daemon.engine.validate import validate

LINEAR = """\
name: triage
goal: Summarise the issue
stages:
  - id: fetch
    type: tool
    tool_command: ./fetch.sh
    timeout: 30s
  - id: summarise
    prompt: "Summarise for $goal"
  - id: report
    label: Report
    params:
      llm_model: gpt-4o
      max_retries: "2"
"""

DIAMOND = """\
name: diamond
defaults:
  timeout: 900s
  llm_model: small
stages:
  - id: a
    prompt: A
  - id: b
    needs: a
    prompt: B
  - id: c
    needs: [a]
    prompt: C
    llm_model: big
  - id: d
    needs: [b, c]
    prompt: D
"""


def _error(source: str) -> PipelineSyntaxError:
    with pytest.raises(PipelineSyntaxError) as info:
        parse_recipe(source)
    return info.value


def test_linear_chain_in_list_order() -> None:
    graph = parse_recipe(LINEAR)
    assert graph.name == "triage"
    assert graph.goal == "Summarise the issue"
    assert graph.source_format == "recipe"
    assert graph.dag is False
    assert list(graph.nodes) == ["start", "fetch", "summarise", "report", "exit"]
    assert [(e.source, e.target) for e in graph.edges] == [
        ("start", "fetch"), ("fetch", "summarise"), ("summarise", "report"),
        ("report", "exit")]
    assert graph.nodes["start"].shape == "Mdiamond"
    assert graph.nodes["exit"].shape == "Msquare"


def test_stage_attributes_and_types() -> None:
    graph = parse_recipe(LINEAR)
    fetch, summarise, report = (graph.nodes[n] for n in ("fetch", "summarise", "report"))
    assert fetch.type == "tool" and fetch.shape == "parallelogram"
    assert fetch.attrs["tool_command"] == "./fetch.sh"
    assert fetch.attrs["timeout"] == Duration(30_000)
    assert summarise.type == "codergen" and summarise.shape == "box"
    assert summarise.attrs["prompt"] == "Summarise for $goal"
    assert report.attrs["llm_model"] == "gpt-4o"
    assert report.attrs["max_retries"] == 2
    assert report.label == "Report"


def test_locations_are_one_based() -> None:
    graph = parse_recipe(LINEAR)
    assert graph.nodes["fetch"].loc == Location(4, 5)
    assert graph.nodes["report"].loc == Location(10, 5)
    assert graph.nodes["fetch"].attr_locs["timeout"] == Location(7, 5)
    assert graph.nodes["report"].attr_locs["llm_model"] == Location(13, 7)
    assert graph.attr_locs["goal"] == Location(2, 1)
    # The edge into a stage is located at the stage.
    assert graph.edges[1].loc == Location(8, 5)


def test_diamond_dag() -> None:
    graph = parse_recipe(DIAMOND)
    assert graph.dag is True
    assert sorted((e.source, e.target) for e in graph.edges) == sorted([
        ("start", "a"), ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "exit")])
    need_edge = next(e for e in graph.edges if (e.source, e.target) == ("c", "d"))
    assert need_edge.loc == Location(16, 16)


def test_defaults_apply_unless_stage_overrides() -> None:
    graph = parse_recipe(DIAMOND)
    assert graph.nodes["a"].attrs["llm_model"] == "small"
    assert graph.nodes["c"].attrs["llm_model"] == "big"
    assert all(graph.nodes[n].attrs["timeout"] == Duration(900_000) for n in "abcd")
    assert "timeout" not in graph.nodes["start"].attrs


def test_dag_with_several_roots_and_leaves() -> None:
    graph = parse_recipe("name: x\nstages:\n  - id: a\n  - id: b\n  - id: c\n    needs: [a]\n")
    assert sorted((e.source, e.target) for e in graph.edges) == sorted([
        ("start", "a"), ("start", "b"), ("a", "c"), ("b", "exit"), ("c", "exit")])


def test_recipes_validate_cleanly() -> None:
    for source in (LINEAR, DIAMOND):
        assert [d for d in validate(parse_recipe(source)) if d.severity == "error"] == []


def test_graph_attrs_stylesheet_and_classes() -> None:
    graph = parse_recipe("""\
name: styled
attrs: {default_max_retries: "1", goal: from-attrs, label: Styled}
goal: top-level wins
model_stylesheet: "* { llm_model: m }"
stages:
  - id: a
    class: [code, critical]
  - id: b
    class: "fast, cheap"
""")
    assert graph.attrs["default_max_retries"] == 1
    assert graph.goal == "top-level wins"
    assert graph.attrs["model_stylesheet"] == "* { llm_model: m }"
    assert graph.nodes["a"].classes == ["code", "critical"]
    assert graph.nodes["b"].classes == ["fast", "cheap"]


def test_needs_cycle_is_located() -> None:
    error = _error("""\
name: loop
stages:
  - id: a
    needs: [c]
  - id: b
    needs: [a]
  - id: c
    needs: [b]
""")
    assert (error.line, error.col) == (6, 13)
    assert error.message == "needs form a cycle: a needs c needs b needs a"


def test_self_need_is_a_cycle() -> None:
    error = _error("name: x\nstages:\n  - id: a\n    needs: a\n")
    assert (error.line, error.col) == (4, 12)
    assert "cycle" in error.message


def test_unknown_need() -> None:
    error = _error("name: x\nstages:\n  - id: a\n  - id: b\n    needs: [a, nope]\n")
    assert (error.line, error.col) == (5, 16)
    assert error.message == "stage 'b' needs 'nope', which is not a stage"


@pytest.mark.parametrize(("source", "line", "col", "fragment"), [
    ("- a\n- b\n", 1, 1, "must be a mapping"),
    ("name: x\nstages:\n  - prompt: hi\n", 3, 5, "needs an `id`"),
    ("name: x\nstages:\n  - id: a\n  - id: a\n", 4, 9, "duplicate stage id 'a'"),
    ("name: x\nstages:\n  - id: ../../x\n", 3, 9, "invalid stage id '../../x'"),
    ("name: x\nstages:\n  - id: exit\n", 3, 9, "reserved"),
    ("name: x\nstages: []\n", 2, 9, "non-empty list"),
    ("stages:\n  - id: a\n", 1, 1, "needs a `name`"),
    ("name: x\nstage:\n  - id: a\n", 2, 1, "unknown recipe key 'stage'"),
    ("name: x\nstages:\n  - id: a\n    timeout: 5\n", 4, 14, "timeout must be a duration"),
    ("name: x\nstages:\n  - id: a\n    goal_gate: maybe\n", 4, 16, "goal_gate must be true"),
    ("name: x\nstages:\n  - id: a\n    prompt: {x: 1}\n", 4, 13, "single value"),
    ("name: x\nstages:\n  - id: a\n    needs: [{x: 1}]\n", 4, 13, "stage id or a list"),
    ("name: x\nstages:\n  - id: a\n    label: A\n    params: {label: B}\n", 5, 14,
     "both in the stage and in its params"),
    ("name: x\nname: y\nstages: [{id: a}]\n", 2, 1, "duplicate key 'name'"),
    ("name: x\nstages:\n  - id: a\n   bad: [\n", 4, 4, "invalid YAML"),
    ("", 1, 1, "empty"),
])
def test_recipe_errors_are_located(source: str, line: int, col: int, fragment: str) -> None:
    error = _error(source)
    assert fragment in error.message
    assert (error.line, error.col) == (line, col)


def test_lists_and_maps_nested_past_the_limit_are_a_located_syntax_error() -> None:
    # The same limit whether PyYAML could compose the document (120 levels) or ran out of
    # stack first (5,000): both located at the 101st level.
    for depth in (120, 5000):
        source = "name: deep\nstages: " + "[" * depth + "]" * depth + "\n"
        with pytest.raises(PipelineSyntaxError) as raised:
            parse_recipe(source)
        assert str(raised.value) == "2:108: lists and maps nested more than 100 deep"
    nested_maps = "name: deep\nattrs:\n" + "".join(
        "  " * i + f"k{i}:\n" for i in range(120)) + "  " * 120 + "v: 1\n"
    with pytest.raises(PipelineSyntaxError, match="nested more than 100 deep"):
        parse_recipe(nested_maps)
