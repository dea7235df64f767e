"""The invariant library without a daemon: what is refused at parse time (one clear error per
bad entry, naming its index), the seeds/001 spellings, the Wilson lower bound and pass@k
against values computed independently, and how a judge's answer is read."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any

import pytest
from pydantic import ValidationError

from ostinato.daemon.regression.invariants import parse_vote, pass_at_k, wilson_lower
from ostinato.protocol.invariants import RUN_METRICS, invariant_list


def errors_of(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        invariant_list.validate_python(entries)
    return caught.value.errors()


@pytest.mark.parametrize(("entry", "where", "words"), [
    ({"type": "regex", "value": "a(b"}, "value", "not a valid regular expression: missing )"),
    ({"type": "regex", "value": ""}, "value", "at least 1 character"),
    ({"type": "json_schema", "value": {"type": "integer", "minimum": "zero"}}, "value",
     "not a valid JSON Schema at minimum"),
    ({"type": "json_schema", "value": {"properties": {"a": {"type": 7}}}}, "value",
     "not a valid JSON Schema at properties/a/type"),
    ({"type": "jmespath", "expression": "items[?price >", "value": 1}, "expression",
     "not a valid JMESPath expression"),
    ({"type": "jmespath", "expression": "a", "op": "regex", "value": "("}, None,
     "not a valid regular expression"),
    ({"type": "jmespath", "expression": "a", "op": "regex", "value": 3}, None,
     "op `regex` needs a string pattern"),
    ({"type": "jmespath", "expression": "a", "op": "gt", "value": [1]}, None,
     "op `gt` needs a number or a string"),
    ({"type": "jmespath", "expression": "a", "op": "eq"}, None, "op `eq` needs a `value`"),
    ({"type": "jmespath", "expression": "a", "op": "exists", "value": "yes"}, None,
     "op `exists` takes no `value`, or true/false"),
    ({"type": "jmespath", "expression": "a", "op": "near", "value": 1}, "op", "'eq'"),
    ({"type": "expr", "expression": "metrics.cost_usd <"}, "expression",
     "not a valid CEL expression"),
    ({"type": "expr", "expression": "size(context.x) >= 1 &&"}, "expression",
     "not a valid CEL expression"),
    ({"type": "judge", "rubric": "ok", "k": 0}, "k", "greater than or equal to 1"),
    ({"type": "judge", "rubric": ""}, "rubric", "at least 1 character"),
    ({"type": "judge", "rubric": "ok", "path": "stdout"}, "path", "`output`, `node.<node_id>`"),
    ({"type": "pass_rate", "threshold": 1.2}, "threshold", "less than or equal to 1"),
    ({"type": "pass_rate", "threshold": -0.1}, "threshold", "greater than or equal to 0"),
    ({"type": "pass_rate", "threshold": 0.5, "confidence": 1}, "confidence", "less than 1"),
    ({"type": "pass_at_k", "k": 0}, "k", "greater than or equal to 1"),
    ({"type": "pass_at_k", "k": 2, "threshold": 2}, "threshold", "less than or equal to 1"),
    ({"type": "min", "metric": "status", "value": 1}, "metric", "metric must be one of"),
    ({"type": "between", "metric": "calls", "min": 5, "max": 1}, None,
     "min (5) is above max (1)"),
    ({"type": "min_evaluation_coverage", "value": 1.5}, "value", "less than or equal to 1"),
    ({"type": "node_sequence", "nodes": []}, "nodes", "at least 1 item"),
    ({"type": "node_sequence", "nodes": ["a"], "mode": "sorted"}, "mode", "'exact'"),
    ({"type": "tool_called"}, None, "give `node`, `command` or `tool`"),
    ({"type": "tool_called", "server": "files"}, None, "give `node`, `command` or `tool`"),
    ({"type": "tool_called", "tool": "files/"}, None, "write `server/tool`"),
    ({"type": "tool_called", "tool": "files/read", "server": "docs"}, None,
     "names server 'files', `server` says 'docs'"),
    ({"type": "tool_called", "tool": "wc", "min_count": 3, "max_count": 2}, None,
     "`min_count` (3) is above `max_count` (2)"),
    ({"type": "tool_called", "tool": "wc", "max_count": -1}, "max_count",
     "greater than or equal to 0"),
    ({"type": "tool_called", "tool": "wc", "arguments": {"path": {"$regex": "("}}}, None,
     "arguments.path: "),
    ({"type": "tool_called", "tool": "wc", "arguments": {"path": {"$contains": 3}}}, None,
     "arguments.path: $contains takes a string"),
    ({"type": "tool_called", "tool": "wc", "arguments": {"path": {"$glob": "*"}}}, None,
     "an operator object takes one of $regex, $contains"),
    ({"type": "max", "metric": "nodes.summarise.latency_ms", "value": 1}, "metric",
     "`nodes.<node id>.<turns|model_calls|tool_calls>`"),
    ({"type": "max", "metric": "nodes..turns", "value": 1}, "metric", "metric must be"),
    ({"type": "not", "check": {"type": "run_status"}}, "check", "'equals'"),
    ({"type": "not", "check": {"type": "regex", "value": "["}}, "check",
     "not a valid regular expression"),
    ({"type": "max_tokens", "value": -1}, "value", "greater than or equal to 0"),
])
def test_a_bad_entry_is_refused_with_its_index_and_reason(entry: dict[str, Any],
                                                          where: str | None,
                                                          words: str) -> None:
    errors = errors_of([{"type": "run_status"}, {"type": "max_cost_usd", "value": 1}, entry])
    assert len(errors) == 1, errors
    loc, message = errors[0]["loc"], errors[0]["msg"]
    assert loc[:2] == (2, entry["type"]), loc
    if where is not None:
        assert loc[2] == where, loc
    assert words in message, message


def test_several_bad_entries_each_get_an_error() -> None:
    errors = errors_of([{"type": "regex", "value": "("}, {"type": "run_status"},
                        {"type": "expr", "expression": "1 +"}, {"type": "nope"}])
    assert [e["loc"][0] for e in errors] == [0, 2, 3]
    assert "'nope'" in errors[2]["msg"] and "'pass_rate'" in errors[2]["msg"]


def test_seeds_001_spellings_parse() -> None:
    parsed = invariant_list.validate_python([
        {"type": "min_candidates", "value": 3, "description": "At least 3 candidates"},
        {"type": "run_status", "value": "COMPLETED"},
        {"type": "min_top_i_score", "value": 0.3},
        {"type": "no_hard_constraint_violations", "value": True},
        {"type": "max_duration_seconds", "value": 300},
        {"type": "min_evaluation_coverage", "value": 0.9}])
    assert [p.type for p in parsed] == ["min_candidates", "run_status", "min_top_i_score",
                                        "no_hard_constraint_violations",
                                        "max_duration_seconds", "min_evaluation_coverage"]
    assert parsed[1].value == "completed"
    assert RUN_METRICS == ("status", "outcome", "duration_ms", "cost_usd", "tokens_in",
                           "tokens_out", "tokens", "calls", "model_calls", "tool_calls",
                           "turns", "stages", "nodes_visited", "latency_ms", "max_call_latency_ms",
                           "score")


def wilson_by_search(passes: int, n: int, z: float) -> float:
    """The smallest p whose one-sided score test does not reject p̂ = passes/n at z: the
    Wilson lower bound, found by bisection rather than by its closed form."""
    observed = passes / n
    low, high = 0.0, observed
    for _ in range(100):
        mid = (low + high) / 2
        rejects = mid == 0 or (observed - mid) / math.sqrt(mid * (1 - mid) / n) > z
        low, high = (mid, high) if rejects else (low, mid)
    return high


@pytest.mark.parametrize(("passes", "n", "confidence"), [
    (20, 20, 0.95), (18, 20, 0.95), (12, 20, 0.95), (0, 20, 0.95), (1, 1, 0.95),
    (8, 10, 0.975), (45, 50, 0.9), (3, 7, 0.99)])
def test_the_wilson_lower_bound(passes: int, n: int, confidence: float) -> None:
    z = NormalDist().inv_cdf(confidence)
    p = passes / n
    closed = ((p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
              / (1 + z * z / n))

    bound = wilson_lower(passes, n, confidence)

    assert bound == pytest.approx(closed, abs=1e-12)
    assert bound == pytest.approx(wilson_by_search(passes, n, z), abs=1e-9)
    assert 0 <= bound <= p


def test_the_wilson_lower_bound_matches_a_published_value() -> None:
    # 8 of 10 at 95% two-sided (one-sided 97.5%): 0.4902 (Wilson, 1927; e.g. Newcombe 1998).
    assert wilson_lower(8, 10, 0.975) == pytest.approx(0.4902, abs=5e-5)


@pytest.mark.parametrize(("passed", "k"), [
    ([True, False, False, True, False], 1), ([True, False, False, True, False], 2),
    ([False] * 4 + [True], 3), ([False] * 6, 2), ([True] * 3, 3), ([True, False, True], 3)])
def test_pass_at_k_is_the_share_of_k_subsets_with_a_pass(passed: list[bool], k: int) -> None:
    subsets = list(itertools.combinations(passed, k))
    expected = sum(any(s) for s in subsets) / len(subsets)
    assert pass_at_k(sum(passed), len(passed), k) == pytest.approx(expected)


@pytest.mark.parametrize(("answer", "vote"), [
    ("PASS", "PASS"), ("fail", "FAIL"), ("VERDICT: PASS", "PASS"),
    ("The output names c2, so it passes.\nVERDICT: FAIL", "FAIL"),
    ("**Verdict**: pass", "PASS"), ("It failed the rubric.", "FAIL"),
    ("Verdict - Fail. Earlier drafts would pass.", "FAIL"), ("I cannot tell.", None),
    ("passport", None)])
def test_a_judge_answer_is_read_robustly(answer: str, vote: str | None) -> None:
    assert parse_vote(answer) == vote
