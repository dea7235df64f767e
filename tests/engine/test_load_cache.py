"""Loads of the same pipeline are kept and shared; anything that changes the result is not."""

from __future__ import annotations

from ostinato.daemon.engine.graph import Graph
from ostinato.daemon.engine.kept import Kept
from ostinato.daemon.engine.load import _LOADED, load_source
from ostinato.daemon.engine.validate import (
    DEFAULT_KNOWN_TYPES,
    LintContext,
    register_rule,
    unregister_rule,
)
from ostinato.protocol.pipelines import Diagnostic

SOURCE = """digraph cached {
    graph [goal="$goal"]
    start [shape=Mdiamond]  exit [shape=Msquare]
    work [prompt="Do $goal"]
    start -> work -> exit
}"""


def test_the_same_load_is_shared() -> None:
    first = load_source(SOURCE, "dot", {"goal": "ship"})
    assert load_source(SOURCE, "dot", {"goal": "ship"}) is first
    assert first.graph is not None and first.graph.nodes["work"].prompt == "Do ship"


def test_variables_handler_types_and_source_each_make_their_own_load() -> None:
    base = load_source(SOURCE, "dot", {"goal": "ship"})
    other = load_source(SOURCE, "dot", {"goal": "test"})
    assert other is not base and other.graph is not None
    assert other.graph.nodes["work"].prompt == "Do test"
    assert base.graph is not None and base.graph.nodes["work"].prompt == "Do ship"
    typed = load_source(SOURCE, "dot", {"goal": "ship"}, {*DEFAULT_KNOWN_TYPES, "custom"})
    assert typed is not base
    assert load_source(SOURCE + "\n", "dot", {"goal": "ship"}) is not base


def test_custom_rules_are_never_served_from_what_was_kept() -> None:
    base = load_source(SOURCE, "dot", {"goal": "ship"})
    ruled = load_source(SOURCE, "dot", {"goal": "ship"}, extra_rules=[lambda graph, ctx: []])
    assert ruled is not base


def test_registering_a_rule_applies_to_pipelines_loaded_before() -> None:
    before = load_source(SOURCE, "dot", {"goal": "ship"})

    def no_goals(graph: Graph, ctx: LintContext) -> list[Diagnostic]:
        return [Diagnostic(rule="no_goals", severity="warning", message="a goal")]
    register_rule(no_goals)
    try:
        after = load_source(SOURCE, "dot", {"goal": "ship"})
        assert [d.rule for d in after.diagnostics] == ["no_goals"]
    finally:
        unregister_rule(no_goals)
    assert load_source(SOURCE, "dot", {"goal": "ship"}) is before


def test_a_failed_parse_is_reported_every_time() -> None:
    broken = SOURCE.replace("->", "-", 1)
    first = load_source(broken, "dot")
    again = load_source(broken, "dot")
    assert first.graph is None and again.graph is None
    assert first.diagnostics[0].rule == again.diagnostics[0].rule == "syntax"


def test_what_is_kept_stays_within_its_budget_and_entries() -> None:
    kept: Kept[str] = Kept(10, max_entries=3)
    kept.put("a", "A", 4)
    kept.put("b", "B", 4)
    assert kept.get("a") == "A"  # now the most recently used
    kept.put("c", "C", 4)  # 12 bytes: the least recently used (b) goes
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == ("A", None, "C")
    kept.put("huge", "H", 11)  # over the whole budget: never kept
    assert kept.get("huge") is None and kept.get("a") == "A"
    for key in "wxyz":
        kept.put(key, key, 0)
    assert len(kept) == 3


def test_loads_with_large_variables_are_counted_by_what_they_expand_to() -> None:
    # Every one of 200 nodes repeats the variable: each load holds 200 copies of it.
    nodes = "\n".join(f'n{i} [prompt="$goal"]\nstart -> n{i} -> exit' for i in range(200))
    source = f"digraph wide {{\nstart [shape=Mdiamond]\nexit [shape=Msquare]\n{nodes}\n}}"
    value = "x" * 10_000
    load = load_source(source, "dot", {"goal": value})
    assert load.graph is not None and load.graph.nodes["n7"].prompt == value
    for i in range(40):
        load_source(source, "dot", {"goal": f"{value}{i}"})
    assert 0 < _LOADED.size <= _LOADED.budget  # about 80 MB loaded, within 64 MiB kept
    assert len(_LOADED) < 40
