"""Lint rules (§7.2) with their ids, severities and locations, and load_pipeline end to end."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from ostinato.daemon.engine.dot import parse_dot
from ostinato.daemon.engine.errors import ValidationError
from ostinato.daemon.engine.graph import Edge, Graph, Location, Node
from ostinato.daemon.engine.load import load_pipeline, load_source
from ostinato.daemon.engine.validate import (
    BUILT_IN_RULES,
    DEFAULT_KNOWN_TYPES,
    LintContext,
    diagnostic,
    register_rule,
    unregister_rule,
    validate,
    validate_or_raise,
)
from ostinato.protocol.pipelines import Diagnostic, PipelineRef

from .test_dot import SMOKE

CLEAN = """\
digraph G {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    work  [prompt="Do it"]
    start -> work
    work -> exit
}
"""


def _found(source: str, rule: str,
           known_types: Collection[str] = DEFAULT_KNOWN_TYPES) -> list[Diagnostic]:
    return [d for d in validate(parse_dot(source), known_types) if d.rule == rule]


def _where(d: Diagnostic) -> tuple[int | None, int | None]:
    return (d.line, d.col)


def test_builtin_rules_are_registered_in_spec_order() -> None:
    assert [r.__name__ for r in BUILT_IN_RULES] == [
        "start_node", "terminal_node", "reachability", "edge_target_exists",
        "start_no_incoming", "exit_no_outgoing", "condition_syntax", "stylesheet_syntax",
        "type_known", "fidelity_valid", "retry_target_exists", "goal_gate_has_retry",
        "prompt_on_llm_nodes", "node_id_reserved", "node_id_length", "retry_policy_known",
        "human_type_known", "human_default_choice_valid", "reference_syntax", "reference_resolves",
        "manager_child_pipeline", "manager_stop_condition_syntax", "agent_tools_valid"]


def test_node_ids_of_run_directory_folders_are_refused() -> None:
    found = _found("digraph G { start [shape=Mdiamond]; config; exit [shape=Msquare]; "
                   "start -> config -> exit }", "node_id_reserved")
    assert [(d.severity, d.node) for d in found] == [("error", "config")]


def test_a_node_id_too_long_for_a_directory_name_is_refused() -> None:
    long_id, longest = "n" * 300, "m" * 200
    found = _found(f"digraph G {{ start [shape=Mdiamond]; {long_id}; {longest}; "
                   f"exit [shape=Msquare]; start -> {long_id} -> {longest} -> exit }}",
                   "node_id_length")
    assert [(d.severity, d.node) for d in found] == [("error", long_id)]
    assert "300 bytes" in found[0].message


def test_an_unknown_retry_policy_is_a_warning() -> None:
    found = _found("digraph G { start [shape=Mdiamond]; a [retry_policy=eager]; "
                   "exit [shape=Msquare]; start -> a -> exit }", "retry_policy_known")
    assert [(d.severity, d.node) for d in found] == [("warning", "a")]


def _gate(attrs: str) -> str:
    return ("digraph G { start [shape=Mdiamond]; exit [shape=Msquare]; "
            f"ask [shape=hexagon, {attrs}]; a; b; start -> ask; "
            'ask -> a [label="[Y] Yes"]; ask -> b [label="No"]; a -> exit; b -> exit }')


def test_an_unknown_human_type_is_a_warning() -> None:
    [found] = _found(_gate("human.type=rating"), "human_type_known")
    assert (found.severity, found.node) == ("warning", "ask")
    assert "multiple_choice is used" in found.message
    for kind in ("multiple_choice", "yes_no", "Confirmation", "freeform"):
        assert _found(_gate(f"human.type={kind}"), "human_type_known") == []


@pytest.mark.parametrize(("attrs", "warned"), [
    ("human.default_choice=Y", False),  # an option's key
    ("human.default_choice=b", False),  # a target
    ('human.default_choice="no"', False),  # a label
    ("human.default_choice=later", True),  # multiple choice: would take the first option
    ("human.type=yes_no, human.default_choice=false", False),  # a DOT boolean is no
    ('human.type=confirmation, human.default_choice="[N] No"', False),
    ("human.type=yes_no, human.default_choice=b", True),
    ("human.type=freeform, human.default_choice=anything", False),
])
def test_a_human_default_choice_the_question_cannot_take_is_a_warning(attrs: str,
                                                                      warned: bool) -> None:
    found = _found(_gate(attrs), "human_default_choice_valid")
    assert [(d.severity, d.node) for d in found] == ([("warning", "ask")] if warned else [])


def _manager(graph_attrs: str = "", node_attrs: str = "") -> str:
    return ("digraph G {\n"
            f"  graph [{graph_attrs}]\n"
            "  start [shape=Mdiamond]\n"
            f"  boss [shape=house{node_attrs}]\n"
            "  exit [shape=Msquare]\n"
            "  start -> boss -> exit\n}")


def test_a_manager_without_a_child_pipeline_is_a_warning() -> None:
    [found] = _found(_manager(), "manager_child_pipeline")
    assert (found.severity, found.node, _where(found)) == ("warning", "boss", (4, 3))
    assert "stack.child_dotfile" in (found.fix or "")
    assert _found(_manager(node_attrs=", type=\"stack.manager_loop\", shape=box"),
                  "manager_child_pipeline")[0].node == "boss"
    assert _found(_manager('stack.child_dotfile="child.dot"'), "manager_child_pipeline") == []
    assert _found(_manager(node_attrs=', stack.child_dotfile="c.dot"'),
                  "manager_child_pipeline") == []


def test_a_manager_stop_condition_that_does_not_parse_is_an_error() -> None:
    source = _manager('stack.child_dotfile="c.dot"',
                      ', manager.stop_condition="stack.child.status==done"')
    [found] = _found(source, "manager_stop_condition_syntax")
    assert (found.severity, found.node) == ("error", "boss")
    assert "'==' is not an operator" in found.message
    assert found.line == 4
    good = _manager('stack.child_dotfile="c.dot"',
                    ', manager.stop_condition="stack.child.current_node=two && outcome=success"')
    assert _found(good, "manager_stop_condition_syntax") == []
    assert validate(parse_dot(good)) == []


def test_clean_pipeline_has_no_diagnostics() -> None:
    assert validate(parse_dot(CLEAN)) == []


def test_missing_start_node_is_an_error() -> None:
    [d] = _found("digraph G {\n  work [prompt=p]\n  exit [shape=Msquare]\n  work -> exit\n}",
                 "start_node")
    assert d.severity == "error"
    assert _where(d) == (1, 1)
    assert "no start node" in d.message


def test_two_start_nodes() -> None:
    [d] = _found(CLEAN.replace("work  [", "Start -> work\n    work  ["), "start_node")
    assert d.severity == "error" and d.node == "Start"
    assert _where(d) == (4, 5)


def test_missing_exit_node_is_an_error() -> None:
    [d] = _found("digraph G {\n  start [shape=Mdiamond]\n  start -> work\n}", "terminal_node")
    assert d.severity == "error"
    assert _where(d) == (1, 1)
    assert "no exit node" in d.message


def test_two_exit_nodes_by_shape_and_id() -> None:
    [d] = _found(CLEAN.replace("work -> exit", "work -> exit\n work -> end"), "terminal_node")
    assert d.severity == "error" and d.node == "end"
    assert _where(d) == (7, 10)


def test_orphan_node_is_a_warning() -> None:
    [d] = _found(CLEAN.replace("    start ->", "    orphan [prompt=x]\n    start ->"),
                 "reachability")
    assert d.severity == "warning"
    assert d.node == "orphan"
    assert _where(d) == (5, 5)


def test_edge_target_exists() -> None:
    graph = parse_dot(CLEAN)
    graph.edges.append(Edge("work", "ghost", loc=Location(9, 3)))
    [d] = [d for d in validate(graph) if d.rule == "edge_target_exists"]
    assert d.severity == "error"
    assert d.edge == ("work", "ghost")
    assert _where(d) == (9, 3)


def test_start_no_incoming() -> None:
    [d] = _found(CLEAN.replace("-> exit\n", "-> exit\n    work -> start\n"),
                 "start_no_incoming")
    assert d.severity == "error"
    assert d.edge == ("work", "start")
    assert _where(d) == (7, 5)


def test_exit_no_outgoing() -> None:
    [d] = _found(CLEAN.replace("-> exit\n", "-> exit\n    exit -> work\n"), "exit_no_outgoing")
    assert d.severity == "error"
    assert d.edge == ("exit", "work") and d.node == "exit"
    assert _where(d) == (7, 5)


def test_condition_syntax() -> None:
    source = CLEAN.replace("work -> exit", 'work -> exit [condition="outcome==success"]')
    [d] = _found(source, "condition_syntax")
    assert d.severity == "error"
    assert d.edge == ("work", "exit")
    assert _where(d) == (6, 19)
    assert "'==' is not an operator" in d.message


def test_stylesheet_syntax() -> None:
    source = CLEAN.replace("{\n", '{\n    model_stylesheet="* { model: x }"\n', 1)
    [d] = _found(source, "stylesheet_syntax")
    assert d.severity == "error"
    assert _where(d) == (2, 5)
    assert "unknown property 'model'" in d.message


def test_type_known() -> None:
    source = CLEAN.replace('work  [prompt="Do it"]', 'work  [prompt="Do it", type="bogus"]')
    [d] = _found(source, "type_known")
    assert d.severity == "warning" and d.node == "work"
    assert _where(d) == (4, 28)
    assert _found(source, "type_known", known_types={"start", "exit", "bogus"}) == []


def test_fidelity_valid_on_graph_node_and_edge() -> None:
    source = CLEAN.replace('work  [prompt="Do it"]', 'work  [prompt="Do it", fidelity=all]') \
        .replace("{\n", "{\n    default_fidelity=lots\n", 1) \
        .replace("work -> exit", "work -> exit [fidelity=\"summary:huge\"]")
    found = _found(source, "fidelity_valid")
    assert [(d.severity, _where(d), d.node, d.edge) for d in found] == [
        ("warning", (2, 5), None, None),
        ("warning", (5, 28), "work", None),
        ("warning", (7, 19), None, ("work", "exit")),
    ]
    assert _found(source.replace("summary:huge", "summary:high"), "fidelity_valid")[2:] == []


def test_retry_target_exists() -> None:
    source = CLEAN.replace('work  [prompt="Do it"]',
                           'work  [prompt="Do it", fallback_retry_target=nowhere]') \
        .replace("{\n", "{\n    retry_target=missing\n", 1)
    found = _found(source, "retry_target_exists")
    assert [(d.severity, _where(d), d.node) for d in found] == [
        ("warning", (2, 5), None), ("warning", (5, 28), "work")]


def test_goal_gate_has_retry() -> None:
    source = CLEAN.replace('work  [prompt="Do it"]', 'work  [prompt="Do it", goal_gate=true]')
    [d] = _found(source, "goal_gate_has_retry")
    assert d.severity == "warning" and d.node == "work"
    assert _where(d) == (4, 28)
    with_node_target = source.replace("goal_gate=true", "goal_gate=true, retry_target=work")
    assert _found(with_node_target, "goal_gate_has_retry") == []
    with_graph_target = source.replace("{\n", "{\n    retry_target=work\n", 1)
    assert _found(with_graph_target, "goal_gate_has_retry") == []


def test_prompt_on_llm_nodes() -> None:
    source = CLEAN.replace('work  [prompt="Do it"]', "work")
    [d] = _found(source, "prompt_on_llm_nodes")
    assert d.severity == "warning" and d.node == "work"
    assert _where(d) == (4, 5)
    assert _found(source.replace("    work\n", '    work [label="Work"]\n'),
                  "prompt_on_llm_nodes") == []


def test_smoke_diagnostics_are_warnings_only() -> None:
    diagnostics = validate(parse_dot(SMOKE))
    assert [(d.rule, d.severity, d.node) for d in diagnostics] == [
        ("goal_gate_has_retry", "warning", "implement")]


def test_validate_or_raise() -> None:
    assert validate_or_raise(parse_dot(CLEAN)) == []
    with pytest.raises(ValidationError) as info:
        validate_or_raise(Graph("empty", nodes={"a": Node("a", {"prompt": "p"})}))
    assert {d.rule for d in info.value.diagnostics} >= {"start_node", "terminal_node"}


def _no_x_nodes(graph: Graph, ctx: LintContext) -> Iterator[Diagnostic]:
    for node in graph.nodes.values():
        if node.id.startswith("x"):
            yield diagnostic("no_x", "info", "x node", node.loc, node=node.id)


def test_custom_rules_registered_and_extra() -> None:
    source = CLEAN.replace("start -> work", "start -> xray -> work")
    assert [d.rule for d in validate(parse_dot(source), extra_rules=[_no_x_nodes])][-1:] \
        == ["no_x"]
    register_rule(_no_x_nodes)
    try:
        [d] = [d for d in validate(parse_dot(source)) if d.rule == "no_x"]
        assert (d.severity, d.node, _where(d)) == ("info", "xray", (5, 14))
    finally:
        unregister_rule(_no_x_nodes)
    assert [d for d in validate(parse_dot(source)) if d.rule == "no_x"] == []


# --- load_pipeline -----------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_load_dot_path_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "p.gv").write_text(CLEAN.replace('"Do it"', '"Do $goal for $who"')
                                             .replace("{\n", '{\n goal="g"\n', 1))
    before = _snapshot(tmp_path)
    result = load_pipeline(PipelineRef(path="pipes/p.gv"), tmp_path, {"who": "me"})
    assert result.valid is True
    assert result.diagnostics == []
    assert result.graph is not None
    assert result.graph.nodes["work"].attrs["prompt"] == "Do g for me"
    assert _snapshot(tmp_path) == before


def test_load_recipe_by_suffix_and_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text("name: r\ngoal: G\nstages:\n  - id: a\n    prompt: for $goal\n")
    result = load_pipeline(PipelineRef(path=str(path)), Path("/nonexistent"))
    assert result.valid
    assert result.graph is not None and result.graph.source_format == "recipe"
    assert result.graph.nodes["a"].attrs["prompt"] == "for G"


def test_load_strips_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "bom.dot").write_bytes(b"\xef\xbb\xbf" + CLEAN.encode())
    result = load_pipeline(PipelineRef(path="bom.dot"), tmp_path)
    assert result.valid and result.graph is not None and result.graph.name == "G"


def test_load_format_override(tmp_path: Path) -> None:
    (tmp_path / "pipeline.txt").write_text(CLEAN)
    result = load_pipeline(PipelineRef(path="pipeline.txt", format="dot"), tmp_path)
    assert result.valid and result.graph is not None and result.graph.name == "G"


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("missing.dot", None, "cannot read 'missing.dot'"),
    ("pipeline.txt", CLEAN, "cannot tell the format"),
    ("latin.dot", b"digraph G { a [label=\"\xe9\"] }", "not UTF-8"),
    ("dir.dot", "DIR", "cannot read 'dir.dot'"),
])
def test_load_io_problems_are_diagnostics(tmp_path: Path, name: str,
                                          content: str | bytes | None, fragment: str) -> None:
    if content == "DIR":
        (tmp_path / name).mkdir()
    elif isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    elif content is not None:
        (tmp_path / name).write_text(content)
    result = load_pipeline(PipelineRef(path=name), tmp_path)
    assert result.graph is None and result.valid is False
    [d] = result.diagnostics
    assert d.rule == "io" and d.severity == "error"
    assert fragment in d.message


def test_load_syntax_error_is_one_diagnostic() -> None:
    result = load_pipeline(PipelineRef(source="digraph G {\n  a -- b\n}", format="dot"),
                           Path("."))
    assert result.graph is None and not result.valid
    assert [(d.rule, d.severity, d.line, d.col) for d in result.diagnostics] == [
        ("syntax", "error", 2, 5)]


def test_load_reports_lint_errors_with_graph() -> None:
    result = load_source("digraph G { a [prompt=p] }", "dot")
    assert result.graph is not None
    assert not result.valid
    assert {d.rule for d in result.diagnostics} == {"start_node", "terminal_node"}


AGENT = """\
digraph G {
    graph [tool.wc.argv="[\\"wc\\", \\"-w\\"]", tool.bad.argv="[1]"]
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    work  [prompt="Do it", tools="wc,ls", mcp="files", max_turns=0]
    plain [prompt="No tools", tool.wc.timeout=ten]
    start -> work -> plain -> exit
}
"""


def test_agent_tools_valid_names_bad_declarations_and_undeclared_names() -> None:
    found = [(d.severity, d.node, d.message) for d in _found(AGENT, "agent_tools_valid")]
    assert found == [
        ("error", None, "graph: tool bad: argv must be a JSON list of strings with a program "
                        "first"),
        ("error", "work", "node 'work': max_turns must be a positive whole number, not 0"),
        ("warning", "work", "node 'work' names ls, MCP server files, which the pipeline does "
                            "not declare: unless the run's settings.agent does, the node "
                            "fails")]
    # A node without tools offers none: its tool.* attributes are not looked at.
    assert _found(CLEAN, "agent_tools_valid") == []
