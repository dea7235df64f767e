"""User-written regular expressions run on RE2: a pattern that makes a backtracking engine
explode (`(a+)+$` against 5,000 a's and a b: 2^5000 ways to fail with Python's `re`) is
answered through run.reeval, for the `regex` check and jmespath's `regex` op alike; what
RE2 cannot do (backreferences, lookaround) is refused at run.reeval and snapshot.create with
a -32602 naming the entry and saying why; `ignore_case` and `(?i)` still work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ostinato.protocol.patterns import SYNTAX_URL, PatternError, compile_pattern

from .inprocess import InProcessDaemon
from .invariants_support import attr, module_daemon, reeval
from .runs_support import dot, run_to_end
from .support import Wire

shared = module_daemon()
INVALID_PARAMS = -32602
LONG = "a" * 5_000 + "b"  # no `(a+)+$` match, and every split of the a's is a way to fail


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wire(shared_daemon: InProcessDaemon) -> AsyncIterator[Wire]:
    connection = await shared_daemon.connect()
    yield connection
    await connection.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def long_run(wire: Wire) -> dict[str, Any]:
    """A completed run whose node `plain` answered LONG and node `data` {"text": LONG}."""
    run = await run_to_end(wire, dot(f"""
        digraph long {{
            start [shape=Mdiamond]
            exit  [shape=Msquare]
            plain [prompt="Say it", scripted.response="{LONG}"]
            data  [prompt="As JSON", scripted.response={attr({"text": LONG})}]
            start -> plain -> data -> exit
        }}"""))
    assert run["status"] == "completed", run
    return run


@pytest.mark.asyncio(loop_scope="module")
async def test_a_catastrophic_pattern_is_answered(wire: Wire, long_run: dict[str, Any]) -> None:
    checks = [
        {"type": "regex", "path": "node.plain", "value": "(a+)+$"},
        {"type": "regex", "path": "node.plain", "value": "(a+)+b$"},
        {"type": "regex", "path": "node.plain", "value": "(A+)+B$", "ignore_case": True},
        {"type": "regex", "path": "node.plain", "value": "(A+)+B$"},
        {"type": "jmespath", "path": "node.data", "expression": "text", "op": "regex",
         "value": "(a+)+$"},
        {"type": "jmespath", "path": "node.data", "expression": "text", "op": "regex",
         "value": "(?i)^(A|a)+B$"},
    ]

    result = await reeval(wire, long_run["run_id"], checks)

    assert [r["status"] for r in result["results"]] == [
        "failed", "passed", "passed", "failed", "failed", "passed"], result["results"]
    assert result["results"][0]["message"] == (
        "the output of node 'plain' does not match /(a+)+$/")
    assert result["results"][1]["message"] == (
        "the output of node 'plain' matches /(a+)+b$/ at 0")
    # The daemon is still there for everyone afterwards.
    assert (await wire.result("run.get", {"run_id": long_run["run_id"]}))["status"] == (
        "completed")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("entry", "where", "words"), [
    ({"type": "regex", "value": r"(\w+) \1"}, ["regex", "value"],
     "invalid escape sequence: \\1 (RE2 does not support backreferences"),
    ({"type": "regex", "value": r"(?P<w>\w+) (?P=w)", "ignore_case": True}, ["regex", "value"],
     "RE2 does not support backreferences"),
    ({"type": "regex", "value": "c(?=2)"}, ["regex", "value"],
     "RE2 does not support lookahead or lookbehind"),
    ({"type": "jmespath", "expression": "top", "op": "regex", "value": "(?<!x)c"}, ["jmespath"],
     "RE2 does not support lookahead or lookbehind"),
    ({"type": "not", "check": {"type": "regex", "value": r"c2\Z"}}, ["not", "check"],
     "RE2 writes the end of the text as \\z"),
])
async def test_what_re2_cannot_do_is_refused_naming_the_entry(
        wire: Wire, long_run: dict[str, Any], entry: dict[str, Any], where: list[str],
        words: str) -> None:
    invariants = [{"type": "run_status"}, entry]
    for method, params in (
            ("run.reeval", {"run_id": long_run["run_id"], "invariants": invariants}),
            ("snapshot.create", {"run_id": long_run["run_id"], "name": "re2-refused",
                                 "invariants": invariants})):
        reply = await wire.request(method, params)

        assert reply["error"]["code"] == INVALID_PARAMS, reply
        errors = reply["error"]["data"]
        assert len(errors) == 1, errors
        assert errors[0]["loc"][:2 + len(where)] == ["invariants", 1, *where], errors
        assert words in errors[0]["msg"], errors
        assert SYNTAX_URL in errors[0]["msg"], errors
    listed = await wire.result("snapshot.list", {})
    assert "re2-refused" not in [s["name"] for s in listed["snapshots"]]


def test_compiled_patterns_are_shared_and_errors_say_where_the_syntax_is() -> None:
    assert compile_pattern("c\\d") is compile_pattern("c\\d")
    assert compile_pattern("c\\d") is not compile_pattern("c\\d", True)
    assert compile_pattern("C\\d", True).search("top: c2") is not None
    assert compile_pattern("C\\d").search("top: c2") is None
    with pytest.raises(PatternError) as caught:
        compile_pattern("a(b")
    assert str(caught.value) == (
        f"not a valid regular expression: missing ): a(b (patterns use RE2 syntax: {SYNTAX_URL})")
